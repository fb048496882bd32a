package main

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

const testMetricsToken = "test-metrics-token"

// metricsEnv is sharedEnv with the metrics and API tokens set.
func metricsEnv(r *storagetest.Redis, tb testing.TB) map[string]string {
	env := sharedEnv(r, tb)
	env["METRICS_TOKEN"] = testMetricsToken
	env["API_TOKEN"] = testAPIToken
	return env
}

// scrape GETs base+"/metrics" with token ("" for none) and returns the status and body.
func scrape(tb testing.TB, base, token string) (int, string) {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/metrics", nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("GET /metrics: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// metrics scrapes with the token, fails the test unless it is 200, and parses the text.
func metrics(tb testing.TB, base string) (map[string]*dto.MetricFamily, string) {
	tb.Helper()
	code, body := scrape(tb, base, testMetricsToken)
	if code != http.StatusOK {
		tb.Fatalf("GET /metrics: status %d: %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		tb.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return mfs, body
}

// series finds the series of mf whose labels include want; nil when none does.
func series(mf *dto.MetricFamily, want map[string]string) *dto.Metric {
	for _, m := range mf.GetMetric() {
		got := make(map[string]string)
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		match := true
		for k, v := range want {
			match = match && got[k] == v
		}
		if match {
			return m
		}
	}
	return nil
}

// value is a counter's or gauge's value; -1 when the series is missing.
func value(mf *dto.MetricFamily, want map[string]string) float64 {
	m := series(mf, want)
	switch {
	case m == nil:
		return -1
	case m.Counter != nil:
		return m.GetCounter().GetValue()
	default:
		return m.GetGauge().GetValue()
	}
}

// postJob enqueues a job through the API with the API token.
func (in *instance) postJob(tb testing.TB, body string) string {
	tb.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.base+"/api/v1/jobs", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatalf("POST /api/v1/jobs: %v", err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		tb.Fatalf("POST /api/v1/jobs %s: status %d: %s", body, resp.StatusCode, raw)
	}
	_, id, _ := strings.Cut(string(raw), `"id":"`)
	id, _, _ = strings.Cut(id, `"`)
	return id
}

var echoCompleted = map[string]string{"type": "echo", "queue": "default", "outcome": "completed"}

// TestMetricsCombined: in combined mode the parent's /metrics is behind the token and
// serves, with its own metrics, the child's task metrics: the echo completion counter
// grows when an echo job completes.
func TestMetricsCombined(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	in := startInstance(t, metricsEnv(r, t))
	in.waitReady()

	if code, body := scrape(t, in.base, ""); code != http.StatusUnauthorized || strings.Contains(body, "shoestring_") {
		t.Fatalf("without a token: %d %s", code, body)
	}
	if code, _ := scrape(t, in.base, "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("with a wrong token: %d", code)
	}
	mfs, text := metrics(t, in.base)
	if !strings.Contains(text, "# TYPE shoestring_jobs_total counter\n") {
		t.Fatalf("no shoestring_jobs_total counter in:\n%s", text)
	}
	before := value(mfs["shoestring_jobs_total"], echoCompleted)
	if before != 0 {
		t.Fatalf("echo completed before any job = %v, want 0 (the child's series, made at start)", before)
	}

	id := in.postJob(t, `{"type":"echo","payload":{"message":"x"}}`)
	if j := in.waitJob(id, 15*time.Second); j.State != "completed" {
		t.Fatalf("job = %+v", j)
	}
	done := time.Now()
	waitFor(t, 5*time.Second, "echo completed to reach 1", func() bool {
		mfs, _ = metrics(t, in.base)
		return value(mfs["shoestring_jobs_total"], echoCompleted) == before+1
	})
	t.Logf("echo completion counted at the parent's /metrics %v after the job record said completed", time.Since(done).Round(time.Millisecond))

	if m := series(mfs["shoestring_job_duration_seconds"], map[string]string{"type": "echo", "queue": "default"}); m.GetHistogram().GetSampleCount() != 1 ||
		len(m.GetHistogram().GetBucket()) == 0 {
		t.Errorf("shoestring_job_duration_seconds{echo,default} = %v", m)
	}
	if !strings.Contains(text, "shoestring_job_duration_seconds_bucket{") {
		t.Errorf("no shoestring_job_duration_seconds_bucket in the text")
	}
	for _, state := range []string{"pending", "active", "scheduled", "retry", "failed"} {
		if v := value(mfs["shoestring_queue_size"], map[string]string{"queue": "default", "state": state}); v != 0 {
			t.Errorf("shoestring_queue_size{default,%s} = %v, want 0 (all done)", state, v)
		}
	}
	if value(mfs["shoestring_queue_latency_seconds"], map[string]string{"queue": "critical"}) < 0 {
		t.Errorf("no shoestring_queue_latency_seconds for the critical queue")
	}
	for _, check := range []string{"self", "redis", "storage", "worker", "queue"} {
		if v := value(mfs["shoestring_health_status"], map[string]string{"check": check}); v != 1 {
			t.Errorf("shoestring_health_status{check=%q} = %v, want 1", check, v)
		}
	}
	for _, route := range []string{"/api/v1/jobs 202", "/api/v1/jobs/{id} 200", "/health/ready 200", "/metrics 401"} {
		rt, code, _ := strings.Cut(route, " ")
		if series(mfs["shoestring_http_request_duration_seconds"], map[string]string{"route": rt, "code": code}) == nil {
			t.Errorf("no shoestring_http_request_duration_seconds{route=%q,code=%q}", rt, code)
		}
	}
	if strings.Contains(text, `route="/api/v1/jobs/`+id) {
		t.Errorf("a raw job path is a route label")
	}
	for _, name := range []string{"shoestring_worker_restarts_total", "shoestring_tasks_recovered_total", "go_goroutines", "process_resident_memory_bytes"} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if v := value(mfs["shoestring_watchdog_recycles_total"], map[string]string{"reason": "rss"}); v != 0 {
		t.Errorf("shoestring_watchdog_recycles_total{reason=rss} = %v, want 0", v)
	}
	// The web tier raises GOGC while its live heap is small (host/gc.go): the
	// environment (startBinary's, and metricsEnv) does not set GOGC. The parent's own Go
	// metrics: its live heap and roots, a few MB, are far below the 16 MB (twice the
	// live heap, plus the roots) where GOGC stays at 100.
	if v := value(mfs["go_gc_gogc_percent"], nil); v <= 100 || v > 400 {
		t.Errorf("go_gc_gogc_percent = %v, want over 100, at most 400", v)
	}
}

// TestMetricsChildRestart: while the child is dead /metrics still answers (the parent's
// part); the restart and the requeued task are counted; the new child's counters start
// from zero and count the requeued task's completion.
func TestMetricsChildRestart(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := metricsEnv(r, t)
	env["WORKER_EXIT_POLICY"] = "restart"
	in := startInstance(t, env)
	in.waitReady()

	id := in.postJob(t, `{"type":"echo","payload":{"message":"again","sleep_ms":2000}}`)
	waitFor(t, 10*time.Second, "task active", func() bool { return in.job(id).State == "active" })
	if err := syscall.Kill(in.childPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	// Every scrape answers 200 (metrics fails the test otherwise), with or without the child.
	withoutChild := 0
	var mfs map[string]*dto.MetricFamily
	waitFor(t, 15*time.Second, "restart counted and the task completed again", func() bool {
		mfs, _ = metrics(t, in.base)
		if mfs["shoestring_jobs_total"] == nil {
			withoutChild++
		}
		return value(mfs["shoestring_worker_restarts_total"], nil) == 1 &&
			value(mfs["shoestring_jobs_total"], echoCompleted) == 1
	})
	if v := value(mfs["shoestring_tasks_recovered_total"], nil); v != 1 {
		t.Errorf("shoestring_tasks_recovered_total = %v, want 1", v)
	}
	if j := in.job(id); j.State != "completed" || j.Attempts != 2 {
		t.Errorf("job = %+v", j)
	}
	t.Logf("scrapes answered 200 while the child was down: %d", withoutChild)
}

// TestMetricsWatchdogRecycles: recycles by the worker's watchdog are counted by the
// parent, by reason, though the recycled child is gone by the time anyone scrapes.
func TestMetricsWatchdogRecycles(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := metricsEnv(r, t)
	env["WORKER_EXIT_POLICY"] = "restart"
	env["WORKER_MAX_RESTARTS"] = "100"
	env["WORKER_RESTART_WINDOW"] = "1m"
	env["WORKER_MAX_RSS"] = "1MiB" // every Go process is over it: recycled at once
	in := startInstance(t, env)
	var mfs map[string]*dto.MetricFamily
	waitFor(t, 20*time.Second, "two rss recycles and two restarts", func() bool {
		mfs, _ = metrics(t, in.base)
		return value(mfs["shoestring_watchdog_recycles_total"], map[string]string{"reason": "rss"}) >= 2 &&
			value(mfs["shoestring_worker_restarts_total"], nil) >= 2
	})
	for _, reason := range []string{"hung", "throughput", "wedged"} {
		if v := value(mfs["shoestring_watchdog_recycles_total"], map[string]string{"reason": reason}); v != 0 {
			t.Errorf("recycles{reason=%q} = %v, want 0", reason, v)
		}
	}
	starts := strings.Count(in.output(), `"msg":"worker child started"`)
	t.Logf("rss recycles %v, restarts %v, children started %d",
		value(mfs["shoestring_watchdog_recycles_total"], map[string]string{"reason": "rss"}),
		value(mfs["shoestring_worker_restarts_total"], nil), starts)
}

// TestMetricsSplitWorker: `shoestring worker` alone serves /metrics (behind the token)
// and /health/live on METRICS_PORT.
func TestMetricsSplitWorker(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := metricsEnv(r, t)
	env["METRICS_PORT"] = "0"
	wk := startWorkerInstance(t, env)
	addr := wk.waitLog("metrics listening", "addr").(string)
	_, port, _ := strings.Cut(addr, "]:")
	base := "http://127.0.0.1:" + port

	resp, err := http.Get(base + "/health/live")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/health/live: %d", resp.StatusCode)
	}
	if code, _ := scrape(t, base, ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without a token: %d, want 401", code)
	}
	mfs, text := metrics(t, base)
	if !strings.Contains(text, "# TYPE shoestring_jobs_total counter\n") {
		t.Errorf("no shoestring_jobs_total counter")
	}
	if v := value(mfs["shoestring_jobs_total"], echoCompleted); v != 0 {
		t.Errorf("echo completed = %v, want 0", v)
	}
	for _, name := range []string{"shoestring_job_duration_seconds", "shoestring_tasks_recovered_total", "go_goroutines", "process_cpu_seconds_total"} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
}
