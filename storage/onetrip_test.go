package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// tripCounter counts what reaches the network below the record hook: single commands
// and pipelines, each one round trip, with the names of a pipeline's commands.
type tripCounter struct {
	mu    sync.Mutex
	trips [][]string
	shas  []string // of every EVALSHA, in order
}

func (c *tripCounter) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *tripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.add([]redis.Cmder{cmd})
		return next(ctx, cmd)
	}
}

func (c *tripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.add(cmds)
		return next(ctx, cmds)
	}
}

func (c *tripCounter) add(cmds []redis.Cmder) {
	names := make([]string, len(cmds))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, cmd := range cmds {
		names[i] = cmd.Name()
		if a := cmd.Args(); names[i] == "evalsha" && len(a) > 1 {
			c.shas = append(c.shas, fmt.Sprint(a[1]))
		}
	}
	c.trips = append(c.trips, names)
}

// evalShas counts the EVALSHAs of script sha seen so far.
func (c *tripCounter) evalShas(sha string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, s := range c.shas {
		if s == sha {
			n++
		}
	}
	return n
}

// shasFrom returns the EVALSHAs' script hashes from the n-th on, in order.
func (c *tripCounter) shasFrom(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.shas[n:])
}

func (c *tripCounter) take() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trips
	c.trips = nil
	return t
}

// resender, while between is set, sends every pipeline twice, as go-redis does after
// a read timeout (its MaxRetries), calling between in the gap. Only the test's
// goroutine uses it.
type resender struct{ between func() }

func (r *resender) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (r *resender) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (r *resender) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if r.between != nil {
			if err := next(ctx, cmds); err != nil {
				return err
			}
			r.between()
		}
		return next(ctx, cmds)
	}
}

// enqueueEcho enqueues an echo task with payload {"n":1} and id on queue "default"
// through client, its record riding along (WithRecord), and returns the record.
func enqueueEcho(ctx context.Context, jobs *Jobs, client *asynq.Client, id string, opts ...asynq.Option) (*Record, error) {
	j := Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now(), Payload: []byte(`{"n":1}`)}
	ectx, rec := jobs.WithRecord(ctx, j)
	_, err := client.EnqueueContext(ectx, asynq.NewTask("echo", j.Payload), append(opts, asynq.TaskID(id), asynq.Queue("default"))...)
	return rec, err
}

