package storage

import (
	"context"
	_ "embed"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start at fetch. asynq's fetch is one Lua script (dequeueCmd) that moves a task from
// its queue's pending list to active; the worker's handler then marked the job active
// with a script of its own (Begin): a second script call per task, and a round trip
// the task waited for before it could run. StartAtFetch's hook sends fetch.lua in place
// of asynq's script: the same moves, then start.lua's for the task taken, in one atomic
// step. The handler then finds its attempt waiting (InFlight.Started), and a worker
// killed between the fetch and the handler leaves its task in its in-flight index,
// where the supervisor recovers it at once. A fetch whose reply is lost leaves its task
// started and indexed with no handler: the worker finds it with RequeueStranded.
//
// It works from the script's SHA1: asynq v0.26's dequeueCmd, byte for byte (see
// asynqDequeueHash). A future asynq whose script differs has another hash; its fetches
// then pass unchanged, and every handler calls Begin as before (TestStartAtFetch fails
// then, to say so).

//go:embed fetch.lua
var fetchCall string

var fetchScript = redis.NewScript(startFn + fetchCall)

// asynqDequeueHash is the SHA1 of asynq v0.26's dequeueCmd (internal/rdb/rdb.go), the
// script whose body fetch.lua's first lines repeat before it starts the job.
// TestStartAtFetch fails when asynq sends another.
const asynqDequeueHash = "a8153319360adc71cdc370107f8ab9786f204765"

// started is the outcome of a start made at fetch: the attempt, or -1 (completed).
type started struct {
	attempt int
	at      time.Time
}

// starts are the starts made at fetch, by task id, until their handlers take them, and
// the index entries of the worker that nothing in it holds, since when
// (RequeueStranded).
type starts struct {
	mu      sync.Mutex
	m       map[string]started
	unknown map[string]time.Time
}

func (s *starts) put(id string, st started) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]started)
	}
	s.m[id] = st
}

func (s *starts) take(id string) (started, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.m[id]
	if ok {
		delete(s.m, id)
	}
	return st, ok
}

// staleStart is how long a start made at fetch waits for its handler before it is
// dropped, and its task can be found stranded. asynq runs the handler at once, but its
// processor can be held up for many seconds by a stalled Redis (it reports the start
// to its heartbeater first); past asynq's own lease (30 s) and its recoverer's sweep, a
// task whose handler never came is asynq's to retry anyway.
const staleStart = 2 * time.Minute

// stranded returns the tasks of index (id -> queue: the worker's in-flight index as
// read at now) that neither a start waiting for its handler nor busy has held for
// after or longer, and forgets them; it drops the starts older than staleStart.
func (s *starts) stranded(index map[string]string, busy func(id string) bool, after time.Duration, now time.Time) map[string]string {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, st := range s.m {
		if now.Sub(st.at) >= staleStart {
			delete(s.m, id)
		}
	}
	seen := make(map[string]time.Time, len(s.unknown))
	out := make(map[string]string)
	for id, queue := range index {
		if _, waiting := s.m[id]; waiting || busy(id) {
			continue
		}
		since, ok := s.unknown[id]
		if !ok {
			since = now
		}
		if now.Sub(since) >= after {
			out[id] = queue
			continue
		}
		seen[id] = since
	}
	s.unknown = seen
	return out
}

// StartAtFetch returns the hook that starts each job in the script that fetches its
// task (see above), for worker, the owner of the attempts; nil on a Redis Cluster
// client. Install it with rdb.AddHook on the client given to NewInFlight and to the
// asynq servers, before RideAlong's hook (go-redis calls the hooks added first
// first), so a fetch still carries the writes waiting for one. It starts the jobs of
// every fetch from the queues NewJobs was given made through that client: run no
// other asynq server on those queues there. The worker must call RequeueStranded every
// few seconds. One per InFlight. Safe for concurrent use.
func (f *InFlight) StartAtFetch(worker string) redis.Hook {
	if _, cluster := f.rdb.(*redis.ClusterClient); cluster {
		return nil
	}
	off := new(atomic.Bool)
	if first, taken := fetchHooks.LoadOrStore(f.rdb, off); taken {
		// A second worker on one client: a hook cannot tell whose fetch it sees (asynq
		// fetches with a bare context), so none starts jobs, and every handler calls
		// Begin.
		first.(*atomic.Bool).Store(true)
		return nil
	}
	return fetchHook{f: f, worker: worker, off: off}
}

// fetchHooks are the clients with a StartAtFetch hook, each with its hook's switch.
var fetchHooks sync.Map // redis.UniversalClient -> *atomic.Bool (off)

// Started returns the attempt the fetch of task id started, and takes it: ok is false
// when the fetch did not start it (no StartAtFetch hook, a job without a record, or a
// start taken already), and the handler must call Begin. err is ErrCompleted when the
// job had completed (nothing changed; the task must not run). Safe for concurrent use.
func (f *InFlight) Started(id string) (attempt int, ok bool, err error) {
	st, ok := f.fetched.take(id)
	switch {
	case !ok:
		return 0, false, nil
	case st.attempt < 0:
		return 0, true, ErrCompleted
	}
	return st.attempt, true, nil
}

