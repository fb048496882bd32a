package storage

import (
	"context"
	_ "embed"
	"fmt"
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
// where the supervisor recovers it at once.
//
// It works from the script's SHA1: asynq v0.26's dequeueCmd, byte for byte (see
// asynqDequeueHash). A future asynq whose script differs has another hash; its fetches
// then pass unchanged, and every handler calls Begin as before (TestStartAtFetch fails
// then, to say so).

//go:embed fetch.lua
var fetchCall string

var fetchScript = redis.NewScript(startFn + fetchCall)

// asynqDequeueHash is the SHA1 of asynq v0.26's dequeueCmd (internal/rdb/rdb.go).
// fetch.lua does what it does before it starts the job.
var asynqDequeueHash = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 0 then
	local id = redis.call("RPOPLPUSH", KEYS[1], KEYS[3])
	if id then
		local key = ARGV[2] .. id
		redis.call("HSET", key, "state", "active")
		redis.call("HDEL", key, "pending_since")
		redis.call("ZADD", KEYS[4], ARGV[1], id)
		return redis.call("HGET", key, "msg")
	end
end
return nil`).Hash()

// maxStarts bounds the starts waiting for their handlers. asynq runs the handler of
// every task it fetches, but a task whose deadline passed before its handler began, or
// one a shutdown requeued first, leaves its start behind; past the bound those older
// than staleStart are dropped.
const (
	maxStarts  = 1024
	staleStart = time.Minute
)

// started is the outcome of a start made at fetch: the attempt, or -1 (completed).
type started struct {
	attempt int
	at      time.Time
}

// starts are the starts made at fetch, by task id, until their handlers take them.
type starts struct {
	mu sync.Mutex
	m  map[string]started
}

func (s *starts) put(id string, st started) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil {
		s.m = make(map[string]started)
	}
	if len(s.m) >= maxStarts {
		for k, v := range s.m {
			if st.at.Sub(v.at) > staleStart {
				delete(s.m, k)
			}
		}
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

// StartAtFetch returns the hook that starts each job in the script that fetches its
// task (see above), for worker, the owner of the attempts; nil on a Redis Cluster
// client. Install it with rdb.AddHook on the client given to NewInFlight and to the
// asynq servers, before RideAlong's hook (go-redis calls the hooks added first
// first), so a fetch still carries the writes waiting for one. One per InFlight.
// Safe for concurrent use.
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
		if !ok {
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
		h.f.fetched.put(id, started{attempt: int(n), at: now})
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
