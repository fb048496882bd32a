package storage

import (
	"context"
	"errors"
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
	for i, cmd := range cmds {
		names[i] = cmd.Name()
	}
	c.mu.Lock()
	c.trips = append(c.trips, names)
	c.mu.Unlock()
}

func (c *tripCounter) take() [][]string {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.trips
	c.trips = nil
	return t
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
	jobs := NewJobs(rdb, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(rdb)
	ctx := context.Background()

	enqueue := func(id string, opts ...asynq.Option) (*Record, error) {
		j := Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now(), Payload: []byte(`{"n":1}`)}
		ectx, rec := jobs.WithRecord(ctx, j)
		_, err := client.EnqueueContext(ectx, asynq.NewTask("echo", j.Payload), append(opts, asynq.TaskID(id), asynq.Queue("default"))...)
		return rec, err
	}
	if rec, err := enqueue("warm"); err != nil || rec.Err() != nil { // asynq publishes the queue's name once, too
		t.Fatalf("first enqueue: %v, record: %v", err, rec.Err())
	}
	trips.take()
	rec, err := enqueue("one")
	if err != nil || rec.Err() != nil {
		t.Fatalf("enqueue: %v, record: %v", err, rec.Err())
	}
	got := trips.take()
	if len(got) != 1 || len(got[0]) < 3 || got[0][0] != "hset" || got[0][1] != "expire" || got[0][2] != "evalsha" {
		t.Fatalf("round trips %v, want one pipeline: the record's hset and expire, then asynq's evalsha", got)
	}
	j, err := jobs.Get(ctx, "one")
	if err != nil || j.State != StatePending || string(j.Payload) != `{"n":1}` || j.Attempts != 0 {
		t.Fatalf("record: %+v, %v", j, err)
	}
	if ttl := rdb.TTL(ctx, jobKey("default", "one")).Val(); ttl <= 59*time.Minute || ttl > time.Hour {
		t.Errorf("record's TTL %v, want the retention (1h)", ttl)
	}
	if p, _ := jobs.List(ctx, Filter{}, "", 10); len(p.Jobs) != 2 {
		t.Errorf("index has %d jobs, want 2", len(p.Jobs))
	}

	// A scheduled task (asynq's schedule script) carries it the same way.
	if rec, err := enqueue("later", asynq.ProcessIn(time.Hour)); err != nil || rec.Err() != nil {
		t.Fatalf("schedule: %v, record: %v", err, rec.Err())
	}
	// After a SCRIPT FLUSH asynq's EVALSHA fails and it sends EVAL: the record went
	// with the first, in front of it, and is whole.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	trips.take()
	if rec, err := enqueue("flushed"); err != nil || rec.Err() != nil {
		t.Fatalf("after a flush: %v, record: %v", err, rec.Err())
	}
	if n := len(trips.take()); n != 2 {
		t.Errorf("after a flush: %d round trips, want 2 (the pipeline, asynq's EVAL)", n)
	}
	if j, err := jobs.Get(ctx, "flushed"); err != nil || j.State != StatePending {
		t.Errorf("after a flush: record %+v, %v", j, err)
	}
	// A task asynq refuses (unique_for): the record was written, and the caller undoes it.
	if _, err := enqueue("u1", asynq.Unique(time.Hour)); err != nil {
		t.Fatal(err)
	}
	rec, err = enqueue("u2", asynq.Unique(time.Hour))
	if !errors.Is(err, asynq.ErrDuplicateTask) || rec.Err() != nil {
		t.Errorf("duplicate: enqueue %v, record %v", err, rec.Err())
	}
	if err := jobs.Undo(ctx, "default", "u2"); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Get(ctx, "u2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("undone record: %v, want ErrNotFound", err)
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
