package storage

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Job states, as asynq names them, so the web tier and the queue agree.
const (
	StatePending   = "pending"
	StateScheduled = "scheduled"
	StateActive    = "active"
	StateRetry     = "retry"
	StateCompleted = "completed"
	StateFailed    = "failed"
)

// ErrNotFound is returned when a job record does not exist (never created, or past
// its retention).
var ErrNotFound = errors.New("not found")

// ErrCompleted is returned by Jobs.Start for a job whose record already says
// completed: delivery is at-least-once, and a finished job must not run again.
var ErrCompleted = errors.New("job already completed")

// Progress is how much of a job is done, in the job's own units (sizes, rows, steps).
type Progress struct {
	Done  int64 `json:"done"`
	Total int64 `json:"total"`
}

// Job is the durable record of one task: what the web tier reports at
// /api/v1/jobs/{id}, kept JOB_RETENTION after the last change whatever asynq retains.
type Job struct {
	ID       string          `json:"id"`
	Type     string          `json:"type"`
	Queue    string          `json:"queue"`
	State    string          `json:"state"`
	Attempts int             `json:"attempts"`
	Progress Progress        `json:"progress"`
	Result   json.RawMessage `json:"result"`
	Error    string          `json:"error"`
	// Interrupted counts the runs cut short by their worker's death (then requeued).
	Interrupted int        `json:"interrupted"`
	CreatedAt   time.Time  `json:"created_at"`
	CompletedAt *time.Time `json:"completed_at"`
	// Schedule and Tick name the schedule and the tick that enqueued a periodic job;
	// Note says what happened at enqueue (a tick that overlapped a running one).
	Schedule string     `json:"schedule,omitempty"`
	Tick     *time.Time `json:"tick,omitempty"`
	Note     string     `json:"note,omitempty"`
	// Payload is the task's arguments as enqueued, cut at MaxStoredPayload bytes
	// (PayloadTruncated then says so, and Payload may not be valid JSON). Events is the
	// timeline, oldest first. Neither is part of the API's job JSON.
	Payload          []byte  `json:"-"`
	PayloadTruncated bool    `json:"-"`
	Events           []Event `json:"-"`
}

// Event is one entry of a job's timeline: Kind is created, started, retry, completed,
// failed, pending (returned to its queue), interrupted, retried or cancelled; Detail
// says more ("attempt 2", the reason of an interruption).
type Event struct {
	Kind   string
	At     time.Time
	Detail string
}

// MaxStoredPayload bounds the payload bytes a job record keeps for the dashboard.
const MaxStoredPayload = 64 << 10

// Jobs stores job records in Redis, one hash per job at shoestring:{queue}:job:<id>,
// with a TTL of the retention renewed on every write. The hash tag is the job's queue,
// as in asynq's own keys (asynq:{queue}:...): a job's record, its checkpoint, its
// queue's in-flight indexes and its asynq task share one Redis Cluster slot, so one
// script changes them together on a cluster too. Job ids are unique within a queue.
// Safe for concurrent use; every method is one round trip.
type Jobs struct {
	rdb       redis.UniversalClient
	retention time.Duration
	queues    []string
}

// NewJobs returns a job store on rdb; records expire retention after their last change.
// queues are those whose records Get finds (QUEUES' names); the worker's queues must be
// among them for InFlight to recover its tasks.
func NewJobs(rdb redis.UniversalClient, retention time.Duration, queues ...string) *Jobs {
	return &Jobs{rdb: rdb, retention: retention, queues: queues}
}

// jobKey is the record of job id in queue: tagged with the queue, as asynq's task is.
func jobKey(queue, id string) string { return KeyPrefix + "{" + queue + "}:job:" + id }

// indexKey is the dashboard's index of every job younger than the retention, scored by
// creation time in unix ms; members are "queue:id" (queue names have no ':').
const indexKey = KeyPrefix + "jobs:created"

func indexMember(queue, id string) string { return queue + ":" + id }

//go:embed create.lua
var createLua string

var createScript = redis.NewScript(createLua)

