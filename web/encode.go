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

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// maxJSONBody bounds a JSON request body, in bytes.
const maxJSONBody = 1 << 20

// apiError is an error with the status and message a client sees.
type apiError struct {
	Status int
	Msg    string
	Field  string
}

func (e *apiError) Error() string { return e.Msg }

// errUnavailable is what a client sees when Redis does not answer.
var errUnavailable = errors.New("job queue unavailable; try again shortly")

// encode writes v as JSON with status. Headers are set before WriteHeader.
func encode(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// decode reads one JSON value of at most maxJSONBody bytes into v, refusing unknown
// fields and trailing data.
func decode(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var mbe *http.MaxBytesError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &mbe):
			return err
		case errors.As(err, &te):
			return &apiError{Status: http.StatusBadRequest, Msg: fmt.Sprintf("%s must be a %s", te.Field, te.Type), Field: te.Field}
		case errors.Is(err, io.EOF):
			return &apiError{Status: http.StatusBadRequest, Msg: "request body is empty; expected JSON"}
		default:
			return &apiError{Status: http.StatusBadRequest, Msg: "malformed JSON: " + err.Error()}
		}
	}
	if dec.More() {
		return &apiError{Status: http.StatusBadRequest, Msg: "malformed JSON: trailing data after the object"}
	}
	return nil
}

type errorBody struct {
	Error string `json:"error"`
	Field string `json:"field,omitempty"`
}

// writeError is the one place errors become status codes.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	var (
		ae  *apiError
		ie  *task.InvalidError
		mbe *http.MaxBytesError
	)
	body := errorBody{Error: err.Error()}
	status := http.StatusInternalServerError
	switch {
	case errors.As(err, &ae):
		status, body.Field = ae.Status, ae.Field
	case errors.As(err, &ie):
		status, body.Field = http.StatusBadRequest, "payload"
		if ie.Field != "" {
			body.Field = "payload." + ie.Field
		}
	case errors.Is(err, task.ErrUnknownType):
		status, body.Field = http.StatusUnprocessableEntity, "type"
	case errors.As(err, &mbe):
		status, body.Error = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, storage.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, asynq.ErrDuplicateTask), errors.Is(err, asynq.ErrTaskIDConflict):
		status = http.StatusConflict
	case errors.Is(err, errUnavailable), errors.Is(err, context.DeadlineExceeded):
		status, body.Error = http.StatusServiceUnavailable, errUnavailable.Error()
		w.Header().Set("Retry-After", "5")
	}
	if status >= 500 {
		log.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
		if status == http.StatusInternalServerError {
			body.Error = "internal error"
		}
	}
	encode(w, status, body)
}

func errorHandler(status int, msg string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		encode(w, status, errorBody{Error: msg})
	})
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
