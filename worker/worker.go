// Package worker runs tasks: the asynq server with shoestring's task handlers, the
// checkpoints that let long work resume, the heartbeat that tells the web tier a worker
// is alive, and the supervisor with which the combined-mode parent runs its child.
package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage"
)

// Heartbeat timing: a worker beats every HeartbeatInterval; its beat is considered live
// for HeartbeatTTL (several missed beats), after which it counts as dead.
const (
	HeartbeatInterval = 2 * time.Second
	HeartbeatTTL      = 10 * time.Second
)

// Pulse timing: besides its heartbeat, a worker pulses every PulseInterval, and its
// pulse lives PulseTTL in Redis. A worker whose pulse has lapsed (five pulses missed in
// a row) is dead for every process's Reaper, which requeues its tasks: a dead worker's
// tasks run again within seconds in split mode too, where no supervisor watches it.
// Only a worker stalled for more than 2.5 s (Redis unreachable from it alone, the
// process frozen) can be taken for dead while alive; its tasks then run again
// elsewhere, which at-least-once delivery allows, and its outcome of a superseded
// attempt is discarded (storage.ErrStaleAttempt).
const (
	PulseInterval = 500 * time.Millisecond
	PulseTTL      = 3 * time.Second
)

// Config is what a worker process needs beyond its dependencies. New gives its zero
// fields the defaults below.
type Config struct {
	// Concurrency is how many tasks the process runs at once; 0 means
	// DefaultConcurrency.
	Concurrency int
	// Fetchers is how many asynq servers share Concurrency, each with its own fetch
	// loop (asynq fetches one task per Redis round trip); 0 or 1 is one.
	Fetchers int
	// Queues maps the queues served to their weights; nil or empty means
	// {"default": 1}.
	Queues map[string]int
	// ShutdownTimeout is how long in-flight tasks get to finish on Stop, then are
	// requeued; 0 means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Retention is the lifetime of job records and checkpoints after their last
	// change; 0 means DefaultRetention.
	Retention time.Duration
	LogLevel  slog.Level
	Watchdog  WatchdogConfig
	// ID is the id the worker beats and indexes its tasks under; empty: a new one
	// (storage.NewWorkerID). A supervisor gives its child one, to know it by.
	ID string
	// Metrics is told the outcome of every task attempt; nil: none is.
	Metrics Metrics
}

// Defaults of Config's zero fields: those of the settings WORKER_CONCURRENCY,
// SHUTDOWN_TIMEOUT and JOB_RETENTION. (The host gives its worker the drain part of
// SHUTDOWN_TIMEOUT; a Worker on its own gets the whole.)
const (
	DefaultConcurrency     = 10
	DefaultShutdownTimeout = 25 * time.Second
	DefaultRetention       = 168 * time.Hour
)

// Metrics receives the outcome of each task attempt whose outcome was recorded:
// outcome is one of the Outcome constants, took how long the handler ran. It is called
// from task goroutines, concurrently; *telemetry.Jobs is one.
type Metrics interface {
	TaskDone(typ, queue, outcome string, took time.Duration)
}

// Task attempt outcomes, as Metrics receives them.
const (
	OutcomeCompleted   = "completed"
	OutcomeFailed      = "failed"      // no retries left, or SkipRetry
	OutcomeRetried     = "retried"     // asynq runs it again after its backoff
	OutcomeInterrupted = "interrupted" // cut short by a shutdown, back in its queue
)

// Task is one delivery of a task to a Handler.
type Task struct {
	ID      string // the job id, as GET /api/v1/jobs/{id} knows it
	Type    string // the task kind, e.g. "image:thumbnail"
	Queue   string
	Payload []byte // the JSON arguments, as enqueued
	Attempt int    // 1 for the first run, counting runs interrupted by a crash or shutdown
	// Retried is how many times the task was retried after an error, of at most
	// MaxRetry: when Retried == MaxRetry, an error fails it for good.
	Retried, MaxRetry int
	// Checkpoint is the task's durable progress: Load it first, Save after each unit.
	Checkpoint *Checkpoint
}

