package worker

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// BenchmarkDrain measures what a Worker adds per task over asynq: b.N echo tasks, each
// with its job record, are queued, then drained by a Worker at concurrency 10 on a
// real redis-server. Compare ns/op with BenchmarkDrainAsynq in the same run.
func BenchmarkDrain(b *testing.B) {
	for _, fetchers := range []int{1, 2, 4} {
		b.Run("fetchers="+strconv.Itoa(fetchers), func(b *testing.B) { benchDrain(b, fetchers) })
	}
}

func benchDrain(b *testing.B, fetchers int) {
	rdb, client, jobs := drainFixture(b)
	wrdb := workerClient(rdb)
	w := New(Config{Concurrency: 10, Fetchers: fetchers, Queues: map[string]int{"default": 1}, ShutdownTimeout: 5 * time.Second,
		Retention: time.Hour}, wrdb, slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn})))
	trips := countTrips(wrdb) // after New's hook: counts what goes on the wire
	defer trips.report(b)
	w.Handle(kindEcho, func(context.Context, *Task) (any, error) { return nil, nil })
	fill(b, client, jobs, b.N)
	b.ResetTimer()
	if err := w.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer w.Stop()
	waitDrained(b, rdb, b.N)
}

// BenchmarkDrainAsynq is the baseline: the same tasks drained by a bare asynq.Server
// with a no-op handler.
func BenchmarkDrainAsynq(b *testing.B) {
	rdb, client, jobs := drainFixture(b)
	fill(b, client, jobs, b.N)
	wrdb := workerClient(rdb)
	trips := countTrips(wrdb)
	defer trips.report(b)
	b.ResetTimer()
	srv := asynq.NewServerFromRedisClient(wrdb, asynq.Config{Concurrency: 10, Queues: map[string]int{"default": 1},
		LogLevel: asynq.WarnLevel, TaskCheckInterval: 250 * time.Millisecond})
	if err := srv.Start(asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })); err != nil {
		b.Fatal(err)
	}
	defer srv.Shutdown()
	waitDrained(b, rdb, b.N)
}

// workerClient is a new client to rdb's server, opened as the worker opens its own.
func workerClient(rdb *redis.Client) *redis.Client {
	u, err := storage.OpenRedis("redis://"+rdb.Options().Addr, false)
	if err != nil {
		panic(err)
	}
	return u.(*redis.Client)
}

// countTrips counts c's round trips (single commands and pipelines, each one write and
// one read) and the commands they carry: unlike time, the same on a busy machine as on
// an idle one. Install it after any hook that changes what is sent.
func countTrips(c *redis.Client) *tripCount {
	t := &tripCount{}
	c.AddHook(t)
	return t
}

type tripCount struct{ trips, cmds atomic.Int64 }

func (t *tripCount) DialHook(next redis.DialHook) redis.DialHook { return next }

func (t *tripCount) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		t.trips.Add(1)
		t.cmds.Add(1)
		return next(ctx, cmd)
	}
}

func (t *tripCount) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		t.trips.Add(1)
		t.cmds.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// report adds round trips and commands per task to the benchmark's figures.
func (t *tripCount) report(b *testing.B) {
	b.ReportMetric(float64(t.trips.Load())/float64(b.N), "trips/op")
	b.ReportMetric(float64(t.cmds.Load())/float64(b.N), "cmds/op")
}

func drainFixture(b *testing.B) (rdbT *redis.Client, client *asynq.Client, jobs *storage.Jobs) {
	r := storagetest.StartRedis(b)
	rdb := r.Client(b)
	return rdb, asynq.NewClientFromRedisClient(rdb), storage.NewJobs(rdb, time.Hour, "default")
}

func fill(b *testing.B, client *asynq.Client, jobs *storage.Jobs, n int) {
	data, _ := json.Marshal(echoArgs{Message: "x"})
	ctx := context.Background()
	for i := range n {
		id := "d" + strconv.Itoa(i)
		if err := jobs.Create(ctx, storage.Job{ID: id, Type: kindEcho, Queue: "default", State: storage.StatePending, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
		if _, err := client.Enqueue(asynq.NewTask(kindEcho, data), asynq.TaskID(id)); err != nil {
			b.Fatal(err)
		}
	}
}

func waitDrained(b *testing.B, rdb *redis.Client, n int) {
	ins := asynq.NewInspectorFromRedisClient(rdb)
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		qi, err := ins.GetQueueInfo("default")
		if err == nil && qi.Pending == 0 && qi.Active == 0 {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.Fatalf("%d tasks not drained", n)
}