// An enqueue through asynq's client carries the job's record in its one round trip,
// record first, and the task is fetched with its record in place.
func TestRecordRidesWithEnqueue(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	rdb.AddHook(RecordHook(rdb))
	trips := &tripCounter{}
	rdb.AddHook(trips) // added last: below the record hook, it sees the network's trips
	resend := &resender{}
	rdb.AddHook(resend)
	jobs := NewJobs(rdb, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()

	enqueue := func(id string, opts ...asynq.Option) (*Record, error) {
		return enqueueEcho(ctx, jobs, client, id, opts...)
	}
	// Redis's script cache lacks the record's script: the task is queued, the record
	// says NOSCRIPT, and the caller writes it with Create, which loads the script.
	rec, err := enqueue("warm") // asynq publishes the queue's name once, too
	if err != nil || !isNoScript(rec.Err()) {
		t.Fatalf("enqueue before the script is loaded: %v, record: %v, want NOSCRIPT", err, rec.Err())
	}
	if err := jobs.Create(ctx, Job{ID: "warm", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	trips.take()
	rec, err = enqueue("one")
	if err != nil || rec.Err() != nil {
		t.Fatalf("enqueue: %v, record: %v", err, rec.Err())
	}
	got := trips.take()
	if len(got) != 1 || len(got[0]) < 2 || got[0][0] != "evalsha" || got[0][1] != "evalsha" {
		t.Fatalf("round trips %v, want one pipeline: the record's evalsha, then asynq's", got)
	}
	j, err := jobs.Get(ctx, "one")
	if err != nil || j.State != StatePending || string(j.Payload) != `{"n":1}` {
		t.Fatalf("record: %+v, %v", j, err)
	}
	if p, _ := jobs.List(ctx, Filter{}, "", 10); len(p.Jobs) != 2 {
		t.Errorf("index has %d jobs, want 2", len(p.Jobs))
	}

	// A scheduled task (asynq's schedule script) carries it the same way.
	if rec, err := enqueue("later", asynq.ProcessIn(time.Hour)); err != nil || rec.Err() != nil {
		t.Fatalf("schedule: %v, record: %v", err, rec.Err())
	}
	// After a SCRIPT FLUSH both EVALSHAs fail; asynq sends EVAL, and the record says
	// NOSCRIPT. Loading the scripts again, as a new connection does, makes the next one
	// whole.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	trips.take()
	if rec, err := enqueue("flushed"); err != nil || !isNoScript(rec.Err()) {
		t.Fatalf("after a flush: %v, record: %v, want NOSCRIPT", err, rec.Err())
	}
	if n := len(trips.take()); n != 2 {
		t.Errorf("after a flush: %d round trips, want 2 (the pipeline, asynq's EVAL)", n)
	}
	for _, s := range jobScripts {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if rec, err := enqueue("preloaded"); err != nil || rec.Err() != nil {
		t.Fatalf("after loading the scripts: %v, record: %v", err, rec.Err())
	}
	// An id asynq refuses: the record was written, and the caller undoes it.
	rec, err = enqueue("one")
	if !errors.Is(err, asynq.ErrTaskIDConflict) || !errors.Is(rec.Err(), ErrExists) {
		t.Errorf("taken id: enqueue %v, record %v", err, rec.Err())
	}
	// resent checks an enqueue go-redis sent twice: asynq answered wantErr to the second
	// send, which found the record written, and Queued says want.
	resent := func(what string, rec *Record, err, wantErr error, want bool) {
		t.Helper()
		if !errors.Is(err, wantErr) || !errors.Is(rec.Err(), ErrExists) {
			t.Errorf("%s: enqueue %v, record %v", what, err, rec.Err())
		}
		if queued, qerr := rec.Queued(ctx, err); queued != want || qerr != nil {
			t.Errorf("%s: Queued = %v, %v; want %v", what, queued, qerr, want)
		}
	}
	// dropUniqueLock lets go of the one uniqueness lock held.
	dropUniqueLock := func() {
		t.Helper()
		locks, err := rdb.Keys(ctx, "asynq:{default}:unique:*").Result()
		if err != nil || len(locks) != 1 {
			t.Fatalf("uniqueness locks %v, %v; want one", locks, err)
		}
		rdb.Del(ctx, locks...)
	}
	// go-redis sends a pipeline again after a read timeout: the second send leaves the
	// record the first wrote alone (a worker may have started it), and asynq, finding
	// the task queued, answers ErrTaskIDConflict, which the caller of a fresh id takes
	// for success.
	resend.between = func() {
		if _, err := jobs.Start(ctx, "twice", "echo", "default", time.Now()); err != nil {
			t.Error(err)
		}
	}
	rec, err = enqueue("twice")
	resend.between = nil
	resent("sent twice", rec, err, asynq.ErrTaskIDConflict, true)
	// A unique enqueue sent twice: the second send finds the first's uniqueness lock.
	// (A first one has Redis cache asynq's script; its lock is then let go.)
	if _, err := enqueue("unique-warm", asynq.Unique(time.Minute)); err != nil {
		t.Fatal(err)
	}
	dropUniqueLock()
	resend.between = func() {}
	rec, err = enqueue("unique-twice", asynq.Unique(time.Minute))
	resend.between = nil
	resent("unique, sent twice", rec, err, asynq.ErrDuplicateTask, true)
	// Another job's uniqueness lock: its record was written (the caller undoes it), and
	// the task was not queued.
	rec, err = enqueue("unique-other", asynq.Unique(time.Minute))
	if !errors.Is(err, asynq.ErrDuplicateTask) || rec.Err() != nil {
		t.Errorf("unique, taken by another: enqueue %v, record %v", err, rec.Err())
	}
	if queued, qerr := rec.Queued(ctx, err); queued || qerr != nil {
		t.Errorf("unique, taken by another: Queued = %v, %v; want false", queued, qerr)
	}
	// The same, sent twice: the record was there for the second send, and still no task.
	resend.between = func() {}
	rec, err = enqueue("unique-other-twice", asynq.Unique(time.Minute))
	resend.between = nil
	resent("unique, taken by another, sent twice", rec, err, asynq.ErrDuplicateTask, false)
	// A unique enqueue sent twice whose task a worker ran, and asynq deleted, in between:
	// its record says so.
	dropUniqueLock()
	resend.between = func() {
		if _, err := jobs.Start(ctx, "unique-ran", "echo", "default", time.Now()); err != nil {
			t.Error(err)
		}
		rdb.Del(ctx, asynqTaskKey("default", "unique-ran"))
	}
	rec, err = enqueue("unique-ran", asynq.Unique(time.Minute))
	resend.between = nil
	resent("unique, sent twice, ran between", rec, err, asynq.ErrDuplicateTask, true)
	if j, err := jobs.Get(ctx, "twice"); err != nil || j.State != StateActive || j.Attempts != 1 || string(j.Payload) != `{"n":1}` {
		t.Errorf("sent twice, started between: record %+v, %v", j, err)
	}
	// Without the hook the record is not sent, and says so.
	plain := NewJobs(r.Client(t), time.Hour, "default")
	ectx, rec := plain.WithRecord(ctx, Job{ID: "plain", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()})
	if _, err := asynq.NewClientFromRedisClient(r.Client(t)).EnqueueContext(ectx, asynq.NewTask("echo", nil), asynq.TaskID("plain")); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(rec.Err(), ErrRecordNotSent) {
		t.Errorf("without the hook: %v, want ErrRecordNotSent", rec.Err())
	}
}

// TestScriptsLoadedOnConnect: a client OpenRedis made makes sure of the job scripts on
// every new connection, so the first enqueue after a Redis restart (an empty script
// cache) carries its record in front of its task, not after it; a connection that
// finds them loaded asks once and loads nothing.
func TestScriptsLoadedOnConnect(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := openRedis(t, r)
	sent := &scriptCmds{}
	rdb.AddHook(sent)
	rdb.AddHook(RecordHook(rdb))
	ctx0 := context.Background()
	for i, want := range []string{"exists load load load load", "exists"} {
		sent.reset()
		// A new connection (the first stays held): its set-up runs before its first command.
		cn := rdb.(*redis.Client).Conn()
		defer cn.Close()
		if err := cn.Ping(ctx0).Err(); err != nil {
			t.Fatal(err)
		}
		if got := sent.String(); got != want {
			t.Errorf("connection %d's set-up sent %q, want %q", i+1, got, want)
		}
	}
	jobs := NewJobs(rdb, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()
	enqueue := func(id string) (*Record, error) { return enqueueEcho(ctx, jobs, client, id) }
	if rec, err := enqueue("before"); err != nil || rec.Err() != nil {
		t.Fatalf("first enqueue: %v, record: %v", err, rec.Err())
	}
	r.Kill(t)
	r.Start(t)
	// The pool's connections died with the server: the first tries may fail on them.
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		id := "after" + strconv.Itoa(i)
		rec, err := enqueue(id)
		if err == nil {
			if rec.Err() != nil {
				t.Fatalf("first enqueue after a restart: record %v, want written in front of the task", rec.Err())
			}
			if j, err := jobs.Get(ctx, id); err != nil || string(j.Payload) != `{"n":1}` {
				t.Fatalf("record after a restart: %+v, %v", j, err)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no enqueue succeeded within 5 s of the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scriptCmds records the SCRIPT subcommands a client sends (on its connections' set-up
// too: go-redis gives each connection the client's hooks).
type scriptCmds struct {
	mu   sync.Mutex
	subs []string
}

func (c *scriptCmds) DialHook(next redis.DialHook) redis.DialHook { return next }

func (c *scriptCmds) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if args := cmd.Args(); cmd.Name() == "script" && len(args) > 1 {
			c.mu.Lock()
			c.subs = append(c.subs, strings.ToLower(fmt.Sprint(args[1])))
			c.mu.Unlock()
		}
		return next(ctx, cmd)
	}
}

func (c *scriptCmds) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

func (c *scriptCmds) reset() { c.mu.Lock(); c.subs = nil; c.mu.Unlock() }

func (c *scriptCmds) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.subs, " ")
}

// TestEnqueuesGroupCommit: enqueues made while a group is on the wire wait and leave
// together in the next pipeline, each one's record in front of its task; each returns
// once Redis has answered its own commands. One that gives up while it waits unsent
// leaves nothing behind: no record, no task, no index entry.
func TestEnqueuesGroupCommit(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	hook := RecordHook(rdb).(recordHook)
	rdb.AddHook(hook)
	trips := &tripCounter{}
	rdb.AddHook(trips)
	jobs := NewJobs(rdb, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()
	for _, s := range jobScripts {
		if err := s.Load(ctx, rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enqueueEcho(ctx, jobs, client, "warm"); err != nil { // asynq publishes the queue once
		t.Fatal(err)
	}
	trips.take()
	shas := len(trips.shasFrom(0))

	// Every group the batcher may send is on the wire, as far as it knows: the
	// enqueues queue behind them (none leaves for a stall).
	hook.b.mu.Lock()
	hook.b.flights = maxFlights
	hook.b.mu.Unlock()
	var wg sync.WaitGroup
	recs, errs := make([]*Record, 3), make([]error, 3)
	for i := range 3 {
		wg.Go(func() { recs[i], errs[i] = enqueueEcho(ctx, jobs, client, fmt.Sprint("g", i)) })
	}
	gaveUp, cancel := context.WithCancel(ctx)
	quit := make(chan error, 1)
	var quitRec *Record
	go func() {
		var err error
		quitRec, err = enqueueEcho(gaveUp, jobs, client, "quit")
		quit <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); hook.b.waiting.Load() < 4; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the enqueues never queued")
		}
	}
	cancel()
	select {
	case err := <-quit:
		// asynq flattens the error into its own text.
		if err == nil || !strings.Contains(err.Error(), context.Canceled.Error()) || !errors.Is(quitRec.Err(), ErrRecordNotSent) {
			t.Errorf("enqueue that gave up: %v, record %v; want context canceled, ErrRecordNotSent", err, quitRec.Err())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an enqueue whose context was cancelled kept waiting for its group")
	}
	if got := trips.take(); len(got) != 0 {
		t.Fatalf("sent while the group waited: %v", got)
	}

	// The groups on the wire are answered: one loop is left, which takes what waits.
	hook.b.mu.Lock()
	hook.b.flights = 1
	hook.b.mu.Unlock()
	go hook.b.loop()
	wg.Wait()
	got := trips.take()
	for i := range 3 {
		if errs[i] != nil || recs[i].Err() != nil {
			t.Errorf("enqueue g%d: %v, record %v", i, errs[i], recs[i].Err())
		}
		if j, err := jobs.Get(ctx, fmt.Sprint("g", i)); err != nil || j.State != StatePending {
			t.Errorf("record g%d: %+v, %v", i, j, err)
		}
	}
	if len(got) != 1 {
		t.Fatalf("round trips %v, want one pipeline for the three enqueues", got)
	}
	// Per enqueue: the record's evalsha, asynq's, the index's zadd (and, one create in
	// indexTrimEvery, the index's trim).
	scripts := 0
	for _, name := range got[0] {
		if name == "evalsha" {
			scripts++
		}
	}
	if scripts != 6 || got[0][0] != "evalsha" || got[0][1] != "evalsha" || got[0][2] != "zadd" {
		t.Errorf("pipeline %v, want each enqueue's record, task and index entry in turn", got[0])
	}
	// Each record's script comes just before its task's (asynq's).
	sent := trips.shasFrom(shas)
	create := createScript.Hash()
	if len(sent) != 6 || sent[0] != create || sent[2] != create || sent[4] != create ||
		sent[1] == create || sent[1] != sent[3] || sent[3] != sent[5] {
		t.Errorf("scripts sent %v; want the record's (%s), then asynq's, for each enqueue", sent, create)
	}
	inspector := asynq.NewInspectorFromRedisClient(rdb)
	if qi, err := inspector.GetQueueInfo("default"); err != nil || qi.Pending != 4 {
		t.Errorf("queue: %+v, %v; want 4 pending (warm and the group)", qi, err)
	}
	if _, err := jobs.Get(ctx, "quit"); !errors.Is(err, ErrNotFound) {
		t.Errorf("record of the enqueue that gave up: %v, want ErrNotFound", err)
	}
	if p, _ := jobs.List(ctx, Filter{}, "", 10); len(p.Jobs) != 4 {
		t.Errorf("index has %d jobs, want 4", len(p.Jobs))
	}
	waitIdle(t, hook.b)
}

// waitIdle waits until b runs no loop and holds no write, as it must once every
// caller has returned.
func waitIdle(t *testing.T, b *batcher) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		b.mu.Lock()
		flights, pending, out := b.flights, len(b.pending), len(b.out)
		b.mu.Unlock()
		if flights == 0 && pending == 0 && out == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("batcher not idle: %d loops, %d writes waiting, %d groups out", flights, pending, out)
		}
	}
}

// stall holds, once armed, the next pipeline on its way to Redis until released: a
// connection that stopped answering.
type stall struct {
	armed   atomic.Bool
	release chan struct{}
	held    chan struct{} // closed when a pipeline is held
}

func (h *stall) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *stall) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *stall) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if h.armed.CompareAndSwap(true, false) {
			close(h.held)
			<-h.release
		}
		return next(ctx, cmds)
	}
}

