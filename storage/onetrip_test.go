package storage

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
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
	if !errors.Is(err, asynq.ErrTaskIDConflict) || !errors.Is(rec.Err(), ErrExists) {
		t.Errorf("sent twice: enqueue %v, record %v", err, rec.Err())
	}
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

	// A group on the wire, as far as the batcher knows: the enqueues queue behind it.
	hook.b.mu.Lock()
	hook.b.flushing = true
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

	go hook.b.loop() // the group on the wire is answered
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
}
