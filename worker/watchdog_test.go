package worker

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// startWatched starts a worker with the given watchdog settings and extra handlers,
// and returns it with a channel that receives the recycle reason.
func startWatched(tb testing.TB, wd WatchdogConfig, handlers map[string]Handler) (*fixture, chan string) {
	tb.Helper()
	r := storagetest.StartRedis(tb)
	rdb := r.Client(tb)
	recycled := make(chan string, 1)
	wd.OnRecycle = func(reason string) { recycled <- reason }
	w := New(Config{Concurrency: 2, Queues: map[string]int{"default": 1}, ShutdownTimeout: time.Second,
		Retention: time.Hour, Watchdog: wd}, rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.Handle(kindEcho, handleEcho)
	for typ, h := range handlers {
		w.Handle(typ, h)
	}
	if err := w.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(w.Stop)
	return &fixture{rdb: rdb, jobs: storage.NewJobs(rdb, time.Hour, "default"), client: asynq.NewClientFromRedisClient(rdb), w: w}, recycled
}

func waitRecycle(tb testing.TB, ch chan string, d time.Duration) string {
	tb.Helper()
	select {
	case reason := <-ch:
		return reason
	case <-time.After(d):
		tb.Fatalf("no recycle within %v", d)
		return ""
	}
}

// TestHungHandler: a handler that ignores cancellation and runs past its deadline plus
// HANG_GRACE makes the worker check Unhealthy and the worker ask for a recycle; asynq
// fails the task per its retry budget, and recovering the dead worker's tasks makes the
// job record agree.
func TestHungHandler(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	stuck := func(ctx context.Context, _ *Task) (any, error) {
		<-release // ignores ctx, as a stuck driver call or a busy loop would
		return nil, nil
	}
	f, recycled := startWatched(t, WatchdogConfig{HangGrace: 300 * time.Millisecond}, map[string]Handler{"test:stuck": stuck})
	f.enqueue(t, "stuck1", "test:stuck", map[string]int{}, asynq.Timeout(time.Second), asynq.MaxRetry(0))

	start := time.Now()
	reason := waitRecycle(t, recycled, 10*time.Second)
	if !strings.Contains(reason, "stuck1") || !strings.Contains(reason, "ignores cancellation") {
		t.Errorf("reason = %q", reason)
	}
	if took := time.Since(start); took < time.Second+300*time.Millisecond {
		t.Errorf("hang declared after %v, before deadline + grace", took)
	}
	res := health.WorkerCheck(storage.NewHeartbeats(f.rdb), HeartbeatTTL, func(context.Context) (health.Backlog, error) {
		return health.Backlog{}, nil
	}, time.Minute).Check(context.Background())
	if res.Status != health.Unhealthy || !strings.Contains(res.Description, "stuck1") {
		t.Errorf("worker check = %v %q, want Unhealthy naming the task", res.Status, res.Description)
	}

	// The process is recycled; its supervisor recovers what it held.
	f.w.Stop()
	inflight := storage.NewInFlight(f.rdb, f.jobs)
	if _, err := inflight.Recover(context.Background(), f.w.ID(), "worker recycled: hung"); err != nil {
		t.Fatal(err)
	}
	j, _ := f.jobs.Get(context.Background(), "stuck1")
	if j.State != storage.StateFailed || !strings.Contains(j.Error, "hung") {
		t.Errorf("job after recycle = %+v, want failed (max_retry 0) saying why", j)
	}
}

// TestThroughputCollapse: completions per window falling below DegradedRatio of the
// baseline while work waits turns the worker Degraded, and after DegradedFor it asks for
// a recycle.
func TestThroughputCollapse(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	slow := func(ctx context.Context, _ *Task) (any, error) {
		select {
		case <-release:
		case <-ctx.Done():
		}
		return nil, ctx.Err()
	}
	f, recycled := startWatched(t, WatchdogConfig{DegradedRatio: 0.5, DegradedFor: 2 * time.Second, Window: 400 * time.Millisecond},
		map[string]Handler{"test:slow": slow})
	for i := range 150 {
		f.enqueue(t, "fast"+strconv.Itoa(i), kindEcho, echoArgs{SleepMS: 5})
	}
	// Let the baseline fill, then the work stops completing with tasks waiting.
	deadline := time.Now().Add(60 * time.Second)
	for f.w.processed.Load() < 150 {
		if time.Now().After(deadline) {
			t.Fatal("fast tasks did not finish")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 6 {
		f.enqueue(t, "slow"+strconv.Itoa(i), "test:slow", map[string]int{})
	}
	var sawDegraded bool
	beats := storage.NewHeartbeats(f.rdb)
	deadline = time.Now().Add(20 * time.Second)
	var last storage.WorkerBeat
	for !sawDegraded {
		b, ok, _ := beats.Get(context.Background(), f.w.ID())
		last = b
		if ok && b.Degraded {
			sawDegraded = true
			res := health.WorkerCheck(beats, HeartbeatTTL, func(context.Context) (health.Backlog, error) {
				return health.Backlog{Pending: 4}, nil
			}, time.Hour).Check(context.Background())
			if res.Status != health.Degraded {
				t.Errorf("worker check while degraded = %v %q", res.Status, res.Description)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("never Degraded; last heartbeat %+v", last)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if reason := waitRecycle(t, recycled, 10*time.Second); !strings.Contains(reason, "throughput") {
		t.Errorf("reason = %q", reason)
	}
}

// TestRSSLimit: resident memory over MaxRSS asks for a recycle.
func TestRSSLimit(t *testing.T) {
	t.Parallel()
	_, recycled := startWatched(t, WatchdogConfig{MaxRSS: 1 << 20}, nil)
	if reason := waitRecycle(t, recycled, 5*time.Second); !strings.Contains(reason, "resident memory") {
		t.Errorf("reason = %q", reason)
	}
}
