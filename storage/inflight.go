package storage

import (
	"context"
	_ "embed"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// InFlight tracks which tasks each worker process is running (a hash per worker and
// queue, task id -> queue, in the queue's slot), so that when a worker dies its supervisor knows exactly which tasks
// to make runnable again, at once, instead of waiting for asynq's lease to expire and
// its recoverer to sweep (30 s + up to 60 s, then the retry delay). Safe for
// concurrent use.
type InFlight struct {
	rdb       redis.UniversalClient
	jobs      *Jobs
	batch     *batcher // Begin and End group-commit
	completed completionCounter
	fetched   starts // made at fetch (StartAtFetch), until Started takes them
}

// NewInFlight returns the in-flight index on rdb; recovered tasks' records are updated
// through jobs.
func NewInFlight(rdb redis.UniversalClient, jobs *Jobs) *InFlight {
	return &InFlight{rdb: rdb, jobs: jobs, batch: &batcher{rdb: rdb}}
}

// RideAlong returns the hook that lets Begin's and End's writes travel with the other
// Lua script calls made on the client (asynq's fetches, above all) instead of in round
// trips of their own (see batch.go). Install it with rdb.AddHook on the client given
// to NewInFlight and to the asynq servers. It is nil for a Redis Cluster client, whose
// pipelines are split by node: there the writes keep their own round trips. go-redis
// copies a client's hooks to its Conn and Tx values, and a script call carrying
// writes leaves on a pooled connection: so do not install it on a client whose script
// calls must stay on one connection (inside WATCH, or on a Conn); neither asynq nor
// shoestring makes any. Safe for concurrent use.
func (f *InFlight) RideAlong() redis.Hook {
	if _, cluster := f.rdb.(*redis.ClusterClient); cluster {
		return nil
	}
	return rideHook{f.batch}
}

// inflightKey is worker's index of the tasks of queue it runs: tagged with the queue,
// so recover.lua checks it in the same step as it moves asynq's task.
func inflightKey(queue, worker string) string {
	return KeyPrefix + "{" + queue + "}:inflight:" + worker
}

// inflightWorkers is the set of workers that have had an in-flight index, so finding
// the orphaned ones reads a set, not the whole keyspace.
const inflightWorkers = KeyPrefix + "workers:inflight"

// Add records that worker is running task id from queue.
func (f *InFlight) Add(ctx context.Context, worker, id, queue string) error {
	_, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, inflightKey(queue, worker), id, queue)
		p.SAdd(ctx, inflightWorkers, worker)
		return nil
	})
	if err != nil {
		return fmt.Errorf("record in-flight %s: %w", id, err)
	}
	return nil
}

// Remove records that worker is done with task id of queue.
func (f *InFlight) Remove(ctx context.Context, worker, id, queue string) error {
	if err := f.rdb.HDel(ctx, inflightKey(queue, worker), id).Err(); err != nil {
		return fmt.Errorf("clear in-flight %s: %w", id, err)
	}
	return nil
}

// Begin is Jobs.Start and Add in one script, shared with other tasks' Begin and End
// calls waiting at the same time (group commit, see batcher): it marks job id active,
// counts the attempt and records that worker runs it. The worker must pulse
// (Heartbeats.Pulse), which lists it among the indexed workers. Once sent it waits for
// the outcome whatever ctx says (go-redis's timeouts bound it). Errors: ErrCompleted
// (the task is then not indexed), or Redis's.
func (f *InFlight) Begin(ctx context.Context, worker, id, typ, queue string, now time.Time) (int, error) {
	keys := []string{jobKey(queue, id), inflightKey(queue, worker)}
	args := []any{typ, queue, now.UTC().Format(time.RFC3339Nano), int64(f.jobs.retention / time.Second), worker, id}
	var start *redis.Cmd
	err := f.batch.do(context.Background(), opOverhead, func(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
		start = startScript.EvalSha(ctx, p, keys, args...)
		return start
	}, startScript)
	if err != nil {
		return 0, fmt.Errorf("start job %s: %w", id, err)
	}
	n, err := start.Int()
	if err != nil {
		return 0, fmt.Errorf("start job %s: %w", id, err)
	}
	if n < 0 {
		return 0, ErrCompleted
	}
	return n, nil
}

