package storage

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// fetchOutcome is what a handler saw of its task's start.
type fetchOutcome struct {
	id      string
	attempt int
	started bool
	err     error
	record  Job
}

// serveFetches runs an asynq server on rdb until n tasks were handled, each handler
// taking its start from f, and returns what each saw.
func serveFetches(t *testing.T, rdb redis.UniversalClient, f *InFlight, n int) []fetchOutcome {
	t.Helper()
	out := make(chan fetchOutcome, n)
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{Concurrency: 2, Queues: map[string]int{"default": 1},
		TaskCheckInterval: 10 * time.Millisecond, LogLevel: asynq.FatalLevel})
	err := srv.Start(asynq.HandlerFunc(func(ctx context.Context, task *asynq.Task) error {
		id, _ := asynq.GetTaskID(ctx)
		o := fetchOutcome{id: id}
		o.attempt, o.started, o.err = f.Started(id)
		o.record, _ = f.jobs.Get(ctx, id)
		out <- o
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Shutdown()
	var got []fetchOutcome
	for range n {
		select {
		case o := <-out:
			got = append(got, o)
		case <-time.After(10 * time.Second):
			t.Fatalf("%d of %d tasks handled in 10 s", len(got), n)
		}
	}
	return got
}

// TestStartAtFetch: asynq's fetch becomes fetch.lua, which starts the job of the task
// it takes (record active, attempt counted, owner and in-flight index set) in the same
// script, with no start.lua of its own; a completed job is reported, not restarted; a
// task without a record is left for Begin. If this fails after an asynq upgrade, its
// dequeue script changed: compare it with asynqDequeueHash and fetch.lua.
func TestStartAtFetch(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t, storagetest.StartRedis(t))
	jobs := NewJobs(rdb, time.Hour, "default")
	f := NewInFlight(rdb, jobs)
	rdb.AddHook(f.StartAtFetch("w1"))
	rdb.AddHook(f.RideAlong())
	shas := &tripCounter{}
	rdb.AddHook(shas)
	ctx := context.Background()
	client := asynq.NewClientFromRedisClient(rdb)
	enqueue := func(id string, record bool) {
		t.Helper()
		if record {
			if err := jobs.Create(ctx, Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := client.Enqueue(asynq.NewTask("echo", nil), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	enqueue("a", true)
	enqueue("b", true)
	enqueue("done", true)
	if _, err := jobs.Start(ctx, "done", "echo", "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Finish(ctx, "done", "default", 1, StateCompleted, nil, "", time.Now()); err != nil {
		t.Fatal(err)
	}
	enqueue("bare", false)

	starts := startScript.Hash()
	before := shas.evalShas(starts)
	got := serveFetches(t, rdb, f, 4)
	if n := shas.evalShas(starts) - before; n != 0 {
		t.Errorf("%d start.lua calls on the wire, want 0: the fetches start the jobs", n)
	}
	if shas.evalShas(asynqDequeueHash) != 0 || shas.evalShas(fetchScript.Hash()) == 0 {
		t.Errorf("asynq's dequeue sent %d times, fetch.lua %d: want 0 and some", shas.evalShas(asynqDequeueHash), shas.evalShas(fetchScript.Hash()))
	}
	for _, o := range got {
		switch o.id {
		case "a", "b":
			if !o.started || o.err != nil || o.attempt != 1 {
				t.Errorf("%s: Started = %d, %v, %v; want attempt 1", o.id, o.attempt, o.started, o.err)
			}
			if r := o.record; r.State != StateActive || r.Attempts != 1 || len(r.Events) != 2 {
				t.Errorf("%s: record %+v, want active, attempt 1, created and started", o.id, r)
			}
			if w, _ := rdb.HGet(ctx, jobKey("default", o.id), "worker").Result(); w != "w1" {
				t.Errorf("%s: the attempt's owner is %q, want w1", o.id, w)
			}
			if q, err := rdb.HGet(ctx, inflightKey("default", "w1"), o.id).Result(); err != nil || q != "default" {
				t.Errorf("%s: in-flight index says %q, %v; want default", o.id, q, err)
			}
		case "done":
			if !o.started || !errors.Is(o.err, ErrCompleted) || o.record.State != StateCompleted || o.record.Attempts != 1 {
				t.Errorf("done: Started = %d, %v, %v, record %+v; want ErrCompleted, record unchanged", o.attempt, o.started, o.err, o.record)
			}
			if rdb.HExists(ctx, inflightKey("default", "w1"), "done").Val() {
				t.Error("done: indexed, want left out")
			}
		case "bare":
			if o.started || o.err != nil {
				t.Errorf("bare: Started = %d, %v, %v; want not started (no record: Begin's)", o.attempt, o.started, o.err)
			}
			if _, err := jobs.Get(ctx, "bare"); !errors.Is(err, ErrNotFound) {
				t.Errorf("bare: record %v, want none", err)
			}
		}
	}
	// Each start is taken once.
	if _, ok, _ := f.Started("a"); ok {
		t.Error("a: Started twice")
	}

	// After a SCRIPT FLUSH the fetch loads fetch.lua (EVAL) and still starts the job.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	enqueue("flushed", true)
	if o := serveFetches(t, rdb, f, 1)[0]; !o.started || o.attempt != 1 || o.record.State != StateActive {
		t.Errorf("after a flush: Started = %d, %v, %v, record %+v", o.attempt, o.started, o.err, o.record)
	}
}

// TestStartAtFetchSharedClient: with a second InFlight's hook asked for on the same
// client, no hook can tell whose fetch it sees, so neither starts jobs: every handler
// finds no start and calls Begin.
func TestStartAtFetchSharedClient(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t, storagetest.StartRedis(t))
	jobs := NewJobs(rdb, time.Hour, "default")
	f1, f2 := NewInFlight(rdb, jobs), NewInFlight(rdb, jobs)
	rdb.AddHook(f1.StartAtFetch("w1"))
	if h := f2.StartAtFetch("w2"); h != nil {
		t.Fatal("a second StartAtFetch on one client returned a hook")
	}
	ctx := context.Background()
	if err := jobs.Create(ctx, Job{ID: "x", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := asynq.NewClientFromRedisClient(rdb).Enqueue(asynq.NewTask("echo", nil), asynq.TaskID("x")); err != nil {
		t.Fatal(err)
	}
	o := serveFetches(t, rdb, f1, 1)[0]
	if o.started || o.record.State != StatePending || o.record.Attempts != 0 {
		t.Errorf("shared client: Started = %d, %v, %v, record %+v; want not started, record pending", o.attempt, o.started, o.err, o.record)
	}
}

// TestRequeueStranded: a task a fetch took and started but whose reply was lost (the
// script run as the hook runs it, its reply dropped) is in the worker's index with no
// handler to run it; once the worker has not held it for the given time, it goes back
// to its queue with its record pending, and leaves the index. A task a handler runs,
// and a start waiting for its handler, are left alone; a start never taken is dropped
// and its task requeued in turn.
func TestRequeueStranded(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t, storagetest.StartRedis(t))
	jobs := NewJobs(rdb, time.Hour, "default")
	f := NewInFlight(rdb, jobs)
	ctx := context.Background()
	client := asynq.NewClientFromRedisClient(rdb)
	for _, id := range []string{"lost", "busy", "waiting"} {
		if err := jobs.Create(ctx, Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(asynq.NewTask("echo", nil), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Three fetches as the hook sends them, oldest task first.
	q := "asynq:{default}:"
	fetch := func(want string, attempt int64) {
		t.Helper()
		res, err := fetchScript.Run(ctx, rdb, []string{q + "pending", q + "paused", q + "active", q + "lease", inflightKey("default", "w1")},
			time.Now().Add(30*time.Second).Unix(), q+"t:", jobKey("default", ""), time.Now().UTC().Format(time.RFC3339Nano), 3600, "w1", "default").Slice()
		if err != nil || len(res) != 3 || res[1] != want || res[2] != attempt {
			t.Fatalf("fetch: %v, %v; want %s, attempt %d", res, err, want, attempt)
		}
	}
	fetch("lost", 1)    // its reply lost: nothing kept
	fetch("busy", 1)    // its handler runs
	fetch("waiting", 1) // its start waits for its handler
	f.fetched.put("waiting", started{attempt: 1, at: time.Now()})
	busy := func(id string) bool { return id == "busy" }

	const after = time.Hour
	for range 2 {
		if out, err := f.RequeueStranded(ctx, "w1", "lost reply", after, busy); err != nil || len(out) != 0 {
			t.Fatalf("before %v: requeued %v, %v; want nothing yet", after, out, err)
		}
	}
	// An hour later, as far as the worker can tell.
	back := func(id string) {
		f.fetched.mu.Lock()
		defer f.fetched.mu.Unlock()
		if st, ok := f.fetched.m[id]; ok {
			st.at = st.at.Add(-after)
			f.fetched.m[id] = st
		}
		if since, ok := f.fetched.unknown[id]; ok {
			f.fetched.unknown[id] = since.Add(-after)
		}
	}
	back("lost")
	back("waiting") // never taken: dropped now, stranded an hour later
	out, err := f.RequeueStranded(ctx, "w1", "lost reply", after, busy)
	if err != nil || len(out) != 1 || out[0] != (Recovered{ID: "lost", Queue: "default", State: "pending"}) {
		t.Fatalf("requeued %+v, %v; want lost, pending", out, err)
	}
	j, err := jobs.Get(ctx, "lost")
	if err != nil || j.State != StatePending || j.Error != "interrupted: lost reply; returned to its queue" || j.Interrupted != 1 {
		t.Errorf("lost: record %+v, %v; want pending, interrupted: lost reply", j, err)
	}
	if pending := rdb.LRange(ctx, q+"pending", 0, -1).Val(); len(pending) != 1 || pending[0] != "lost" {
		t.Errorf("pending list %v, want [lost]", pending)
	}
	if idx := rdb.HKeys(ctx, inflightKey("default", "w1")).Val(); len(idx) != 2 {
		t.Errorf("index %v, want busy and waiting", idx)
	}
	if _, ok, _ := f.Started("waiting"); ok {
		t.Error("a start older than staleStart is still there")
	}
	// go-redis sends the recovery again after its reply was lost, and meanwhile the
	// worker fetched the task again (attempt 2): the resend finds another attempt, and
	// leaves the task running, indexed.
	fetch("lost", 2)
	resend, err := recoverScript.Run(ctx, rdb, []string{q + "active", q + "lease", q + "pending", q + "t:lost", q + "scheduled", q + "archived",
		jobKey("default", "lost"), inflightKey("default", "w1")}, "lost", "lost reply", time.Now().UTC().Format(time.RFC3339Nano),
		3600, time.Now().Unix(), RequeueLimit, ArchiveLimit, "w1", "1").Text()
	if err != nil || resend != "taken" {
		t.Errorf("the recovery sent again: %q, %v; want taken", resend, err)
	}
	if active := rdb.LRange(ctx, q+"active", 0, -1).Val(); !slices.Contains(active, "lost") || !rdb.HExists(ctx, inflightKey("default", "w1"), "lost").Val() {
		t.Errorf("after the resend: active %v, lost indexed %v; want still active and indexed", active, rdb.HExists(ctx, inflightKey("default", "w1"), "lost").Val())
	}
	rdb.HDel(ctx, inflightKey("default", "w1"), "lost") // its handler ends, as far as the index goes
	back("waiting")
	if out, err := f.RequeueStranded(ctx, "w1", "never handled", after, busy); err != nil || len(out) != 1 || out[0].ID != "waiting" {
		t.Errorf("requeued %+v, %v; want waiting", out, err)
	}
	if idx := rdb.HKeys(ctx, inflightKey("default", "w1")).Val(); len(idx) != 1 || idx[0] != "busy" {
		t.Errorf("index %v, want [busy]", idx)
	}
}
