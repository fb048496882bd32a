package web_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/telemetry"
	"github.com/shoestring-go/shoestring/web"
)

// healthServer is the HTTP tier with cached checks "redis" (Degraded) and "queue", a
// request metric and logger, and the health endpoints it serves.
func healthServer(tb testing.TB, logger *slog.Logger, state *health.State) (http.Handler, *health.Endpoints, *prometheus.Registry) {
	tb.Helper()
	bucket, err := storage.OpenBucket(context.Background(), "mem://", storage.BlobCredentials{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bucket.Close() })
	reg := health.NewRegistry(health.Options{Timeout: time.Second, Cache: time.Hour})
	reg.Register(health.Check{Name: "redis", Tags: []string{health.TagReady},
		Checker: health.CheckFunc(func(context.Context) health.Result { return health.Result{Status: health.Degraded} })})
	reg.Register(health.Check{Name: "queue",
		Checker: health.CheckFunc(func(context.Context) health.Result { return health.Result{} })})
	e := &health.Endpoints{Registry: reg, State: state, Details: health.DetailsAuthorized, APIKey: "k",
		CacheMaxAge: 2 * time.Second, CORSOrigins: []string{"https://status.example.com"}, Logger: logger}
	metrics := telemetry.NewRegistry()
	srv := web.NewServer(web.Deps{
		Logger: logger, Bucket: bucket, Health: e, HealthPath: "/status",
		Requests: telemetry.NewHTTP(metrics),
	})
	return srv, e, metrics
}

type answer struct {
	Code   int
	Header http.Header
	Body   string
}

func serve(h http.Handler, req *http.Request) answer {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return answer{Code: rec.Code, Header: rec.Header(), Body: rec.Body.String()}
}

// TestHealthRoutesAnswerAsTheirHandlers: through the whole HTTP tier, every health
// route answers GET, HEAD and preflight exactly as its handler does alone, and each
// request is recorded under the route's template and status; any other method is the
// router's 405 with Allow, recorded as unmatched.
func TestHealthRoutesAnswerAsTheirHandlers(t *testing.T) {
	t.Parallel()
	state := &health.State{}
	state.Set(health.Ready)
	srv, e, metrics := healthServer(t, slog.New(slog.DiscardHandler), state)
	routes := map[string]http.Handler{
		"/status": e.All(), "/status/live": e.Live(), "/status/ready": e.Ready(),
		"/status/redis": e.One("redis"), "/status/queue": e.One("queue"),
	}
	requests := []struct {
		method string
		hdr    []string
	}{
		{method: "GET"},
		{method: "HEAD"},
		{method: "GET", hdr: []string{"Accept", "application/health+json"}},
		{method: "GET", hdr: []string{"Origin", "https://status.example.com"}},
		{method: "OPTIONS", hdr: []string{"Origin", "https://status.example.com"}},
	}
	want := map[string]uint64{}
	for path, h := range routes {
		for _, rq := range requests {
			req := func() *http.Request {
				r := httptest.NewRequest(rq.method, path, nil)
				for i := 0; i+1 < len(rq.hdr); i += 2 {
					r.Header.Set(rq.hdr[i], rq.hdr[i+1])
				}
				return r
			}
			alone, tier := serve(h, req()), serve(srv, req())
			if diff := cmp.Diff(alone, tier); diff != "" {
				t.Errorf("%s %s %v (-handler +tier):\n%s", rq.method, path, rq.hdr, diff)
			}
			want[path+" "+strconv.Itoa(tier.Code)]++
		}
	}
	post := serve(srv, httptest.NewRequest("POST", "/status/live", nil))
	if post.Code != http.StatusMethodNotAllowed || post.Header.Get("Allow") != "GET, HEAD, OPTIONS" {
		t.Errorf("POST /status/live: %d Allow %q, want 405 Allow \"GET, HEAD, OPTIONS\"", post.Code, post.Header.Get("Allow"))
	}
	want[web.RouteUnmatched+" 405"]++
	if diff := cmp.Diff(want, requestCounts(t, metrics)); diff != "" {
		t.Errorf("requests by route and status (-want +got):\n%s", diff)
	}
}

// requestCounts reads shoestring_http_request_duration_seconds as "route code" ->
// requests.
func requestCounts(tb testing.TB, g prometheus.Gatherer) map[string]uint64 {
	tb.Helper()
	mfs, err := g.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	got := map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "shoestring_http_request_duration_seconds" {
			continue
		}
		for _, m := range mf.GetMetric() {
			l := labels(m)
			got[l["route"]+" "+l["code"]] += m.GetHistogram().GetSampleCount()
		}
	}
	return got
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestHealthRequestLog: health requests are logged at debug level, with method, path
// and status, and not at all at info level.
func TestHealthRequestLog(t *testing.T) {
	t.Parallel()
	for _, level := range []slog.Level{slog.LevelDebug, slog.LevelInfo} {
		var logs syncBuffer
		state := &health.State{}
		state.Set(health.Busy)
		srv, _, _ := healthServer(t, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: level})), state)
		serve(srv, httptest.NewRequest("HEAD", "/status/ready", nil))
		line := "level=DEBUG msg=\"http request\" method=HEAD path=/status/ready status=503 duration_ms="
		if got := strings.Contains(logs.String(), line); got != (level == slog.LevelDebug) {
			t.Errorf("at %v, logged %q: %v; logs:\n%s", level, line, got, logs.String())
		}
	}
}

// TestHealthHandlerPanic: a health handler that panics answers 500 with a JSON error,
// logged, recorded under its route, as every other route does.
func TestHealthHandlerPanic(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	srv, _, metrics := healthServer(t, slog.New(slog.NewTextHandler(&logs, nil)), nil) // no State: Ready panics
	got := serve(srv, httptest.NewRequest("GET", "/status/ready", nil))
	if got.Code != 500 || strings.TrimSpace(got.Body) != `{"error":"internal error"}` || !strings.Contains(logs.String(), "handler panic") {
		t.Errorf("%d %s; logs:\n%s", got.Code, got.Body, logs.String())
	}
	if diff := cmp.Diff(map[string]uint64{"/status/ready 500": 1}, requestCounts(t, metrics)); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

// BenchmarkHealthCached serves a cached GET /health through the whole HTTP tier (with
// the request metric, and logging at info) and through a bare handler writing the same
// answer, in process, with a writer that keeps nothing: allocs/op are the tier's own.
func BenchmarkHealthCached(b *testing.B) {
	state := &health.State{}
	state.Set(health.Ready)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, _, _ := healthServer(b, logger, state)
	req := httptest.NewRequest("GET", "/status", nil)
	w := &headerWriter{h: http.Header{}}
	srv.ServeHTTP(w, req) // fills the cache
	canned := w.h.Clone()
	body := []byte(`{"status":"Degraded"}` + "\n")
	bare := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range canned {
			w.Header()[k] = v
		}
		w.WriteHeader(200)
		_, _ = w.Write(body)
	})
	for name, h := range map[string]http.Handler{"shoestring": srv, "bare": bare} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &headerWriter{h: http.Header{}}
				for pb.Next() {
					clear(w.h)
					h.ServeHTTP(w, req)
				}
			})
		})
	}
}

// headerWriter is a ResponseWriter that keeps headers and discards the rest.
type headerWriter struct{ h http.Header }

func (w *headerWriter) Header() http.Header         { return w.h }
func (w *headerWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *headerWriter) WriteHeader(int)             {}
