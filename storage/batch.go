package storage

import (
	"context"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Group commit. A worker running many short tasks at once sends each one's start and
// outcome (InFlight.Begin, End) as a pipeline of its own: a round trip, two syscalls
// and a wakeup of Redis each. A batcher sends every write that waits while one
// pipeline is on the wire in the next pipeline together, as databases group-commit
// their log: alone, a write leaves at once (no timer, no added latency); under load,
// ten tasks' writes share one round trip. Each caller still waits for its own
// write's outcome, so nothing reports done before Redis has it. The web tier's
// enqueues group-commit the same way (RecordHook): each one's record, task and index
// entry, in that order, in its group's pipeline.
//
// Ride-along. A busy worker's other round trips are asynq's: its fetches (a Lua script
// per queue tried: 1.9 per task drained from the middle one of three queues) and its
// "done" scripts. A batcher's hook (InFlight.RideAlong) sends the writes waiting at
// that moment in front of such a script call, in one pipeline, instead of in a round
// trip of their own. Redis runs a pipeline's commands in order, each with its own
// reply, as if sent one by one: the script's outcome is the same, and it waits only
// for what Redis does with the writes (a few µs). The pipeline has the batcher's own
// context, so a caller's cancellation cannot cut a group short: a script call whose
// context is done, or due within batchTimeout, goes alone as before.
//
// A group waits for a ride only while rides come: when the hook has seen a script
// call that could carry it within the last rideWait, the group leaves with the next
// one or after rideWait, whichever is first; otherwise (an idle worker, a lone task)
// at once.
// Draining short tasks, this cuts a worker's round trips per task from 3.8 to 3.2,
// against asynq's own 3.0 (go run ./bench -only drain).

// batchTimeout bounds one group's round trip (go-redis's own IO timeouts are shorter)
// when none of its callers has a deadline of its own; a group whose callers have
// deadlines ends with the latest of them, as each caller's own round trip would.
const batchTimeout = 10 * time.Second

// A group stuck on its connection (a half-open one, a server that stopped answering it)
// must not hold up the writes behind it until go-redis's read timeout: when every loop
// is sending a group that has been on the wire for stallAfter, a write that arrives, or
// the timer of a group that has been out that long while writes wait, starts another
// loop, which sends on another connection, up to maxFlights loops at once. In normal running a group's
// round trip is well under a millisecond, and one group is on the wire at a time.
const (
	stallAfter = 25 * time.Millisecond
	maxFlights = 8
)

// A group holds at most maxGroupOps writes of at most maxGroupBytes between them
// (batchOp.size, an estimate), so that one connection's failure, or a reply Redis
// refuses, touches a bounded number of callers; the rest wait for the next group.
const (
	maxGroupOps   = 64
	maxGroupBytes = 1 << 20
)

// opOverhead is what a write's keys, arguments and framing take besides its payload,
// about, in bytes.
const opOverhead = 512

// rideWait is the longest a group waits for a ride: a tenth of a short task's cost,
// and far below anything a person or an uptime check notices. Measured with the bench
// at 0, 50 µs, 200 µs and 1 ms: 200 µs took the round trips most of the way (3.2 per
// task; 1 ms: 3.1), with the least CPU per task.
const rideWait = 200 * time.Microsecond

// epoch makes monotonic timestamps that fit an atomic.Int64.
var epoch = time.Now()

// batchOp is one caller's commands: fill adds them to the pipeline and returns the
// script call among them (nil for none), which is retried alone on NOSCRIPT.
type batchOp struct {
	fill     func(ctx context.Context, p redis.Pipeliner) *redis.Cmd
	script   *redis.Script
	size     int       // bytes the commands take, about
	deadline time.Time // the caller's, or zero for none
	queued   bool      // in batcher.pending (guarded by its mu)
	cmds     []redis.Cmder
	err      error
	done     chan struct{}
}

// batcher group-commits batchOps on rdb. The zero value is not usable; safe for
// concurrent use. Its goroutine lives only while there are writes to send.
type batcher struct {
	rdb     redis.UniversalClient
	mu      sync.Mutex
	pending []*batchOp
	waiting atomic.Int32 // len(pending), read without mu by the ride-along hook
	flights int          // loops running, each sending one group at a time
	// out are the send times of the loops' groups on the wire, one per loop sending.
	out []time.Time
	// lastScript is when the hook last saw a script call, in ns since epoch.
	lastScript atomic.Int64
}

// do sends fill's commands, about size bytes of them, in the next group and waits for
// them. It returns the first error among them (redis.Nil aside); the commands hold
// their own results. While they wait unsent, a caller whose ctx is done leaves: do
// returns ctx's error and fill is never called (a group leaves a write whose deadline
// has passed for its caller to take back). Once their group has left, do waits for its
// replies whatever ctx says: they may be written, and the caller must know which. The
// group ends by the latest of its callers' deadlines (batchTimeout when one has none),
// so go-redis stops retrying it when its callers would have stopped alone.
func (b *batcher) do(ctx context.Context, size int, fill func(ctx context.Context, p redis.Pipeliner) *redis.Cmd, script *redis.Script) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	op := &batchOp{fill: fill, script: script, size: size, queued: true, done: make(chan struct{})}
	op.deadline, _ = ctx.Deadline()
	b.mu.Lock()
	b.pending = append(b.pending, op)
	b.waiting.Store(int32(len(b.pending)))
	if b.flights == 0 {
		b.flights++
		if time.Since(epoch)-time.Duration(b.lastScript.Load()) < rideWait {
			time.AfterFunc(rideWait, b.loop) // a ride is likely: see Ride-along
		} else {
			go b.loop()
		}
	} else {
		b.unstickLocked()
	}
	b.mu.Unlock()
	select {
	case <-op.done:
		return op.err
	case <-ctx.Done():
	}
	b.mu.Lock()
	if op.queued {
		op.queued = false
		i := slices.Index(b.pending, op)
		b.pending = slices.Delete(b.pending, i, i+1)
		b.waiting.Store(int32(len(b.pending)))
		b.mu.Unlock()
		return ctx.Err()
	}
	b.mu.Unlock()
	<-op.done // on the wire
	return op.err
}

