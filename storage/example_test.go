package storage_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/storage"
)

// openEmbedded starts an embedded Redis and a client on it, as trial mode does.
func openEmbedded() (redis.UniversalClient, func(), error) {
	emb, err := storage.StartEmbedded()
	if err != nil {
		return nil, nil, err
	}
	rdb, err := storage.OpenRedis(emb.URL(), false)
	if err != nil {
		emb.Stop()
		return nil, nil, err
	}
	return rdb, func() { rdb.Close(); emb.Stop() }, nil
}

// StartEmbedded is an in-memory Redis for trying shoestring out; OpenRedis takes any
// REDIS_URL, and PingRedis checks that the server answers.
func ExampleStartEmbedded() {
	emb, err := storage.StartEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer emb.Stop()
	rdb, err := storage.OpenRedis(emb.URL(), false)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer rdb.Close()
	fmt.Println(strings.HasPrefix(emb.URL(), "redis://127.0.0.1:"), storage.PingRedis(context.Background(), rdb))
	// Output:
	// true <nil>
}

// A job's record through its life, as the web tier and a worker write it: created at
// enqueue, started (attempt 1), its progress, then its outcome.
func ExampleJobs() {
	rdb, stop, err := openEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	jobs := storage.NewJobs(rdb, 24*time.Hour, "default")
	now := time.Now()

	id := storage.NewJobID()
	err = jobs.Create(ctx, storage.Job{ID: id, Type: "report", Queue: "default", State: storage.StatePending, CreatedAt: now})
	fmt.Println("created:", err)
	err = jobs.Create(ctx, storage.Job{ID: id, Type: "report", Queue: "default", State: storage.StatePending, CreatedAt: now})
	fmt.Println("again:", errors.Is(err, storage.ErrExists))

	attempt, err := jobs.Start(ctx, id, "report", "default", now)
	fmt.Println("attempt:", attempt, err)
	_ = jobs.SetProgress(ctx, "default", id, storage.Progress{Done: 40, Total: 100})
	j, _ := jobs.Get(ctx, id)
	fmt.Println(j.State, j.Progress.Done, "of", j.Progress.Total)

	err = jobs.Finish(ctx, id, "default", attempt, storage.StateCompleted, []byte(`{"rows":100}`), "", time.Now())
	fmt.Println("finished:", err)
	j, _ = jobs.Get(ctx, id)
	fmt.Println(j.State, string(j.Result), j.CompletedAt != nil)
	_, err = jobs.Start(ctx, id, "report", "default", now)
	fmt.Println("delivered again:", errors.Is(err, storage.ErrCompleted))

	_, err = jobs.Get(ctx, storage.NewJobID())
	fmt.Println("unknown id:", errors.Is(err, storage.ErrNotFound))
	// Output:
	// created: <nil>
	// again: true
	// attempt: 1 <nil>
	// active 40 of 100
	// finished: <nil>
	// completed {"rows":100} true
	// delivered again: true
	// unknown id: true
}

