package main

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

const everySecond = `[{"name":"beat","cron":"@every 1s","type":"echo","payload":{"message":"tick"}}]`

// TestScheduleExactlyOnce is the leaderless schedule under fire: three instances on
// one Redis with an @every 1s schedule for 16 s, one of them SIGKILLed after 6 s.
// Every tick's job ran exactly once, no gap between consecutive runs is longer than
// 2.5 s, and the runs cover the window; in serve mode and in split mode.
func TestScheduleExactlyOnce(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"serve", "split"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			r := storagetest.StartRedis(t)
			env := sharedEnv(r, t)
			env["SCHEDULE"] = everySecond
			var ins []*instance
			if mode == "serve" {
				for range 3 {
					ins = append(ins, startInstance(t, env))
				}
			} else {
				ins = append(ins, startInstance(t, env, "web"))
				for range 2 {
					w := startWorkerInstance(t, env)
					ins = append(ins, w)
				}
			}
			ins[0].waitReady()
			start := time.Now()
			time.Sleep(6 * time.Second) // the schedule runs; nothing to wait for but time
			victim := ins[len(ins)-1]
			if err := victim.cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			time.Sleep(10 * time.Second)
			end := time.Now()
			for _, in := range ins[:len(ins)-1] {
				_ = in.cmd.Process.Signal(syscall.SIGTERM)
				in.waitExit(30 * time.Second)
			}

			rdb := r.Client(t)
			jobs := storage.NewJobs(rdb, time.Hour, "default")
			keys, err := rdb.Keys(context.Background(), storage.KeyPrefix+"{default}:job:beat@*").Result()
			if err != nil {
				t.Fatal(err)
			}
			var ticks []int64
			for _, k := range keys {
				id := strings.TrimPrefix(k, storage.KeyPrefix+"{default}:job:")
				n, _ := strconv.ParseInt(strings.TrimPrefix(id, "beat@"), 10, 64)
				j, err := jobs.Get(context.Background(), id)
				if err != nil {
					t.Fatal(err)
				}
				// The last tick or two may have been cut off by the SIGTERMs.
				if j.State != storage.StateCompleted && time.Unix(n, 0).Before(end.Add(-2*time.Second)) {
					t.Errorf("tick %s: %+v", id, j)
				}
				if j.Schedule != "beat" || j.Tick == nil || j.Tick.Unix() != n {
					t.Errorf("record of %s does not show its tick: %+v", id, j)
				}
				ticks = append(ticks, n)
			}
			slices.Sort(ticks)
			// Exactly once: each task id completed once across every process's log.
			runs := make(map[string]int)
			for _, in := range ins {
				in.mu.Lock()
				for _, l := range in.lines {
					if l["msg"] == "task completed" {
						if id, _ := l["task_id"].(string); strings.HasPrefix(id, "beat@") {
							runs[id]++
						}
					}
				}
				in.mu.Unlock()
			}
			for id, n := range runs {
				if n != 1 {
					t.Errorf("%s ran %d times", id, n)
				}
			}
			var maxGap int64
			for i := 1; i < len(ticks); i++ {
				maxGap = max(maxGap, ticks[i]-ticks[i-1])
			}
			window := int64(end.Sub(start).Seconds())
			t.Logf("%s: %d ticks over %d s, %d runs logged, longest gap %d s", mode, len(ticks), window, len(runs), maxGap)
			if maxGap > 2 { // ticks are whole seconds: a gap over 2.5 s is 3 s or more
				t.Errorf("a gap of %d s between consecutive runs", maxGap)
			}
			if len(ticks) == 0 || ticks[0] > start.Unix()+1 || ticks[len(ticks)-1] < end.Unix()-2 || int64(len(ticks)) < window-2 {
				t.Errorf("ticks %v do not cover the window %d-%d", ticks, start.Unix(), end.Unix())
			}
		})
	}
}

// startWorkerInstance starts `shoestring worker` and waits for its worker to start.
func startWorkerInstance(tb testing.TB, env map[string]string) *instance {
	tb.Helper()
	return startInstance(tb, env, "worker")
}

// TestScheduleDeadMansSwitch: the schedule check is Healthy while ticks run, and turns
// Degraded when they stop being worked (every worker stopped), SCHEDULE_GRACE after the
// first tick left pending.
func TestScheduleDeadMansSwitch(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["SCHEDULE"] = everySecond
	env["SCHEDULE_GRACE"] = "2s"
	env["HEALTH_CACHE"] = "0"
	web := startInstance(t, env, "web")
	w := startWorkerInstance(t, env)
	web.waitReady()
	status := func() string {
		var h struct{ Status string }
		resp, err := http.Get(web.base + "/health/schedule")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
			t.Fatal(err)
		}
		return h.Status
	}
	waitFor(t, 10*time.Second, "schedule Healthy after a few ticks", func() bool { return status() == "Healthy" })
	_ = w.cmd.Process.Signal(syscall.SIGTERM)
	w.waitExit(15 * time.Second)
	stopped := time.Now()
	waitFor(t, 15*time.Second, "schedule Degraded with no worker", func() bool { return status() == "Degraded" })
	t.Logf("Degraded %v after the last worker stopped", time.Since(stopped).Round(100*time.Millisecond))
	// The aggregate is Unhealthy by now: the worker check sees no heartbeat either.
	var agg struct{ Status string }
	web.getJSON("/health", http.StatusServiceUnavailable, &agg)
	if agg.Status != "Unhealthy" {
		t.Errorf("aggregate %q with no worker and a late schedule", agg.Status)
	}
}
