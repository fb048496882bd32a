package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"time"

	"github.com/gorilla/mux"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// jobRequest is the body of POST /api/v1/jobs.
type jobRequest struct {
	Type      string          `json:"type"`
	Payload   json.RawMessage `json:"payload"`
	Queue     string          `json:"queue"`
	ProcessIn *duration       `json:"process_in"`
	MaxRetry  *int            `json:"max_retry"`
	Timeout   *duration       `json:"timeout"`
	UniqueFor *duration       `json:"unique_for"`
}

func (req jobRequest) task() task.Request {
	t := task.Request{Kind: req.Type, Payload: req.Payload, Queue: req.Queue, MaxRetry: req.MaxRetry}
	if req.ProcessIn != nil {
		t.ProcessIn = time.Duration(*req.ProcessIn) // 0 is valid: now
	}
	if req.Timeout != nil {
		t.Timeout = durationOrInvalid(*req.Timeout)
	}
	if req.UniqueFor != nil {
		t.UniqueFor = durationOrInvalid(*req.UniqueFor)
	}
	return t
}

// durationOrInvalid keeps an explicit 0 timeout or unique_for from meaning "unset": -1
// is out of their range, so the submitter refuses it with the field named.
func durationOrInvalid(d duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// handleJobCreate enqueues any registered task kind: POST /api/v1/jobs, with
// {"type","payload","queue"?,"process_in"?,"max_retry"?,"timeout"?,"unique_for"?}.
func handleJobCreate(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// JSON only: a form or text/plain body is what a cross-site form can send.
		if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
			WriteError(w, r, &Error{Status: http.StatusUnsupportedMediaType, Msg: "Content-Type must be application/json"})
			return
		}
		var req jobRequest
		if err := DecodeJSON(w, r, &req); err != nil {
			WriteError(w, r, err)
			return
		}
		if req.Type == "" {
			WriteError(w, r, &Error{Status: http.StatusBadRequest, Msg: "type is required", Field: "type"})
			return
		}
		job, err := d.Submitter.Submit(r.Context(), req.task())
		if err != nil {
			WriteError(w, r, err)
			return
		}
		WriteAccepted(w, job)
	})
}

// handleJobGet reports one job: GET /api/v1/jobs/{id}.
func handleJobGet(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := mux.Vars(r)["id"]
		if !storage.ValidJobID(id) {
			WriteError(w, r, &Error{Status: http.StatusNotFound, Msg: "no such job"})
			return
		}
		job, err := d.Jobs.Get(r.Context(), id)
		if errors.Is(err, storage.ErrNotFound) {
			WriteError(w, r, &Error{Status: http.StatusNotFound, Msg: "no such job"})
			return
		}
		if err != nil {
			WriteError(w, r, fmt.Errorf("%w: %v", task.ErrUnavailable, err))
			return
		}
		WriteJSON(w, http.StatusOK, job)
	})
}
