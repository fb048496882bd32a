package host

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker/task"
)

// ErrNotRunning is returned by Enqueue and Job before Run has connected to Redis. It
// matches ErrUnavailable (a 503 from web.WriteError).
var ErrNotRunning = fmt.Errorf("%w: host is not running (Enqueue works once Run has started)", task.ErrUnavailable)

// Errors that refuse work, for errors.Is; they are package worker/task's.
var (
	ErrUnknownType  = task.ErrUnknownType  // the kind is not registered
	ErrUnknownQueue = task.ErrUnknownQueue // the queue is not in QUEUES
	ErrDuplicate    = task.ErrDuplicate    // the job id is taken, or UniqueFor refused it
	ErrUnavailable  = task.ErrUnavailable  // Redis does not answer; try again
	ErrNotFound     = storage.ErrNotFound  // Job: no such job, or past JOB_RETENTION
)

// enqueueTimeout bounds the Redis work of accepting a job, so an outage answers
// promptly with task.ErrUnavailable instead of hanging the caller.
const enqueueTimeout = 5 * time.Second

// Bounds of the job options.
const (
	maxProcessIn = 365 * 24 * time.Hour
	maxTimeout   = 24 * time.Hour
	maxRetry     = 100
	maxUniqueFor = 30 * 24 * time.Hour
)

// Enqueue validates args (A's Validate, then the kind's BeforeEnqueue), records the
// job and puts its task on a queue, returning the job id: random, or JobID's. opts
// override the kind's defaults. It is safe for concurrent use once Run has started.
//
// Errors: ErrNotRunning; task.ErrUnknownType for a kind not registered; an
// *InvalidError naming the bad field; task.ErrUnknownQueue; task.ErrDuplicate when the
// id is taken or UniqueFor refuses it; task.ErrUnavailable when Redis does not answer
// (after about 6 s when it hangs: 5 s for the enqueue, then the round trip under way).
// A refused job leaves nothing behind. Concurrent calls share Redis round trips (see
// storage.RecordHook).
func (h *Host) Enqueue(ctx context.Context, args Args, opts ...EnqueueOption) (string, error) {
	if args == nil {
		return "", fmt.Errorf("%w: nil Args", task.ErrUnknownType)
	}
	payload, err := json.Marshal(args)
	if err != nil {
		return "", &task.InvalidError{Field: "payload", Msg: "does not encode as JSON: " + err.Error()}
	}
	var o options
	for _, opt := range opts {
		opt.applyEnqueue(&o)
	}
	req := task.Request{ID: o.id, Kind: args.Kind(), Payload: payload, Queue: o.queue,
		ProcessIn: o.processIn, Timeout: o.timeout, MaxRetry: o.maxRetry, UniqueFor: o.uniqueFor}
	job, err := h.submit(ctx, req)
	if err != nil {
		return "", err
	}
	return job.ID, nil
}

// submit validates and enqueues one job with the latest Run's dependencies.
func (h *Host) submit(ctx context.Context, r task.Request) (storage.Job, error) {
	d := h.deps.Load()
	if d == nil {
		return storage.Job{}, ErrNotRunning
	}
	return h.submitTo(ctx, d, r)
}

