package worker

import (
	"bytes"
	"context"
	"os"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/storage"
)

// WatchdogConfig sets what the worker's watchdog looks for: what a platform cannot see
// of a process that is alive but not working.
type WatchdogConfig struct {
	// HangGrace: a task still running this long past its deadline has a handler that
	// ignores cancellation. 0 turns hang detection off.
	HangGrace time.Duration
	// DegradedRatio: completions in the last Window below this fraction of the mean of
	// the ten Windows before it (not counting collapsed ones), while tasks are waiting,
	// is Degraded. 0 turns it off.
	DegradedRatio float64
	// DegradedFor: Degraded this long, and the worker recycles (0: as soon as it is).
	DegradedFor time.Duration
	// Window is the throughput window; default 1 minute.
	Window time.Duration
	// MaxRSS in bytes: resident memory past it recycles the worker between tasks. 0: off.
	MaxRSS int64
	// OnRecycle is called once, from the watchdog goroutine, when the worker must be
	// recycled; reason says why. The caller stops the worker (gracefully: in-flight
	// tasks finish or go back to their queue) and exits for a fresh process.
	OnRecycle func(reason string)
}

// Why a worker recycles, as its supervisor is told (Supervision.OnRecycle).
const (
	RecycleHung       = "hung"       // a handler ran past its deadline plus HangGrace
	RecycleThroughput = "throughput" // completions collapsed with work waiting, for DegradedFor
	RecycleRSS        = "rss"        // resident memory over MaxRSS
	RecycleWedged     = "wedged"     // the heartbeat stopped while the process lived: killed by the supervisor
)

// recycleRecordTTL is how long a recycling worker's reason waits for its supervisor:
// past the longest stop (SHUTDOWN_TIMEOUT of at most 10 min, plus as long again before
// a kill).
const recycleRecordTTL = 30 * time.Minute

// baselineWindows is how many windows before the current one make the baseline, and
// minBaseline the completions they must hold for a collapse to mean anything.
const (
	baselineWindows = 10
	minBaseline     = 10
)

// running is one delivery of a task a handler is working on.
type running struct {
	id       string
	started  time.Time
	deadline time.Time // zero: none
}

// watchState is the watchdog's verdict, read by the heartbeat.
type watchState struct {
	hung          []string
	degraded      bool
	degradedSince time.Time
	rate          float64
	baseline      float64
	rss           int64
	recycle       string
	recycleKind   string // one of the Recycle constants
}

// watchdog checks the worker every tick. It owns the window ring; mu guards the rest.
type watchdog struct {
	cfg     WatchdogConfig
	w       *Worker
	ins     *asynq.Inspector
	windows []int64 // completions per finished, not collapsed window, oldest first
	lastAt  time.Time
	lastN   int64

	mu      sync.Mutex
	tasks   map[string]running // by delivery: a hung attempt and its retry are two
	state   watchState
	recycle sync.Once
}

func newWatchdog(cfg WatchdogConfig, w *Worker) *watchdog {
	if cfg.Window <= 0 {
		cfg.Window = time.Minute
	}
	return &watchdog{cfg: cfg, w: w, ins: asynq.NewInspectorFromRedisClient(w.rdb), tasks: make(map[string]running)}
}

// begin records that delivery (unique per attempt) of task id started.
func (d *watchdog) begin(ctx context.Context, delivery, id string) {
	r := running{id: id, started: time.Now()}
	if dl, ok := ctx.Deadline(); ok {
		r.deadline = dl
	}
	d.mu.Lock()
	d.tasks[delivery] = r
	d.mu.Unlock()
}

func (d *watchdog) end(delivery string) {
	d.mu.Lock()
	delete(d.tasks, delivery)
	d.mu.Unlock()
}

func (d *watchdog) snapshot() watchState {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.state
	s.hung = slices.Clone(s.hung)
	return s
}

// run checks every tick until ctx is done.
func (d *watchdog) run(ctx context.Context) {
	tick := min(d.cfg.Window, time.Second)
	if d.cfg.HangGrace > 0 {
		tick = min(tick, d.cfg.HangGrace/2)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	d.lastAt, d.lastN = time.Now(), d.w.processed.Load()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			d.check(ctx, now)
		}
	}
}

