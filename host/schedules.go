package host

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/host/schedule"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker/task"
)

// scheduled is one periodic job, from Schedule or SCHEDULE.
type scheduled struct {
	name          string
	spec          schedule.Schedule
	kind          string
	payload       []byte
	opts          options
	skipIfRunning bool
	catchUp       bool
}

// Schedule runs args as a job at every tick of spec: a 5-field cron spec, a descriptor
// such as @hourly, or "@every 15m", with an optional CRON_TZ= or TZ= prefix (UTC
// without one; see package host/schedule for the arithmetic, daylight saving
// included). The job's id is "<name>@<tick unix seconds>", and every process of the
// app (serve, web and worker alike) enqueues each due tick: the first enqueue wins and
// the rest are no-ops, so N instances run a tick once, with no leader to lose.
//
// opts are Enqueue's (Queue, Timeout, MaxRetry) and the schedule's own: ScheduleName
// (default: the kind), SkipIfRunning, and NoCatchUp. By default the first instance to
// start after a tick that no instance was up for enqueues that latest missed tick,
// if it is younger than one period; never a backlog.
//
// Schedule panics on a bad spec, a name used twice, or after Run started; Run panics
// when the kind is not registered or args fail its Validate.
func (h *Host) Schedule(spec string, args Args, opts ...EnqueueOption) {
	h.mustNotBeFrozen("Schedule")
	s, err := schedule.Parse(spec)
	if err != nil {
		panic("host: Schedule: " + err.Error())
	}
	if args == nil {
		panic("host: Schedule: nil Args")
	}
	payload, err := json.Marshal(args)
	if err != nil {
		panic(fmt.Sprintf("host: Schedule: %T does not encode as JSON: %v", args, err))
	}
	e := &scheduled{spec: s, kind: args.Kind(), payload: payload, catchUp: true}
	for _, o := range opts {
		o.applyEnqueue(&e.opts)
	}
	e.name = cmp.Or(e.opts.schedule.name, e.kind)
	e.skipIfRunning, e.catchUp = e.opts.schedule.skipIfRunning, !e.opts.schedule.noCatchUp
	if slices.ContainsFunc(h.schedules, func(o *scheduled) bool { return o.name == e.name }) {
		panic(fmt.Sprintf("host: Schedule: name %q used twice; give one a ScheduleName", e.name))
	}
	h.schedules = append(h.schedules, e)
}

// scheduleOptions are a schedule's own choices.
type scheduleOptions struct {
	name          string
	skipIfRunning bool
	noCatchUp     bool
}

// ScheduleName names a schedule (1-100 letters, digits and ":._-"); its job ids are
// "<name>@<tick unix seconds>". The default is the task kind.
func ScheduleName(name string) EnqueueOption {
	return enqueueOption(func(o *options) { o.schedule.name = name })
}

// SkipIfRunning skips a tick while the previous tick's job is still pending, active or
// waiting to retry; the skip is logged and recorded on the schedule. Without it the
// tick runs anyway, and its job record notes the overlap.
func SkipIfRunning() EnqueueOption {
	return enqueueOption(func(o *options) { o.schedule.skipIfRunning = true })
}

// NoCatchUp turns off the catch-up of the latest missed tick at start.
func NoCatchUp() EnqueueOption {
	return enqueueOption(func(o *options) { o.schedule.noCatchUp = true })
}

