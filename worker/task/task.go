// Package task is the vocabulary the web tier and the host share for submitting work:
// a Request to enqueue one job, and the errors that refuse one. It knows no task kinds;
// the host keeps the registry of kinds an app registers.
package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"
)

// Request is one job to enqueue, as POST /api/v1/jobs and Host.Enqueue both build it.
// Zero fields take the kind's defaults, then the host's.
type Request struct {
	// ID is the job id; "" for a new random one. A fixed id makes an enqueue
	// idempotent: a second request with the same id is refused with ErrDuplicate.
	ID string
	// Kind is the registered task kind, e.g. "image:thumbnail".
	Kind string
	// Payload is the task's JSON arguments; empty means {}.
	Payload json.RawMessage
	// Queue is the queue to put the task on; "" for the kind's default queue.
	Queue string
	// ProcessIn delays the task; 0 runs it as soon as a worker is free.
	ProcessIn time.Duration
	// Timeout bounds one run of the task; 0 for the kind's default (asynq's 30 min).
	Timeout time.Duration
	// MaxRetry is how many times a failed run is retried; nil for the kind's default.
	MaxRetry *int
	// UniqueFor refuses an identical task (same kind, queue and payload) for this long;
	// 0 allows duplicates.
	UniqueFor time.Duration
	// Schedule, Tick and Note are recorded with a periodic job: the schedule's name,
	// the tick that enqueued it, and what happened at enqueue.
	Schedule string
	Tick     time.Time
	Note     string
}

// ErrUnknownType refuses a request whose kind no handler serves.
var ErrUnknownType = errors.New("unknown task type")

// ErrUnknownQueue refuses a request for a queue the workers do not serve.
var ErrUnknownQueue = errors.New("queue is not served")

// ErrDuplicate refuses a request whose job id is taken, or that is identical to a task
// still within its UniqueFor.
var ErrDuplicate = errors.New("an identical job is already queued")

// ErrUnavailable refuses a request while Redis does not answer; try again shortly.
var ErrUnavailable = errors.New("job queue unavailable; try again shortly")

// InvalidError says which field of a request is wrong and why. Field is the JSON path
// of the field: "payload.sizes" for a field of the payload, "payload" for the payload
// as a whole, "timeout" for an option.
type InvalidError struct {
	Field string
	Msg   string
	// Unprocessable marks a well-formed request that names something that does not
	// exist or cannot be done (an upload that is gone): 422 rather than 400.
	Unprocessable bool
}

func (e *InvalidError) Error() string {
	switch sub, isPayload := strings.CutPrefix(e.Field, "payload."); {
	case e.Field == "":
		return "invalid request: " + e.Msg
	case e.Field == "payload":
		return "invalid payload: " + e.Msg
	case isPayload:
		return fmt.Sprintf("invalid payload: %s: %s", sub, e.Msg)
	default:
		return e.Field + " " + e.Msg // an option: "timeout must be between 1s and 24h0m0s"
	}
}

// StrictDecode decodes a JSON payload into v (a pointer), refusing unknown fields and
// trailing data; an empty payload decodes as {}. Errors are *InvalidError with Field
// "payload" or "payload.<name>".
func StrictDecode(payload []byte, v any) error {
	trimmed := bytes.TrimSpace(payload)
	if len(trimmed) == 0 {
		payload = []byte("{}")
	} else if bytes.Equal(trimmed, []byte("null")) {
		return &InvalidError{Field: "payload", Msg: "must be a JSON object, not null"}
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field != "" {
			return &InvalidError{Field: "payload." + te.Field, Msg: "must be " + JSONType(te.Type)}
		}
		return &InvalidError{Field: "payload", Msg: JSONErrorText(err)}
	}
	if dec.More() {
		return &InvalidError{Field: "payload", Msg: "trailing data after the object"}
	}
	return nil
}

// JSONType names what JSON value decodes into t ("a string", "a whole number",
// "an object"), for messages that must not name Go types.
func JSONType(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "a whole number"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// JSONErrorText is a decoding error of encoding/json as a client may read it: its
// message without the package prefix ("unknown field \"dpi\"" for "json: unknown
// field \"dpi\""), and "must be a JSON object" for a type mismatch, whose message
// names Go types ("json: cannot unmarshal array into Go value of type demo.Echo").
func JSONErrorText(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return "must be a JSON object"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}