// SkipRetry, wrapped in a handler's error (fmt.Errorf("...: %w", worker.SkipRetry)),
// fails the task at once, whatever retries it has left: for input that no retry can
// fix. It is asynq's SkipRetry.
var SkipRetry = asynq.SkipRetry

// errRecordLost marks a task whose work succeeded but whose outcome could not be
// recorded (Redis trouble): it is retried after a second, not asynq's backoff.
var errRecordLost = errors.New("outcome not recorded")

// retryDelay is asynq's default backoff, except a second for errRecordLost.
func retryDelay(n int, err error, t *asynq.Task) time.Duration {
	if errors.Is(err, errRecordLost) {
		return time.Second
	}
	return asynq.DefaultRetryDelayFunc(n, err, t)
}

// Handler does the work of one task and returns its result, which is stored
// JSON-encoded in the job record. An error wrapping SkipRetry fails the task at once; any other error retries it while its retry budget lasts. Handlers must honour
// ctx (it is cancelled at the task's deadline and when a shutdown runs out of time) and
// be idempotent: delivery is at-least-once.
type Handler func(ctx context.Context, t *Task) (any, error)

// Worker is one worker process's task runner. Start it once; Stop it once or more.
type Worker struct {
	cfg      Config
	rdb      redis.UniversalClient
	jobs     *storage.Jobs
	beats    *storage.Heartbeats
	inflight *storage.InFlight
	watch    *watchdog
	logger   *slog.Logger
	id       string

	srvs   []*asynq.Server // the fetchers; started by Start, shut down together by Stop
	routes map[string]Handler

	// aborted is set when a Stop's ShutdownTimeout has run out: asynq then requeues the
	// tasks still running and cancels their contexts, and their records go back to pending.
	aborted  atomic.Bool
	handlers sync.WaitGroup // running task handlers, so Stop can wait for their records
	hmu      sync.Mutex     // orders handlers.Add before Stop's Wait
	waiting  bool           // Stop is waiting on handlers: no more Add; guarded by hmu
	// running counts the handlers of each task id, from before their job's start to
	// after their outcome's write: RequeueStranded leaves those tasks alone.
	rmu     sync.Mutex
	running map[string]int
	// Counters, written by task goroutines, read by the heartbeat goroutine.
	active, processed, failed atomic.Int64
	lastSuccess               atomic.Int64 // unix nanoseconds

	startedAt time.Time
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the heartbeat goroutine
	stopOnce  sync.Once
	started   bool
}

// New returns a worker that serves cfg.Queues on rdb, with no handlers yet: add them
// with Handle before Start. A nil logger logs nothing. A task of a kind with no handler
// fails its attempt and is retried with backoff, as a rolling deploy may bring a
// worker that knows it.
//
// It installs two hooks on rdb, which stay after Stop: storage.InFlight.StartAtFetch's,
// which starts each job in the script that fetches its task, and RideAlong's, which
// lets task outcomes travel with asynq's script calls. Give each Worker a client of
// its own (with two on one client, jobs are started apart from their fetches), and
// run no other asynq server on cfg.Queues through it.
func New(cfg Config, rdb redis.UniversalClient, logger *slog.Logger) *Worker {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = DefaultConcurrency
	}
	if len(cfg.Queues) == 0 {
		cfg.Queues = map[string]int{"default": 1}
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	logger = orDiscard(logger)
	host, _ := os.Hostname()
	if cfg.ID == "" {
		cfg.ID = storage.NewWorkerID(host, os.Getpid())
	}
	jobs := storage.NewJobs(rdb, cfg.Retention, slices.Sorted(maps.Keys(cfg.Queues))...)
	w := &Worker{
		cfg:      cfg,
		rdb:      rdb,
		jobs:     jobs,
		beats:    storage.NewHeartbeats(rdb),
		inflight: storage.NewInFlight(rdb, jobs),
		logger:   logger,
		id:       cfg.ID,
	}
	if h := w.inflight.StartAtFetch(w.id); h != nil {
		// A task's fetch starts its job too; first, so the fetch can carry writes below.
		rdb.AddHook(h)
	}
	if h := w.inflight.RideAlong(); h != nil {
		// Task outcomes (and the starts Begin makes) travel with asynq's fetches where
		// they can.
		rdb.AddHook(h)
	}
	w.watch = newWatchdog(cfg.Watchdog, w)
	w.routes = make(map[string]Handler)
	return w
}

