package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/mux"
	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
	"github.com/shoestring-go/shoestring/worker/task"
)

// greet is a user's task kind: a typed payload with Validate.
type greet struct {
	Name string `json:"name"`
}

func (greet) Kind() string { return "test:greet" }

func (g greet) Validate() error {
	if g.Name == "" {
		return errors.New("name must not be empty")
	}
	return nil
}

// greetApp is a whole user app: a kind, a route that enqueues it, a route that panics,
// and a health check.
func greetApp(h *host.Host) {
	host.Register(h, func(ctx context.Context, t *worker.Task, g greet) (any, error) {
		return map[string]string{"greeting": "hello " + g.Name}, nil
	}, host.Queue("low"), host.MaxRetry(3))
	h.Router().HandleFunc("/greet/{name}", func(w http.ResponseWriter, r *http.Request) {
		id, err := h.Enqueue(r.Context(), greet{Name: mux.Vars(r)["name"]})
		if err != nil {
			web.WriteError(w, r, err)
			return
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]string{"id": id})
	}).Methods(http.MethodPost)
	h.Router().HandleFunc("/boom", func(w http.ResponseWriter, r *http.Request) { panic("boom") })
	h.Router().HandleFunc("/echo-body", func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			web.WriteError(w, r, err)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}).Methods(http.MethodPost)
	h.Check(health.Check{Name: "feeds", Checker: health.CheckFunc(func(ctx context.Context) health.Result {
		return health.Result{Status: health.Degraded, Description: "feed source slow"}
	})})
}

func getJSON(tb testing.TB, url string, want int, v any) {
	tb.Helper()
	resp, err := http.Get(url)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		tb.Fatalf("GET %s: %d %s, want %d", url, resp.StatusCode, body, want)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			tb.Fatalf("GET %s: %v in %s", url, err, body)
		}
	}
}

// testToken is the API_TOKEN the tests' apps run with; post and apiPost send it.
const testToken = "test-token"

// apiPost posts body as JSON with the test token.
func apiPost(url, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	return http.DefaultClient.Do(req)
}

// post sends body with content type ct and the test token.
func post(tb testing.TB, url, ct, body string) (int, map[string]any) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func waitCompleted(tb testing.TB, base, id string) storage.Job {
	tb.Helper()
	var j storage.Job
	waitFor(tb, 15*time.Second, func() bool {
		resp, err := http.Get(base + "/api/v1/jobs/" + id)
		if err != nil {
			tb.Fatal(err)
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			return false // enqueued straight into asynq: no record until the worker starts it
		}
		if err := json.NewDecoder(resp.Body).Decode(&j); err != nil {
			tb.Fatal(err)
		}
		return j.State == storage.StateCompleted || j.State == storage.StateFailed
	})
	return j
}