// End is Jobs.Finish and Remove in one script, group-committed as Begin is: it
// records the outcome of attempt (a final one also drops the checkpoint) and that
// worker is done with the task; a completion is counted for FlushCompletions.
// Errors: ErrStaleAttempt (the task is unindexed all the same), or Redis's.
func (f *InFlight) End(ctx context.Context, worker, id, queue string, attempt int, state string, result []byte, errMsg string, now time.Time) error {
	keys, args := f.jobs.finishArgs(id, queue, worker, attempt, state, result, errMsg, now)
	var finish *redis.Cmd
	err := f.batch.do(context.Background(), opOverhead+len(result)+len(errMsg), func(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
		finish = finishScript.EvalSha(ctx, p, keys, args...)
		return finish
	}, finishScript)
	if err != nil {
		return fmt.Errorf("update job %s: %w", id, err)
	}
	if n, _ := finish.Int(); n == 0 {
		return ErrStaleAttempt
	}
	if state == StateCompleted {
		f.completed.add(queue, now)
	}
	return nil
}

// FlushCompletions adds the completions End recorded since the last flush to their
// queues' counters of the minute (Jobs.Completions), in one round trip. A worker calls
// it with every pulse and when it stops. On an error the counts are kept for the next
// call.
func (f *InFlight) FlushCompletions(ctx context.Context) error {
	return f.completed.flush(ctx, f.rdb)
}

// pipelineScript sends fill's commands in one pipeline (one round trip; one per node
// on a cluster). *cmd is fill's EVALSHA of script: when Redis's script cache lacks it
// (after a restart or a SCRIPT FLUSH), the script is loaded and the whole pipeline
// sent again, so fill's other commands must be idempotent.
func pipelineScript(ctx context.Context, rdb redis.UniversalClient, script *redis.Script, fill func(redis.Pipeliner), cmd **redis.Cmd) error {
	run := func(p redis.Pipeliner) error { fill(p); return nil }
	_, err := rdb.Pipelined(ctx, run)
	if isNoScript((*cmd).Err()) {
		if err = script.Load(ctx, rdb).Err(); err == nil {
			_, err = rdb.Pipelined(ctx, run)
		}
	}
	return err
}

// isNoScript reports a script missing from Redis's cache.
func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

//go:embed recover.lua
var recoverLua string

var recoverScript = redis.NewScript(recoverLua)

// Recovered is what became of one task of a dead worker.
type Recovered struct {
	ID, Queue string
	// State is the task's asynq state now: "pending", "scheduled" or "archived" for
	// what Recover did (see RequeueLimit), or the state asynq had already moved it to
	// (retry, archived, or "" when it is gone).
	State string
}

// Requeued reports whether recovery put the task back in its queue: pending, first in
// line, or scheduled with a backoff.
func (r Recovered) Requeued() bool { return r.State == "pending" || r.State == "scheduled" }

// Recover makes the tasks that the dead worker was running runnable again: each one
// still active in asynq is moved back to the front of its queue (as asynq's own
// Requeue does: off the active list and the lease set, onto pending) and its job record
// says pending, with reason as the error. Tasks asynq already moved on (a hung handler
// past its deadline is retried or archived by asynq) get a record that agrees. The
// worker's index is removed. Call it only for a worker known to be dead: asynq's key
// layout is that of v0.26 (internal/base).
func (f *InFlight) Recover(ctx context.Context, worker, reason string) ([]Recovered, error) {
	tasks, err := f.indexOf(ctx, worker)
	if err != nil {
		return nil, err
	}
	out, err := f.requeue(ctx, tasks, reason, false, worker)
	if err != nil {
		return out, err
	}
	_, err = f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, q := range f.jobs.queues {
			p.Del(ctx, inflightKey(q, worker))
		}
		p.SRem(ctx, inflightWorkers, worker)
		return nil
	})
	if err != nil {
		return out, fmt.Errorf("clear in-flight of %s: %w", worker, err)
	}
	return out, nil
}

// indexOf reads worker's in-flight index of every queue, in one round trip: task id ->
// queue.
func (f *InFlight) indexOf(ctx context.Context, worker string) (map[string]string, error) {
	cmds := make([]*redis.MapStringStringCmd, len(f.jobs.queues))
	_, err := f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range f.jobs.queues {
			cmds[i] = p.HGetAll(ctx, inflightKey(q, worker))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read in-flight of %s: %w", worker, err)
	}
	tasks := make(map[string]string)
	for i, c := range cmds {
		for id := range c.Val() {
			tasks[id] = f.jobs.queues[i]
		}
	}
	return tasks, nil
}