// submitTo validates and enqueues one job on d: the path POST /api/v1/jobs, Enqueue and
// the schedules share. It returns the new job's record. Errors are Enqueue's.
func (h *Host) submitTo(ctx context.Context, d *deps, r task.Request) (storage.Job, error) {
	k, ok := d.kinds[r.Kind]
	if !ok {
		// The registered kinds are not listed: the caller may be anyone on the internet.
		return storage.Job{}, fmt.Errorf("%w %q", task.ErrUnknownType, r.Kind)
	}
	payload, args, err := k.prepare(r.Payload)
	if err != nil {
		return storage.Job{}, err
	}
	queue, aopts, err := jobOptions(r, k.defaults, d.cfg.Queues)
	if err != nil {
		return storage.Job{}, err
	}
	id := r.ID
	if id == "" {
		id = storage.NewJobID()
	} else if !storage.ValidJobID(id) {
		return storage.Job{}, &task.InvalidError{Field: "id", Msg: "must be 1-128 letters, digits or \":@._-\""}
	}

	ctx, cancel := context.WithTimeout(ctx, enqueueTimeout)
	defer cancel()
	if k.before != nil {
		if err := k.before(ctx, args); err != nil {
			var ie *task.InvalidError
			var we *web.Error
			if errors.As(err, &ie) || errors.As(err, &we) || errors.Is(err, task.ErrDuplicate) ||
				errors.Is(err, task.ErrUnavailable) || errors.Is(err, task.ErrUnknownQueue) {
				return storage.Job{}, err // already says what the client should see
			}
			return storage.Job{}, fmt.Errorf("%w: check %s: %w", task.ErrUnavailable, r.Kind, err)
		}
	}
	state := storage.StatePending
	if r.ProcessIn > 0 {
		state = storage.StateScheduled
	}
	job := storage.Job{ID: id, Type: r.Kind, Queue: queue, State: state, CreatedAt: time.Now(), Schedule: r.Schedule, Note: r.Note, Payload: payload}
	if !r.Tick.IsZero() {
		job.Tick = &r.Tick
	}
	ectx, rec := ctx, (*storage.Record)(nil)
	if r.ID == "" {
		// A fresh id: the record rides in front of the task, in its round trip.
		ectx, rec = d.jobs.WithRecord(ctx, job)
	} else if err := d.jobs.Create(ctx, job); errors.Is(err, storage.ErrExists) {
		return storage.Job{}, fmt.Errorf("%w: job %s exists", task.ErrDuplicate, id)
	} else if err != nil {
		return storage.Job{}, fmt.Errorf("%w: %v", task.ErrUnavailable, err)
	}
	aopts = append(aopts, asynq.TaskID(id), asynq.Queue(queue))
	_, err = d.queue.EnqueueContext(ectx, asynq.NewTask(r.Kind, payload), aopts...)
	// Redis work after the enqueue has a fresh context: the caller's may be what expired.
	detached := func() (context.Context, context.CancelFunc) {
		return context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
	}
	if rec != nil && err != nil {
		// go-redis sent the pipeline again after a read timeout, and the first send
		// queued the task behind its record: the second finds its id, or its uniqueness
		// lock, taken.
		uctx, ucancel := detached()
		defer ucancel()
		if queued, qerr := rec.Queued(uctx, err); queued {
			err = nil
		} else if qerr != nil {
			d.logger.WarnContext(ctx, "check an enqueue sent twice", "job_id", id, "err", qerr)
		}
	}
	if err != nil {
		// The record was written, by this send or (ErrExists) a first one go-redis sent
		// before it; Undo leaves it alone if a worker has touched it since.
		if rec == nil || rec.Err() == nil || errors.Is(rec.Err(), storage.ErrExists) {
			uctx, ucancel := detached()
			defer ucancel()
			if derr := d.jobs.Undo(uctx, queue, id); derr != nil {
				d.logger.WarnContext(ctx, "undo job record", "job_id", id, "err", derr)
			}
		}
		if errors.Is(err, asynq.ErrDuplicateTask) || errors.Is(err, asynq.ErrTaskIDConflict) {
			return storage.Job{}, fmt.Errorf("%w (unique_for or job id)", task.ErrDuplicate)
		}
		return storage.Job{}, fmt.Errorf("%w: enqueue %s: %v", task.ErrUnavailable, r.Kind, err)
	}
	if rec != nil && rec.Err() != nil && !errors.Is(rec.Err(), storage.ErrExists) {
		// The task is queued without its record (no script call carried it, or writing
		// it failed): write it now. A worker that started the task first wrote one.
		uctx, ucancel := detached()
		defer ucancel()
		if err := d.jobs.Create(uctx, job); err != nil && !errors.Is(err, storage.ErrExists) {
			d.logger.WarnContext(ctx, "job record", "job_id", id, "err", err)
		}
	}
	// A request's log line names the job; an enqueue from the app's code logs its own.
	level := slog.LevelInfo
	if web.AddRequestLogAttrs(ctx, "job_id", id, "task_type", r.Kind, "queue", queue) {
		level = slog.LevelDebug
	}
	d.logger.Log(ctx, level, "job enqueued", "job_id", id, "task_type", r.Kind, "queue", queue)
	return job, nil
}

// Job returns the record of job id: its kind, queue, state (pending, scheduled,
// active, retry, completed or failed), attempts, progress, result and error, as
// GET /api/v1/jobs/{id} reports it. Records are kept JOB_RETENTION after their last
// change. Errors: ErrNotRunning, storage.ErrNotFound, or Redis's. Safe for concurrent
// use.
func (h *Host) Job(ctx context.Context, id string) (storage.Job, error) {
	d := h.deps.Load()
	if d == nil {
		return storage.Job{}, ErrNotRunning
	}
	return d.jobs.Get(ctx, id)
}

// jobOptions merges r over the kind's defaults, checks each against its bounds and
// the served queues, and returns the queue and asynq's options.
func jobOptions(r task.Request, def options, queues map[string]int) (string, []asynq.Option, error) {
	bad := func(field, msg string) error { return &task.InvalidError{Field: field, Msg: msg} }
	queue := cmp.Or(r.Queue, def.queue, defaultQueue(queues))
	if _, ok := queues[queue]; !ok {
		names := make([]string, 0, len(queues))
		for n := range queues {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", nil, fmt.Errorf("%w: %q (QUEUES: %s)", task.ErrUnknownQueue, queue, strings.Join(names, ", "))
	}
	var opts []asynq.Option
	if r.ProcessIn < 0 || r.ProcessIn > maxProcessIn {
		return "", nil, bad("process_in", fmt.Sprintf("must be between 0 and %v", maxProcessIn))
	}
	if r.ProcessIn > 0 {
		opts = append(opts, asynq.ProcessIn(r.ProcessIn))
	}
	maxR := r.MaxRetry
	if maxR == nil {
		maxR = def.maxRetry
	}
	if maxR != nil {
		if *maxR < 0 || *maxR > maxRetry {
			return "", nil, bad("max_retry", fmt.Sprintf("must be between 0 and %d", maxRetry))
		}
		opts = append(opts, asynq.MaxRetry(*maxR))
	}
	if t := cmp.Or(r.Timeout, def.timeout); t != 0 {
		if t < time.Second || t > maxTimeout {
			return "", nil, bad("timeout", fmt.Sprintf("must be between 1s and %v", maxTimeout))
		}
		opts = append(opts, asynq.Timeout(t))
	}
	if u := r.UniqueFor; u != 0 {
		if u < time.Second || u > maxUniqueFor {
			return "", nil, bad("unique_for", fmt.Sprintf("must be between 1s and %v", maxUniqueFor))
		}
		opts = append(opts, asynq.Unique(u))
	}
	return queue, opts, nil
}

// defaultQueue is "default" when configured, else the heaviest queue.
func defaultQueue(queues map[string]int) string {
	if _, ok := queues["default"]; ok {
		return "default"
	}
	best, bestW := "", 0
	for name, w := range queues {
		if w > bestW || (w == bestW && name < best) {
			best, bestW = name, w
		}
	}
	return best
}

// kindNames returns the registered kinds, sorted.
func (h *Host) kindNames() []string {
	names := make([]string, 0, len(h.kinds))
	for n := range h.kinds {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}