// groupFixture is a client with RecordHook, then the hooks given, below it.
func groupFixture(t *testing.T, below ...redis.Hook) (*redis.Client, recordHook, *Jobs, *asynq.Client) {
	t.Helper()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	hook := RecordHook(rdb).(recordHook)
	rdb.AddHook(hook)
	for _, h := range below {
		rdb.AddHook(h)
	}
	jobs := NewJobs(rdb, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(rdb)
	for _, s := range jobScripts {
		if err := s.Load(context.Background(), rdb).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := enqueueEcho(context.Background(), jobs, client, "warm"); err != nil {
		t.Fatal(err)
	}
	return rdb, hook, jobs, client
}

// TestEnqueueStallEscape: a group stuck on its connection does not hold up the
// enqueues behind it: after stallAfter they leave in a group of their own, on another
// connection, and return while the stuck one still waits.
func TestEnqueueStallEscape(t *testing.T) {
	t.Parallel()
	st := &stall{release: make(chan struct{}), held: make(chan struct{})}
	_, hook, jobs, client := groupFixture(t, st)
	ctx := context.Background()
	st.armed.Store(true)
	stuck := make(chan error, 1)
	go func() {
		_, err := enqueueEcho(ctx, jobs, client, "stuck")
		stuck <- err
	}()
	<-st.held
	start := time.Now()
	// A caller's own 5 s: without the escape, it would leave unsent.
	bctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if rec, err := enqueueEcho(bctx, jobs, client, "behind"); err != nil || rec.Err() != nil {
		t.Fatalf("enqueue behind a stuck group: %v, record %v", err, rec.Err())
	}
	if waited := time.Since(start); waited < stallAfter {
		t.Errorf("the enqueue behind returned in %v, before stallAfter (%v): it did not wait for the group on the wire", waited, stallAfter)
	}
	select {
	case err := <-stuck:
		t.Fatalf("the stuck enqueue returned (%v) before its pipeline was released", err)
	default:
	}
	close(st.release)
	if err := <-stuck; err != nil {
		t.Errorf("the stuck enqueue, released: %v", err)
	}
	for _, id := range []string{"stuck", "behind"} {
		if j, err := jobs.Get(ctx, id); err != nil || j.State != StatePending {
			t.Errorf("record %s: %+v, %v", id, j, err)
		}
	}
	waitIdle(t, hook.b)
}

// TestUnstick: another loop starts only when every loop is sending a group that has
// been on the wire longer than stallAfter, and fewer than maxFlights run; not while a
// loop is about to take what waits.
func TestUnstick(t *testing.T) {
	t.Parallel()
	now := time.Now()
	old, fresh := now.Add(-2*stallAfter), now
	for _, c := range []struct {
		flights int
		out     []time.Time
		start   bool
	}{
		{1, []time.Time{old}, true},
		{2, []time.Time{old, old}, true},
		{1, []time.Time{fresh}, false},
		{2, []time.Time{old, fresh}, false},
		{2, []time.Time{old}, false}, // the other loop is between groups
		{maxFlights, make([]time.Time, maxFlights), false},
	} {
		b := &batcher{flights: c.flights, out: c.out}
		b.mu.Lock()
		b.unstickLocked()
		started := b.flights > c.flights
		b.flights = c.flights // the loop started, if any, finds nothing and leaves
		b.mu.Unlock()
		if started != c.start {
			t.Errorf("%d loops, groups out since %v: started another = %v, want %v", c.flights, c.out, started, c.start)
		}
	}
}

// deadlines notes the deadline of each pipeline's context.
type deadlines struct {
	mu   sync.Mutex
	seen []time.Time
}

func (h *deadlines) DialHook(next redis.DialHook) redis.DialHook          { return next }
func (h *deadlines) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }
func (h *deadlines) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		d, _ := ctx.Deadline()
		h.mu.Lock()
		h.seen = append(h.seen, d)
		h.mu.Unlock()
		return next(ctx, cmds)
	}
}