// TestUserApp: a user's kind, route and check work through the host exactly as the
// built-in ones do.
func TestUserApp(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	a := hosttest.Start(t, greetApp, map[string]string{"REDIS_URL": r.URL(), "API_TOKEN": testToken, "HEALTH_DETAILS": "always",
		"MAX_UPLOAD_BYTES": "1KiB"})

	// The user's route enqueues a typed task that completes with the handler's result,
	// on the kind's default queue.
	code, body := post(t, a.URL+"/greet/ada", "", "")
	if code != http.StatusAccepted {
		t.Fatalf("POST /greet/ada: %d %v", code, body)
	}
	j := waitCompleted(t, a.URL, body["id"].(string))
	if j.State != storage.StateCompleted || string(j.Result) != `{"greeting":"hello ada"}` || j.Queue != "low" {
		t.Fatalf("job = %+v", j)
	}

	// POST /api/v1/jobs: Validate's message, an unknown field, then a valid payload.
	code, body = post(t, a.URL+"/api/v1/jobs", "application/json", `{"type":"test:greet","payload":{"name":""}}`)
	if code != http.StatusBadRequest || !strings.Contains(body["error"].(string), "name must not be empty") || body["field"] != "payload" {
		t.Errorf("invalid payload: %d %v", code, body)
	}
	code, body = post(t, a.URL+"/api/v1/jobs", "application/json", `{"type":"test:greet","payload":{"name":"x","age":3}}`)
	if code != http.StatusBadRequest || !strings.Contains(body["error"].(string), `unknown field "age"`) {
		t.Errorf("unknown payload field: %d %v", code, body)
	}
	// Messages name JSON types, never Go's.
	for req, want := range map[string]string{
		`{"type":"test:greet","payload":{"name":5}}`:    "invalid payload: name: must be a string",
		`{"type":"test:greet","payload":[1]}`:           "invalid payload: must be a JSON object",
		`{"type":"test:greet","payload":null}`:          "invalid payload: must be a JSON object, not null",
		`{"type":"test:greet","max_retry":"x"}`:         "max_retry must be a whole number",
		`{"type":"test:greet","payload":{"name":"x"}} `: "",
	} {
		code, body = post(t, a.URL+"/api/v1/jobs", "application/json", req)
		if want == "" {
			if code != http.StatusAccepted {
				t.Errorf("%s: %d %v", req, code, body)
			}
			continue
		}
		if code != http.StatusBadRequest || body["error"] != want {
			t.Errorf("%s: %d %v, want 400 %q", req, code, body, want)
		}
	}
	code, body = post(t, a.URL+"/api/v1/jobs", "application/json", `{"type":"test:greet","payload":{"name":"bo"}}`)
	if code != http.StatusAccepted {
		t.Fatalf("valid payload: %d %v", code, body)
	}
	if j := waitCompleted(t, a.URL, body["id"].(string)); string(j.Result) != `{"greeting":"hello bo"}` {
		t.Errorf("job = %+v", j)
	}

	// The user's check: in the aggregate, at /health/feeds, and in the IETF output.
	var agg struct {
		Status string
		Checks map[string]struct{ Status, Description string }
	}
	getJSON(t, a.URL+"/health", http.StatusOK, &agg)
	if agg.Status != "Degraded" || agg.Checks["feeds"].Description != "feed source slow" {
		t.Errorf("aggregate = %+v", agg)
	}
	getJSON(t, a.URL+"/health/feeds", http.StatusOK, &agg)
	if agg.Status != "Degraded" {
		t.Errorf("/health/feeds = %+v", agg)
	}
	req, _ := http.NewRequest(http.MethodGet, a.URL+"/health", nil)
	req.Header.Set("Accept", "application/health+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(raw), `"feeds:status"`) || !strings.Contains(string(raw), `"warn"`) {
		t.Errorf("IETF output lacks the user check: %s", raw)
	}

	// User routes sit behind the host's middleware: a panic is a JSON 500 and the
	// server lives on; a body over MAX_UPLOAD_BYTES is 413; unknown routes are JSON 404s.
	code, body = post(t, a.URL+"/boom", "", "")
	if code != http.StatusInternalServerError || body["error"] != "internal error" {
		t.Errorf("panicking route: %d %v", code, body)
	}
	code, body = post(t, a.URL+"/echo-body", "text/plain", strings.Repeat("x", 2048))
	if code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d %v", code, body)
	}
	if code, _ := post(t, a.URL+"/echo-body", "text/plain", "small"); code != http.StatusNoContent {
		t.Errorf("small body: %d", code)
	}
	getJSON(t, a.URL+"/nope", http.StatusNotFound, &body)
	if body["error"] != "no such route" {
		t.Errorf("404 body %v", body)
	}
	if !strings.Contains(a.Output(), `"msg":"handler panic"`) || !strings.Contains(a.Output(), `"path":"/boom","status":500`) {
		t.Errorf("the panic was not logged as a request with status 500")
	}
}

