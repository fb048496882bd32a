package health

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func fixed(s Status, desc string) Checker {
	return CheckFunc(func(context.Context) Result { return Result{Status: s, Description: desc} })
}

func endpoints(details, key string, checks ...Check) *Endpoints {
	reg := NewRegistry(Options{Timeout: 200 * time.Millisecond})
	for _, c := range checks {
		reg.Register(c)
	}
	st := &State{}
	st.Set(Ready)
	return &Endpoints{Registry: reg, State: st, Details: details, APIKey: key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

type body struct {
	Status string                     `json:"status"`
	Checks map[string]json.RawMessage `json:"checks"`
}

func get(tb testing.TB, h http.Handler, method, target string, hdr map[string]string) (int, body) {
	tb.Helper()
	req := httptest.NewRequest(method, target, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var b body
	if method != http.MethodHead {
		if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
			tb.Fatalf("body %q: %v", rec.Body.String(), err)
		}
	} else if rec.Body.Len() != 0 {
		tb.Errorf("HEAD answered with a body")
	}
	return rec.Code, b
}

func TestAggregateIsWorst(t *testing.T) {
	t.Parallel()
	tests := []struct {
		statuses []Status
		want     string
		code     int
	}{
		{[]Status{Healthy, Healthy}, "Healthy", 200},
		{[]Status{Healthy, Degraded}, "Degraded", 200},
		{[]Status{Degraded, Unhealthy, Healthy}, "Unhealthy", 503},
		{nil, "Healthy", 200},
	}
	for _, tc := range tests {
		var checks []Check
		for i, s := range tc.statuses {
			checks = append(checks, Check{Name: string(rune('a' + i)), Checker: fixed(s, "")})
		}
		e := endpoints(DetailsAlways, "", checks...)
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			code, b := get(t, e.All(), m, "/health", nil)
			if code != tc.code || (m == http.MethodGet && (b.Status != tc.want || len(b.Checks) != len(tc.statuses))) {
				t.Errorf("%v %s: %d %+v, want %d %s", tc.statuses, m, code, b, tc.code, tc.want)
			}
		}
	}
}

func TestTimeoutIsUnhealthy(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	// Ignores its context, as a stuck driver call would.
	hang := CheckFunc(func(ctx context.Context) Result { <-release; return Result{} })
	e := endpoints(DetailsAlways, "", Check{Name: "hang", Checker: hang}, Check{Name: "ok", Checker: fixed(Healthy, "")})
	start := time.Now()
	code, b := get(t, e.All(), http.MethodGet, "/health", nil)
	if took := time.Since(start); took > time.Second {
		t.Errorf("answer took %v with a 200ms check timeout", took)
	}
	var hr checkJSON
	json.Unmarshal(b.Checks["hang"], &hr)
	if code != 503 || hr.Status != Unhealthy || hr.Description != "timed out after 200ms" {
		t.Errorf("got %d %+v", code, hr)
	}
}

// TestZeroOptions: a Registry from the zero Options runs its checks with
// DefaultTimeout, as the zero configuration should; it once timed every check out at
// once ("timed out after 0s"). A check with a timeout of its own keeps it.
func TestZeroOptions(t *testing.T) {
	t.Parallel()
	// left reports the time its context leaves it, in Data.
	left := CheckFunc(func(ctx context.Context) Result {
		dl, ok := ctx.Deadline()
		if !ok {
			return Result{Status: Unhealthy, Description: "no deadline"}
		}
		return Result{Status: Degraded, Description: "stale", Data: map[string]any{"left": time.Until(dl)}}
	})
	reg := NewRegistry(Options{})
	reg.Register(Check{Name: "feeds", Checker: left})
	reg.Register(Check{Name: "own", Checker: left, Timeout: 500 * time.Millisecond})
	rep := reg.Run(context.Background(), nil)
	for name, want := range map[string]time.Duration{"feeds": DefaultTimeout, "own": 500 * time.Millisecond} {
		r := rep.Checks[name]
		got, _ := r.Data["left"].(time.Duration)
		if r.Status != Degraded || r.Description != "stale" || got > want || got < want-250*time.Millisecond {
			t.Errorf("%s: %s %q with %v left, want Degraded \"stale\" with about %v", name, r.Status, r.Description, got, want)
		}
	}
	if rep.Status != Degraded {
		t.Errorf("report: %s, want Degraded", rep.Status)
	}
}

// TestDetailsPolicy: without the key the body is the status and nothing else.
func TestDetailsPolicy(t *testing.T) {
	t.Parallel()
	c := Check{Name: "db", Checker: fixed(Unhealthy, "db.internal:5432 refused")}
	tests := []struct {
		name, details, key string
		hdr                map[string]string
		query              string
		want               bool
	}{
		{"never", DetailsNever, "k", map[string]string{"X-Api-Key": "k"}, "", false},
		{"always", DetailsAlways, "", nil, "", true},
		{"authorized without key", DetailsAuthorized, "k", nil, "", false},
		{"authorized wrong key", DetailsAuthorized, "k", map[string]string{"X-Api-Key": "x"}, "", false},
		{"authorized header", DetailsAuthorized, "k", map[string]string{"X-Api-Key": "k"}, "", true},
		{"authorized bearer", DetailsAuthorized, "k", map[string]string{"Authorization": "Bearer k"}, "", true},
		{"authorized query", DetailsAuthorized, "k", nil, "?api-key=k", true},
		{"authorized but no key configured", DetailsAuthorized, "", map[string]string{"X-Api-Key": ""}, "", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := endpoints(tc.details, tc.key, c)
			req := httptest.NewRequest(http.MethodGet, "/health"+tc.query, nil)
			for k, v := range tc.hdr {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			e.All().ServeHTTP(rec, req)
			var m map[string]any
			json.Unmarshal(rec.Body.Bytes(), &m)
			_, has := m["checks"]
			if has != tc.want || (!tc.want && len(m) != 1) {
				t.Errorf("body %s; details wanted: %v", rec.Body.String(), tc.want)
			}
		})
	}
}

func TestReadyFollowsState(t *testing.T) {
	t.Parallel()
	e := endpoints(DetailsNever, "", Check{Name: "redis", Tags: []string{TagReady}, Checker: fixed(Healthy, "")},
		Check{Name: "worker", Checker: fixed(Unhealthy, "")})
	for _, tc := range []struct {
		state int32
		code  int
	}{{Starting, 503}, {Ready, 200}, {Busy, 503}, {Draining, 503}} {
		e.State.SetBusy(false)
		e.State.Set(tc.state)
		if code, _ := get(t, e.Ready(), http.MethodGet, "/health/ready", nil); code != tc.code {
			t.Errorf("state %d: ready %d, want %d", tc.state, code, tc.code)
		}
		if code, _ := get(t, e.Live(), http.MethodGet, "/health/live", nil); code != 200 {
			t.Errorf("state %d: live %d", tc.state, code)
		}
	}
	e.State.Set(Ready) // Draining is final
	if e.State.Get() != Draining || e.State.SetBusy(true) {
		t.Errorf("Draining was left")
	}
	// Clearing Busy while the worker is still starting does not claim Ready.
	var st State
	st.Set(Busy)
	st.SetBusy(false)
	if st.Get() != Starting {
		t.Errorf("busy then ready during start-up: %s, want starting", st.String())
	}
}

// failingWriter is a client that went away: every write fails.
type failingWriter struct {
	header http.Header
	code   int
}

func (f *failingWriter) Header() http.Header  { return f.header }
func (f *failingWriter) WriteHeader(code int) { f.code = code }
func (f *failingWriter) Write([]byte) (int, error) {
	return 0, errors.New("write: broken pipe")
}

// TestNilLoggerWriteError: Endpoints without a Logger answer a client that went away
// without panicking, on the general path (a check's first run) and on the cached one.
func TestNilLoggerWriteError(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(Options{Cache: time.Minute})
	reg.Register(Check{Name: "ok", Checker: fixed(Healthy, "")})
	st := &State{}
	st.Set(Ready)
	e := &Endpoints{Registry: reg, State: st, CacheMaxAge: time.Minute}
	for _, path := range []string{"/health", "/health", "/health/ready", "/health/ok"} {
		w := &failingWriter{header: http.Header{}}
		h := e.All()
		switch path {
		case "/health/ready":
			h = e.Ready()
		case "/health/ok":
			h = e.One("ok")
		}
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		if w.code != http.StatusOK {
			t.Errorf("GET %s: status %d, want 200", path, w.code)
		}
	}
}