// RecoverQueues requeues every task active in queues, as Recover does. Call it only
// when no worker is alive to be running them: a supervisor whose child was the only
// worker, which closes the gap between asynq handing out a task and the worker
// recording it in its index.
func (f *InFlight) RecoverQueues(ctx context.Context, queues []string, worker, reason string) ([]Recovered, error) {
	tasks := make(map[string]string)
	for _, q := range queues {
		ids, err := f.rdb.LRange(ctx, "asynq:{"+q+"}:active", 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("read active tasks of %s: %w", q, err)
		}
		for _, id := range ids {
			tasks[id] = q
		}
	}
	return f.requeue(ctx, tasks, reason, false, worker)
}

// Interruption limits. A task whose worker died is requeued first in line up to
// RequeueLimit times; after that it is scheduled with a delay doubling from 1 s to
// 5 min, and past ArchiveLimit it is archived (the job fails): a task that kills its
// worker (out of memory, a crash in cgo) must neither crash-loop the worker nor be
// rerun for ever. Sidekiq Pro's super_fetch likewise treats a job orphaned repeatedly
// as a poison pill.
const (
	RequeueLimit = 3
	ArchiveLimit = 25
)

// requeue runs the recovery script for each task id -> queue of the dead worker
// ("" when unknown); the script updates the job record too, never overwriting a
// completed or failed one. With indexed, a task found in any worker's in-flight index
// of its queue is left alone, in the same atomic step.
//
// A task whose current attempt another worker owns (the record's "worker") that still
// pulses is left alone too. The pulse is in that worker's slot, not the queue's, so it
// is read first, and the script checks that the owner it was read for is still the
// record's: a worker that started the task in between makes it "taken" as well.
func (f *InFlight) requeue(ctx context.Context, tasks map[string]string, reason string, indexed bool, dead string) ([]Recovered, error) {
	var workers []string
	if indexed {
		var err error
		if workers, err = f.rdb.SMembers(ctx, inflightWorkers).Result(); err != nil {
			return nil, fmt.Errorf("read in-flight workers: %w", err)
		}
	}
	var out []Recovered
	for id, queue := range tasks {
		job := jobKey(queue, id)
		owner, err := f.rdb.HGet(ctx, job, "worker").Result()
		if err != nil && err != redis.Nil {
			return out, fmt.Errorf("requeue %s: %w", id, err)
		}
		if owner != "" && owner != dead {
			n, err := f.rdb.Exists(ctx, aliveKey(owner)).Result()
			if err != nil {
				return out, fmt.Errorf("requeue %s: %w", id, err)
			}
			if n == 1 {
				continue // taken: a live worker runs this attempt
			}
		}
		keys, args := f.recoverArgs(id, queue, reason, owner, time.Now())
		for _, w := range workers {
			keys = append(keys, inflightKey(queue, w))
		}
		state, err := recoverScript.Run(ctx, f.rdb, keys, args...).Text()
		if err != nil && err != redis.Nil {
			return out, fmt.Errorf("requeue %s: %w", id, err)
		}
		if state == "indexed" || state == "taken" {
			continue // another worker runs it
		}
		out = append(out, Recovered{ID: id, Queue: queue, State: state})
	}
	return out, nil
}

// recoverArgs are recover.lua's first 7 keys and 8 arguments for task id of queue,
// whose attempt's owner the caller read as owner, at now.
func (f *InFlight) recoverArgs(id, queue, reason, owner string, now time.Time) ([]string, []any) {
	q := "asynq:{" + queue + "}:"
	keys := []string{q + "active", q + "lease", q + "pending", q + "t:" + id, q + "scheduled", q + "archived", jobKey(queue, id)}
	args := []any{id, reason, now.UTC().Format(time.RFC3339Nano), int64(f.jobs.retention / time.Second), now.Unix(),
		RequeueLimit, ArchiveLimit, owner}
	return keys, args
}