// List pages through the dashboard's index of jobs, newest first, filtered by state,
// kind or queue; Next is the cursor of the following page.
func ExampleJobs_List() {
	rdb, stop, err := openEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	jobs := storage.NewJobs(rdb, 24*time.Hour, "default")
	start := time.Date(2026, 12, 4, 9, 0, 0, 0, time.UTC)
	for i := range 5 {
		typ := "report"
		if i%2 == 1 {
			typ = "thumbnail"
		}
		j := storage.Job{ID: fmt.Sprintf("job-%d", i), Type: typ, Queue: "default", State: storage.StatePending,
			CreatedAt: start.Add(time.Duration(i) * time.Minute)}
		if err := jobs.Create(ctx, j); err != nil {
			fmt.Println(err)
			return
		}
	}
	page, err := jobs.List(ctx, storage.Filter{Type: "report"}, "", 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, j := range page.Jobs {
		fmt.Println(j.ID, j.Type, j.State)
	}
	page, err = jobs.List(ctx, storage.Filter{Type: "report"}, page.Next, 2)
	for _, j := range page.Jobs {
		fmt.Println(j.ID, j.Type, j.State)
	}
	fmt.Println("more:", page.Next != "", err)
	// Output:
	// job-4 report pending
	// job-2 report pending
	// job-0 report pending
	// more: false <nil>
}

// Job ids are 26 lower-case base32 characters (130 random bits); a caller may choose
// its own within ValidJobID's alphabet, for an idempotent enqueue.
func ExampleNewJobID() {
	id := storage.NewJobID()
	fmt.Println(len(id), storage.ValidJobID(id))
	fmt.Println(storage.ValidJobID("invoice:2026-12:4711"), storage.ValidJobID("../etc/passwd"), storage.ValidJobID(""))
	// Output:
	// 26 true
	// true false false
}

// A worker's id is host:pid:random, so a container that restarts with the same host
// name and pid is never taken for the dead worker before it.
func ExampleNewWorkerID() {
	a, b := storage.NewWorkerID("web.1", 7), storage.NewWorkerID("web.1", 7)
	fmt.Println(strings.HasPrefix(a, "web.1:7:"), a != b)
	// Output:
	// true true
}

// Redis Sentinel URLs in the form Sidekiq, Celery and Bull users know.
func ExampleParseSentinelURL() {
	opt, err := storage.ParseSentinelURL("redis-sentinel://:s3cr3t@sentinel-1:26379,sentinel-2:26379/mymaster/2")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(opt.MasterName, opt.SentinelAddrs, opt.DB, opt.Password == "s3cr3t")
	_, err = storage.ParseSentinelURL("redis-sentinel://:s3cr3t@sentinel-1:26379")
	fmt.Println(err != nil, strings.Contains(fmt.Sprint(err), "s3cr3t"))
	// Output:
	// mymaster [sentinel-1:26379 sentinel-2:26379] 2 true
	// true false
}

// A Redis Cluster URL names seed nodes; the client learns the rest.
func ExampleParseClusterURL() {
	opt, err := storage.ParseClusterURL("rediss-cluster://default:s3cr3t@node-1:6379,node-2:6379")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(opt.Addrs, opt.Username, opt.TLSConfig != nil)
	// Output:
	// [node-1:6379 node-2:6379] default true
}

// CheckpointKey is in the queue's Redis Cluster slot (hash tag {queue}), beside the
// job's record and asynq's task.
func ExampleCheckpointKey() {
	fmt.Println(storage.CheckpointKey("default", "01jobid"))
	// Output:
	// shoestring:{default}:checkpoint:01jobid
}

// OpenBucket opens BLOB_URL's store (here mem://) as a gocloud.dev blob.Bucket; a
// blob keeps the content type it was written with.
func ExampleOpenBucket() {
	ctx := context.Background()
	b, err := storage.OpenBucket(ctx, "mem://", storage.BlobCredentials{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer b.Close()
	if err := b.WriteAll(ctx, "reports/2026-12.csv", []byte("month,total\n2026-12,4711\n"), &blob.WriterOptions{ContentType: "text/csv"}); err != nil {
		fmt.Println(err)
		return
	}
	r, err := b.NewReader(ctx, "reports/2026-12.csv", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	_, _ = io.Copy(os.Stdout, r)
	fmt.Println(r.ContentType())
	// Output:
	// month,total
	// 2026-12,4711
	// text/csv
}

// Every worker beats: the web tier, on this machine or another, reads who is alive.
func ExampleHeartbeats() {
	rdb, stop, err := openEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	ctx := context.Background()
	hb := storage.NewHeartbeats(rdb)
	now := time.Now()
	beat := storage.WorkerBeat{ID: storage.NewWorkerID("web.1", 7), Host: "web.1", PID: 7, StartedAt: now,
		BeatAt: now, Concurrency: 10, Processed: 1200}
	if err := hb.Beat(ctx, beat, 30*time.Second); err != nil {
		fmt.Println(err)
		return
	}
	live, err := hb.Live(ctx, now.Add(-15*time.Second))
	for _, w := range live {
		fmt.Println(w.Host, w.Concurrency, w.Processed)
	}
	fmt.Println(err)
	// Output:
	// web.1 10 1200
	// <nil>
}
