package telemetry_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/telemetry"
	"github.com/shoestring-go/shoestring/worker"
)

var quiet = slog.New(slog.DiscardHandler)

// scrape serves g as /metrics does and parses the answer.
func scrape(tb testing.TB, g prometheus.Gatherer) map[string]*dto.MetricFamily {
	tb.Helper()
	rec := httptest.NewRecorder()
	telemetry.Handler(g, quiet).ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		tb.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := p.TextToMetricFamilies(rec.Body)
	if err != nil {
		tb.Fatalf("parse: %v", err)
	}
	return mfs
}

// values maps each series of mf, by its labels as "k=v,k=v" in label order, to its
// value (a counter's, a gauge's, or a histogram's sample count).
func values(mf *dto.MetricFamily) map[string]float64 {
	out := make(map[string]float64)
	for _, m := range mf.GetMetric() {
		var ls []string
		for _, lp := range m.GetLabel() {
			ls = append(ls, lp.GetName()+"="+lp.GetValue())
		}
		var v float64
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			v = m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			v = m.GetGauge().GetValue()
		case dto.MetricType_HISTOGRAM:
			v = float64(m.GetHistogram().GetSampleCount())
		}
		out[strings.Join(ls, ",")] = v
	}
	return out
}

// TestJobs: outcomes are counted per kind and queue, and durations observed.
func TestJobs(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	jobs := telemetry.NewJobs(reg)
	jobs.Init("echo", "default")
	jobs.TaskDone("echo", "default", worker.OutcomeCompleted, 20*time.Millisecond)
	jobs.TaskDone("echo", "default", worker.OutcomeCompleted, 30*time.Millisecond)
	jobs.TaskDone("echo", "low", worker.OutcomeRetried, time.Second)
	jobs.TaskDone("image:thumbnail", "default", worker.OutcomeFailed, time.Second)
	jobs.TaskDone("image:thumbnail", "default", worker.OutcomeInterrupted, time.Second)
	jobs.TaskDone("echo", "default", "bogus", time.Second) // ignored
	mfs := scrape(t, reg)
	want := map[string]float64{
		"outcome=completed,queue=default,type=echo":              2,
		"outcome=failed,queue=default,type=echo":                 0,
		"outcome=retried,queue=default,type=echo":                0,
		"outcome=interrupted,queue=default,type=echo":            0,
		"outcome=completed,queue=low,type=echo":                  0,
		"outcome=failed,queue=low,type=echo":                     0,
		"outcome=retried,queue=low,type=echo":                    1,
		"outcome=interrupted,queue=low,type=echo":                0,
		"outcome=completed,queue=default,type=image:thumbnail":   0,
		"outcome=failed,queue=default,type=image:thumbnail":      1,
		"outcome=retried,queue=default,type=image:thumbnail":     0,
		"outcome=interrupted,queue=default,type=image:thumbnail": 1,
	}
	if diff := cmp.Diff(want, values(mfs["shoestring_jobs_total"])); diff != "" {
		t.Errorf("shoestring_jobs_total (-want +got):\n%s", diff)
	}
	wantDur := map[string]float64{"queue=default,type=echo": 2, "queue=low,type=echo": 1, "queue=default,type=image:thumbnail": 2}
	if diff := cmp.Diff(wantDur, values(mfs["shoestring_job_duration_seconds"])); diff != "" {
		t.Errorf("shoestring_job_duration_seconds counts (-want +got):\n%s", diff)
	}
}

// TestJobsNoAllocs: once a (type, queue) pair is known, recording a task allocates
// nothing (not parallel: AllocsPerRun measures the whole process).
func TestJobsNoAllocs(t *testing.T) {
	jobs := telemetry.NewJobs(prometheus.NewRegistry())
	jobs.Init("echo", "default")
	allocs := testing.AllocsPerRun(1000, func() {
		jobs.TaskDone("echo", "default", worker.OutcomeCompleted, 20*time.Millisecond)
	})
	if allocs != 0 {
		t.Errorf("TaskDone allocates %v times per task, want 0", allocs)
	}
}

// TestHTTPConcurrent: requests recorded from many goroutines at once, on new and known
// (route, code) pairs, are all counted, each under its own pair.
func TestHTTPConcurrent(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	h := telemetry.NewHTTP(reg)
	routes := []string{"/health", "/health/live", "/api/v1/jobs/{id}"}
	codes := []int{200, 404, 503}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				for _, r := range routes {
					for _, c := range codes {
						h.ObserveRequest(r, c, time.Millisecond)
					}
				}
			}
		})
	}
	wg.Wait()
	got := map[string]uint64{}
	for _, m := range scrape(t, reg)["shoestring_http_request_duration_seconds"].GetMetric() {
		var route, code string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "route":
				route = l.GetValue()
			case "code":
				code = l.GetValue()
			}
		}
		got[route+" "+code] = m.GetHistogram().GetSampleCount()
	}
	want := map[string]uint64{}
	for _, r := range routes {
		for _, c := range codes {
			want[r+" "+strconv.Itoa(c)] = 800
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests by route and code (-want +got):\n%s", diff)
	}
}

// TestHTTPNoAllocs: once a (route, code) pair is known, recording a request allocates
// nothing (not parallel: AllocsPerRun measures the whole process).
func TestHTTPNoAllocs(t *testing.T) {
	h := telemetry.NewHTTP(prometheus.NewRegistry())
	h.ObserveRequest("/health", 200, time.Millisecond)
	if allocs := testing.AllocsPerRun(1000, func() { h.ObserveRequest("/health", 200, time.Millisecond) }); allocs != 0 {
		t.Errorf("ObserveRequest allocates %v times per request, want 0", allocs)
	}
}

