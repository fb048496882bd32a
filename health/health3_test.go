package health

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCrowdRunsEachCheckOnce: 200 concurrent requests to /health run each check once,
// and Cache-Control advertises the cache time.
func TestCrowdRunsEachCheckOnce(t *testing.T) {
	t.Parallel()
	reg := NewRegistry(Options{Timeout: time.Second, Cache: 5 * time.Second})
	var runs [3]atomic.Int64
	for i := range runs {
		reg.Register(Check{Name: fmt.Sprintf("c%d", i), Checker: CheckFunc(func(context.Context) Result {
			runs[i].Add(1)
			time.Sleep(50 * time.Millisecond) // long enough for the crowd to pile up
			return Result{Status: Healthy}
		})})
	}
	st := &State{}
	st.Set(Ready)
	e := &Endpoints{Registry: reg, State: st, Details: DetailsNever, CacheMaxAge: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}
	srv := httptest.NewServer(e.All())
	defer srv.Close()

	var wg sync.WaitGroup
	var bad atomic.Int64
	var cacheControl atomic.Value
	for range 200 {
		wg.Go(func() {
			resp, err := http.Get(srv.URL)
			if err != nil || resp.StatusCode != 200 {
				bad.Add(1)
				return
			}
			cacheControl.Store(resp.Header.Get("Cache-Control"))
			resp.Body.Close()
		})
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Fatalf("%d requests failed", bad.Load())
	}
	for i := range runs {
		if n := runs[i].Load(); n != 1 {
			t.Errorf("check c%d ran %d times for 200 requests, want 1", i, n)
		}
		if n := reg.Runs(fmt.Sprintf("c%d", i)); n != 1 {
			t.Errorf("Runs(c%d) = %d", i, n)
		}
	}
	if cc := cacheControl.Load(); cc != "max-age=5" {
		t.Errorf("Cache-Control = %v, want max-age=5", cc)
	}
	if n := e.pings.Load(); n != 200 {
		t.Errorf("pings counted %d, want 200", n)
	}
}

// TestFailureThreshold: a check turns Unhealthy only on its Nth consecutive failure;
// each status change is logged once and kept in the history.
func TestFailureThreshold(t *testing.T) {
	t.Parallel()
	var logs bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedBuf{b: &logs, mu: &mu}, nil))
	reg := NewRegistry(Options{Timeout: time.Second, FailureThreshold: 3, Logger: logger})
	var failing atomic.Bool
	reg.Register(Check{Name: "flaky", Checker: CheckFunc(func(context.Context) Result {
		if failing.Load() {
			return Result{Status: Unhealthy, Description: "down"}
		}
		return Result{Status: Healthy}
	})})
	run := func() Status { return reg.Run(context.Background(), nil).Status }

	want := []Status{Healthy}
	got := []Status{run()}
	failing.Store(true)
	for range 4 {
		got = append(got, run())
	}
	want = append(want, Degraded, Degraded, Unhealthy, Unhealthy)
	failing.Store(false)
	got = append(got, run())
	want = append(want, Healthy)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("statuses (-want +got):\n%s", diff)
	}
	var changes []string
	for _, c := range reg.History() {
		changes = append(changes, c.From.String()+">"+c.To.String())
	}
	if diff := cmp.Diff([]string{"Healthy>Degraded", "Degraded>Unhealthy", "Unhealthy>Healthy"}, changes); diff != "" {
		t.Errorf("history (-want +got):\n%s", diff)
	}
	mu.Lock()
	n := strings.Count(logs.String(), "health check status changed")
	mu.Unlock()
	if n != 3 {
		t.Errorf("%d status-change log lines, want 3:\n%s", n, logs.String())
	}
}

