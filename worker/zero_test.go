package worker

import (
	"context"
	"io"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// The zero values a user of the package may leave (no logger, no timeouts, no
// concurrency) take their documented defaults instead of crashing the process,
// fetching nothing, or expiring job records at once.

// TestZeroConfig: New(Config{}, rdb, nil) serves "default" at DefaultConcurrency,
// keeps records DefaultRetention, and runs a job to completion with its record kept.
func TestZeroConfig(t *testing.T) {
	t.Parallel()
	rdb := storagetest.StartRedis(t).Client(t)
	w := New(Config{}, rdb, nil)
	if w.cfg.Concurrency != DefaultConcurrency || w.cfg.ShutdownTimeout != DefaultShutdownTimeout ||
		w.cfg.Retention != DefaultRetention || len(w.cfg.Queues) != 1 || w.cfg.Queues["default"] != 1 {
		t.Errorf("defaults: %+v", w.cfg)
	}
	w.Handle(kindEcho, handleEcho)
	if err := w.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)
	f := &fixture{rdb: rdb, jobs: storage.NewJobs(rdb, time.Hour, "default"), client: asynq.NewClientFromRedisClient(rdb), w: w}
	f.enqueue(t, "zero-1", kindEcho, echoArgs{Message: "hi"})
	if j := f.wait(t, "zero-1"); j.State != storage.StateCompleted {
		t.Fatalf("job %s: %s %q", j.ID, j.State, j.Error)
	}
	ttl, err := rdb.TTL(context.Background(), "shoestring:{default}:job:zero-1").Result()
	if err != nil || ttl < DefaultRetention-time.Minute {
		t.Errorf("record TTL %v (%v), want about %v", ttl, err, DefaultRetention)
	}
}

// TestReaperNilLogger: a Reaper without a Logger whose sweeps fail (nothing listens on
// its Redis port) keeps sweeping; it used to crash the process on its first failed
// sweep's log line.
func TestReaperNilLogger(t *testing.T) {
	t.Parallel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	calls := countTrips(rdb) // failed ones included
	r := &Reaper{InFlight: storage.NewInFlight(rdb, storage.NewJobs(rdb, time.Hour, "default")), Queues: []string{"default"}, ID: "p1"}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer r.Stop()
	// Two sweeps' calls at least: the first sweep's failure was logged before the second.
	deadline := time.Now().Add(10 * time.Second)
	for first := int64(0); ; {
		n := calls.trips.Load()
		if first == 0 && n > 0 {
			first = n
		}
		if first > 0 && n > first {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the reaper made %d calls in 10 s", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSupervisionZeroFields: a Supervision without a Logger, Window, StaleAfter or
// RecycleGrace takes their defaults, and under PolicyRestart with MaxRestarts 1 gives
// up on a child that dies at once after one restart (a Window of 0 never spent the
// budget) and delivers the child's exit; it used to crash on the first death's log
// line.
func TestSupervisionZeroFields(t *testing.T) {
	t.Parallel()
	rdb := storagetest.StartRedis(t).Client(t)
	var restarts atomic.Int32
	s := &Supervision{
		New: func() *Supervisor {
			return &Supervisor{Path: "/bin/sh", Args: []string{"-c", "exit 3"}, Stdout: io.Discard, Stderr: io.Discard, WorkerID: "w1"}
		},
		Policy: PolicyRestart, MaxRestarts: 1, Beats: storage.NewHeartbeats(rdb),
		InFlight: storage.NewInFlight(rdb, storage.NewJobs(rdb, time.Hour, "default")), Queues: []string{"default"},
		OnRestart: func() { restarts.Add(1) },
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer s.Stop()
	// The child dies before either is used: that a healthy child is not killed at its
	// first heartbeat (StaleAfter) or mid-drain (RecycleGrace) follows from these.
	if s.StaleAfter != 3*HeartbeatTTL || s.RecycleGrace != DefaultStopTimeout || s.Window != 5*time.Minute {
		t.Errorf("defaults: StaleAfter %v, RecycleGrace %v, Window %v", s.StaleAfter, s.RecycleGrace, s.Window)
	}
	select {
	case ex := <-s.Done():
		if ex.Code != 3 || restarts.Load() != 1 {
			t.Errorf("done: %v after %d restarts, want exit 3 after 1", ex, restarts.Load())
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no Done after %d restarts: the restart budget (MaxRestarts 1) was not spent", restarts.Load())
	}
}

// TestSupervisorZeroFields: a Supervisor without a Logger or StopTimeout starts its
// child, and Stop gives it time to exit on SIGTERM (it used to panic in Start after the
// child was running, and to send SIGKILL right behind SIGTERM).
func TestSupervisorZeroFields(t *testing.T) {
	t.Parallel()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	s := &Supervisor{Path: "/bin/sh", Args: []string{"-c", `trap 'exit 0' TERM; echo up; while :; do sleep 0.01; done`},
		Stdout: pw, Stderr: io.Discard}
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Stop() })
	pw.Close()
	buf := make([]byte, 3)
	if _, err := io.ReadFull(pr, buf); err != nil { // the trap is set
		t.Fatal(err)
	}
	if ex := s.Stop(); !ex.Success() {
		t.Errorf("Stop: %v, want a clean exit on SIGTERM", ex)
	}
}

// TestWatchParentZeroInterval: an interval of 0 polls every second instead of panicking
// in time.NewTicker.
func TestWatchParentZeroInterval(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gone := make(chan struct{})
	go WatchParent(ctx, os.Getppid()+1, 0, func() { close(gone) })
	select {
	case <-gone:
	case <-ctx.Done():
		t.Fatal("onGone not called within 5 s")
	}
}

// TestNilCheckpoint: a Task built by hand, as a handler's unit test does, has a nil
// Checkpoint that keeps nothing and does not panic.
func TestNilCheckpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	task := &Task{ID: "t1", Type: kindEcho}
	var state struct{ Page int }
	if ok, err := task.Checkpoint.Load(ctx, &state); ok || err != nil {
		t.Errorf("Load: %v %v, want false <nil>", ok, err)
	}
	if err := task.Checkpoint.Save(ctx, state); err != nil {
		t.Errorf("Save: %v", err)
	}
	if err := task.Checkpoint.Save(ctx, func() {}); err == nil {
		t.Error("Save of a value JSON cannot encode: no error")
	}
	if err := task.Checkpoint.Progress(ctx, 1, 2); err != nil {
		t.Errorf("Progress: %v", err)
	}
}