// resolveSchedules returns the schedules of Schedule and of cfg.Schedules, checked
// against the registered kinds. A bad programmatic schedule panics (the program is
// wrong); every problem of SCHEDULE, and every kind whose default queue QUEUES lacks,
// is returned at once as a *config.Error.
func (h *Host) resolveSchedules(cfg config.Config, kinds map[string]*kind) ([]*scheduled, error) {
	var all []*scheduled
	for _, e := range h.schedules {
		k, ok := kinds[e.kind]
		if !ok && h.kinds[e.kind] != nil {
			continue // a demonstration kind, off in this run: so is its schedule
		}
		if !ok {
			panic(fmt.Sprintf("host: Schedule %q: kind %q is not registered", e.name, e.kind))
		}
		all = append(all, e)
		if !scheduleNameRe(e.name) {
			panic(fmt.Sprintf("host: Schedule: name %q must be 1-100 letters, digits or \":._-\"", e.name))
		}
		if _, _, err := k.prepare(e.payload); err != nil {
			panic(fmt.Sprintf("host: Schedule %q: %v", e.name, err))
		}
	}
	var problems []string
	// A kind's default queue is checked against QUEUES here, not at every Enqueue.
	for _, name := range h.kindNames() {
		if q := h.kinds[name].defaults.queue; q != "" {
			if _, ok := cfg.Queues[q]; !ok {
				problems = append(problems, fmt.Sprintf("QUEUES: task kind %s needs queue %q (its host.Queue default)", name, q))
			}
		}
	}
	for _, c := range cfg.Schedules {
		bad := func(format string, a ...any) {
			problems = append(problems, "SCHEDULE: "+c.Name+": "+fmt.Sprintf(format, a...))
		}
		s, err := schedule.Parse(c.Cron)
		if err != nil {
			bad("cron %v", err)
		}
		k, ok := kinds[c.Type]
		if !ok {
			bad("unknown type %q (registered: %v; demonstration kinds need DEMO_TASKS=true)", c.Type, h.kindNames())
		} else if _, _, err := k.prepare(c.Payload); err != nil {
			bad("%v", err)
		}
		if c.Queue != "" {
			if _, ok := cfg.Queues[c.Queue]; !ok {
				bad("queue %q is not in QUEUES", c.Queue)
			}
		}
		if slices.ContainsFunc(all, func(o *scheduled) bool { return o.name == c.Name }) {
			bad("name is also used by a schedule of the program")
		}
		if err == nil && ok {
			all = append(all, &scheduled{name: c.Name, spec: s, kind: c.Type, payload: c.Payload,
				opts: options{queue: c.Queue}, skipIfRunning: c.SkipIfRunning, catchUp: c.CatchUp == nil || *c.CatchUp})
		}
	}
	if len(problems) > 0 {
		return nil, &config.Error{Problems: problems}
	}
	return all, nil
}

func scheduleNameRe(name string) bool {
	return len(name) <= 100 && validKind(name)
}