// Handle registers h for task kind typ, replacing any earlier one. Call it before
// Start; it is not safe to call concurrently with anything else.
func (w *Worker) Handle(typ string, h Handler) { w.routes[typ] = h }

// ID is the id this worker's heartbeat and in-flight index are recorded under.
func (w *Worker) ID() string { return w.id }

// Activity returns how many tasks have ended (completed or failed an attempt) since
// Start, and how many are running now: polled, it tells a worker that has sat idle.
// Safe for concurrent use.
func (w *Worker) Activity() (ended, running int64) {
	return w.processed.Load() + w.failed.Load(), w.active.Load()
}

// Start starts the asynq server and the heartbeat, and returns once tasks are being
// fetched. Errors: Redis unreachable, or a second Start.
func (w *Worker) Start(ctx context.Context) error {
	if w.started {
		return errors.New("worker already started")
	}
	w.startedAt = time.Now()
	// Each server fetches one task per round trip; several share the concurrency so
	// that fetching is not the bottleneck (issue 10's measurement).
	fetchers := min(max(w.cfg.Fetchers, 1), w.cfg.Concurrency)
	for i := range fetchers {
		conc := w.cfg.Concurrency / fetchers
		if i < w.cfg.Concurrency%fetchers {
			conc++
		}
		w.srvs = append(w.srvs, asynq.NewServerFromRedisClient(w.rdb, asynq.Config{
			Concurrency:     conc,
			Queues:          w.cfg.Queues,
			ShutdownTimeout: w.cfg.ShutdownTimeout,
			Logger:          asynqLogger{w.logger.With("component", "asynq")},
			LogLevel:        asynqLevel(w.cfg.LogLevel),
			// asynq polls; 1 s (its default) adds up to 1.5 s of latency to every task
			// enqueued while the worker is idle.
			TaskCheckInterval:        250 * time.Millisecond,
			DelayedTaskCheckInterval: time.Second,
			RetryDelayFunc:           retryDelay,
		}))
	}
	// Exact kinds, not asynq.ServeMux's prefix match, under which "report" would also
	// serve "report:v2".
	wrapped := make(map[string]asynq.Handler, len(w.routes))
	for typ, h := range w.routes {
		wrapped[typ] = w.wrap(h)
	}
	// Retried, not failed: in a rolling deploy a newer worker may know the kind.
	unknown := w.wrap(func(ctx context.Context, t *Task) (any, error) {
		return nil, fmt.Errorf("no handler for task kind %q in this worker (%s)", t.Type, w.id)
	})
	route := asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		if h, ok := wrapped[t.Type()]; ok {
			return h.ProcessTask(ctx, t)
		}
		return unknown.ProcessTask(ctx, t)
	})
	// The first beat before the first fetch: a supervisor that finds no other live
	// worker may take every active task for its dead child's, and the parent turns
	// Ready on it.
	if err := w.beat(ctx); err != nil {
		w.logger.WarnContext(ctx, "first heartbeat", "err", err)
	}
	if err := w.beats.Pulse(ctx, w.id, PulseTTL); err != nil {
		w.logger.WarnContext(ctx, "first pulse", "err", err)
	}
	for i, srv := range w.srvs {
		if err := srv.Start(route); err != nil {
			for _, started := range w.srvs[:i] {
				started.Shutdown()
			}
			return fmt.Errorf("start asynq server: %w", err)
		}
	}
	w.started = true
	ctx, w.cancel = context.WithCancel(context.WithoutCancel(ctx))
	w.wg.Add(4)
	go w.every(ctx, HeartbeatInterval, "heartbeat", slog.LevelWarn, w.beat)
	go w.every(ctx, PulseInterval, "pulse", slog.LevelDebug, w.pulse)
	go w.every(ctx, strandedInterval, "requeue stranded tasks", slog.LevelWarn, w.requeueStranded)
	go func() {
		defer w.wg.Done()
		w.watch.run(ctx)
	}()
	w.logger.InfoContext(ctx, "worker started", "worker_id", w.id, "concurrency", w.cfg.Concurrency, "fetchers", len(w.srvs), "queues", w.cfg.Queues)
	return nil
}