func (d *watchdog) check(ctx context.Context, now time.Time) {
	var reasons, kinds []string

	// Hangs: asynq gives up on a task at its deadline, but a handler that ignores
	// cancellation keeps running (and holding whatever it holds) for ever.
	var hung []string
	if d.cfg.HangGrace > 0 {
		d.mu.Lock()
		for _, r := range d.tasks {
			if !r.deadline.IsZero() && now.After(r.deadline.Add(d.cfg.HangGrace)) {
				hung = append(hung, r.id)
			}
		}
		d.mu.Unlock()
		slices.Sort(hung)
		if len(hung) > 0 {
			reasons = append(reasons, "task "+hung[0]+" still running "+d.cfg.HangGrace.String()+" past its deadline (its handler ignores cancellation)")
			kinds = append(kinds, RecycleHung)
		}
	}

	// Throughput, per finished window.
	d.mu.Lock()
	st := d.state
	d.mu.Unlock()
	if now.Sub(d.lastAt) >= d.cfg.Window {
		n := d.w.processed.Load()
		c := n - d.lastN
		d.lastAt, d.lastN = now, n
		st.rate = float64(c)
		st.degraded = false
		if len(d.windows) == baselineWindows && d.cfg.DegradedRatio > 0 {
			var sum int64
			for _, w := range d.windows {
				sum += w
			}
			st.baseline = float64(sum) / baselineWindows
			st.degraded = sum >= minBaseline && st.rate < d.cfg.DegradedRatio*st.baseline && d.waiting()
		}
		// A collapsed window stays out of the baseline, so the baseline does not decay
		// into the collapse it is meant to expose; idle windows do go in.
		if !st.degraded {
			d.windows = append(d.windows, c)
			if len(d.windows) > baselineWindows {
				d.windows = d.windows[1:]
			}
		}
		if !st.degraded {
			st.degradedSince = time.Time{}
		} else if st.degradedSince.IsZero() {
			st.degradedSince = now
			d.w.logger.WarnContext(ctx, "watchdog: throughput collapsed with work waiting",
				"completions", st.rate, "baseline", st.baseline, "window", d.cfg.Window)
		}
	}
	if st.degraded && now.Sub(st.degradedSince) >= d.cfg.DegradedFor {
		reasons = append(reasons, "throughput below "+strconv.FormatFloat(d.cfg.DegradedRatio, 'g', -1, 64)+
			" of its baseline for "+d.cfg.DegradedFor.String())
		kinds = append(kinds, RecycleThroughput)
	}

	if d.cfg.MaxRSS > 0 {
		st.rss = residentBytes()
		if st.rss > d.cfg.MaxRSS {
			reasons = append(reasons, "resident memory "+strconv.FormatInt(st.rss>>20, 10)+" MiB over WORKER_MAX_RSS "+
				strconv.FormatInt(d.cfg.MaxRSS>>20, 10)+" MiB")
			kinds = append(kinds, RecycleRSS)
		}
	}

	st.hung = hung
	if len(reasons) > 0 && st.recycle == "" {
		st.recycle, st.recycleKind = reasons[0], kinds[0]
	}
	d.mu.Lock()
	d.state = st
	d.mu.Unlock()
	if st.recycle != "" && d.cfg.OnRecycle != nil {
		d.recycle.Do(func() {
			d.w.logger.ErrorContext(ctx, "watchdog: recycling the worker", "reason", st.recycle)
			// Tell the web tier at once rather than at the next beat.
			if err := d.w.beat(ctx); err != nil {
				d.w.logger.WarnContext(ctx, "heartbeat", "err", err)
			}
			// The supervisor counts the recycle once this process is gone; the heartbeat
			// is removed by then.
			if err := d.w.beats.MarkRecycled(ctx, d.w.id, st.recycleKind, recycleRecordTTL); err != nil {
				d.w.logger.WarnContext(ctx, "record recycle", "err", err)
			}
			d.cfg.OnRecycle(st.recycle)
		})
	}
}

// waiting reports whether any served queue has tasks pending.
func (d *watchdog) waiting() bool {
	for q := range d.w.cfg.Queues {
		if qi, err := d.ins.GetQueueInfo(q); err == nil && qi.Pending > 0 {
			return true
		}
	}
	return false
}

// residentBytes is this process's resident set size, from /proc/self/statm (Linux;
// 0 elsewhere).
func residentBytes() int64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// watchBeat copies the watchdog's verdict into a heartbeat.
func (d *watchdog) watchBeat(b *storage.WorkerBeat) {
	s := d.snapshot()
	b.Hung, b.Degraded, b.DegradedSince = s.hung, s.degraded, s.degradedSince
	b.Rate, b.Baseline, b.RSS, b.Recycle = s.rate, s.baseline, s.rss, s.recycle
}