// TestEnqueueGroupDeadline: a group's round trip ends when its caller would have given
// up (so go-redis stops retrying it then), not batchTimeout later; and an enqueue too
// big to share a group goes alone, with its caller's context, even while every group
// the batcher may send is on the wire.
func TestEnqueueGroupDeadline(t *testing.T) {
	t.Parallel()
	dl := &deadlines{}
	_, hook, jobs, client := groupFixture(t, dl)
	due := time.Now().Add(3 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), due)
	defer cancel()
	dl.seen = nil
	if rec, err := enqueueEcho(ctx, jobs, client, "due"); err != nil || rec.Err() != nil {
		t.Fatalf("enqueue: %v, record %v", err, rec.Err())
	}
	if len(dl.seen) != 1 || !dl.seen[0].Equal(due) {
		t.Errorf("pipeline deadlines %v, want [%v] (the caller's)", dl.seen, due)
	}

	hook.b.mu.Lock()
	hook.b.flights = maxFlights
	hook.b.mu.Unlock()
	dl.seen = nil
	big := Job{ID: "big", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now(),
		Payload: []byte(`"` + strings.Repeat("x", aloneAbove) + `"`)}
	ectx, rec := jobs.WithRecord(ctx, big)
	if _, err := client.EnqueueContext(ectx, asynq.NewTask("echo", big.Payload), asynq.TaskID("big"), asynq.Queue("default")); err != nil || rec.Err() != nil {
		t.Fatalf("big enqueue: %v, record %v", err, rec.Err())
	}
	if len(dl.seen) != 1 || !dl.seen[0].Equal(due) {
		t.Errorf("big enqueue's pipeline deadlines %v, want [%v] (alone, with the caller's context)", dl.seen, due)
	}
}