// ErrExists is returned by Create when a record with the job's id exists already.
var ErrExists = errors.New("job exists")

// NewJobID returns a random, URL-safe job id: 26 base32 characters, 130 bits.
func NewJobID() string { return strings.ToLower(rand.Text()) }

// ValidJobID reports whether id is a job id a caller may choose or look up: 1-128
// letters, digits or ":@._-" (NewJobID's are).
func ValidJobID(id string) bool { return len(id) <= 128 && jobIDRe.MatchString(id) }

// The length is checked apart: a bounded repetition such as {1,128} compiles to one
// copy of the class per count, some 50 KB of heap for the life of the process.
var jobIDRe = regexp.MustCompile(`^[A-Za-z0-9:@._-]+$`)

// Create writes a new record for j (state pending or scheduled, attempts 0) and adds
// it to the dashboard's index, in one pipelined round trip. It never touches an
// existing record: with j.ID taken in j.Queue it returns ErrExists, so enqueueing a
// fixed id twice cannot reset a finished job.
func (s *Jobs) Create(ctx context.Context, j Job) error {
	keys, args := s.createArgs(j)
	var create *redis.Cmd
	err := pipelineScript(ctx, s.rdb, createScript, func(p redis.Pipeliner) {
		create = createScript.EvalSha(ctx, p, keys, args...)
		s.index(ctx, p, j)
	}, &create)
	if err != nil {
		return fmt.Errorf("create job %s: %w", j.ID, err)
	}
	if n, _ := create.Int(); n == 0 {
		return fmt.Errorf("create job %s: %w", j.ID, ErrExists)
	}
	return nil
}

// createArgs are the keys and arguments of create.lua for j.
func (s *Jobs) createArgs(j Job) ([]string, []any) {
	return []string{jobKey(j.Queue, j.ID)}, append([]any{int64(s.retention / time.Second)}, recordFields(j)...)
}

// recordFields are the field/value pairs of j's new record: state pending or
// scheduled, attempts 0, the payload cut to MaxStoredPayload, and a timeline that
// begins with its creation.
func recordFields(j Job) []any {
	created := j.CreatedAt.UTC().Format(time.RFC3339Nano)
	payload, truncated := j.Payload, false
	if len(payload) > MaxStoredPayload {
		payload, truncated = payload[:MaxStoredPayload], true
	}
	f := make([]any, 0, 24)
	f = append(f, "type", j.Type, "queue", j.Queue, "state", j.State, "attempts", 0, "done", 0, "total", 0,
		"created_at", created, "payload", payload, "events", "created "+created+"\n")
	if truncated {
		f = append(f, "payload_truncated", 1)
	}
	if j.Schedule != "" {
		f = append(f, "schedule", j.Schedule)
	}
	if j.Tick != nil {
		f = append(f, "tick", j.Tick.UTC().Format(time.RFC3339))
	}
	if j.Note != "" {
		f = append(f, "note", j.Note)
	}
	return f
}

// index adds j to the dashboard's index. The index is the dashboard's, not the
// record: it is written beside create.lua, in the same round trip (another slot on a
// cluster). NX: a taken id keeps its place. One create in indexTrimEvery (by its
// creation time's milliseconds) also trims what is past the retention and renews the
// key's TTL, so the index holds at most a few dozen entries past the retention, and
// the others add one command, not three.
func (s *Jobs) index(ctx context.Context, p redis.Pipeliner, j Job) {
	score := j.CreatedAt.UnixMilli()
	p.ZAddNX(ctx, indexKey, redis.Z{Score: float64(score), Member: indexMember(j.Queue, j.ID)})
	if score%indexTrimEvery == 0 {
		p.ZRemRangeByScore(ctx, indexKey, "-inf", "("+strconv.FormatInt(score-s.retention.Milliseconds(), 10))
		p.Expire(ctx, indexKey, s.retention+time.Hour)
	}
}

// indexTrimEvery is how many creates, on average, share one trim of the index.
const indexTrimEvery = 32

