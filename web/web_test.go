package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gorilla/mux"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// TestWriteError: every error the API and the host return maps to its status, with
// the field named and nothing internal shown.
func TestWriteError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		err        error
		wantStatus int
		wantField  string
		wantMsg    string
	}{
		{&Error{Status: 415, Msg: "not an image", Field: "image"}, 415, "image", "not an image"},
		{&task.InvalidError{Field: "payload.n", Msg: "must be 1-10"}, 400, "payload.n", "invalid payload: n: must be 1-10"},
		{&task.InvalidError{Field: "payload.key", Msg: "no such upload", Unprocessable: true}, 422, "payload.key", "invalid payload: key: no such upload"},
		{fmt.Errorf("%w %q", task.ErrUnknownType, "x"), 422, "type", `unknown task type "x"`},
		{fmt.Errorf("%w: %q", task.ErrUnknownQueue, "q"), 422, "queue", `queue is not served: "q"`},
		{fmt.Errorf("%w (unique_for)", task.ErrDuplicate), 409, "", "an identical job is already queued (unique_for)"},
		{&http.MaxBytesError{Limit: 10}, 413, "", "request body is larger than 10 bytes"},
		{storage.ErrNotFound, 404, "", "not found"},
		{fmt.Errorf("%w: dial tcp: refused", task.ErrUnavailable), 503, "", task.ErrUnavailable.Error()},
		{errors.New("secret internals"), 500, "", "internal error"},
	}
	for _, tc := range tests {
		rec := httptest.NewRecorder()
		WriteError(rec, httptest.NewRequest("GET", "/", nil), tc.err)
		var body errorBody
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
			t.Fatal(err)
		}
		if rec.Code != tc.wantStatus || body.Field != tc.wantField || body.Error != tc.wantMsg ||
			rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%v: %d %+v, want %d field %q error %q", tc.err, rec.Code, body, tc.wantStatus, tc.wantField, tc.wantMsg)
		}
		if tc.wantStatus == 503 && rec.Header().Get("Retry-After") == "" {
			t.Errorf("503 without Retry-After")
		}
	}
}

// TestMethodNotAllowedHasAllow: a 405 lists the path's methods in Allow (RFC 9110).
func TestMethodNotAllowedHasAllow(t *testing.T) {
	t.Parallel()
	r := mux.NewRouter()
	r.MethodNotAllowedHandler = MethodNotAllowedFor(r)
	r.HandleFunc("/things/{id}", func(http.ResponseWriter, *http.Request) {}).Methods(http.MethodGet, http.MethodHead)
	r.HandleFunc("/things/{id}", func(http.ResponseWriter, *http.Request) {}).Methods(http.MethodPut)
	rec := httptest.NewRecorder()
	r.ServeHTTP(rec, httptest.NewRequest(http.MethodDelete, "/things/7", nil))
	if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD, PUT" {
		t.Errorf("DELETE: %d Allow %q, want 405 Allow \"GET, HEAD, PUT\"", rec.Code, rec.Header().Get("Allow"))
	}
}

// TestClientGoneIsNotAnError: a request whose client went away is logged at debug,
// not as a failed request at ERROR, and answers 499 in the request log.
func TestClientGoneIsNotAnError(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := logRequests(logger, "/health", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, r, fmt.Errorf("enqueue: %w", r.Context().Err()))
	}))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/api/v1/jobs", nil).WithContext(ctx))
	if strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), "status=499") {
		t.Errorf("logs:\n%s", logs.String())
	}
}

// TestHealthRequestsAtDebug: requests under HEALTH_PATH (not a hard-coded /health)
// are logged at debug; others at info.
func TestHealthRequestsAtDebug(t *testing.T) {
	t.Parallel()
	var logs strings.Builder
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	h := logRequests(logger, "/status", nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for _, p := range []string{"/status", "/status/live", "/healthy-cats"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, p, nil))
	}
	if got := logs.String(); strings.Contains(got, "path=/status") || !strings.Contains(got, "path=/healthy-cats") {
		t.Errorf("logs:\n%s", got)
	}
}

// FuzzJobRequest: any body of POST /api/v1/jobs either decodes into a request or is
// refused with a 4xx *Error or a 413, never a panic or a message naming a Go type.
func FuzzJobRequest(f *testing.F) {
	for _, seed := range []string{`{"type":"echo","payload":{"message":"hi"}}`, `{"type":"echo",`, `{"type":"x"} {}`,
		`{"type":"echo","priority":1}`, `{"type":"echo","process_in":"tomorrow"}`, `{"type":"echo","timeout":1e308}`,
		`{"type":"echo","max_retry":"x"}`, `[]`, `null`, `{"type":1}`, `{"unique_for":-5}`, ``} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/api/v1/jobs", bytes.NewReader(body))
		var req jobRequest
		err := DecodeJSON(httptest.NewRecorder(), r, &req)
		if err == nil {
			_ = req.task()
			return
		}
		var e *Error
		var mbe *http.MaxBytesError
		if !errors.As(err, &e) && !errors.As(err, &mbe) {
			t.Fatalf("%q: %T %v", body, err, err)
		}
		if e != nil && (e.Status < 400 || e.Status > 499 || strings.Contains(e.Msg, "web.") || strings.Contains(e.Msg, "int64")) {
			t.Fatalf("%q: %d %q", body, e.Status, e.Msg)
		}
	})
}