// abortGrace is how long Stop waits, after asynq has requeued the tasks still running
// at the end of ShutdownTimeout, for their handlers to see the cancellation and return,
// so their records say pending. A handler that ignores cancellation is abandoned.
const abortGrace = 500 * time.Millisecond

// Stop stops fetching, gives in-flight tasks ShutdownTimeout to finish, requeues the
// rest, and removes the heartbeat. It returns within about ShutdownTimeout + 1.5 s;
// safe if never started or called twice.
func (w *Worker) Stop() {
	w.stopOnce.Do(func() {
		if !w.started {
			return
		}
		// asynq aborts the tasks still running when its ShutdownTimeout ends.
		abort := time.AfterFunc(w.cfg.ShutdownTimeout, func() { w.aborted.Store(true) })
		var shut sync.WaitGroup
		for _, srv := range w.srvs {
			shut.Go(srv.Shutdown) // together: each may wait its ShutdownTimeout
		}
		shut.Wait()
		abort.Stop()
		w.hmu.Lock()
		w.waiting = true
		w.hmu.Unlock()
		handlersDone := make(chan struct{})
		go func() { w.handlers.Wait(); close(handlersDone) }()
		select {
		case <-handlersDone:
		case <-time.After(abortGrace):
			w.logger.Warn("a task handler ignored cancellation; its job record may say active until it is retried")
		}
		w.cancel()
		w.wg.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := w.inflight.FlushCompletions(ctx); err != nil {
			w.logger.Warn("count completions", "err", err)
		}
		if err := w.beats.Remove(ctx, w.id); err != nil {
			w.logger.Warn("remove heartbeat", "err", err)
		}
		w.logger.Info("worker stopped", "processed", w.processed.Load(), "failed", w.failed.Load())
	})
}

// every calls fn every d until ctx is done; it runs in its own goroutine, counted in
// w.wg. An error is logged at level unless ctx is done.
func (w *Worker) every(ctx context.Context, d time.Duration, what string, level slog.Level, fn func(context.Context) error) {
	defer w.wg.Done()
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				w.logger.Log(ctx, level, what, "err", err)
			}
		}
	}
}

// pulse keeps the worker's pulse alive (see PulseTTL) and adds the completions
// counted since the last pulse to Redis's, each call bounded to 1 s.
func (w *Worker) pulse(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	return errors.Join(w.beats.Pulse(ctx, w.id, PulseTTL), w.inflight.FlushCompletions(ctx))
}

func (w *Worker) beat(ctx context.Context) error {
	host, _ := os.Hostname()
	b := storage.WorkerBeat{
		ID: w.id, Host: host, PID: os.Getpid(), StartedAt: w.startedAt, BeatAt: time.Now(),
		Concurrency: w.cfg.Concurrency, Pulse: true,
		Active: w.active.Load(), Processed: w.processed.Load(), Failed: w.failed.Load(),
	}
	if ns := w.lastSuccess.Load(); ns != 0 {
		b.LastSuccess = time.Unix(0, ns)
	}
	w.watch.watchBeat(&b)
	ctx, cancel := context.WithTimeout(ctx, HeartbeatInterval)
	defer cancel()
	return w.beats.Beat(ctx, b, HeartbeatTTL)
}

