package storage

import (
	"context"
	"errors"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// One round trip per enqueue. asynq's Client.Enqueue sends one Lua script (EVALSHA,
// or EVAL after a NOSCRIPT) that writes the task. A job's record must exist before
// its task can be fetched, so writing it first costs a round trip of its own: half
// the enqueue rate. Instead the record rides in front of asynq's script, in the same
// pipeline: Redis runs a connection's commands in order, so the record is written
// before the task is visible to any worker. Both keys carry the queue's hash tag, so
// on a cluster they go to one node in that order too. Under load, concurrent enqueues
// share one pipeline (group commit, batch.go): at 10 clients, about three per round
// trip, which saves Redis and the web tier a read, a write and a wakeup each.
//
// It works through a go-redis hook (RecordHook) that asynq's client never sees: the
// record waits in the context given to asynq.Client.EnqueueContext, which asynq
// passes down to the script call (asynq v0.26: Client.EnqueueContext -> RDB.Enqueue
// or Schedule and their unique variants -> Script.Run). When a future asynq stops
// doing so, the hook does not fire, Record.Err says ErrRecordNotSent, and the caller
// writes the record after the fact (see Record).

// ErrRecordNotSent is Record.Err when no script call carried the record: enqueue
// failed before sending its script, or the hook is not installed on the client.
var ErrRecordNotSent = errors.New("job record not sent with the enqueue")

// Record is a job record waiting to be written in front of an enqueue's script. It
// belongs to one enqueue; it is not safe for concurrent use.
type Record struct {
	jobs   *Jobs
	job    Job
	sent   bool
	create *redis.Cmd
}

type recordKey struct{}

// WithRecord returns ctx carrying j's record, to pass to the enqueue of j's task
// (asynq.Client.EnqueueContext on a client with RecordHook installed): the record is
// written as Create writes it, in the same round trip as the task. j.ID must be fresh
// (NewJobID): the task is sent whatever the record finds, so a taken id would enqueue
// a second task for it; enqueue a chosen id with Create, then asynq.
func (s *Jobs) WithRecord(ctx context.Context, j Job) (context.Context, *Record) {
	r := &Record{jobs: s, job: j}
	return context.WithValue(ctx, recordKey{}, r), r
}

// Err is the outcome of writing the record, once the enqueue has returned: nil when
// it was written, ErrExists when the id was taken (or go-redis sent the pipeline
// twice, after a timeout: the first wrote it), ErrRecordNotSent, or Redis's (a
// NOSCRIPT error when Redis's script cache lacked the record's script: the task may
// be queued without its record).
func (r *Record) Err() error {
	if !r.sent {
		return ErrRecordNotSent
	}
	n, err := r.create.Int()
	if err != nil {
		return err
	}
	if n == 0 {
		return ErrExists
	}
	return nil
}

// Queued reports whether the enqueue this record went with (WithRecord) queued its
// task after all, though asynq answered err. go-redis sends a pipeline again after a
// read timeout, and the second send finds what the first did: with a fresh id,
// asynq.ErrTaskIDConflict can only be the first send's task. asynq.ErrDuplicateTask (a
// unique enqueue) is the first send's uniqueness lock when a task with this id is in
// the job's queue, or its record shows that a worker has taken it (the task may have
// run and gone since); else another job holds the lock. Queued reads both in one round
// trip on ctx. Any other err: false. Errors: Redis's.
func (r *Record) Queued(ctx context.Context, err error) (bool, error) {
	switch {
	case errors.Is(err, asynq.ErrTaskIDConflict):
		return true, nil
	case errors.Is(err, asynq.ErrDuplicateTask):
		var task *redis.IntCmd
		var rec *redis.SliceCmd
		if _, err := r.jobs.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			task = p.Exists(ctx, asynqTaskKey(r.job.Queue, r.job.ID))
			rec = p.HMGet(ctx, jobKey(r.job.Queue, r.job.ID), "state", "attempts")
			return nil
		}); err != nil {
			return false, err
		}
		if task.Val() == 1 {
			return true, nil
		}
		f := rec.Val()
		state, _ := f[0].(string)
		attempts, _ := f[1].(string)
		return (state != "" && state != StatePending && state != StateScheduled) || (attempts != "" && attempts != "0"), nil
	}
	return false, nil
}

// asynqTaskKey is the hash of asynq's task id in queue (asynq v0.26: base.TaskKey).
func asynqTaskKey(queue, id string) string { return "asynq:{" + queue + "}:t:" + id }