//go:embed undo.lua
var undoLua string

var undoScript = redis.NewScript(undoLua)

// Undo removes the record Create wrote when enqueueing its task failed, but only while
// it is untouched (pending or scheduled, no attempt): a record a worker has written
// to since belongs to a task that exists after all. Two round trips when it removes.
func (s *Jobs) Undo(ctx context.Context, queue, id string) error {
	n, err := undoScript.Run(ctx, s.rdb, []string{jobKey(queue, id)}).Int()
	if err == nil && n == 1 {
		err = s.rdb.ZRem(ctx, indexKey, indexMember(queue, id)).Err()
	}
	if err != nil {
		return fmt.Errorf("undo job %s: %w", id, err)
	}
	return nil
}

// Delete removes a record.
func (s *Jobs) Delete(ctx context.Context, queue, id string) error {
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, jobKey(queue, id))
		p.ZRem(ctx, indexKey, indexMember(queue, id))
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete job %s: %w", id, err)
	}
	return nil
}

// Get returns the record of id, looked up in every queue the store was made with (in
// that order, the first found wins) in one pipelined round trip, or ErrNotFound.
func (s *Jobs) Get(ctx context.Context, id string) (Job, error) {
	cmds := make([]*redis.MapStringStringCmd, len(s.queues))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, q := range s.queues {
			cmds[i] = p.HGetAll(ctx, jobKey(q, id))
		}
		return nil
	})
	if err != nil {
		return Job{}, fmt.Errorf("get job %s: %w", id, err)
	}
	for _, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			return jobFrom(id, m), nil
		}
	}
	return Job{}, ErrNotFound
}

// GetIn returns the record of id in queue, or ErrNotFound.
func (s *Jobs) GetIn(ctx context.Context, queue, id string) (Job, error) {
	m, err := s.rdb.HGetAll(ctx, jobKey(queue, id)).Result()
	if err != nil {
		return Job{}, fmt.Errorf("get job %s: %w", id, err)
	}
	if len(m) == 0 {
		return Job{}, ErrNotFound
	}
	return jobFrom(id, m), nil
}

// jobFrom builds a whole Job, payload and timeline included, from its hash.
func jobFrom(id string, m map[string]string) Job {
	j := parseJob(id, m)
	if p := m["payload"]; p != "" {
		j.Payload = []byte(p)
	}
	j.PayloadTruncated = m["payload_truncated"] == "1"
	j.Events = parseEvents(m["events"])
	return j
}

// parseJob builds a Job from the fields of its hash (all but payload and events).
func parseJob(id string, m map[string]string) Job {
	j := Job{ID: id, Type: m["type"], Queue: m["queue"], State: m["state"], Error: m["error"]}
	j.Attempts, _ = strconv.Atoi(m["attempts"])
	j.Interrupted, _ = strconv.Atoi(m["interrupted"])
	j.Progress.Done, _ = strconv.ParseInt(m["done"], 10, 64)
	j.Progress.Total, _ = strconv.ParseInt(m["total"], 10, 64)
	if r := m["result"]; r != "" {
		j.Result = json.RawMessage(r)
	}
	j.CreatedAt, _ = time.Parse(time.RFC3339Nano, m["created_at"])
	j.Schedule, j.Note = m["schedule"], m["note"]
	if tk, err := time.Parse(time.RFC3339, m["tick"]); err == nil {
		j.Tick = &tk
	}
	if c := m["completed_at"]; c != "" {
		t, err := time.Parse(time.RFC3339Nano, c)
		if err == nil {
			j.CompletedAt = &t
		}
	}
	return j
}

// parseEvents reads the timeline field: one "kind RFC3339 [detail]" line per event.
func parseEvents(s string) []Event {
	var out []Event
	for line := range strings.SplitSeq(strings.TrimSpace(s), "\n") {
		kind, rest, _ := strings.Cut(line, " ")
		at, detail, _ := strings.Cut(rest, " ")
		t, err := time.Parse(time.RFC3339Nano, at)
		if kind == "" || err != nil {
			continue
		}
		out = append(out, Event{Kind: kind, At: t, Detail: detail})
	}
	return out
}

