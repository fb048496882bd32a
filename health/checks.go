package health

import (
	"context"
	"os"
	"runtime"
	"time"

	"github.com/shoestring-go/shoestring/storage"
)

// SelfCheck is always Healthy: if it runs, the process answers. Its data shows the
// process id, uptime in seconds and goroutine count.
func SelfCheck(started time.Time) Checker {
	pid := os.Getpid()
	return CheckFunc(func(context.Context) Result {
		return Result{Status: Healthy, Data: map[string]any{
			"pid": pid, "uptime_s": int64(time.Since(started).Seconds()), "goroutines": runtime.NumGoroutine(),
		}}
	})
}

// PingCheck is Healthy when ping returns nil, Unhealthy with its error otherwise; the
// round trip shows as data rtt_ms. Used for Redis: PING.
func PingCheck(ping func(context.Context) error) Checker {
	return CheckFunc(func(ctx context.Context) Result {
		start := time.Now()
		err := ping(ctx)
		rtt := float64(time.Since(start).Microseconds()) / 1000
		if err != nil {
			return Result{Status: Unhealthy, Description: "ping: " + err.Error(), Err: err, Data: map[string]any{"rtt_ms": rtt}}
		}
		return Result{Status: Healthy, Data: map[string]any{"rtt_ms": rtt}}
	})
}

// WorkerCheck is Healthy when at least one worker heartbeat newer than ttl is in Redis,
// Unhealthy when there is none (or Redis cannot say). Data: the live workers and their
// processed, failed and active counts and last success time. It reads only what any
// worker, in this deployable or on another machine, wrote.
func WorkerCheck(beats *storage.Heartbeats, ttl time.Duration) Checker {
	return CheckFunc(func(ctx context.Context) Result {
		live, err := beats.Live(ctx, time.Now().Add(-ttl))
		if err != nil {
			return Result{Status: Unhealthy, Description: "read heartbeats: " + err.Error(), Err: err}
		}
		if len(live) == 0 {
			return Result{Status: Unhealthy, Description: "no live worker heartbeat"}
		}
		var processed, failed, active int64
		var last time.Time
		workers := make([]string, 0, len(live))
		for _, b := range live {
			processed += b.Processed
			failed += b.Failed
			active += b.Active
			if b.LastSuccess.After(last) {
				last = b.LastSuccess
			}
			workers = append(workers, b.ID)
		}
		data := map[string]any{"workers": workers, "processed": processed, "failed": failed, "active": active}
		if !last.IsZero() {
			data["last_success"] = last.UTC()
		}
		return Result{Status: Healthy, Description: "worker heartbeat seen", Data: data}
	})
}
