package storage

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// wire counts what a client sends: installed after the ride-along hook, it sees only
// what leaves for Redis. A new connection's set-up (go-redis's HELLO and CLIENT
// SETINFO, OpenRedis's SCRIPT LOADs) is not counted.
type wire struct{ singles, pipelines, piped atomic.Int64 }

func (w *wire) DialHook(next redis.DialHook) redis.DialHook { return next }

func (w *wire) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !connSetup(cmd) {
			w.singles.Add(1)
		}
		return next(ctx, cmd)
	}
}

// connSetup reports a command go-redis or OpenRedis sends on a new connection.
func connSetup(cmd redis.Cmder) bool {
	switch cmd.Name() {
	case "hello", "client", "script":
		return true
	}
	return false
}

func (w *wire) reset() { w.singles.Store(0); w.pipelines.Store(0); w.piped.Store(0) }

func (w *wire) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if !connSetup(cmds[0]) {
			w.pipelines.Add(1)
			w.piped.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

// openRedis is a client of r's server as OpenRedis makes it, closed when t ends.
func openRedis(t *testing.T, r *storagetest.Redis) redis.UniversalClient {
	t.Helper()
	rdb, err := OpenRedis(r.URL(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// rideFixture is an InFlight whose client has the ride-along hook, then a wire
// counter. Its batcher is marked busy, so writes wait for a ride and never leave on
// their own: what the test sees is the hook's doing alone.
func rideFixture(t *testing.T) (*InFlight, redis.UniversalClient, *wire) {
	t.Helper()
	rdb := openRedis(t, storagetest.StartRedis(t))
	jobs := NewJobs(rdb, time.Hour, "default")
	f := NewInFlight(rdb, jobs)
	rdb.AddHook(f.RideAlong())
	w := &wire{}
	rdb.AddHook(w)
	ctx := context.Background()
	for i := range 3 {
		if err := jobs.Create(ctx, Job{ID: fmt.Sprint("r", i), Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	f.batch.mu.Lock()
	f.batch.flights = maxFlights // every group it may send is out: none leaves for a stall
	f.batch.mu.Unlock()
	w.reset()
	return f, rdb, w
}

// beginAll starts jobs r0..r2 concurrently and returns once all three wait in the
// batcher; wait returns their outcomes.
func beginAll(t *testing.T, f *InFlight) (wait func() []error) {
	t.Helper()
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := f.Begin(context.Background(), "w1", fmt.Sprint("r", i), "echo", "default", time.Now())
			if err == nil && n != 1 {
				err = fmt.Errorf("attempt %d, want 1", n)
			}
			errs[i] = err
		}()
	}
	for deadline := time.Now().Add(10 * time.Second); f.batch.waiting.Load() < 3; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the Begin calls never queued")
		}
	}
	return func() []error {
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("the Begin calls never returned: their writes were never sent")
		}
		return errs
	}
}

// TestRideAlong: writes waiting in the batcher leave in front of the next script call
// made with a context that is never cancelled (asynq's fetch loop's), in one pipeline:
// each gets its own reply, the script its own, and nothing else goes on the wire.
func TestRideAlong(t *testing.T) {
	t.Parallel()
	f, rdb, w := rideFixture(t)
	wait := beginAll(t, f)

	got, err := rdb.Eval(context.Background(), "return redis.call('HGET', KEYS[1], 'state')", []string{jobKey("default", "r1")}).Text()
	if err != nil {
		t.Fatal(err)
	}
	// The writes ran first: the script, behind them, reads what they wrote.
	if got != StateActive {
		t.Errorf("the script read state %q, want %q (written ahead of it)", got, StateActive)
	}
	for i, err := range wait() {
		if err != nil {
			t.Errorf("Begin r%d: %v", i, err)
		}
	}
	if s, p, n := w.singles.Load(), w.pipelines.Load(), w.piped.Load(); s != 0 || p != 1 || n != 4 {
		t.Errorf("on the wire: %d single commands and %d pipelines of %d commands, want 0, 1 and 4", s, p, n)
	}
	indexed, err := rdb.HLen(context.Background(), inflightKey("default", "w1")).Result()
	if err != nil || indexed != 3 {
		t.Errorf("in-flight index holds %d tasks (%v), want 3", indexed, err)
	}
}

// TestRideAlongDeclines: a script call whose context has a deadline sooner than a
// group's timeout, or carries a job Record, and any command that is not a script,
// goes alone and leaves the writes waiting; the group's own send then delivers them.
func TestRideAlongDeclines(t *testing.T) {
	t.Parallel()
	f, rdb, w := rideFixture(t)
	wait := beginAll(t, f)

	soon, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := rdb.Eval(soon, "return 1", nil).Err(); err != nil {
		t.Fatal(err)
	}
	withRecord, _ := f.jobs.WithRecord(context.Background(), Job{ID: "x", Type: "echo", Queue: "default"})
	if err := rdb.Eval(withRecord, "return 1", nil).Err(); err != nil {
		t.Fatal(err)
	}
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Fatal(err)
	}
	if n := f.batch.waiting.Load(); n != 3 {
		t.Fatalf("%d writes wait, want all 3 (none rode)", n)
	}
	if s, p := w.singles.Load(), w.pipelines.Load(); s != 3 || p != 0 {
		t.Errorf("on the wire: %d single commands and %d pipelines, want the 3 calls alone", s, p)
	}
	go f.batch.loop() // the group's own send
	for i, err := range wait() {
		if err != nil {
			t.Errorf("Begin r%d: %v", i, err)
		}
	}
}

// TestRideWaitsOnlyWhileRidesCome: a write made while no script call has been seen
// leaves at once; one made just after a script call waits at most rideWait for a
// ride, then leaves on its own.
func TestRideWaitsOnlyWhileRidesCome(t *testing.T) {
	t.Parallel()
	rdb := openRedis(t, storagetest.StartRedis(t))
	f := NewInFlight(rdb, NewJobs(rdb, time.Hour, "default"))
	rdb.AddHook(f.RideAlong())
	ctx := context.Background()
	if _, err := f.Begin(ctx, "w1", "a", "echo", "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	if f.batch.lastScript.Load() != 0 {
		t.Fatal("a group's own pipeline counted as a script call seen")
	}
	if err := rdb.Eval(ctx, "return 1", nil).Err(); err != nil {
		t.Fatal(err)
	}
	if f.batch.lastScript.Load() == 0 {
		t.Fatal("the hook did not note the script call")
	}
	done := make(chan error, 1)
	go func() { _, err := f.Begin(ctx, "w1", "b", "echo", "default", time.Now()); done <- err }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a write waiting for a ride that never came was never sent")
	}
}
