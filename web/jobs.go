package web

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/gorilla/mux"
	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// enqueueTimeout bounds the Redis work of accepting a job, so an outage answers 503
// promptly instead of hanging the client.
const enqueueTimeout = 5 * time.Second

// accepted is the 202 body of a route that accepted work.
type accepted struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	State     string `json:"state"`
	StatusURL string `json:"status_url"`
}

// newJobID returns a random, URL-safe job id (26 base32 characters, 130 bits).
func newJobID() string { return strings.ToLower(rand.Text()) }

// enqueue records job id and puts its task on the queue. If enqueueing fails the record
// is removed again, so a refused job leaves nothing behind.
func enqueue(ctx context.Context, d Deps, id, typ, queue string, payload []byte, processIn time.Duration, opts ...asynq.Option) (accepted, error) {
	ctx, cancel := context.WithTimeout(ctx, enqueueTimeout)
	defer cancel()
	state := storage.StatePending
	if processIn > 0 {
		state = storage.StateScheduled
		opts = append(opts, asynq.ProcessIn(processIn))
	}
	job := storage.Job{ID: id, Type: typ, Queue: queue, State: state, CreatedAt: time.Now()}
	if err := d.Jobs.Create(ctx, job); err != nil {
		return accepted{}, fmt.Errorf("%w: %v", errUnavailable, err)
	}
	opts = append(opts, asynq.TaskID(id), asynq.Queue(queue))
	if _, err := d.Queue.EnqueueContext(ctx, asynq.NewTask(typ, payload), opts...); err != nil {
		// A fresh context: the request's may be what expired.
		uctx, ucancel := context.WithTimeout(context.WithoutCancel(ctx), enqueueTimeout)
		defer ucancel()
		if derr := d.Jobs.Delete(uctx, id); derr != nil {
			d.Logger.WarnContext(ctx, "undo job record", "job_id", id, "err", derr)
		}
		if errors.Is(err, asynq.ErrDuplicateTask) || errors.Is(err, asynq.ErrTaskIDConflict) {
			return accepted{}, &apiError{Status: http.StatusConflict, Msg: "an identical job is already queued (unique_for)"}
		}
		return accepted{}, fmt.Errorf("%w: enqueue %s: %v", errUnavailable, typ, err)
	}
	d.Logger.InfoContext(ctx, "job enqueued", "job_id", id, "task_type", typ, "queue", queue)
	return accepted{ID: id, Type: typ, State: state, StatusURL: "/api/v1/jobs/" + id}, nil
}

func writeAccepted(w http.ResponseWriter, a accepted) {
	w.Header().Set("Location", a.StatusURL)
	encode(w, http.StatusAccepted, a)
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

type jobRequest struct {
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	Queue     string          `json:"queue"`
	ProcessIn *duration       `json:"process_in"`
	MaxRetry  *int            `json:"max_retry"`
	Timeout   *duration       `json:"timeout"`
	UniqueFor *duration       `json:"unique_for"`
}

// Bounds of the job options.
const (
	maxProcessIn = 365 * 24 * time.Hour
	maxTimeout   = 24 * time.Hour
	maxRetry     = 100
	maxUniqueFor = 30 * 24 * time.Hour
)

func (req jobRequest) options(queues map[string]int) (string, time.Duration, []asynq.Option, error) {
	bad := func(field, msg string) error {
		return &apiError{Status: http.StatusBadRequest, Msg: field + " " + msg, Field: field}
	}
	var opts []asynq.Option
	queue := req.Queue
	if queue == "" {
		queue = defaultQueue(queues)
	} else if _, ok := queues[queue]; !ok {
		names := make([]string, 0, len(queues))
		for n := range queues {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", 0, nil, &apiError{Status: http.StatusUnprocessableEntity, Field: "queue",
			Msg: fmt.Sprintf("queue %q is not served (QUEUES: %s)", queue, strings.Join(names, ", "))}
	}
	var processIn time.Duration
	if req.ProcessIn != nil {
		processIn = time.Duration(*req.ProcessIn)
		if processIn < 0 || processIn > maxProcessIn {
			return "", 0, nil, bad("process_in", fmt.Sprintf("must be between 0 and %v", maxProcessIn))
		}
	}
	if req.MaxRetry != nil {
		if *req.MaxRetry < 0 || *req.MaxRetry > maxRetry {
			return "", 0, nil, bad("max_retry", fmt.Sprintf("must be between 0 and %d", maxRetry))
		}
		opts = append(opts, asynq.MaxRetry(*req.MaxRetry))
	}
	if req.Timeout != nil {
		t := time.Duration(*req.Timeout)
		if t < time.Second || t > maxTimeout {
			return "", 0, nil, bad("timeout", fmt.Sprintf("must be between 1s and %v", maxTimeout))
		}
		opts = append(opts, asynq.Timeout(t))
	}
	if req.UniqueFor != nil {
		u := time.Duration(*req.UniqueFor)
		if u < time.Second || u > maxUniqueFor {
			return "", 0, nil, bad("unique_for", fmt.Sprintf("must be between 1s and %v", maxUniqueFor))
		}
		opts = append(opts, asynq.Unique(u))
	}
	return queue, processIn, opts, nil
}

// handleJobCreate enqueues any registered task type: POST /api/v1/jobs.
func handleJobCreate(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req jobRequest
		if err := decode(w, r, &req); err != nil {
			writeError(w, r, d.Logger, err)
			return
		}
		if req.Type == "" {
			writeError(w, r, d.Logger, &apiError{Status: http.StatusBadRequest, Msg: "type is required", Field: "type"})
			return
		}
		payload, err := task.Validate(req.Type, req.Payload)
		if err != nil {
			writeError(w, r, d.Logger, err)
			return
		}
		queue, processIn, opts, err := req.options(d.Limits.Queues)
		if err != nil {
			writeError(w, r, d.Logger, err)
			return
		}
		if req.Type == task.TypeThumbnail {
			if err := checkUploadExists(r.Context(), d, payload); err != nil {
				writeError(w, r, d.Logger, err)
				return
			}
		}
		a, err := enqueue(r.Context(), d, newJobID(), req.Type, queue, payload, processIn, opts...)
		if err != nil {
			writeError(w, r, d.Logger, err)
			return
		}
		writeAccepted(w, a)
	})
}

func checkUploadExists(ctx context.Context, d Deps, payload []byte) error {
	var p task.Thumbnail
	if err := json.Unmarshal(payload, &p); err != nil {
		return err
	}
	ok, err := d.Bucket.Exists(ctx, p.Key)
	if err != nil {
		return fmt.Errorf("check upload %s: %w", p.Key, err)
	}
	if !ok {
		return &apiError{Status: http.StatusUnprocessableEntity, Msg: "payload.key: no such upload", Field: "payload.key"}
	}
	return nil
}

var jobIDRe = regexp.MustCompile(`^[A-Za-z0-9:._-]{1,128}$`)

// handleJobGet reports one job: GET /api/v1/jobs/{id}.
func handleJobGet(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		if !jobIDRe.MatchString(id) {
			writeError(w, r, d.Logger, &apiError{Status: http.StatusNotFound, Msg: "no such job"})
			return
		}
		job, err := d.Jobs.Get(r.Context(), id)
		if errors.Is(err, storage.ErrNotFound) {
			writeError(w, r, d.Logger, &apiError{Status: http.StatusNotFound, Msg: "no such job"})
			return
		}
		if err != nil {
			writeError(w, r, d.Logger, fmt.Errorf("%w: %v", errUnavailable, err))
			return
		}
		encode(w, http.StatusOK, job)
	})
}
