package storage

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// TestJobIndexRetention: the dashboard's index forgets jobs older than the retention
// when a trimming job is created (one in indexTrimEvery), and List skips records that
// expired before that.
func TestJobIndexRetention(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	jobs := NewJobs(rdb, time.Hour, "default")
	ctx := context.Background()
	base := time.Now().UnixMilli() / indexTrimEvery * indexTrimEvery
	now := time.UnixMilli(base + 1) // not a trimming create
	for id, age := range map[string]time.Duration{"old": 2 * time.Hour, "gone": time.Minute, "new": 0} {
		if err := jobs.Create(ctx, Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: now.Add(-age)}); err != nil {
			t.Fatal(err)
		}
	}
	if n, _ := rdb.ZCard(ctx, indexKey).Result(); n != 3 {
		t.Errorf("index has %d entries before a trimming create, want 3", n)
	}
	// A trimming create: its milliseconds are a multiple of indexTrimEvery.
	if err := jobs.Create(ctx, Job{ID: "newest", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.UnixMilli(base + 32*indexTrimEvery)}); err != nil {
		t.Fatal(err)
	}
	rdb.Del(ctx, jobKey("default", "gone")) // expired
	ids, err := rdb.ZRange(ctx, indexKey, 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"default:gone", "default:new", "default:newest"}, ids); diff != "" {
		t.Errorf("index (-want +got):\n%s", diff)
	}
	page, err := jobs.List(ctx, Filter{}, "", 10)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, j := range page.Jobs {
		got = append(got, j.ID)
	}
	if diff := cmp.Diff([]string{"newest", "new"}, got); diff != "" || page.Scanned != 3 {
		t.Errorf("List (-want +got):\n%s scanned %d", diff, page.Scanned)
	}
}

// TestCompletionsAndTimeline: a completion recorded by End counts in its queue's
// minute once flushed; the timeline lists each step; a payload over the cap is cut.
func TestCompletionsAndTimeline(t *testing.T) {
	t.Parallel()
	rdb := storagetest.StartRedis(t).Client(t)
	jobs := NewJobs(rdb, time.Hour, "q")
	inflight := NewInFlight(rdb, jobs)
	ctx := context.Background()
	now := time.Now()
	big := []byte(`"` + strings.Repeat("x", MaxStoredPayload) + `"`)
	if err := jobs.Create(ctx, Job{ID: "a", Type: "echo", Queue: "q", State: StatePending, CreatedAt: now, Payload: big}); err != nil {
		t.Fatal(err)
	}
	n, _ := jobs.Start(ctx, "a", "echo", "q", now)
	if err := jobs.Finish(ctx, "a", "q", n, StateRetry, nil, "boom", now); err != nil {
		t.Fatal(err)
	}
	n, _ = inflight.Begin(ctx, "w", "a", "echo", "q", now)
	if err := inflight.End(ctx, "w", "a", "q", n, StateCompleted, []byte(`{}`), "", now); err != nil {
		t.Fatal(err)
	}
	if counts, _ := jobs.Completions(ctx, "q", 1, now); counts[0] != 0 {
		t.Errorf("%d completions before the flush, want 0", counts[0])
	}
	if err := inflight.FlushCompletions(ctx); err != nil {
		t.Fatal(err)
	}
	j, err := jobs.Get(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, e := range j.Events {
		kinds = append(kinds, e.Kind+" "+e.Detail)
	}
	want := []string{"created ", "started attempt 1", "retry attempt 1", "started attempt 2", "completed "}
	if diff := cmp.Diff(want, kinds); diff != "" {
		t.Errorf("timeline (-want +got):\n%s", diff)
	}
	if len(j.Payload) != MaxStoredPayload || !j.PayloadTruncated {
		t.Errorf("payload of %d bytes kept as %d, truncated=%v", len(big), len(j.Payload), j.PayloadTruncated)
	}
	counts, err := jobs.Completions(ctx, "q", 3, now)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int64{0, 0, 1}, counts); diff != "" {
		t.Errorf("completions (-want +got):\n%s", diff)
	}
	// Counts a failed flush could not add are kept for the next one.
	var c completionCounter
	c.add("q", now)
	c.add("q", now)
	down := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer down.Close()
	if err := c.flush(ctx, down); err == nil {
		t.Fatal("flush to an unreachable Redis succeeded")
	}
	if err := c.flush(ctx, rdb); err != nil {
		t.Fatal(err)
	}
	if counts, _ := jobs.Completions(ctx, "q", 1, now); counts[0] != 3 {
		t.Errorf("%d completions after a failed and a good flush, want 3", counts[0])
	}
	if ttl := rdb.TTL(ctx, completedKey("q", now.Unix()/60)).Val(); ttl <= completedTTL-time.Minute || ttl > completedTTL {
		t.Errorf("counter TTL %v, want %v", ttl, completedTTL)
	}
}