// RecordHook returns the go-redis hook that sends a Record (WithRecord) in one
// pipeline with the first Lua script call made with its context; install it on the
// client that asynq's Client uses, with rdb.AddHook. Enqueues made at the same time
// share their pipelines (group commit, see batch.go): while one group is on the wire,
// the records and tasks that arrive wait and leave together in the next, each enqueue
// still returning only once Redis has answered its own commands; one that waits unsent
// past its context's end returns its error, with nothing written. Alone, an enqueue
// leaves at once. An enqueue of more than 64 KiB, and every enqueue on a Redis Cluster
// client, keeps a pipeline of its own. Any other command goes through unchanged, at the
// cost of one context lookup. rdb is that client. Safe for concurrent use.
func RecordHook(rdb redis.UniversalClient) redis.Hook {
	h := recordHook{rdb: rdb}
	if _, cluster := rdb.(*redis.ClusterClient); !cluster {
		// A cluster client's pipeline waits for every node it touches: one group of
		// several queues' enqueues would wait for the slowest node, and a stuck node
		// would hold up every queue. There each enqueue keeps a pipeline of its own.
		h.b = &batcher{rdb: rdb}
	}
	return h
}

// aloneAbove is the size of an enqueue (its record and task, about) above which it
// keeps a pipeline of its own: its bytes would make its group's round trip theirs, and
// a command Redis refuses for its size (proto-max-bulk-len) closes the connection
// under every reply in the group.
const aloneAbove = 64 << 10

type recordHook struct {
	rdb redis.UniversalClient
	b   *batcher // nil: no group commit (a cluster)
}

func (recordHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (recordHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h recordHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r, _ := ctx.Value(recordKey{}).(*Record)
		if r == nil || r.sent {
			return next(ctx, cmd)
		}
		if !isScriptCall(cmd) {
			return next(ctx, cmd)
		}
		r.sent = true
		keys, args := r.jobs.createArgs(r.job)
		fill := func(ctx context.Context, p redis.Pipeliner) *redis.Cmd {
			// create.lua, not plain HSET and EXPIRE, which would cost Redis less: go-redis
			// sends a pipeline again after a read timeout, and only the script leaves the
			// record the first send wrote (and a worker may have started since) alone.
			// EVALSHA: the script is not sent, nor hashed by Redis, on every enqueue.
			// After a restart or a SCRIPT FLUSH the first one answers NOSCRIPT, the task
			// is queued all the same, and Err says so: the caller then writes the record
			// with Create, which loads the script for the next ones. So no script call is
			// returned for the batcher to send again: asynq's own falls back to EVAL.
			r.create = createScript.EvalSha(ctx, p, keys, args...)
			_ = p.Process(ctx, cmd)
			r.jobs.index(ctx, p, r.job)
			return nil
		}
		// The task carries the payload, and the record a copy cut at MaxStoredPayload.
		size := opOverhead + len(r.job.Payload) + min(len(r.job.Payload), MaxStoredPayload)
		if h.b == nil || size > aloneAbove {
			_, _ = h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				fill(ctx, p)
				return nil
			})
			return cmd.Err()
		}
		// In a group: the caller waits for its commands' replies once they have left,
		// whatever ctx says, so that it knows what was written.
		if err := h.b.do(ctx, size, fill, nil); r.create == nil {
			// ctx was done before the group left: nothing is written.
			r.sent = false
			cmd.SetErr(err)
		}
		return cmd.Err()
	}
}

// jobScripts are the scripts a job's life runs with EVALSHA: its record's creation,
// start (alone, or with its task's fetch) and outcome.
var jobScripts = []*redis.Script{createScript, startScript, fetchScript, finishScript}

// jobScriptHashes are jobScripts' SHA1s, in the same order.
var jobScriptHashes = func() []string {
	h := make([]string, len(jobScripts))
	for i, s := range jobScripts {
		h[i] = s.Hash()
	}
	return h
}()

// loadScripts is OpenRedis's OnConnect: before a new connection's first command, it
// makes sure Redis has the job scripts: one SCRIPT EXISTS, then a SCRIPT LOAD of each
// one missing (a pipeline on the connection being set up does not reach it in go-redis
// v9.23). A Redis that restarted (or a replica a failover promoted, or a cluster node)
// has an empty script cache, and every connection to it is new: so the first enqueue
// after a restart carries its record in front of its task, as every other does; later
// connections find the scripts there, and cost one round trip. Only a SCRIPT FLUSH on
// a live server empties the cache under open connections. Best effort: an error (a
// user without the scripting commands, a server still loading its data) leaves the
// connection as it is, and NOSCRIPT's fallbacks apply.
func loadScripts(ctx context.Context, cn *redis.Conn) error {
	have, err := cn.ScriptExists(ctx, jobScriptHashes...).Result()
	if err != nil || len(have) != len(jobScripts) {
		return nil
	}
	for i, s := range jobScripts {
		if !have[i] && s.Load(ctx, cn).Err() != nil {
			break
		}
	}
	return nil
}
