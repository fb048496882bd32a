package web_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/telemetry"
	"github.com/shoestring-go/shoestring/web"
)

// newServer is the host's HTTP tier with metrics, on a registry of its own, and an app
// route at /reports/{id}; no Redis (the routes exercised here do not touch it).
func newServer(tb testing.TB, tokens ...string) (http.Handler, *prometheus.Registry) {
	tb.Helper()
	bucket, err := storage.OpenBucket(context.Background(), "mem://", storage.BlobCredentials{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { bucket.Close() })
	reg := telemetry.NewRegistry()
	telemetry.NewJobs(reg).Init("echo", "default")
	app := mux.NewRouter()
	app.HandleFunc("/reports/{id}", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) })
	logger := slog.New(slog.DiscardHandler)
	return web.NewServer(web.Deps{
		Logger:        logger,
		Bucket:        bucket,
		Health:        &health.Endpoints{Registry: health.NewRegistry(health.Options{}), State: &health.State{}, Logger: logger},
		HealthPath:    "/health",
		App:           app,
		Metrics:       telemetry.Handler(reg, logger),
		MetricsTokens: tokens,
		Requests:      telemetry.NewHTTP(reg),
	}), reg
}

// TestMetricsAuth: /metrics is 404 with no token configured, 401 without the right
// Bearer token (METRICS_TOKEN or ADMIN_TOKEN, scheme in any case), and the Prometheus
// text format with it.
func TestMetricsAuth(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		tokens []string // METRICS_TOKEN, ADMIN_TOKEN
		auth   string
		want   int
	}{
		{"no token configured", []string{"", ""}, "Bearer anything", http.StatusNotFound},
		{"no token configured, none given", nil, "", http.StatusNotFound},
		{"none given", []string{"m3t", ""}, "", http.StatusUnauthorized},
		{"wrong token", []string{"m3t", "adm"}, "Bearer m3t-not", http.StatusUnauthorized},
		{"prefix of the token", []string{"m3t", ""}, "Bearer m3", http.StatusUnauthorized},
		{"empty bearer", []string{"m3t", ""}, "Bearer ", http.StatusUnauthorized},
		{"basic scheme", []string{"m3t", ""}, "Basic m3t", http.StatusUnauthorized},
		{"bare token", []string{"m3t", ""}, "m3t", http.StatusUnauthorized},
		{"metrics token", []string{"m3t", "adm"}, "Bearer m3t", http.StatusOK},
		{"admin token", []string{"m3t", "adm"}, "Bearer adm", http.StatusOK},
		{"admin token alone", []string{"", "adm"}, "Bearer adm", http.StatusOK},
		{"scheme in lower case", []string{"m3t", ""}, "bearer m3t", http.StatusOK},
		{"scheme in upper case", []string{"m3t", ""}, "BEARER m3t", http.StatusOK},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := newServer(t, tc.tokens...)
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			if rec.Code != tc.want {
				t.Fatalf("status %d, want %d: %s", rec.Code, tc.want, rec.Body)
			}
			switch tc.want {
			case http.StatusUnauthorized:
				if !strings.HasPrefix(rec.Header().Get("WWW-Authenticate"), "Bearer") || strings.Contains(rec.Body.String(), "shoestring_") {
					t.Errorf("401 with WWW-Authenticate %q, body %s", rec.Header().Get("WWW-Authenticate"), rec.Body)
				}
			case http.StatusOK:
				if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
					t.Errorf("Content-Type %q, want the text format", ct)
				}
				if !strings.Contains(rec.Body.String(), "# TYPE shoestring_jobs_total counter\n") {
					t.Errorf("no shoestring_jobs_total counter in:\n%s", rec.Body)
				}
				mfs := parse(t, rec.Body.String())
				if v := counter(mfs["shoestring_jobs_total"], map[string]string{"type": "echo", "queue": "default", "outcome": "completed"}); v != 0 {
					t.Errorf("echo completed = %v, want 0", v)
				}
				if mfs["go_goroutines"] == nil || mfs["process_cpu_seconds_total"] == nil {
					t.Errorf("no Go or process collector metrics")
				}
			}
		})
	}
}

// TestHTTPRouteLabel: requests are timed under their route's template, the app's
// routes too; a request no route matches is "unmatched"; the raw path never shows.
func TestHTTPRouteLabel(t *testing.T) {
	t.Parallel()
	srv, reg := newServer(t, "m3t")
	requests := []struct {
		method, path string
	}{
		{"GET", "/api/v1/files/secret-key-4f9a"},
		{"GET", "/api/v1/files/secret-key-4f9a"},
		{"GET", "/reports/report-77c1"},
		{"GET", "/health/live"},
		{"GET", "/wp-admin/probe-0d3e"},
		{"POST", "/health/live"},
		{"GET", "/metrics"},
	}
	for _, rq := range requests {
		srv.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(rq.method, rq.path, nil))
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := make(map[string]uint64) // route code -> requests
	for _, mf := range mfs {
		if mf.GetName() != "shoestring_http_request_duration_seconds" {
			continue
		}
		if mf.GetType() != dto.MetricType_HISTOGRAM {
			t.Fatalf("type %v, want histogram", mf.GetType())
		}
		for _, m := range mf.GetMetric() {
			l := labels(m)
			got[l["route"]+" "+l["code"]] += m.GetHistogram().GetSampleCount()
		}
	}
	want := map[string]uint64{
		"/api/v1/files/{key:.+} 404": 2,
		"/reports/{id} 418":          1,
		"/health/live 200":           1,
		"unmatched 404":              1,
		"unmatched 405":              1,
		"/metrics 401":               1,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests by route and code (-want +got):\n%s", diff)
	}
	var text strings.Builder
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&text, mf); err != nil {
			t.Fatal(err)
		}
	}
	for _, raw := range []string{"secret-key", "report-77c1", "wp-admin", "probe-0d3e"} {
		if strings.Contains(text.String(), raw) {
			t.Errorf("the raw path %q shows in the metrics", raw)
		}
	}
}

func parse(tb testing.TB, text string) map[string]*dto.MetricFamily {
	tb.Helper()
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(text))
	if err != nil {
		tb.Fatalf("parse the exposition: %v\n%s", err, text)
	}
	return mfs
}

func labels(m *dto.Metric) map[string]string {
	l := make(map[string]string)
	for _, lp := range m.GetLabel() {
		l[lp.GetName()] = lp.GetValue()
	}
	return l
}

// counter is the value of mf's series with exactly these labels; -1 when there is none.
func counter(mf *dto.MetricFamily, want map[string]string) float64 {
	for _, m := range mf.GetMetric() {
		if cmp.Equal(labels(m), want) {
			return m.GetCounter().GetValue()
		}
	}
	return -1
}