type lockedBuf struct {
	b  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// TestIETFFormat: Accept: application/health+json answers in the draft's format.
func TestIETFFormat(t *testing.T) {
	t.Parallel()
	e := endpoints(DetailsAlways, "",
		Check{Name: "redis", Measurement: "responseTime", ComponentType: "datastore", Checker: fixed(Healthy, "")},
		Check{Name: "queue", Measurement: "latency", Checker: fixed(Degraded, "slow")})
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("Accept", "application/health+json, application/json;q=0.5")
	rec := httptest.NewRecorder()
	e.All().ServeHTTP(rec, req)
	if ct := rec.Header().Get("Content-Type"); ct != ContentTypeHealthJSON || rec.Code != 200 {
		t.Fatalf("%d %s", rec.Code, ct)
	}
	var b struct {
		Status string `json:"status"`
		Checks map[string][]struct {
			ComponentType, Status, ObservedUnit, Output string
		} `json:"checks"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if b.Status != "warn" || len(b.Checks) != 2 {
		t.Fatalf("body %s", rec.Body)
	}
	r, q := b.Checks["redis:responseTime"], b.Checks["queue:latency"]
	if len(r) != 1 || r[0].Status != "pass" || r[0].ComponentType != "datastore" || r[0].ObservedUnit != "ms" {
		t.Errorf("redis:responseTime = %+v", r)
	}
	if len(q) != 1 || q[0].Status != "warn" || q[0].Output != "slow" {
		t.Errorf("queue:latency = %+v", q)
	}
	// Without details: the status alone.
	e2 := endpoints(DetailsNever, "", Check{Name: "x", Checker: fixed(Unhealthy, "secret host")})
	rec = httptest.NewRecorder()
	e2.All().ServeHTTP(rec, req)
	if rec.Code != 503 || strings.TrimSpace(rec.Body.String()) != `{"status":"fail"}` {
		t.Errorf("terse IETF: %d %s", rec.Code, rec.Body)
	}
}

func TestCORS(t *testing.T) {
	t.Parallel()
	e := endpoints(DetailsNever, "", Check{Name: "x", Checker: fixed(Healthy, "")})
	e.CORSOrigins = []string{"https://status.example.com"}
	for _, tc := range []struct {
		origin, method, want string
		code                 int
	}{
		{"https://status.example.com", "GET", "https://status.example.com", 200},
		{"https://evil.example.com", "GET", "", 200},
		{"https://status.example.com", "OPTIONS", "https://status.example.com", 204},
	} {
		req := httptest.NewRequest(tc.method, "/health", nil)
		req.Header.Set("Origin", tc.origin)
		rec := httptest.NewRecorder()
		e.All().ServeHTTP(rec, req)
		if got := rec.Header().Get("Access-Control-Allow-Origin"); got != tc.want || rec.Code != tc.code {
			t.Errorf("%s from %s: %d allow-origin %q, want %d %q", tc.method, tc.origin, rec.Code, got, tc.code, tc.want)
		}
	}
	off := endpoints(DetailsNever, "", Check{Name: "x", Checker: fixed(Healthy, "")})
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("Origin", "https://status.example.com")
	rec := httptest.NewRecorder()
	off.All().ServeHTTP(rec, req)
	if rec.Header().Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("CORS headers without HEALTH_CORS_ORIGINS")
	}
}

// TestKeepAliveDetails: details show the ping count, last time and user agent.
func TestKeepAliveDetails(t *testing.T) {
	t.Parallel()
	e := endpoints(DetailsAlways, "", Check{Name: "x", Checker: fixed(Healthy, "")})
	for _, ua := range []string{"UptimeRobot/2.0", "Pingdom.com_bot"} {
		req := httptest.NewRequest("GET", "/health", nil)
		req.Header.Set("User-Agent", ua)
		e.All().ServeHTTP(httptest.NewRecorder(), req)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("User-Agent", "Azure-HealthCheck")
	e.All().ServeHTTP(rec, req)
	var b reportJSON
	json.Unmarshal(rec.Body.Bytes(), &b)
	if b.Pings == nil || b.Pings.Count != 3 || b.Pings.LastUserAgent != "Azure-HealthCheck" || b.Pings.LastAt == nil {
		t.Errorf("pings = %+v", b.Pings)
	}
}

func TestAdmin(t *testing.T) {
	t.Parallel()
	st := &State{}
	st.Set(Ready)
	recycled := make(chan struct{}, 1)
	a := &Admin{State: st, Token: "s3cret", Started: time.Now(), Recycle: func() { recycled <- struct{}{} }}
	call := func(h http.Handler, token string) int {
		req := httptest.NewRequest("POST", "/admin/x", nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		io.Copy(io.Discard, rec.Body)
		return rec.Code
	}
	if c := call(a.Busy(), "wrong"); c != 401 || st.Get() != Ready {
		t.Fatalf("wrong token: %d, state %s", c, st)
	}
	if c := call(a.Busy(), ""); c != 401 {
		t.Fatalf("no token: %d", c)
	}
	if c := call(a.Busy(), "s3cret"); c != 200 || st.Get() != Busy {
		t.Fatalf("busy: %d %s", c, st)
	}
	if c := call(a.Ready(), "s3cret"); c != 200 || st.Get() != Ready {
		t.Fatalf("ready: %d %s", c, st)
	}
	if c := call(a.Status(), "s3cret"); c != 200 {
		t.Fatalf("status: %d", c)
	}
	if c := call(a.RecycleHandler(), "s3cret"); c != 202 || st.Get() != Busy {
		t.Fatalf("recycle: %d %s", c, st)
	}
	select {
	case <-recycled:
	default:
		t.Fatal("recycle not triggered")
	}
	st.Set(Draining)
	if c := call(a.Ready(), "s3cret"); c != 409 || st.Get() != Draining {
		t.Errorf("ready while draining: %d %s", c, st)
	}
}

// BenchmarkCachedHealth reports the requests per second of a cached /health as a
// ratio to a bare net/http handler answering 200, both served over loopback HTTP in
// the same run (metric health/bare; 1.0 would be free).
func BenchmarkCachedHealth(b *testing.B) {
	reg := NewRegistry(Options{Timeout: time.Second, Cache: time.Hour})
	for _, n := range []string{"self", "redis", "storage", "worker", "queue"} {
		reg.Register(Check{Name: n, Checker: fixed(Healthy, "")})
	}
	st := &State{}
	st.Set(Ready)
	e := &Endpoints{Registry: reg, State: st, Details: DetailsNever, CacheMaxAge: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	health := httptest.NewServer(e.All())
	defer health.Close()
	bare := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(200) }))
	defer bare.Close()
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	hit := func(url string, n int) time.Duration {
		start := time.Now()
		var wg sync.WaitGroup
		per := n / 8
		for range 8 {
			wg.Go(func() {
				for range per {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			})
		}
		wg.Wait()
		return time.Since(start)
	}
	hit(health.URL, 800) // warm the cache and the connections
	hit(bare.URL, 800)
	b.ResetTimer()
	var th, tb time.Duration
	for range b.N {
		tb += hit(bare.URL, 800)
		th += hit(health.URL, 800)
	}
	b.ReportMetric(float64(tb)/float64(th), "health/bare")
	b.ReportMetric(float64(800*b.N)/th.Seconds(), "health_req/s")
	b.ReportMetric(float64(800*b.N)/tb.Seconds(), "bare_req/s")
}