// unstick is unstickLocked for writes waiting when a group has been out stallAfter.
func (b *batcher) unstick() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.pending) > 0 {
		b.unstickLocked()
	}
}

// unstickLocked starts another loop, on another connection, when every loop is
// sending a group that has been on the wire stallAfter or longer, and fewer than
// maxFlights run. b.mu must be held.
func (b *batcher) unstickLocked() {
	if b.flights >= maxFlights || len(b.out) < b.flights {
		return // a loop is about to take what waits
	}
	for _, t := range b.out {
		if time.Since(t) < stallAfter {
			return // that group's own timer looks again
		}
	}
	b.flights++
	go b.loop()
}

// take returns the next group of waiting writes, which the caller must flush, or nil.
func (b *batcher) take() []*batchOp {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.takeLocked()
}

// takeLocked is take with b.mu held: the oldest writes, up to maxGroupOps and
// maxGroupBytes (one at least), less those whose callers' deadline has passed, which
// stay for their callers to take back.
func (b *batcher) takeLocked() []*batchOp {
	now := time.Now()
	var ops, rest []*batchOp
	bytes, full := 0, false
	for _, op := range b.pending {
		switch {
		case !op.deadline.IsZero() && !now.Before(op.deadline):
			rest = append(rest, op)
		case !full && len(ops) < maxGroupOps && (len(ops) == 0 || bytes+op.size <= maxGroupBytes):
			op.queued = false
			ops = append(ops, op)
			bytes += op.size
		default:
			full = true
			rest = append(rest, op)
		}
	}
	b.pending = rest
	b.waiting.Store(int32(len(b.pending)))
	return ops
}

// loop sends the waiting writes, a group per round trip, until none it may send wait.
func (b *batcher) loop() {
	b.mu.Lock()
	for {
		ops := b.takeLocked()
		if len(ops) == 0 {
			b.flights--
			b.mu.Unlock()
			return
		}
		sent := time.Now()
		b.out = append(b.out, sent)
		b.mu.Unlock()
		stall := time.AfterFunc(stallAfter, b.unstick)
		b.flush(ops, nil)
		stall.Stop()
		b.mu.Lock()
		i := slices.Index(b.out, sent)
		b.out = slices.Delete(b.out, i, i+1)
	}
}