// ticker enqueues the due ticks of every schedule. Start it once; Stop it once or
// more. Its goroutines (one per schedule) own nothing but their own timer.
type ticker struct {
	h       *Host
	d       *deps
	entries []*scheduled
	store   *storage.Schedules
	jobs    *storage.Jobs
	logger  *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// newTicker returns the ticker of entries on d.
func (h *Host) newTicker(d *deps, entries []*scheduled) *ticker {
	return &ticker{h: h, d: d, entries: entries, store: storage.NewSchedules(d.rdb), jobs: d.jobs,
		logger: d.logger.With("component", "schedule")}
}

// Start records each schedule as seen, catches up missed ticks, and starts one
// goroutine per schedule. Redis trouble is logged, not returned: ticks are retried.
func (tk *ticker) Start(ctx context.Context) error {
	ctx, tk.cancel = context.WithCancel(context.WithoutCancel(ctx))
	now := time.Now()
	for _, e := range tk.entries {
		if err := tk.store.Seen(ctx, e.name, now); err != nil {
			tk.logger.WarnContext(ctx, "record schedule", "schedule", e.name, "err", err)
		}
	}
	for _, e := range tk.entries {
		tk.wg.Add(1)
		go func() {
			defer tk.wg.Done()
			if e.catchUp {
				tk.catchUp(ctx, e, now)
			}
			tk.loop(ctx, e, now)
		}()
	}
	if len(tk.entries) > 0 {
		tk.logger.InfoContext(ctx, "schedules started", "schedules", len(tk.entries))
	}
	return nil
}

// Stop stops the ticks and waits for an enqueue in progress. Safe if never started.
func (tk *ticker) Stop() {
	if tk.cancel != nil {
		tk.cancel()
	}
	tk.wg.Wait()
}

// loop fires every tick of e after from until ctx is done.
func (tk *ticker) loop(ctx context.Context, e *scheduled, from time.Time) {
	for t := from; ; {
		next := e.spec.Next(t)
		if next.IsZero() {
			return
		}
		timer := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		tk.fire(ctx, e, next, "")
		t = next
	}
}

// catchUp enqueues the latest tick before now that no instance enqueued, if the
// schedule was already known then and the tick is younger than one period.
func (tk *ticker) catchUp(ctx context.Context, e *scheduled, now time.Time) {
	st, err := tk.store.Get(ctx, e.name)
	if err != nil {
		tk.logger.WarnContext(ctx, "read schedule", "schedule", e.name, "err", err)
		return
	}
	m, ok := e.spec.Prev(now)
	// Only ticks after the schedule was first seen: a new schedule has missed nothing.
	if !ok || !m.After(st.FirstSeen) || !m.After(st.LastTick) || now.Sub(m) >= e.spec.Period(m) {
		return
	}
	tk.logger.InfoContext(ctx, "catching up a missed tick", "schedule", e.name, "tick", m)
	tk.fire(ctx, e, m, "missed tick, enqueued at start")
}

// fire enqueues e's tick with its deterministic job id, once across every instance:
// a duplicate is another instance's enqueue. While Redis is away it retries until the
// tick is a period old.
func (tk *ticker) fire(ctx context.Context, e *scheduled, tick time.Time, note string) {
	log := tk.logger.With("schedule", e.name, "tick", tick.UTC())
	id := e.name + "@" + strconv.FormatInt(tick.Unix(), 10)
	giveUp := tick.Add(max(e.spec.Period(tick), time.Second))
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 2*time.Second) {
		err := tk.enqueueTick(ctx, e, tick, id, note, log)
		if err == nil || !errors.Is(err, task.ErrUnavailable) || ctx.Err() != nil || time.Now().After(giveUp) {
			if err != nil && ctx.Err() == nil {
				log.ErrorContext(ctx, "schedule tick not enqueued", "job_id", id, "err", err)
			}
			return
		}
		log.WarnContext(ctx, "schedule tick not enqueued yet; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (tk *ticker) enqueueTick(ctx context.Context, e *scheduled, tick time.Time, id, note string, log *slog.Logger) error {
	st, err := tk.store.Get(ctx, e.name)
	if err != nil {
		return fmt.Errorf("%w: %v", task.ErrUnavailable, err)
	}
	if !tick.After(st.LastTick) {
		return nil // enqueued (or skipped) already, by this instance or another
	}
	if st.LastJobID != "" {
		prev, err := tk.jobs.Get(ctx, st.LastJobID)
		if err == nil && unfinished(prev.State) {
			msg := fmt.Sprintf("previous run %s is still %s", prev.ID, prev.State)
			if e.skipIfRunning {
				log.InfoContext(ctx, "schedule tick skipped: "+msg+" (skip_if_running)")
				if err := tk.store.RecordTick(ctx, e.name, tick, "", msg); err != nil {
					return fmt.Errorf("%w: %v", task.ErrUnavailable, err)
				}
				return nil
			}
			note = cmp.Or(note+"; ", "") + msg + "; ran anyway (skip_if_running is off)"
			log.InfoContext(ctx, "schedule tick overlaps: "+msg+"; running it anyway")
		}
	}
	r := task.Request{ID: id, Kind: e.kind, Payload: e.payload, Queue: e.opts.queue, Timeout: e.opts.timeout,
		MaxRetry: e.opts.maxRetry, Schedule: e.name, Tick: tick.UTC(), Note: note}
	_, err = tk.h.submitTo(ctx, tk.d, r)
	switch {
	case errors.Is(err, task.ErrDuplicate):
		log.DebugContext(ctx, "schedule tick enqueued by another instance", "job_id", id)
	case err != nil:
		return err
	default:
		log.InfoContext(ctx, "schedule tick enqueued", "job_id", id)
	}
	if err := tk.store.RecordTick(ctx, e.name, tick, id, ""); err != nil {
		log.WarnContext(ctx, "record schedule tick", "err", err)
	}
	return nil
}

// unfinished reports whether a job in state may still run.
func unfinished(state string) bool {
	return state == storage.StatePending || state == storage.StateScheduled || state == storage.StateActive || state == storage.StateRetry
}

// scheduleViews answers GET /api/v1/schedules.
func (tk *ticker) scheduleViews(ctx context.Context) ([]web.ScheduleView, error) {
	now := time.Now()
	out := make([]web.ScheduleView, 0, len(tk.entries))
	for _, e := range tk.entries {
		st, err := tk.store.Get(ctx, e.name)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", task.ErrUnavailable, err)
		}
		v := web.ScheduleView{Name: e.name, Cron: e.spec.String(), Type: e.kind,
			Queue:         cmp.Or(e.opts.queue, cmp.Or(tk.d.kinds[e.kind].defaults.queue, defaultQueue(tk.d.cfg.Queues))),
			SkipIfRunning: e.skipIfRunning, CatchUp: e.catchUp, LastJobID: st.LastJobID}
		if n := e.spec.Next(now); !n.IsZero() {
			v.NextRunAt = &n
		}
		if !st.LastTick.IsZero() {
			v.LastRunAt = &st.LastTick
		}
		if st.LastJobID != "" {
			if j, err := tk.jobs.Get(ctx, st.LastJobID); err == nil {
				v.LastState = j.State
			} else if errors.Is(err, storage.ErrNotFound) {
				v.LastState = "expired"
			}
		} else if !st.SkippedTick.IsZero() {
			v.LastState = "skipped: " + st.SkipReason
		}
		out = append(out, v)
	}
	return out, nil
}

// check is the schedule health check, a dead man's switch: Degraded when a
// schedule's latest tick older than grace has no job, or a job that has not started.
func (tk *ticker) check(grace time.Duration) health.Checker {
	return health.CheckFunc(func(ctx context.Context) health.Result {
		now := time.Now()
		var late []string
		data := make(map[string]any, len(tk.entries))
		for _, e := range tk.entries {
			st, err := tk.store.Get(ctx, e.name)
			if err != nil {
				return health.Result{Status: health.Unhealthy, Description: "read schedules: " + err.Error(), Err: err}
			}
			p, ok := e.spec.Prev(now.Add(-grace))
			if !ok || st.FirstSeen.IsZero() || !p.After(st.FirstSeen) || p.Equal(st.SkippedTick) {
				data[e.name] = "ok"
				continue
			}
			id := e.name + "@" + strconv.FormatInt(p.Unix(), 10)
			j, err := tk.jobs.Get(ctx, id)
			switch {
			case errors.Is(err, storage.ErrNotFound) && p.After(st.LastTick):
				late = append(late, fmt.Sprintf("%s: tick %s has no job", e.name, p.UTC().Format(time.RFC3339)))
			case err == nil && (j.State == storage.StatePending || j.State == storage.StateScheduled):
				late = append(late, fmt.Sprintf("%s: job %s of tick %s has not started", e.name, id, p.UTC().Format(time.RFC3339)))
			default:
				data[e.name] = "ok"
				continue
			}
			data[e.name] = "late"
		}
		if len(late) > 0 {
			return health.Result{Status: health.Degraded, Description: fmt.Sprintf("%d of %d schedules late by more than %v: %v", len(late), len(tk.entries), grace, late), Data: data}
		}
		return health.Result{Status: health.Healthy, Description: fmt.Sprintf("schedules on time: %d", len(tk.entries)), Data: data}
	})
}
