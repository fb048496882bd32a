package health

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/shoestring-go/shoestring/storage"
)

// SelfCheck is always Healthy: if it runs, the process answers. Its data shows the
// process id, uptime in seconds and goroutine count.
func SelfCheck(started time.Time) Checker {
	pid := os.Getpid()
	return CheckFunc(func(context.Context) Result {
		up := time.Since(started).Seconds()
		return Result{Status: Healthy, Observed: &Observation{Value: up, Unit: "s"}, Data: map[string]any{
			"pid": pid, "uptime_s": int64(up), "goroutines": runtime.NumGoroutine(),
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
		obs := &Observation{Value: rtt, Unit: "ms"}
		if err != nil {
			return Result{Status: Unhealthy, Description: "ping: " + err.Error(), Err: err, Observed: obs, Data: map[string]any{"rtt_ms": rtt}}
		}
		return Result{Status: Healthy, Observed: obs, Data: map[string]any{"rtt_ms": rtt}}
	})
}

// StorageCheck is Healthy when accessible reports the blob store reachable.
func StorageCheck(accessible func(context.Context) (bool, error)) Checker {
	return CheckFunc(func(ctx context.Context) Result {
		ok, err := accessible(ctx)
		switch {
		case err != nil:
			return Result{Status: Unhealthy, Description: "blob store: " + err.Error(), Err: err}
		case !ok:
			return Result{Status: Unhealthy, Description: "blob store not accessible"}
		}
		return Result{Status: Healthy}
	})
}

// Backlog is the work waiting in the queues: how many tasks are pending, and the age
// of the oldest, per queue and in total.
type Backlog struct {
	Pending int64
	Oldest  time.Duration
	Queues  map[string]QueueBacklog
}

// QueueBacklog is one queue's share of a Backlog.
type QueueBacklog struct {
	Pending int64         `json:"pending"`
	Oldest  time.Duration `json:"-"`
}

// BacklogFunc reads the Backlog (asynq's Inspector, in shoestring).
type BacklogFunc func(ctx context.Context) (Backlog, error)

// WorkerCheck judges the workers from their heartbeats in Redis, so it works the same in
// combined and split mode:
//   - no heartbeat younger than ttl: Unhealthy;
//   - no task waiting: Healthy, however long since the last completion (an idle worker
//     is a healthy one);
//   - tasks waiting and none completed (nor a worker started) for staleAfter: Degraded;
//     for twice staleAfter: Unhealthy (staleAfter 0: neither, tasks waiting or not).
//
// Data: the live workers, processed, failed and active counts, last_success and
// since_last_success_s, and pending.
func WorkerCheck(beats *storage.Heartbeats, ttl time.Duration, backlog BacklogFunc, staleAfter time.Duration) Checker {
	return CheckFunc(func(ctx context.Context) Result {
		now := time.Now()
		live, err := beats.Live(ctx, now.Add(-ttl))
		if err != nil {
			return Result{Status: Unhealthy, Description: "read heartbeats: " + err.Error(), Err: err}
		}
		if len(live) == 0 {
			return Result{Status: Unhealthy, Description: "no live worker heartbeat"}
		}
		var processed, failed, active int64
		var lastSuccess, progress time.Time // progress: last completion or worker start
		var hung []string
		var degraded *storage.WorkerBeat
		workers := make([]string, 0, len(live))
		for _, b := range live {
			hung = append(hung, b.Hung...)
			if b.Degraded {
				degraded = &b
			}
			processed += b.Processed
			failed += b.Failed
			active += b.Active
			if b.LastSuccess.After(lastSuccess) {
				lastSuccess = b.LastSuccess
			}
			if b.StartedAt.After(progress) {
				progress = b.StartedAt
			}
			workers = append(workers, b.ID)
		}
		if lastSuccess.After(progress) {
			progress = lastSuccess
		}
		data := map[string]any{"workers": workers, "processed": processed, "failed": failed, "active": active}
		if !lastSuccess.IsZero() {
			data["last_success"] = lastSuccess.UTC()
			data["since_last_success_s"] = int64(now.Sub(lastSuccess).Seconds())
		}
		if len(hung) > 0 {
			data["hung"] = hung
			return Result{Status: Unhealthy, Data: data,
				Description: fmt.Sprintf("task(s) %s still running past deadline + HANG_GRACE: the handler ignores cancellation", strings.Join(hung, ", "))}
		}
		if degraded != nil {
			return Result{Status: Degraded, Data: data,
				Description: fmt.Sprintf("worker %s: throughput collapsed to %.0f per window against a baseline of %.1f, with work waiting",
					degraded.ID, degraded.Rate, degraded.Baseline)}
		}
		bl, err := backlog(ctx)
		if err != nil {
			return Result{Status: Unhealthy, Description: "read queues: " + err.Error(), Err: err, Data: data}
		}
		data["pending"] = bl.Pending
		if bl.Pending == 0 {
			return Result{Status: Healthy, Description: fmt.Sprintf("%d worker(s) live; no task waiting", len(live)), Data: data}
		}
		stalled := now.Sub(progress)
		switch {
		case staleAfter <= 0:
			return Result{Status: Healthy, Description: fmt.Sprintf("%d worker(s) live; %d task(s) waiting", len(live), bl.Pending), Data: data}
		case stalled >= 2*staleAfter:
			return Result{Status: Unhealthy, Data: data,
				Description: fmt.Sprintf("%d task(s) waiting and none completed for %v", bl.Pending, stalled.Round(time.Second))}
		case stalled >= staleAfter:
			return Result{Status: Degraded, Data: data,
				Description: fmt.Sprintf("%d task(s) waiting and none completed for %v", bl.Pending, stalled.Round(time.Second))}
		}
		return Result{Status: Healthy, Description: fmt.Sprintf("%d worker(s) live, completing work", len(live)), Data: data}
	})
}

// QueueCheck compares the age of the oldest pending task with warn (Degraded) and fail
// (Unhealthy); 0 turns a threshold off. Data: pending and oldest_pending_s, in total
// and per queue.
func QueueCheck(backlog BacklogFunc, warn, fail time.Duration) Checker {
	return CheckFunc(func(ctx context.Context) Result {
		bl, err := backlog(ctx)
		if err != nil {
			return Result{Status: Unhealthy, Description: "read queues: " + err.Error(), Err: err}
		}
		queues := make(map[string]any, len(bl.Queues))
		for name, q := range bl.Queues {
			queues[name] = map[string]any{"pending": q.Pending, "oldest_pending_s": q.Oldest.Seconds()}
		}
		data := map[string]any{"pending": bl.Pending, "oldest_pending_s": bl.Oldest.Seconds(), "queues": queues}
		desc := fmt.Sprintf("oldest pending task waited %v", bl.Oldest.Round(time.Millisecond))
		res := Result{Status: Healthy, Description: desc, Data: data, Observed: &Observation{Value: bl.Oldest.Seconds(), Unit: "s"}}
		switch {
		case fail > 0 && bl.Oldest >= fail:
			res.Status, res.Description = Unhealthy, desc+fmt.Sprintf(" (fail at %v)", fail)
		case warn > 0 && bl.Oldest >= warn:
			res.Status, res.Description = Degraded, desc+fmt.Sprintf(" (warn at %v)", warn)
		}
		return res
	})
}