// Orphans returns the workers that have an in-flight index but no live heartbeat:
// workers that died without their supervisor recovering their tasks (the whole
// deployable was killed). It reads the set of indexed workers, one round trip per
// worker in it (those of clean stops leave it when recovered, which is a no-op), never
// the keyspace.
func (f *InFlight) Orphans(ctx context.Context) ([]string, error) {
	workers, err := f.rdb.SMembers(ctx, inflightWorkers).Result()
	if err != nil {
		return nil, fmt.Errorf("read in-flight workers: %w", err)
	}
	var orphans []string
	for _, worker := range workers {
		n, err := f.rdb.Exists(ctx, workerKey(worker)).Result()
		if err != nil {
			return nil, fmt.Errorf("check heartbeat of %s: %w", worker, err)
		}
		if n == 0 {
			orphans = append(orphans, worker)
		}
	}
	return orphans, nil
}

//go:embed claim.lua
var claimLua string

var claimScript = redis.NewScript(claimLua)

func claimKey(worker string) string { return workerKey(worker) + ":claim" }

// ClaimDead returns the workers with an in-flight index whose pulse (Heartbeats.Pulse)
// has lapsed, each claimed for claimant for claimFor: of any number of processes
// calling it at once, exactly one gets each dead worker, and recovers it with Recover
// then Release. A claim not released expires, so a reaper that dies mid-way delays a
// recovery by claimFor, never loses it. One round trip, plus one per indexed worker.
func (f *InFlight) ClaimDead(ctx context.Context, claimant string, claimFor time.Duration) ([]string, error) {
	workers, err := f.rdb.SMembers(ctx, inflightWorkers).Result()
	if err != nil {
		return nil, fmt.Errorf("read in-flight workers: %w", err)
	}
	var dead []string
	for _, w := range workers {
		n, err := claimScript.Run(ctx, f.rdb, []string{aliveKey(w), claimKey(w), workerKey(w)}, claimFor.Milliseconds(), claimant).Int()
		if err != nil {
			return dead, fmt.Errorf("claim worker %s: %w", w, err)
		}
		if n == 1 {
			dead = append(dead, w)
		}
	}
	return dead, nil
}

// Release drops the claim on worker taken by ClaimDead, once it is recovered.
func (f *InFlight) Release(ctx context.Context, worker string) error {
	if err := f.rdb.Del(ctx, claimKey(worker)).Err(); err != nil {
		return fmt.Errorf("release claim on %s: %w", worker, err)
	}
	return nil
}

// Unindexed returns the tasks active in queues (id -> queue) that are in no worker's
// in-flight index. asynq hands a task out (onto its active list and lease set) a moment
// before the worker that fetched it indexes it (InFlight.Begin), and keeps it there a
// moment after the worker unindexed it (End) and before asynq marks it done; a task
// unindexed for longer than that is one whose worker died in between.
func (f *InFlight) Unindexed(ctx context.Context, queues []string) (map[string]string, error) {
	active := make(map[string]string)
	for _, q := range queues {
		ids, err := f.rdb.LRange(ctx, "asynq:{"+q+"}:active", 0, -1).Result()
		if err != nil {
			return nil, fmt.Errorf("read active tasks of %s: %w", q, err)
		}
		for _, id := range ids {
			active[id] = q
		}
	}
	if len(active) == 0 {
		return nil, nil
	}
	workers, err := f.rdb.SMembers(ctx, inflightWorkers).Result()
	if err != nil {
		return nil, fmt.Errorf("read in-flight workers: %w", err)
	}
	var cmds []*redis.StringSliceCmd
	_, err = f.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, w := range workers {
			for _, q := range queues {
				cmds = append(cmds, p.HKeys(ctx, inflightKey(q, w)))
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read in-flight indexes: %w", err)
	}
	for _, c := range cmds {
		for _, id := range c.Val() {
			delete(active, id)
		}
	}
	return active, nil
}

// RequeueUnindexed requeues tasks (id -> queue), as Recover does, that are still
// active and, at that very moment (one atomic step per task), in no worker's in-flight
// index. Call it only with tasks Unindexed has returned for longer than a live worker
// takes to index a task it fetched (seconds, not milliseconds).
func (f *InFlight) RequeueUnindexed(ctx context.Context, tasks map[string]string, reason string) ([]Recovered, error) {
	return f.requeue(ctx, tasks, reason, true, "")
}
