package web_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
)

// respond runs handler on one request and returns "STATUS BODY".
func respond(handler http.HandlerFunc, method, body string) string {
	rec := httptest.NewRecorder()
	handler(rec, httptest.NewRequest(method, "/comments", strings.NewReader(body)))
	return fmt.Sprintf("%d %s", rec.Code, strings.TrimSpace(rec.Body.String()))
}

// DecodeJSON reads a request body strictly; its errors are client errors (400, naming
// the field when a value has the wrong type), which a route passes to WriteError.
func ExampleDecodeJSON() {
	postComment := func(w http.ResponseWriter, r *http.Request) {
		var c struct {
			Text  string `json:"text"`
			Stars int    `json:"stars"`
		}
		if err := web.DecodeJSON(w, r, &c); err != nil {
			web.WriteError(w, r, err)
			return
		}
		web.WriteJSON(w, http.StatusCreated, c)
	}
	fmt.Println(respond(postComment, "POST", `{"text":"great","stars":5}`))
	fmt.Println(respond(postComment, "POST", `{"text":"great","stars":"five"}`))
	fmt.Println(respond(postComment, "POST", `{"text":"great","likes":1}`))
	fmt.Println(respond(postComment, "POST", `{"text":`))
	// Output:
	// 201 {"text":"great","stars":5}
	// 400 {"error":"stars must be a whole number","field":"stars"}
	// 400 {"error":"malformed JSON: unknown field \"likes\""}
	// 400 {"error":"malformed JSON: unexpected EOF"}
}

// WriteJSON answers v as JSON with a status.
func ExampleWriteJSON() {
	health := func(w http.ResponseWriter, r *http.Request) {
		web.WriteJSON(w, http.StatusOK, map[string]any{"feeds": 3, "stale": []string{}})
	}
	rec := httptest.NewRecorder()
	health(rec, httptest.NewRequest("GET", "/", nil))
	fmt.Println(rec.Code, rec.Header().Get("Content-Type"), strings.TrimSpace(rec.Body.String()))
	// Output:
	// 200 application/json {"feeds":3,"stale":[]}
}

// WriteError is the one place errors become status codes, as the host's own routes
// answer them. Anything it does not know is a 500 whose message is logged, not shown.
func ExampleWriteError() {
	for _, err := range []error{
		&web.Error{Status: http.StatusConflict, Msg: "comment already posted"},
		&host.InvalidError{Field: "text", Msg: "must not be empty"},
		host.ErrDuplicate,
		host.ErrNotFound,
		fmt.Errorf("listing comments: %w", storage.ErrNotFound),
		errors.New("pq: password authentication failed for user \"app\""), // logged, not shown
	} {
		fmt.Println(respond(func(w http.ResponseWriter, r *http.Request) { web.WriteError(w, r, err) }, "GET", ""))
	}
	// Output:
	// 409 {"error":"comment already posted"}
	// 400 {"error":"text must not be empty","field":"text"}
	// 409 {"error":"an identical job is already queued"}
	// 404 {"error":"not found"}
	// 404 {"error":"listing comments: not found"}
	// 500 {"error":"internal error"}
}

// An *Error carries the status and message a client sees, and the field it is about.
func ExampleError() {
	err := &web.Error{Status: http.StatusUnprocessableEntity, Msg: "stars must be 1-5", Field: "stars"}
	fmt.Println(respond(func(w http.ResponseWriter, r *http.Request) { web.WriteError(w, r, err) }, "POST", ""))
	// Output:
	// 422 {"error":"stars must be 1-5","field":"stars"}
}

// WriteAccepted answers 202 for a job, as POST /api/v1/jobs does: the client polls
// its status URL.
func ExampleWriteAccepted() {
	rec := httptest.NewRecorder()
	web.WriteAccepted(rec, storage.Job{ID: "k3x", Type: "image:resize", State: storage.StatePending})
	fmt.Println(rec.Code, rec.Header().Get("Location"))
	fmt.Println(strings.TrimSpace(rec.Body.String()))
	// Output:
	// 202 /api/v1/jobs/k3x
	// {"id":"k3x","type":"image:resize","state":"pending","status_url":"/api/v1/jobs/k3x"}
}

// AddRequestLogAttrs puts what a handler did on the request's own "http request" log
// line, instead of a line of its own. Outside a request it adds nothing.
func ExampleAddRequestLogAttrs() {
	redis, err := storage.StartEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer redis.Stop()
	app := func(h *host.Host) {
		h.Router().HandleFunc("/comments", func(w http.ResponseWriter, r *http.Request) {
			web.AddRequestLogAttrs(r.Context(), "comment_id", "c42")
			w.WriteHeader(http.StatusCreated)
		}).Methods(http.MethodPost)
	}
	a, err := hosttest.Run(app, map[string]string{"REDIS_URL": redis.URL()}, hosttest.Options{WebOnly: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Stop()

	resp, err := http.Post(a.URL+"/comments", "text/plain", strings.NewReader("first!"))
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	for line := range strings.Lines(a.Output()) {
		var l struct {
			Msg, Path string
			CommentID string `json:"comment_id"`
		}
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "http request" && l.Path == "/comments" {
			fmt.Println(l.Msg, l.Path, l.CommentID)
		}
	}
	fmt.Println(web.AddRequestLogAttrs(context.Background(), "comment_id", "c42"))
	// Output:
	// http request /comments c42
	// false
}
