package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

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