type fetchHook struct {
	f      *InFlight
	worker string
	off    *atomic.Bool // a second worker shares the client
}

func (fetchHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (fetchHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (h fetchHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c, ok := cmd.(*redis.Cmd)
		if !ok || h.off.Load() {
			return next(ctx, cmd)
		}
		queue, ok := asynqDequeueQueue(c)
		if !ok || !slices.Contains(h.f.jobs.queues, queue) {
			return next(ctx, cmd)
		}
		return h.fetch(ctx, c, queue)
	}
}

// fetch sends fetch.lua for asynq's dequeue c of queue (EVAL after a NOSCRIPT), through
// the client's hooks, gives c asynq's reply, and keeps the start for the handler.
func (h fetchHook) fetch(ctx context.Context, c *redis.Cmd, queue string) error {
	a := c.Args()
	now := time.Now()
	keys := []string{fmt.Sprint(a[3]), fmt.Sprint(a[4]), fmt.Sprint(a[5]), fmt.Sprint(a[6]), inflightKey(queue, h.worker)}
	res, err := fetchScript.Run(ctx, h.f.rdb, keys, a[7], a[8], jobKey(queue, ""),
		now.UTC().Format(time.RFC3339Nano), int64(h.f.jobs.retention/time.Second), h.worker, queue).Slice()
	if err != nil {
		c.SetErr(err)
		return err
	}
	if len(res) != 3 {
		err = fmt.Errorf("fetch.lua: %d replies, want 3", len(res))
		c.SetErr(err)
		return err
	}
	msg, _ := res[0].(string)
	id, _ := res[1].(string)
	n, _ := res[2].(int64)
	if n != 0 {
		h.f.fetched.put(id, started{attempt: int(n), at: time.Now()})
	}
	c.SetVal(msg)
	return nil
}

// asynqDequeueQueue reports c as asynq's fetch from a queue, and names the queue:
// EVALSHA of dequeueCmd with its 4 keys (pending, paused, active, lease of the queue)
// and 2 arguments (lease expiry, task key prefix).
func asynqDequeueQueue(c *redis.Cmd) (string, bool) {
	a := c.Args()
	if len(a) != 9 || !strings.EqualFold(c.Name(), "evalsha") {
		return "", false
	}
	if sha, _ := a[1].(string); sha != asynqDequeueHash {
		return "", false
	}
	if n, _ := a[2].(int); n != 4 {
		return "", false
	}
	pending, _ := a[3].(string)
	q, ok := strings.CutPrefix(pending, "asynq:{")
	if !ok {
		return "", false
	}
	q, ok = strings.CutSuffix(q, "}:pending")
	return q, ok && q != ""
}

// RequeueStranded requeues the tasks in worker's own in-flight index that it has not
// held for after or longer, seen over several calls: neither a start made at fetch
// waiting for its handler (one older than 2 minutes is dropped) nor a task busy says
// it runs (the worker's handlers, from before their start to their outcome). Such a
// task was taken by a fetch whose reply was lost (a Redis or network stall: go-redis
// sends the script again, which takes another task), or whose handler asynq never
// ran. Each goes back to its queue as Recover puts a dead worker's tasks (its record
// says pending, with reason; one more interruption), and leaves the index in the same
// step, unless its attempt changed since it was read (this worker fetched it again);
// one another worker started, or whose record is gone, only leaves the index. It
// returns what recovery did with each (a State of asynq's when asynq had moved the
// task on). after must exceed the longest a fetch's reply can take (go-redis's
// timeouts and retry). The worker calls it every few seconds, from one goroutine; it
// costs one round trip, more only when something is stranded.
func (f *InFlight) RequeueStranded(ctx context.Context, worker, reason string, after time.Duration, busy func(id string) bool) ([]Recovered, error) {
	index, err := f.indexOf(ctx, worker)
	if err != nil {
		return nil, err
	}
	var out []Recovered
	now := time.Now()
	for id, queue := range f.fetched.stranded(index, busy, after, now) {
		job := jobKey(queue, id)
		// The attempt it is stranded at ("" when the record is gone): the script requeues
		// nothing started since, and drops the entry in the same step.
		attempt, err := f.rdb.HGet(ctx, job, "attempts").Result()
		if err != nil && err != redis.Nil {
			return out, fmt.Errorf("requeue stranded %s: %w", id, err)
		}
		keys, args := f.recoverArgs(id, queue, reason, worker, now)
		keys, args = append(keys, inflightKey(queue, worker)), append(args, attempt)
		state, err := recoverScript.Run(ctx, f.rdb, keys, args...).Text()
		if err != nil && err != redis.Nil {
			return out, fmt.Errorf("requeue stranded %s: %w", id, err)
		}
		if state != "taken" {
			out = append(out, Recovered{ID: id, Queue: queue, State: state})
		}
	}
	return out, nil
}