// wrap turns a Handler into an asynq handler that keeps the job record true: active
// with the attempt counted on start; completed with the result, retry, failed, or back
// to pending when a shutdown interrupted it. A job whose record already says completed
// is acknowledged without running again.
func (w *Worker) wrap(h Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, at *asynq.Task) (err error) {
		id, _ := asynq.GetTaskID(ctx)
		queue, _ := asynq.GetQueueName(ctx)
		log := &taskLog{base: w.logger, id: id, typ: at.Type(), queue: queue}
		// Held from before its start to after its outcome: RequeueStranded leaves it alone.
		w.hold(id, 1)
		defer w.hold(id, -1)

		// The record says active, and the index says this worker runs it (the supervisor
		// requeues what is in the index if the process dies): done by the fetch, or else
		// in one round trip now.
		attempt, started, err := w.inflight.Started(id)
		if !started {
			err = retryRedis(ctx, log, "record task start", func() (err error) {
				attempt, err = w.inflight.Begin(ctx, w.id, id, at.Type(), queue, time.Now())
				return err
			})
		}
		if errors.Is(err, storage.ErrCompleted) {
			log.get().InfoContext(ctx, "task already completed; not running it again")
			return nil
		}
		if err != nil {
			return err // Redis trouble: let asynq retry the delivery
		}
		w.hmu.Lock()
		tracked := !w.waiting
		if tracked {
			w.handlers.Add(1)
		}
		w.hmu.Unlock()
		if tracked {
			defer w.handlers.Done()
		}
		w.active.Add(1)
		defer w.active.Add(-1)
		delivery := id + "#" + strconv.Itoa(attempt)
		w.watch.begin(ctx, delivery, id)
		cp := &Checkpoint{rdb: w.rdb, jobs: w.jobs, id: id, queue: queue, ttl: w.cfg.Retention}
		t := &Task{ID: id, Type: at.Type(), Queue: queue, Payload: at.Payload(), Attempt: attempt, Checkpoint: cp}
		t.Retried, _ = asynq.GetRetryCount(ctx)
		t.MaxRetry, _ = asynq.GetMaxRetry(ctx)

		start := time.Now()
		if w.logger.Enabled(ctx, slog.LevelDebug) {
			log.get().DebugContext(ctx, "task started", "attempt", attempt)
		}
		result, err := runHandler(ctx, h, t)
		w.watch.end(delivery)
		rerr := w.record(ctx, log, t, result, err, time.Since(start))
		if err == nil && rerr != nil {
			rerr = fmt.Errorf("%w: %v", errRecordLost, rerr)
			// The work is done but its record is not: have asynq deliver it again rather
			// than leave the job active forever. Handlers are idempotent, and a
			// checkpointed one redoes nothing.
			return rerr
		}
		return err
	})
}

// hold adds d to the handlers running task id.
func (w *Worker) hold(id string, d int) {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	if w.running == nil {
		w.running = make(map[string]int)
	}
	if w.running[id] += d; w.running[id] <= 0 {
		delete(w.running, id)
	}
}

// busy reports whether a handler of task id runs.
func (w *Worker) busy(id string) bool {
	w.rmu.Lock()
	defer w.rmu.Unlock()
	return w.running[id] > 0
}

// A worker looks for tasks in its in-flight index that it does not hold every
// strandedInterval, and requeues those it has not held for strandedAfter
// (storage.InFlight.RequeueStranded): longer than a fetch's reply can take (go-redis:
// a 4 s wait for a connection, a 2 s dial, a 3 s write and a 3 s read, twice).
var (
	strandedInterval = 5 * time.Second
	strandedAfter    = 30 * time.Second
)

// requeueStranded gives back the tasks a lost fetch reply left in this worker's
// index, each call bounded to 5 s.
func (w *Worker) requeueStranded(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	out, err := w.inflight.RequeueStranded(ctx, w.id, "taken by a fetch whose reply was lost, or never handled", strandedAfter, w.busy)
	for _, r := range out {
		msg := "stranded task requeued"
		if !r.Requeued() {
			// Archived (interrupted too often), or asynq had moved it on already: done,
			// retry, or gone. Its index entry is dropped all the same.
			msg = "stranded task not requeued"
		}
		w.logger.WarnContext(ctx, msg, "job_id", r.ID, "queue", r.Queue, "state", r.State)
	}
	return err
}

// taskLog is one task's logger, made on first use. A task that goes well logs one
// line, which names the task by itself (see record), and slog's With formats its
// attributes up front at a cost greater than that line's. Only the task's goroutine
// uses it.
type taskLog struct {
	base           *slog.Logger
	id, typ, queue string
	l              *slog.Logger
}

// attrs are the attributes that name the task on each of its lines, then more.
func (t *taskLog) attrs(more ...slog.Attr) []slog.Attr {
	return append([]slog.Attr{slog.String("task_id", t.id), slog.String("task_type", t.typ), slog.String("queue", t.queue)}, more...)
}