// TestEnqueueErrors: Enqueue refuses bad work with the documented errors and leaves no
// job behind; a fixed JobID enqueues once.
func TestEnqueueErrors(t *testing.T) {
	t.Parallel()
	h := host.New()
	greetApp(h)
	if _, err := h.Enqueue(context.Background(), greet{Name: "early"}); !errors.Is(err, host.ErrNotRunning) {
		t.Errorf("Enqueue before Run: %v", err)
	}

	r := storagetest.StartRedis(t)
	a := hosttest.Start(t, greetApp, map[string]string{"REDIS_URL": r.URL(), "API_TOKEN": testToken}, hosttest.Options{WebOnly: true})
	ctx := context.Background()
	var ie *host.InvalidError
	if _, err := a.Web.Enqueue(ctx, greet{}); !errors.As(err, &ie) || ie.Msg != "name must not be empty" {
		t.Errorf("invalid args: %v", err)
	}
	if _, err := a.Web.Enqueue(ctx, greet{Name: "x"}, host.Queue("nosuch")); !errors.Is(err, task.ErrUnknownQueue) {
		t.Errorf("unserved queue: %v", err)
	}
	if _, err := a.Web.Enqueue(ctx, greet{Name: "x"}, host.Timeout(time.Millisecond)); !errors.As(err, &ie) || ie.Field != "timeout" {
		t.Errorf("timeout out of range: %v", err)
	}
	if _, err := a.Web.Enqueue(ctx, unregistered{}); !errors.Is(err, task.ErrUnknownType) {
		t.Errorf("unregistered kind: %v", err)
	}
	if _, err := a.Web.Enqueue(ctx, greet{Name: "x"}, host.JobID(strings.Repeat("j", 129))); !errors.As(err, &ie) || ie.Field != "id" {
		t.Errorf("JobID of 129 characters: %v", err)
	}
	keys, _ := r.Client(t).Keys(ctx, "shoestring:{*}:job:*").Result()
	if len(keys) != 0 {
		t.Errorf("refused jobs left records: %v", keys)
	}

	id, err := a.Web.Enqueue(ctx, greet{Name: "x"}, host.JobID("greet@1700000000"), host.ProcessIn(time.Hour), host.MaxRetry(1))
	if err != nil || id != "greet@1700000000" {
		t.Fatalf("JobID: %q %v", id, err)
	}
	if _, err := a.Web.Enqueue(ctx, greet{Name: "y"}, host.JobID("greet@1700000000")); !errors.Is(err, task.ErrDuplicate) {
		t.Errorf("same JobID again: %v", err)
	}
	ti, err := asynq.NewInspectorFromRedisClient(r.Client(t)).GetTaskInfo("low", id)
	if err != nil || ti.State != asynq.TaskStateScheduled || ti.MaxRetry != 1 || string(ti.Payload) != `{"name":"x"}` {
		t.Errorf("task = %+v, %v", ti, err)
	}

	// A fresh id's record goes with its task (storage.WithRecord); when asynq refuses
	// the task (UniqueFor), the record is undone.
	first, err := a.Web.Enqueue(ctx, greet{Name: "once"}, host.UniqueFor(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if j, err := a.Web.Job(ctx, first); err != nil || j.State != "pending" {
		t.Errorf("record of a fresh id: %+v, %v", j, err)
	}
	before, _ := r.Client(t).Keys(ctx, "shoestring:{*}:job:*").Result()
	if _, err := a.Web.Enqueue(ctx, greet{Name: "once"}, host.UniqueFor(time.Minute)); !errors.Is(err, task.ErrDuplicate) {
		t.Errorf("unique task again: %v", err)
	}
	after, _ := r.Client(t).Keys(ctx, "shoestring:{*}:job:*").Result()
	if len(after) != len(before) {
		t.Errorf("a refused unique task left its record: %d records, were %d", len(after), len(before))
	}
}

type unregistered struct{}

func (unregistered) Kind() string { return "test:unregistered" }

// TestWorkerRefusesInvalidPayload: a payload that bypassed the web tier's checks (here
// enqueued straight into asynq) fails at once in the worker, with Validate's message.
func TestWorkerRefusesInvalidPayload(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	a := hosttest.Start(t, greetApp, map[string]string{"REDIS_URL": r.URL(), "API_TOKEN": testToken})
	client := asynq.NewClientFromRedisClient(r.Client(t))
	for id, payload := range map[string]string{"empty-name": `{"name":""}`, "extra-field": `{"name":"x","age":1}`} {
		if _, err := client.Enqueue(asynq.NewTask("test:greet", []byte(payload)), asynq.TaskID(id), asynq.Queue("low"), asynq.MaxRetry(5)); err != nil {
			t.Fatal(err)
		}
		j := waitCompleted(t, a.URL, id)
		if j.State != storage.StateFailed || j.Attempts != 1 {
			t.Errorf("%s: job = %+v, want failed after 1 attempt", id, j)
		}
	}
}

// mustPanic fails the test unless fn panics with a message containing want.
func mustPanic(t *testing.T, want string, fn func()) {
	t.Helper()
	defer func() {
		t.Helper()
		p := recover()
		if p == nil || !strings.Contains(fmt.Sprint(p), want) {
			t.Errorf("panic = %v, want one containing %q", p, want)
		}
	}()
	fn()
}

type badKind struct{}

func (badKind) Kind() string { return "has space" }

type ptrKind struct{ n int }

func (p *ptrKind) Kind() string { return fmt.Sprint("k", p.n) }

// TestProgrammingErrorsPanic: registrations that cannot run as written panic with a
// message that says what is wrong.
func TestProgrammingErrorsPanic(t *testing.T) {
	t.Parallel()
	noop := func(context.Context, *worker.Task, greet) (any, error) { return nil, nil }
	mustPanic(t, `kind "test:greet" registered twice`, func() {
		h := host.New()
		host.Register(h, noop)
		host.Register(h, noop)
	})
	mustPanic(t, `kind "has space"`, func() {
		host.Register(host.New(), func(context.Context, *worker.Task, badKind) (any, error) { return nil, nil })
	})
	mustPanic(t, "panicked on the zero value", func() {
		host.Register(host.New(), func(context.Context, *worker.Task, *ptrKind) (any, error) { return nil, nil })
	})
	mustPanic(t, "nil handler", func() { host.Register[greet](host.New(), nil) })
	mustPanic(t, "BeforeEnqueue is for host_test.badKind, not host_test.greet", func() {
		host.Register(host.New(), noop, host.BeforeEnqueue(func(context.Context, badKind) error { return nil }))
	})
	mustPanic(t, `health check "feeds" added twice`, func() {
		h := host.New()
		greetApp(h)
		h.Check(health.Check{Name: "feeds", Checker: health.CheckFunc(nil)})
	})
	mustPanic(t, "health check name", func() {
		host.New().Check(health.Check{Name: "Bad Name", Checker: health.CheckFunc(nil)})
	})
	host.New().Check(health.Check{Name: strings.Repeat("c", 63), Checker: health.CheckFunc(nil)})
	mustPanic(t, "health check name", func() {
		host.New().Check(health.Check{Name: strings.Repeat("c", 64), Checker: health.CheckFunc(nil)})
	})

	h := host.New()
	_ = h.Run(context.Background(), []string{"app", "version"}, func(string) string { return "" }, io.Discard, io.Discard)
	mustPanic(t, "Register called after Run started", func() { host.Register(h, noop) })
	mustPanic(t, "Check called after Run started", func() {
		h.Check(health.Check{Name: "late", Checker: health.CheckFunc(nil)})
	})
}

// TestShadowingRoutesPanic: an app route under one of the host's paths panics at Run,
// before anything is opened; one beside them does not.
func TestShadowingRoutesPanic(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	for _, tc := range []struct {
		path, healthPath, want string
	}{
		{"/health/{name}", "", `app route "/health/{name}" is under the host's own /health routes`},
		{"/status", "/status", `"/status" is under the host's own /status routes`},
		{"/admin/stats", "", "/admin"},
		{"/api/v1/jobs/{id}/cancel", "", "/api/v1/jobs"},
		{"/api/v1/files/{key}", "", "/api/v1/files"},
		{"/api/v1/queues", "", "/api/v1/queues"},
		{"/api/v1/schedules", "", "/api/v1/schedules"},
	} {
		h := host.New()
		h.Router().HandleFunc(tc.path, func(http.ResponseWriter, *http.Request) {})
		env := map[string]string{"REDIS_URL": r.URL(), "PORT": "0", "HEALTH_PATH": tc.healthPath}
		mustPanic(t, tc.want, func() {
			_ = h.Run(context.Background(), []string{"app", "web"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
		})
	}
	// Beside the host's paths: /healthz, /api/v1/jobsearch and a catch-all are fine.
	a := hosttest.Start(t, func(h *host.Host) {
		for _, p := range []string{"/healthz", "/api/v1/jobsearch", "/{page}"} {
			h.Router().HandleFunc(p, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
		}
	}, map[string]string{"REDIS_URL": r.URL()}, hosttest.Options{WebOnly: true})
	getJSON(t, a.URL+"/health/live", http.StatusOK, nil) // the host's route wins over /{page}
	for _, p := range []string{"/healthz", "/api/v1/jobsearch", "/about"} {
		resp, err := http.Get(a.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusTeapot {
			t.Errorf("GET %s: %d, want the app's 418", p, resp.StatusCode)
		}
	}
}

// TestKindQueueNotServed: a kind whose default queue QUEUES lacks stops the start with
// a configuration error (exit 2), not a failure at every Enqueue.
func TestKindQueueNotServed(t *testing.T) {
	t.Parallel()
	h := host.New()
	greetApp(h) // queue "low"
	env := map[string]string{"REDIS_URL": "redis://127.0.0.1:1", "QUEUES": "default"}
	err := h.Run(context.Background(), []string{"app", "web"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	if host.ExitCode(err) != 2 || !strings.Contains(fmt.Sprint(err), `task kind test:greet needs queue "low"`) {
		t.Errorf("Run = %v (exit %d)", err, host.ExitCode(err))
	}
}

// TestBuiltinCheckNamePanics: an app check named like a built-in one panics at Run.
func TestBuiltinCheckNamePanics(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	h := host.New()
	h.Check(health.Check{Name: "redis", Checker: health.CheckFunc(nil)})
	env := map[string]string{"REDIS_URL": r.URL(), "PORT": "0", "BLOB_URL": "mem://"}
	mustPanic(t, `health check "redis" has the name of a built-in check`, func() {
		_ = h.Run(context.Background(), []string{"app", "web"}, func(k string) string { return env[k] }, io.Discard, io.Discard)
	})
}

// getJSONAuth GETs url with the test token, wants 200, and decodes into v.
func getJSONAuth(tb testing.TB, url string, v any) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatal(err)
	}
}
