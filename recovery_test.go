package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// The split-mode recovery tests: no supervisor watches a `shoestring worker` process,
// so when one is SIGKILLed the reapers of the other processes (web and workers alike)
// must requeue its tasks within seconds (asynq alone: 61-170 s).

// startWorkers starts n split-mode worker processes with env.
func startWorkers(t *testing.T, env map[string]string, n int) []*instance {
	t.Helper()
	ws := make([]*instance, n)
	for i := range ws {
		ws[i] = startInstance(t, env, "worker")
	}
	return ws
}

// activeTasks counts the tasks asynq has active in the demo tasks' queues.
func activeTasks(t *testing.T, r *storagetest.Redis) int64 {
	t.Helper()
	rdb := r.Client(t)
	var n int64
	for _, q := range []string{"critical", "default", "low"} {
		c, err := rdb.LLen(context.Background(), "asynq:{"+q+"}:active").Result()
		if err != nil {
			t.Fatal(err)
		}
		n += c
	}
	return n
}

// TestSplitRecoveryKill: one web and two workers; sixteen 4 s echo tasks spread over
// both workers; one worker SIGKILLed and never restarted: all sixteen complete within
// 10 s of the kill.
func TestSplitRecoveryKill(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["WORKER_CONCURRENCY"] = "8" // sixteen tasks fill both workers
	web := startInstance(t, env, "web")
	workers := startWorkers(t, env, 2)
	web.waitReady()

	var ids []string
	for i := range 16 {
		ids = append(ids, web.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"k%d","sleep_ms":4000}}`, i), http.StatusAccepted)["id"].(string))
	}
	waitFor(t, 10*time.Second, "all sixteen tasks active", func() bool {
		for _, id := range ids {
			if web.job(id).State != "active" {
				return false
			}
		}
		return true
	})
	victim := workers[0]
	kill := time.Now()
	if err := victim.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	interrupted := 0
	for _, id := range ids {
		j := web.waitJob(id, 15*time.Second)
		if j.State != "completed" || string(j.Result) != fmt.Sprintf(`{"message":"k%d"}`, indexOf(ids, id)) {
			t.Errorf("job %s = %+v", id, j)
		}
		if j.Attempts > 1 {
			interrupted++
		}
	}
	took := time.Since(kill)
	if took > 10*time.Second {
		t.Errorf("all sixteen completed %v after the kill, want within 10 s", took)
	}
	// Sixteen tasks active at once on two workers of concurrency 8: the victim ran 8.
	if interrupted != 8 {
		t.Errorf("%d of 16 tasks ran twice, want the killed worker's 8 only", interrupted)
	}
	if n := activeTasks(t, r); n != 0 {
		t.Errorf("%d tasks still active in asynq", n)
	}
	t.Logf("split recovery: a worker SIGKILLed with %d of 16 running 4 s tasks; all completed %v after the kill", interrupted, took.Round(time.Millisecond))
}

func indexOf(ids []string, id string) int {
	for i, v := range ids {
		if v == id {
			return i
		}
	}
	return -1
}

// TestSplitRecoveryFiveKills: split mode, 2,000 echo tasks, six workers of which five
// are SIGKILLed at random moments while tasks are enqueued and run; none is restarted
// until the end. Every task completes; nothing stays active in asynq.
func TestSplitRecoveryFiveKills(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: seconds of killing")
	}
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["WORKER_CONCURRENCY"] = "5"
	web := startInstance(t, env, "web")
	workers := startWorkers(t, env, 6)
	web.waitReady()

	var (
		mu  sync.Mutex
		ids []string
		wg  sync.WaitGroup
	)
	for p := range 10 {
		wg.Go(func() {
			for i := range 200 {
				ms := 20 + rand.IntN(200)
				id := web.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"f%d-%d","sleep_ms":%d}}`, p, i, ms), http.StatusAccepted)["id"].(string)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	var lastKill time.Time
	for _, w := range workers[:5] {
		time.Sleep(time.Duration(1000+rand.IntN(1500)) * time.Millisecond) // a random moment
		if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		lastKill = time.Now()
	}
	wg.Wait()
	if len(ids) != 2000 {
		t.Fatalf("%d tasks accepted, want 2000", len(ids))
	}
	for _, id := range ids {
		if j := web.waitJob(id, 90*time.Second); j.State != "completed" {
			t.Errorf("task %s ended %+v", id, j)
		}
	}
	took := time.Since(lastKill)
	interrupted := 0
	for _, id := range ids {
		if web.job(id).Attempts > 1 {
			interrupted++
		}
	}
	waitFor(t, 5*time.Second, "nothing active in asynq", func() bool { return activeTasks(t, r) == 0 })
	t.Logf("split recovery: 5 of 6 workers SIGKILLed, none restarted; all 2000 tasks completed %v after the last kill; %d ran more than once",
		took.Round(time.Millisecond), interrupted)
}
