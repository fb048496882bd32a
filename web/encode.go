package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// maxJSONBody bounds a JSON request body, in bytes.
const maxJSONBody = 1 << 20

// Error is an error with the status and message a client sees, and the request field
// it is about ("" for none). WriteError answers it as {"error": Msg, "field": Field}.
type Error struct {
	Status int
	Msg    string
	Field  string
}

func (e *Error) Error() string { return e.Msg }

// WriteJSON writes v as JSON with status. Headers are set before WriteHeader; an error
// writing the body (the client went away) is ignored.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Accepted is the 202 body of a route that accepted work.
type Accepted struct {
	ID        string `json:"id"`
	Type      string `json:"type"`
	State     string `json:"state"`
	StatusURL string `json:"status_url"`
}

// WriteAccepted answers 202 for job, with its status URL in Location and the body
// {"id","type","state","status_url"}.
func WriteAccepted(w http.ResponseWriter, job storage.Job) {
	a := Accepted{ID: job.ID, Type: job.Type, State: job.State, StatusURL: "/api/v1/jobs/" + job.ID}
	w.Header().Set("Location", a.StatusURL)
	WriteJSON(w, http.StatusAccepted, a)
}

// DecodeJSON reads one JSON value of at most 1 MiB from r's body into v (a pointer),
// refusing unknown fields and trailing data. Its errors are for WriteError: a 400
// *Error naming the JSON field, never a Go type, or a 413 for a body over the limit.
func DecodeJSON(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.As(err, &te) && te.Field != "":
			return &Error{Status: http.StatusBadRequest, Msg: fmt.Sprintf("%s must be %s", te.Field, task.JSONType(te.Type)), Field: te.Field}
		case errors.As(err, &te):
			return &Error{Status: http.StatusBadRequest, Msg: "request body must be a JSON object"}
		case errors.Is(err, io.EOF):
			return &Error{Status: http.StatusBadRequest, Msg: "request body is empty; expected JSON"}
		default:
			return &Error{Status: http.StatusBadRequest, Msg: "malformed JSON: " + task.JSONErrorText(err)}
		}
	}
	if dec.More() {
		return &Error{Status: http.StatusBadRequest, Msg: "malformed JSON: trailing data after the object"}
	}
	return nil
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// WriteError answers err as {"error": "...", "field"?: "..."}: the one place errors
// become status codes. *Error keeps its status; *task.InvalidError is 400 (422 when
// Unprocessable); task.ErrUnknownType and task.ErrUnknownQueue are 422; task.ErrDuplicate
// 409; an oversized body 413; storage.ErrNotFound 404; task.ErrUnavailable and a
// deadline 503 with Retry-After. Anything else is a 500 whose message is logged, not
// shown. Errors of 500 and up are logged with the request's logger.
func WriteError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		ae  *Error
		ie  *task.InvalidError
		mbe *http.MaxBytesError
	)
	if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
		// The client went away: nobody reads the answer, and it is not our failure.
		loggerFrom(r.Context()).DebugContext(r.Context(), "client gone", "method", r.Method, "path", r.URL.Path)
		w.WriteHeader(499) // nginx's "client closed request", for the request log
		return
	}
	body := errorBody{Error: err.Error()}
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &ae):
		status, body.Field = ae.Status, ae.Field
	case errors.As(err, &ie):
		status, body.Field = http.StatusBadRequest, ie.Field
		if ie.Unprocessable {
			status = http.StatusUnprocessableEntity
		}
	case errors.Is(err, task.ErrUnknownType):
		status, body.Field = http.StatusUnprocessableEntity, "type"
	case errors.Is(err, task.ErrUnknownQueue):
		status, body.Field = http.StatusUnprocessableEntity, "queue"
	case errors.As(err, &mbe):
		status, body.Error = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, storage.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, task.ErrDuplicate):
		status = http.StatusConflict
	case errors.Is(err, task.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		status, body.Error = http.StatusServiceUnavailable, task.ErrUnavailable.Error()
		w.Header().Set("Retry-After", "5")
	}
	if status >= 500 {
		loggerFrom(r.Context()).ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		if status == http.StatusInternalServerError {
			body.Error = "internal error"
		}
	}
	WriteJSON(w, status, body)
}

func errorHandler(status int, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, status, errorBody{Error: msg})
	})
}

// loggerFrom is the logger the request middleware put in ctx, or slog's default.
func loggerFrom(ctx context.Context) *slog.Logger {
	if rq := requestFrom(ctx); rq != nil {
		return rq.log
	}
	return slog.Default()
}

// AddRequestLogAttrs adds args (slog's alternating keys and values) to the "http
// request" line logged for the request whose context is ctx, as a handler that
// created a job names it there instead of logging a line of its own. It reports false
// when ctx is not a request's (nothing is added), as for the health routes, which are
// answered without a request log. Safe for concurrent use.
func AddRequestLogAttrs(ctx context.Context, args ...any) bool {
	rq := requestFrom(ctx)
	if rq == nil {
		return false
	}
	rq.mu.Lock()
	rq.attrs = append(rq.attrs, args...)
	rq.mu.Unlock()
	return true
}

// duration is a JSON duration: a number of seconds (2.5) or a Go duration string ("90s").
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	if bytes.HasPrefix(b, []byte(`"`)) {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		td, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("bad duration %q: use seconds or a string such as \"90s\"", s)
		}
		*d = duration(td)
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		return fmt.Errorf("bad duration %s: use seconds or a string such as \"90s\"", b)
	}
	*d = duration(secs * float64(time.Second))
	return nil
}
