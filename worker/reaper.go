package worker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/shoestring-go/shoestring/storage"
)

// Reaper timing. Every process sweeps every ReapInterval, jittered by up to a quarter
// either way so that many processes do not sweep in step.
const (
	ReapInterval = time.Second
	// reapClaimFor is how long a reaper's claim on a dead worker lasts if it dies before
	// releasing it; another reaper then takes over.
	reapClaimFor = 30 * time.Second
	// unindexedAfter is how long a task must stay active and in no worker's in-flight
	// index before it is taken for one whose worker died between asynq's fetch and the
	// worker's Begin (or between End and asynq's done). A live worker indexes a task
	// within milliseconds of the fetch; a task is also checked to be still unindexed, in
	// the same atomic step that requeues it.
	unindexedAfter = 3 * time.Second
)

// Reaper requeues the tasks of dead workers, in every process (web and worker alike),
// so that a worker SIGKILLed in a split deployment, with no supervisor watching it, has
// its tasks run again by the others within seconds (asynq alone: its 30 s lease plus a
// recoverer that sweeps once a minute). Each sweep:
//
//   - claims every indexed worker whose pulse has lapsed (storage.InFlight.ClaimDead: an
//     atomic claim, so any number of reapers recover each dead worker exactly once) and
//     requeues what its index holds, with the interruption accounting and poison-task
//     handling of storage.InFlight.Recover;
//   - requeues tasks that asynq has handed out but that are in no worker's index, once
//     they have been so for unindexedAfter (see storage.InFlight.Unindexed): a worker
//     killed between asynq's fetch and its own Begin. asynq's lease cannot tell those
//     apart sooner: it is extended to 30 s ahead every 5 s for live workers, so a dead
//     worker's lease looks like a live one's for the first 5 s and more.
//
// It claims nothing until Redis has answered it for PulseTTL + ReapInterval without
// error: after an outage every pulse in Redis may have lapsed at once, and the workers
// need a pulse to show they live. Start once; Stop once or more.
type Reaper struct {
	InFlight *storage.InFlight
	Queues   []string // the queues whose unindexed active tasks it requeues
	ID       string   // who claims (for the record in Redis): this process
	// Logger gets a line per recovery and per failed sweep; nil: none.
	Logger *slog.Logger
	// OnRecovered is called with the number of tasks put back in their queue (pending
	// or scheduled) by one sweep; optional; from the reaper's goroutine.
	OnRecovered func(n int)

	cancel context.CancelFunc
	wg     sync.WaitGroup

	// Owned by the sweeping goroutine.
	okSince time.Time            // Redis has answered every call since
	suspect map[string]time.Time // unindexed active task id -> when first seen so
}

// Start starts sweeping in one goroutine and returns at once. A nil Logger becomes one
// that writes nothing, in r.
func (r *Reaper) Start(ctx context.Context) error {
	r.Logger = orDiscard(r.Logger)
	ctx, r.cancel = context.WithCancel(context.WithoutCancel(ctx))
	r.okSince = time.Now()
	r.suspect = make(map[string]time.Time)
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			d := ReapInterval*3/4 + rand.N(ReapInterval/2)
			select {
			case <-ctx.Done():
				return
			case <-time.After(d):
			}
			r.sweep(ctx)
		}
	}()
	return nil
}

// Stop stops sweeping and waits for a sweep in progress. Safe if never started.
func (r *Reaper) Stop() {
	if r.cancel != nil {
		r.cancel()
	}
	r.wg.Wait()
}

func (r *Reaper) sweep(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	now := time.Now()
	fail := func(what string, err error) {
		r.okSince = time.Now()
		if ctx.Err() == nil {
			r.Logger.DebugContext(ctx, what, "err", err)
		}
	}
	if now.Sub(r.okSince) < PulseTTL+ReapInterval {
		// Probe only: no claims until Redis has answered for a while.
		if _, err := r.InFlight.Unindexed(ctx, r.Queues); err != nil {
			fail("reaper probe", err)
		}
		return
	}
	var rec []storage.Recovered
	dead, err := r.InFlight.ClaimDead(ctx, r.ID, reapClaimFor)
	if err != nil {
		fail("look for dead workers", err)
	}
	for _, id := range dead {
		got, err := r.InFlight.Recover(ctx, id, "worker "+id+" died (pulse lapsed)")
		if err != nil {
			r.Logger.WarnContext(ctx, "requeue tasks of dead worker", "worker_id", id, "err", err)
			continue // the claim expires; this or another reaper tries again
		}
		if err := r.InFlight.Release(ctx, id); err != nil {
			r.Logger.DebugContext(ctx, "release claim", "worker_id", id, "err", err)
		}
		if len(got) > 0 {
			r.Logger.WarnContext(ctx, "requeued the tasks of a dead worker", "worker_id", id, "tasks", len(got))
		}
		rec = append(rec, got...)
	}

	unindexed, err := r.InFlight.Unindexed(ctx, r.Queues)
	if err != nil {
		fail("look for unindexed tasks", err)
		unindexed = nil
	}
	due := make(map[string]string)
	for id, q := range unindexed {
		first, ok := r.suspect[id]
		if !ok {
			r.suspect[id] = now
			continue
		}
		if now.Sub(first) >= unindexedAfter {
			due[id] = q
		}
	}
	for id := range r.suspect {
		if _, ok := unindexed[id]; !ok || due[id] != "" {
			delete(r.suspect, id)
		}
	}
	if len(due) > 0 {
		got, err := r.InFlight.RequeueUnindexed(ctx, due, "its worker died before recording it")
		if err != nil {
			r.Logger.WarnContext(ctx, "requeue unindexed tasks", "err", err)
		}
		rec = append(rec, got...)
	}
	n := 0
	for _, t := range rec {
		if t.State == "" {
			continue // finished meanwhile
		}
		r.Logger.WarnContext(ctx, "task of a dead worker", "task_id", t.ID, "queue", t.Queue, "now", t.State)
		if t.Requeued() {
			n++
		}
	}
	if n > 0 && r.OnRecovered != nil {
		r.OnRecovered(n)
	}
}