// startFn is start.lua: the Lua function start, which startcall.lua and fetch.lua call.
//
//go:embed start.lua
var startFn string

//go:embed startcall.lua
var startCall string

var startScript = redis.NewScript(startFn + startCall)

// Start marks id active and counts the attempt, creating the record when a task was
// enqueued without one. It returns the attempt number (1 for the first run), or
// ErrCompleted when the record already says completed, in which case nothing changes.
func (s *Jobs) Start(ctx context.Context, id, typ, queue string, now time.Time) (int, error) {
	n, err := startScript.Run(ctx, s.rdb, []string{jobKey(queue, id)},
		typ, queue, now.UTC().Format(time.RFC3339Nano), int64(s.retention/time.Second)).Int()
	if err != nil {
		return 0, fmt.Errorf("start job %s: %w", id, err)
	}
	if n < 0 {
		return 0, ErrCompleted
	}
	return n, nil
}

// SetProgress records done of total units of job id in queue.
func (s *Jobs) SetProgress(ctx context.Context, queue, id string, p Progress) error {
	return s.set(ctx, queue, id, "done", p.Done, "total", p.Total)
}

//go:embed finish.lua
var finishLua string

var finishScript = redis.NewScript(finishLua)

// ErrStaleAttempt is returned by Finish when a newer attempt owns the record: the
// outcome of an older one (a hung handler that finally returned) must not overwrite it.
var ErrStaleAttempt = errors.New("a newer attempt owns the job record")

// Finish records the outcome of attempt (as Start numbered it; 0 for any). state is
// completed or failed (final; the completion time is set), or retry or pending (the
// task goes round again). result is JSON or nil; errMsg is empty on success. A final
// outcome also removes the job's checkpoint, in the same script. It does not count the
// completion (see InFlight.End). Errors: ErrStaleAttempt, or Redis's.
func (s *Jobs) Finish(ctx context.Context, id, queue string, attempt int, state string, result []byte, errMsg string, now time.Time) error {
	keys, args := s.finishArgs(id, queue, "", attempt, state, result, errMsg, now)
	n, err := finishScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return fmt.Errorf("update job %s: %w", id, err)
	}
	if n == 0 {
		return ErrStaleAttempt
	}
	return nil
}

// finishArgs are the keys and arguments of finish.lua: a final outcome also removes
// the job's checkpoint, in the same step and only if this attempt is current; with
// worker, the task leaves that worker's in-flight index. Every key is in the queue's
// slot.
func (s *Jobs) finishArgs(id, queue, worker string, attempt int, state string, result []byte, errMsg string, now time.Time) ([]string, []any) {
	at := now.UTC().Format(time.RFC3339Nano)
	event := state + " " + at
	if state == StateRetry || state == StateFailed {
		event += " attempt " + strconv.Itoa(attempt)
	}
	flags := ""
	if state == StateCompleted || state == StateFailed {
		flags += "f"
	}
	index := inflightKey(queue, worker)
	if worker != "" {
		flags += "i"
	}
	keys := []string{jobKey(queue, id), CheckpointKey(queue, id), index}
	args := []any{attempt, int64(s.retention / time.Second), event, flags, id, "state", state, "error", errMsg}
	if result != nil {
		args = append(args, "result", result)
	}
	if flags != "" && flags[0] == 'f' {
		args = append(args, "completed_at", at)
	}
	return keys, args
}

// CheckpointKey is where worker.Checkpoint keeps the progress of task id of queue; it
// is in the queue's slot, beside the job record.
func CheckpointKey(queue, id string) string { return KeyPrefix + "{" + queue + "}:checkpoint:" + id }

func (s *Jobs) set(ctx context.Context, queue, id string, args ...any) error {
	key := jobKey(queue, id)
	_, err := s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, args...)
		p.Expire(ctx, key, s.retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("update job %s: %w", id, err)
	}
	return nil
}