// flush sends ops, then extra (nil for none) in the same pipeline, and completes ops.
// A group with extra (a ride: asynq's script call, which canRide let through because it
// has batchTimeout at least) has batchTimeout, so that the call is not cut short.
func (b *batcher) flush(ops []*batchOp, extra redis.Cmder) {
	now := time.Now()
	deadline := now.Add(batchTimeout)
	if extra == nil {
		deadline = groupDeadline(ops, now)
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	scripts := b.send(ctx, ops, extra)
	// A script missing from Redis's cache (after a restart or SCRIPT FLUSH) did not
	// run: load it and send those writes again, with their other commands
	// (idempotent, as pipelineScript requires).
	var again []*batchOp
	loaded := map[*redis.Script]bool{}
	for i, op := range ops {
		if c := scripts[i]; c != nil && isNoScript(c.Err()) {
			if !loaded[op.script] {
				loaded[op.script] = true
				if err := op.script.Load(ctx, b.rdb).Err(); err != nil {
					op.err = err
					continue
				}
			}
			again = append(again, op)
		}
	}
	if len(again) > 0 {
		b.send(ctx, again, nil)
	}
	for _, op := range ops {
		if op.err == nil {
			for _, c := range op.cmds {
				if err := c.Err(); err != nil && err != redis.Nil {
					op.err = err
					break
				}
			}
		}
		close(op.done)
	}
}

// groupDeadline is when a group of ops sent at now ends: the latest of their
// deadlines, or now+batchTimeout when one has none (or is later).
func groupDeadline(ops []*batchOp, now time.Time) time.Time {
	limit := now.Add(batchTimeout)
	var latest time.Time
	for _, op := range ops {
		if op.deadline.IsZero() || op.deadline.After(limit) {
			return limit
		}
		if op.deadline.After(latest) {
			latest = op.deadline
		}
	}
	return latest
}

// send writes ops, then extra unless nil, in one pipeline, hands each op its own
// commands, and returns each op's script call.
func (b *batcher) send(ctx context.Context, ops []*batchOp, extra redis.Cmder) []*redis.Cmd {
	scripts := make([]*redis.Cmd, len(ops))
	bounds := make([]int, len(ops)+1)
	p := b.rdb.Pipeline()
	for i, op := range ops {
		scripts[i] = op.fill(ctx, p)
		bounds[i+1] = p.Len()
	}
	if extra != nil {
		_ = p.Process(ctx, extra)
	}
	cmds, _ := p.Exec(ctx) // each command holds its own error
	for i, op := range ops {
		op.cmds = cmds[bounds[i]:bounds[i+1]]
	}
	return scripts
}

// rideHook is the batcher's go-redis hook (see Ride-along above).
type rideHook struct{ b *batcher }

func (rideHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (rideHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h rideHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScriptCall(cmd) || !canRide(ctx) {
			return next(ctx, cmd)
		}
		h.b.lastScript.Store(int64(time.Since(epoch)))
		if h.b.waiting.Load() == 0 {
			return next(ctx, cmd)
		}
		ops := h.b.take()
		if len(ops) == 0 {
			return next(ctx, cmd)
		}
		h.b.flush(ops, cmd)
		return cmd.Err()
	}
}

// canRide reports whether a script call made with ctx may carry a group: ctx is not
// done, is due no sooner than the group's own timeout, and carries no job Record
// (RecordHook's pipeline, not this one, must send that script).
func canRide(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < batchTimeout {
		return false
	}
	return ctx.Value(recordKey{}) == nil
}

// isScriptCall reports an EVALSHA or EVAL: asynq's every fetch and state change is one.
func isScriptCall(cmd redis.Cmder) bool {
	name := cmd.Name()
	return strings.EqualFold(name, "evalsha") || strings.EqualFold(name, "eval")
}