// get returns the logger with the task's attributes.
func (t *taskLog) get() *slog.Logger {
	if t.l == nil {
		t.l = slog.New(t.base.Handler().WithAttrs(t.attrs()))
	}
	return t.l
}

// retryRedis calls fn until it succeeds, is refused for good (ErrCompleted,
// ErrStaleAttempt), or ctx is done, backing off from 100 ms to 2 s: for job-record
// writes while Redis is away.
func retryRedis(ctx context.Context, log *taskLog, what string, fn func() error) error {
	err := fn()
	final := func(err error) bool {
		return errors.Is(err, storage.ErrCompleted) || errors.Is(err, storage.ErrStaleAttempt)
	}
	for wait := 100 * time.Millisecond; err != nil && !final(err) && ctx.Err() == nil; wait = min(2*wait, 2*time.Second) {
		log.get().WarnContext(ctx, what+"; retrying", "in", wait, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		err = fn()
	}
	return err
}

// runHandler calls h, turning a panic into an error so the job record says what happened.
func runHandler(ctx context.Context, h Handler, t *Task) (result any, err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("panic: %v\n%s", p, debug.Stack())
		}
	}()
	return h(ctx, t)
}

// record writes the outcome of one attempt. It uses a context of its own: the task's
// may be cancelled already, and the outcome must still be written.
func (w *Worker) record(ctx context.Context, log *taskLog, t *Task, result any, taskErr error, took time.Duration) error {
	wctx := context.WithoutCancel(ctx) // each Redis call is bounded by the client's timeouts
	now := time.Now()
	var state, msg string
	var data []byte
	switch {
	case taskErr == nil:
		state = storage.StateCompleted
		var err error
		if data, err = json.Marshal(result); err != nil {
			data = nil
			log.get().ErrorContext(ctx, "encode task result", "err", err)
		}
		w.processed.Add(1)
		w.lastSuccess.Store(now.UnixNano())
	case w.aborted.Load() && errors.Is(ctx.Err(), context.Canceled):
		// asynq gave up waiting at shutdown and requeued the task.
		state, msg = storage.StatePending, "interrupted by shutdown; returned to its queue"
	default:
		msg = taskErr.Error()
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		state = storage.StateRetry
		if errors.Is(taskErr, asynq.SkipRetry) || retried >= maxRetry {
			state = storage.StateFailed
		}
		w.failed.Add(1)
	}
	// While Redis is away, keep trying for as long as the task may run: asynq's own
	// attempt to mark the task done would fail too, and its retries of that are
	// abandoned, so the task would sit until its lease expired and the recoverer swept
	// (90 s or more). Holding the worker slot meanwhile is the right backpressure.
	// One round trip: the outcome (a final one drops the checkpoint too) and the index
	// entry's removal.
	err := retryRedis(ctx, log, "record task outcome", func() error {
		return w.inflight.End(wctx, w.id, t.ID, t.Queue, t.Attempt, state, data, msg, now)
	})
	if errors.Is(err, storage.ErrStaleAttempt) {
		log.get().WarnContext(ctx, "outcome of a superseded attempt discarded (its handler outlived its deadline)", "attempt", t.Attempt, "state", state)
		return nil
	}
	if err != nil {
		log.get().ErrorContext(ctx, "record task outcome", "state", state, "err", err)
		return err
	}
	if m := w.cfg.Metrics; m != nil {
		m.TaskDone(t.Type, t.Queue, outcome(state), took)
	}
	level := slog.LevelInfo
	if state != storage.StateCompleted {
		level = slog.LevelWarn
	}
	// The task's attributes on this line alone, without get()'s cost.
	log.base.LogAttrs(ctx, level, "task "+state, log.attrs(slog.Int("attempt", t.Attempt),
		slog.Int64("duration_ms", took.Milliseconds()), slog.String("err", msg))...)
	return nil
}

// outcome is the Metrics outcome of a recorded job state.
func outcome(state string) string {
	switch state {
	case storage.StateCompleted:
		return OutcomeCompleted
	case storage.StateFailed:
		return OutcomeFailed
	case storage.StateRetry:
		return OutcomeRetried
	default: // pending: interrupted by a shutdown
		return OutcomeInterrupted
	}
}