// TestGroupBounds: a group takes the oldest writes up to maxGroupOps and
// maxGroupBytes, at least one however big; the rest wait for the next. Its deadline is
// the latest of its callers', or batchTimeout when one has none.
func TestGroupBounds(t *testing.T) {
	t.Parallel()
	ops := func(sizes ...int) []*batchOp {
		o := make([]*batchOp, len(sizes))
		for i, n := range sizes {
			o[i] = &batchOp{size: n}
		}
		return o
	}
	many := make([]int, maxGroupOps+6)
	for i := range many {
		many[i] = 100
	}
	for _, c := range []struct {
		sizes []int
		want  []int // group lengths, in turn
	}{
		{many, []int{maxGroupOps, 6}},
		{[]int{maxGroupBytes / 2, maxGroupBytes / 2, 1}, []int{2, 1}},
		{[]int{maxGroupBytes * 3, 1, 1}, []int{1, 2}},
		{[]int{1, maxGroupBytes, 1}, []int{1, 1, 1}},
	} {
		b := &batcher{pending: ops(c.sizes...)}
		var got []int
		for g := b.take(); len(g) > 0; g = b.take() {
			got = append(got, len(g))
		}
		if !slices.Equal(got, c.want) || b.waiting.Load() != 0 {
			t.Errorf("sizes %v: groups of %v (%d left), want %v", c.sizes, got, b.waiting.Load(), c.want)
		}
	}
	now := time.Now()
	a, z := now.Add(time.Second), now.Add(2*time.Second)
	for _, c := range []struct {
		deadlines []time.Time
		want      time.Time
	}{
		{[]time.Time{a, z, a}, z},
		{[]time.Time{a, {}}, now.Add(batchTimeout)},
		{[]time.Time{now.Add(time.Hour)}, now.Add(batchTimeout)},
	} {
		o := make([]*batchOp, len(c.deadlines))
		for i, d := range c.deadlines {
			o[i] = &batchOp{deadline: d}
		}
		if got := groupDeadline(o, now); !got.Equal(c.want) {
			t.Errorf("deadlines %v: group deadline %v, want %v", c.deadlines, got, c.want)
		}
	}
}