// TestChildGatherer: the parent serves the child's shoestring_* families with its own,
// never the child's go_* and process_* (they would collide with the parent's); when
// the child is down the parent's scrape still succeeds, without the child's part.
func TestChildGatherer(t *testing.T) {
	t.Parallel()
	socket := filepath.Join(t.TempDir(), "worker.sock")
	parent := telemetry.NewRegistry()
	telemetry.NewSupervision(parent).Restarts.Inc()
	g := prometheus.Gatherers{parent, telemetry.ChildGatherer(socket, quiet)}

	// Child down: no socket at all.
	mfs := scrape(t, g)
	if mfs["shoestring_worker_restarts_total"] == nil || mfs["shoestring_jobs_total"] != nil {
		t.Fatalf("child down: families %v", names(mfs))
	}

	// Child up.
	child := telemetry.NewRegistry()
	telemetry.NewJobs(child).TaskDone("echo", "default", worker.OutcomeCompleted, time.Millisecond)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: telemetry.Handler(child, quiet)}
	go srv.Serve(ln)
	mfs = scrape(t, g)
	if v := values(mfs["shoestring_jobs_total"])["outcome=completed,queue=default,type=echo"]; v != 1 {
		t.Errorf("child's echo completed = %v, want 1; families %v", v, names(mfs))
	}
	if mfs["shoestring_job_duration_seconds"] == nil || mfs["shoestring_worker_restarts_total"] == nil {
		t.Errorf("child up: families %v", names(mfs))
	}
	// One go_goroutines series: the parent's (two would have failed the scrape).
	if n := len(mfs["go_goroutines"].GetMetric()); n != 1 {
		t.Errorf("go_goroutines has %d series, want the parent's alone", n)
	}

	// Child gone again (a restart): the socket refuses.
	srv.Close()
	mfs = scrape(t, g)
	if mfs["shoestring_jobs_total"] != nil || mfs["shoestring_worker_restarts_total"] == nil {
		t.Errorf("child gone: families %v", names(mfs))
	}
}

func names(mfs map[string]*dto.MetricFamily) []string {
	var out []string
	for n := range mfs {
		if strings.HasPrefix(n, telemetry.Prefix) {
			out = append(out, n)
		}
	}
	return out
}

type fakeInspector struct {
	known []string
	info  map[string]*asynq.QueueInfo
	err   error
}

func (f fakeInspector) Queues() ([]string, error) { return f.known, nil }

func (f fakeInspector) GetQueueInfo(q string) (*asynq.QueueInfo, error) {
	if f.err != nil {
		return nil, f.err
	}
	return f.info[q], nil
}

// TestQueues: sizes by state (asynq's archived as failed) and latency for every
// configured queue, zero for one asynq has not seen; a queue that cannot be read is
// left out and the scrape still succeeds.
func TestQueues(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	ins := fakeInspector{known: []string{"default", "other"}, info: map[string]*asynq.QueueInfo{
		"default": {Queue: "default", Pending: 4, Active: 2, Scheduled: 1, Retry: 3, Archived: 5, Latency: 1500 * time.Millisecond},
	}}
	telemetry.RegisterQueues(reg, ins, []string{"low", "default"}, quiet)
	mfs := scrape(t, reg)
	want := map[string]float64{
		"queue=default,state=pending": 4, "queue=default,state=active": 2, "queue=default,state=scheduled": 1,
		"queue=default,state=retry": 3, "queue=default,state=failed": 5,
		"queue=low,state=pending": 0, "queue=low,state=active": 0, "queue=low,state=scheduled": 0,
		"queue=low,state=retry": 0, "queue=low,state=failed": 0,
	}
	if diff := cmp.Diff(want, values(mfs["shoestring_queue_size"])); diff != "" {
		t.Errorf("shoestring_queue_size (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]float64{"queue=default": 1.5, "queue=low": 0}, values(mfs["shoestring_queue_latency_seconds"])); diff != "" {
		t.Errorf("shoestring_queue_latency_seconds (-want +got):\n%s", diff)
	}

	down := prometheus.NewRegistry()
	down.MustRegister(prometheus.NewCounter(prometheus.CounterOpts{Name: "shoestring_other_total", Help: "x"}))
	telemetry.RegisterQueues(down, fakeInspector{known: []string{"default"}, err: errors.New("redis down")}, []string{"default"}, quiet)
	if mfs := scrape(t, down); mfs["shoestring_queue_size"] != nil || mfs["shoestring_other_total"] == nil {
		t.Errorf("redis down: families %v", names(mfs))
	}
}

// TestHealthStatus: 1 Healthy, 0.5 Degraded, 0 Unhealthy, per check; scrapes within
// HEALTH_CACHE reuse the cached results instead of running the checks again.
func TestHealthStatus(t *testing.T) {
	t.Parallel()
	hr := health.NewRegistry(health.Options{Timeout: time.Second, Cache: time.Minute})
	for name, st := range map[string]health.Status{"ok": health.Healthy, "slow": health.Degraded, "down": health.Unhealthy} {
		hr.Register(health.Check{Name: name, Checker: health.CheckFunc(func(context.Context) health.Result {
			return health.Result{Status: st}
		})})
	}
	reg := prometheus.NewRegistry()
	telemetry.RegisterHealth(reg, hr, 2*time.Second)
	for range 5 {
		mfs := scrape(t, reg)
		if diff := cmp.Diff(map[string]float64{"check=ok": 1, "check=slow": 0.5, "check=down": 0}, values(mfs["shoestring_health_status"])); diff != "" {
			t.Fatalf("shoestring_health_status (-want +got):\n%s", diff)
		}
	}
	if n := hr.Runs("ok"); n != 1 {
		t.Errorf("5 scrapes ran the check %d times, want 1 (cached)", n)
	}
}
