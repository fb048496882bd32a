package worker

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

type fixture struct {
	log    *lockedBuffer // the worker's log lines
	rdb    *redis.Client
	jobs   *storage.Jobs
	client *asynq.Client
	w      *Worker
}

func startWorker(tb testing.TB) *fixture {
	tb.Helper()
	return startWorkerWith(tb, nil)
}

// startWorkerWith is startWorker with m told of every task outcome.
func startWorkerWith(tb testing.TB, m Metrics) *fixture {
	tb.Helper()
	r := storagetest.StartRedis(tb)
	rdb := r.Client(tb)
	log := &lockedBuffer{}
	logger := slog.New(slog.NewTextHandler(log, nil))
	w := New(Config{Concurrency: 2, Queues: map[string]int{"default": 1}, ShutdownTimeout: 2 * time.Second,
		Retention: time.Hour, Metrics: m}, rdb, logger)
	w.Handle(kindEcho, handleEcho)
	if err := w.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Stop)
	return &fixture{log: log, rdb: rdb, jobs: storage.NewJobs(rdb, time.Hour, "default"), client: asynq.NewClientFromRedisClient(rdb), w: w}
}

// lockedBuffer is an io.Writer safe for concurrent use, for a logger's lines.
type lockedBuffer struct {
	mu  sync.Mutex
	buf strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func (f *fixture) enqueue(tb testing.TB, id, typ string, payload any, opts ...asynq.Option) {
	tb.Helper()
	data, _ := json.Marshal(payload)
	ctx := context.Background()
	if err := f.jobs.Create(ctx, storage.Job{ID: id, Type: typ, Queue: "default", State: storage.StatePending, CreatedAt: time.Now()}); err != nil {
		tb.Fatal(err)
	}
	if _, err := f.client.Enqueue(asynq.NewTask(typ, data), append(opts, asynq.TaskID(id))...); err != nil {
		tb.Fatal(err)
	}
}

func (f *fixture) wait(tb testing.TB, id string) storage.Job {
	tb.Helper()
	var j storage.Job
	deadline := time.Now().Add(15 * time.Second)
	for {
		var err error
		j, err = f.jobs.Get(context.Background(), id)
		if err != nil {
			tb.Fatal(err)
		}
		if j.State == storage.StateCompleted || j.State == storage.StateFailed {
			return j
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s still %s", id, j.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kindEcho is the test kind: echoArgs.Message back after SleepMS, or ctx's error.
const kindEcho = "echo"

type echoArgs struct {
	Message string `json:"message"`
	SleepMS int64  `json:"sleep_ms"`
}

func handleEcho(ctx context.Context, t *Task) (any, error) {
	var a echoArgs
	if err := json.Unmarshal(t.Payload, &a); err != nil {
		return nil, fmt.Errorf("decode: %v: %w", err, SkipRetry)
	}
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(time.Duration(a.SleepMS) * time.Millisecond):
	}
	return map[string]string{"message": a.Message}, nil
}

// TestUnknownKindIsRetried: a task of a kind this worker has no handler for is not
// lost: its attempt fails naming the kind, and it waits to be retried (by a worker of
// a newer deploy, say); it is never routed to a handler of a kind it merely starts
// with.
func TestUnknownKindIsRetried(t *testing.T) {
	t.Parallel()
	f := startWorker(t)
	f.enqueue(t, "nohandler", kindEcho+"2", echoArgs{Message: "x"}, asynq.MaxRetry(5))
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := f.jobs.Get(context.Background(), "nohandler")
		if j.State == storage.StateRetry {
			if j.Attempts != 1 || !strings.Contains(j.Error, `no handler for task kind "echo2"`) || j.Result != nil {
				t.Fatalf("job = %+v", j)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("job still %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestEcho(t *testing.T) {
	t.Parallel()
	f := startWorker(t)
	f.enqueue(t, "echo1", kindEcho, echoArgs{Message: "hello", SleepMS: 10})
	j := f.wait(t, "echo1")
	if j.State != storage.StateCompleted || j.Attempts != 1 || string(j.Result) != `{"message":"hello"}` || j.CompletedAt == nil {
		t.Fatalf("job = %+v", j)
	}
}

// TestCompletionsCountedByPulse: a running worker's completions reach its queue's
// counter of the minute with its pulses, without waiting for Stop.
func TestCompletionsCountedByPulse(t *testing.T) {
	t.Parallel()
	f := startWorker(t)
	for i := range 3 {
		f.enqueue(t, "count"+strconv.Itoa(i), kindEcho, echoArgs{Message: "hi"})
	}
	for i := range 3 {
		f.wait(t, "count"+strconv.Itoa(i))
	}
	deadline := time.Now().Add(5 * PulseInterval)
	for {
		counts, err := f.jobs.Completions(context.Background(), "default", 2, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if counts[0]+counts[1] == 3 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("completions %v %v after the jobs completed, want 3 in all", counts, 5*PulseInterval)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCompletedIsNotRunAgain: a delivery of a task whose record already says completed
// is acknowledged without running the handler.
func TestCompletedIsNotRunAgain(t *testing.T) {
	t.Parallel()
	f := startWorker(t)
	ctx := context.Background()
	f.enqueue(t, "twice", kindEcho, echoArgs{Message: "first"})
	first := f.wait(t, "twice")
	ins := asynq.NewInspectorFromRedisClient(f.rdb)
	// The record is written before the handler returns; asynq lets go of its task
	// just after.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := ins.GetTaskInfo("default", "twice"); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("first delivery never acknowledged")
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Deliver the same id again, as asynq does when marking it done failed.
	data, _ := json.Marshal(echoArgs{Message: "second"})
	if _, err := f.client.Enqueue(asynq.NewTask(kindEcho, data), asynq.TaskID("twice")); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for {
		if _, err := ins.GetTaskInfo("default", "twice"); err != nil {
			break // acknowledged and removed
		}
		if time.Now().After(deadline) {
			t.Fatal("second delivery never processed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	again, err := f.jobs.Get(ctx, "twice")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(first, again); diff != "" {
		t.Errorf("record changed by the second delivery (-first +again):\n%s", diff)
	}
}

func TestHeartbeat(t *testing.T) {
	t.Parallel()
	f := startWorker(t)
	beats := storage.NewHeartbeats(f.rdb)
	b, ok, err := beats.Get(context.Background(), f.w.ID())
	if err != nil || !ok || b.Concurrency != 2 {
		t.Fatalf("heartbeat after Start: %+v %v %v", b, ok, err)
	}
	f.w.Stop()
	if _, ok, _ := beats.Get(context.Background(), f.w.ID()); ok {
		t.Errorf("heartbeat left behind after Stop")
	}
	f.w.Stop() // a second Stop is safe
}

func TestSupervisorExitReporting(t *testing.T) {
	t.Parallel()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh")
	}
	tests := []struct {
		name   string
		script string
		stop   bool
		want   string
	}{
		{"exit code", "exit 3", false, "exit code 3"},
		{"clean exit", "exit 0", false, "exit code 0"},
		{"SIGTERM on Stop", "echo ready; exec sleep 30", true, "killed by signal terminated"},
		{"SIGKILL when SIGTERM is ignored", "trap '' TERM; echo ready; while :; do sleep 0.05; done", true, "killed by signal killed"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pr, pw := io.Pipe()
			s := &Supervisor{Path: sh, Args: []string{"-c", tc.script}, Stdout: pw, StopTimeout: 300 * time.Millisecond, Logger: logger}
			if err := s.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			var ex Exit
			if tc.stop {
				// Stop only once the script has set its trap.
				line, err := bufio.NewReader(pr).ReadString('\n')
				if err != nil || line != "ready\n" {
					t.Fatalf("child said %q, %v", line, err)
				}
				go io.Copy(io.Discard, pr)
				ex = s.Stop()
			} else {
				select {
				case ex = <-s.Exited():
				case <-time.After(5 * time.Second):
					t.Fatal("no exit reported")
				}
			}
			if got := ex.String(); !strings.Contains(got, tc.want) {
				t.Errorf("exit = %q, want %q", got, tc.want)
			}
			s.Stop() // after exit: returns at once
		})
	}
}

// TestStopRequeuesAndRecordsPending: a task still running when Stop's ShutdownTimeout
// runs out goes back to its queue, and its record says pending by the time Stop returns.
func TestStopRequeuesAndRecordsPending(t *testing.T) {
	t.Parallel()
	f := startWorker(t) // ShutdownTimeout 2 s
	f.enqueue(t, "long", kindEcho, echoArgs{Message: "x", SleepMS: 60_000})
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, _ := f.jobs.Get(context.Background(), "long")
		if j.State == storage.StateActive {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("task never started: %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	start := time.Now()
	f.w.Stop()
	if took := time.Since(start); took > 4*time.Second {
		t.Errorf("Stop took %v with a 2 s shutdown timeout", took)
	}
	j, _ := f.jobs.Get(context.Background(), "long")
	if j.State != storage.StatePending || !strings.Contains(j.Error, "interrupted by shutdown") || j.Attempts != 1 {
		t.Errorf("record after Stop: %+v", j)
	}
	ti, err := asynq.NewInspectorFromRedisClient(f.rdb).GetTaskInfo("default", "long")
	if err != nil || ti.State != asynq.TaskStatePending {
		t.Errorf("asynq task after Stop: %+v %v, want pending", ti, err)
	}
}

// outcomes records what a worker tells its Metrics.
type outcomes struct {
	mu  sync.Mutex
	got map[string]string // task type -> outcomes, space-separated
}

func (o *outcomes) TaskDone(typ, queue, outcome string, took time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.got[typ] != "" {
		o.got[typ] += " "
	}
	o.got[typ] += queue + ":" + outcome
}

func (o *outcomes) of(typ string) string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.got[typ]
}

// TestMetricsOutcomes: Metrics hears each attempt's outcome as the job record has it:
// completed, failed (SkipRetry), retried (retries left) and interrupted (by a stop).
func TestMetricsOutcomes(t *testing.T) {
	t.Parallel()
	m := &outcomes{got: make(map[string]string)}
	f := startWorkerWith(t, m)
	waitOutcome := func(typ, want string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for m.of(typ) != want {
			if time.Now().After(deadline) {
				t.Fatalf("outcomes of %s: %q, want %q", typ, m.of(typ), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	f.enqueue(t, "m-ok", kindEcho, echoArgs{Message: "x"})
	waitOutcome(kindEcho, "default:completed")
	f.enqueue(t, "m-undecodable", kindEcho, "not an object") // SkipRetry
	waitOutcome(kindEcho, "default:completed default:failed")
	f.enqueue(t, "m-unknown", "unknown", echoArgs{}, asynq.MaxRetry(5))
	waitOutcome("unknown", "default:retried")

	f.enqueue(t, "m-long", kindEcho, echoArgs{Message: "x", SleepMS: 60_000})
	deadline := time.Now().Add(10 * time.Second)
	for j, _ := f.jobs.Get(context.Background(), "m-long"); j.State != storage.StateActive; j, _ = f.jobs.Get(context.Background(), "m-long") {
		if time.Now().After(deadline) {
			t.Fatalf("task never started: %+v", j)
		}
		time.Sleep(20 * time.Millisecond)
	}
	f.w.Stop() // ShutdownTimeout 2 s: the task goes back to its queue
	if got := m.of(kindEcho); got != "default:completed default:failed default:interrupted" {
		t.Errorf("after Stop: %q, want the interrupted attempt counted", got)
	}
}

// TestFetchers: a worker with several fetch loops sharing its concurrency runs every
// task once and stops cleanly.
func TestFetchers(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	w := New(Config{Concurrency: 4, Fetchers: 3, Queues: map[string]int{"default": 1}, ShutdownTimeout: 2 * time.Second,
		Retention: time.Hour}, rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.Handle(kindEcho, handleEcho)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	f := &fixture{rdb: rdb, jobs: storage.NewJobs(rdb, time.Hour, "default"), client: asynq.NewClientFromRedisClient(rdb), w: w}
	for i := range 30 {
		f.enqueue(t, "f"+strconv.Itoa(i), kindEcho, echoArgs{Message: "m", SleepMS: 20})
	}
	for i := range 30 {
		if j := f.wait(t, "f"+strconv.Itoa(i)); j.State != storage.StateCompleted || j.Attempts != 1 {
			t.Errorf("job %d: %+v", i, j)
		}
	}
	if len(w.srvs) != 3 {
		t.Errorf("%d fetchers, want 3", len(w.srvs))
	}
	start := time.Now()
	w.Stop()
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("Stop took %v", took)
	}
}

// TestStrandedTaskRequeued: a task in the worker's in-flight index that no handler of
// it runs (what a fetch whose reply was lost leaves: active in asynq, started and
// indexed as this worker's) is requeued once the worker has not held it for
// strandedAfter, and then runs. Not parallel: it shortens the package's intervals.
func TestStrandedTaskRequeued(t *testing.T) {
	shortenStranded(t, 50*time.Millisecond, 300*time.Millisecond)
	f := startWorker(t)
	ctx := context.Background()
	// Strand a task: paused, its queue is not fetched; it is moved to active, started
	// and indexed as the worker's, as the lost fetch did; then the queue resumes.
	insp := asynq.NewInspectorFromRedisClient(f.rdb)
	if err := insp.PauseQueue("default"); err != nil {
		t.Fatal(err)
	}
	f.enqueue(t, "stranded", kindEcho, echoArgs{Message: "hi"})
	q := "asynq:{default}:"
	if err := f.rdb.RPopLPush(ctx, q+"pending", q+"active").Err(); err != nil {
		t.Fatal(err)
	}
	f.rdb.HSet(ctx, q+"t:stranded", "state", "active")
	f.rdb.ZAdd(ctx, q+"lease", redis.Z{Score: float64(time.Now().Add(30 * time.Second).Unix()), Member: "stranded"})
	if _, err := storage.NewInFlight(f.rdb, f.jobs).Begin(ctx, f.w.id, "stranded", kindEcho, "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := insp.UnpauseQueue("default"); err != nil {
		t.Fatal(err)
	}
	// A task gone from asynq (deleted, say) whose entry is left in the index: the entry
	// goes, and the log does not call it requeued.
	if _, err := storage.NewInFlight(f.rdb, f.jobs).Begin(ctx, f.w.id, "ghost", kindEcho, "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	j := f.wait(t, "stranded")
	if j.State != storage.StateCompleted || j.Attempts != 2 || j.Interrupted != 1 {
		t.Errorf("record %+v; want completed on attempt 2 after one interruption", j)
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		n, err := f.rdb.Exists(ctx, "shoestring:{default}:inflight:"+f.w.id).Result()
		if err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the gone task's entry is still in the worker's in-flight index")
		}
	}
	logs := f.log.String()
	for _, want := range []string{`msg="stranded task requeued" job_id=stranded queue=default state=pending`,
		`msg="stranded task not requeued" job_id=ghost queue=default state=""`} {
		if !strings.Contains(logs, want) {
			t.Errorf("log lacks %s; log:\n%s", want, logs)
		}
	}
}
