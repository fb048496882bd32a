package telemetry_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/telemetry"
	"github.com/shoestring-go/shoestring/worker"
)

// printMetrics GETs /metrics from h and prints the sample lines that start with one of
// prefixes, in the exposition's order.
func printMetrics(h http.Handler, prefixes ...string) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		for _, p := range prefixes {
			if strings.HasPrefix(sc.Text(), p) {
				fmt.Println(sc.Text())
			}
		}
	}
}

// countWrites is a log destination that says how many lines each write carries.
type countWrites struct{}

func (countWrites) Write(p []byte) (int, error) {
	if n := strings.Count(string(p), "\n"); n == 1 {
		fmt.Println("one write: 1 line")
	} else {
		fmt.Printf("one write: %d lines\n", n)
	}
	return len(p), nil
}

// With LogHandler in front of a LogBuffer, lines below warn wait, at most the
// interval, to be written together; a warning is written at once, with every line
// before it.
func ExampleLogHandler() {
	buf := telemetry.NewLogBuffer(countWrites{}, 64<<10, time.Hour)
	logger := slog.New(telemetry.LogHandler(slog.NewTextHandler(buf, nil), buf))
	for i := range 3 {
		logger.Info("task done", "n", i)
	}
	fmt.Println("after 3 info lines")
	logger.Warn("queue backing up")
	logger.Info("task done", "n", 3)
	_ = buf.Close() // before the process exits
	// Output:
	// after 3 info lines
	// one write: 4 lines
	// one write: 1 line
}

// NewRegistry is a process's own registry, with the Go runtime's metrics (go_*) and
// the process's (process_*) registered; shoestring registers nothing with
// client_golang's global registry.
func ExampleNewRegistry() {
	reg := telemetry.NewRegistry()
	mfs, err := reg.Gather()
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, mf := range mfs {
		if mf.GetName() == "go_goroutines" {
			fmt.Println("go_goroutines:", mf.GetMetric()[0].GetGauge().GetValue() > 0)
		}
	}
	// Output:
	// go_goroutines: true
}

// HTTP times the web tier's requests by route and status code. The web tier passes the
// route's template, never the raw path, so that a scanner's random URLs cannot grow
// the series.
func ExampleHTTP() {
	reg := prometheus.NewRegistry()
	m := telemetry.NewHTTP(reg)
	m.ObserveRequest("/api/v1/jobs", http.StatusAccepted, 3*time.Millisecond)
	m.ObserveRequest("/api/v1/jobs", http.StatusAccepted, 40*time.Millisecond)
	m.ObserveRequest("/api/v1/jobs/{id}", http.StatusNotFound, time.Millisecond)
	printMetrics(telemetry.Handler(reg, slog.Default()), "shoestring_http_request_duration_seconds_count")
	// Output:
	// shoestring_http_request_duration_seconds_count{code="202",route="/api/v1/jobs"} 2
	// shoestring_http_request_duration_seconds_count{code="404",route="/api/v1/jobs/{id}"} 1
}

// Jobs counts a worker's task attempts by kind, queue and outcome (worker's Outcome
// constants). Init makes a kind's series exist at zero before its first task ends, so
// rate() works from the start.
func ExampleJobs() {
	reg := prometheus.NewRegistry()
	m := telemetry.NewJobs(reg)
	m.Init("thumbnail", "default")
	m.TaskDone("thumbnail", "default", worker.OutcomeCompleted, 120*time.Millisecond)
	m.TaskDone("thumbnail", "default", worker.OutcomeRetried, 2*time.Second)
	printMetrics(telemetry.Handler(reg, slog.Default()), `shoestring_jobs_total{`)
	// Output:
	// shoestring_jobs_total{outcome="completed",queue="default",type="thumbnail"} 1
	// shoestring_jobs_total{outcome="failed",queue="default",type="thumbnail"} 0
	// shoestring_jobs_total{outcome="interrupted",queue="default",type="thumbnail"} 0
	// shoestring_jobs_total{outcome="retried",queue="default",type="thumbnail"} 1
}

// Supervision counts the worker child's restarts (and, by reason, its recycles);
// NewRecovered counts the tasks of dead workers put back in their queue.
func ExampleSupervision() {
	reg := prometheus.NewRegistry()
	s := telemetry.NewSupervision(reg)
	recovered := telemetry.NewRecovered(reg)
	s.Restarts.Inc()
	recovered.Add(3)
	printMetrics(telemetry.Handler(reg, slog.Default()), "shoestring_worker_restarts_total", "shoestring_tasks_recovered_total")
	// Output:
	// shoestring_tasks_recovered_total 3
	// shoestring_worker_restarts_total 1
}

// RegisterHealth exports each check's status as a gauge, read through the registry's
// cache at scrape time: 1 Healthy, 0.5 Degraded, 0 Unhealthy.
func ExampleRegisterHealth() {
	hr := health.NewRegistry(health.Options{Cache: 2 * time.Second})
	hr.Register(health.Check{Name: "feeds", Checker: health.CheckFunc(func(context.Context) health.Result {
		return health.Result{Status: health.Degraded, Description: "feeds fetched over 15 minutes ago"}
	})})
	reg := prometheus.NewRegistry()
	telemetry.RegisterHealth(reg, hr, time.Second)
	printMetrics(telemetry.Handler(reg, slog.Default()), "shoestring_health_status")
	// Output:
	// shoestring_health_status{check="feeds"} 0.5
}

// queueStats is a QueueInspector with fixed figures (an *asynq.Inspector reads
// Redis).
type queueStats struct{}

func (queueStats) Queues() ([]string, error) { return []string{"default"}, nil }

func (queueStats) GetQueueInfo(q string) (*asynq.QueueInfo, error) {
	return &asynq.QueueInfo{Queue: q, Pending: 42, Active: 10, Latency: 90 * time.Second}, nil
}

// RegisterQueues exports each queue's sizes by state and its latency (the age of its
// oldest pending task), read at scrape time.
func ExampleRegisterQueues() {
	reg := prometheus.NewRegistry()
	telemetry.RegisterQueues(reg, queueStats{}, []string{"default"}, slog.Default())
	printMetrics(telemetry.Handler(reg, slog.Default()), "shoestring_queue_latency_seconds", `shoestring_queue_size{queue="default",state="pending"}`)
	// Output:
	// shoestring_queue_latency_seconds{queue="default"} 90
	// shoestring_queue_size{queue="default",state="pending"} 42
}

// ChildGatherer lets a parent's /metrics include its worker child's task metrics,
// scraped over a unix socket the child serves Handler on; a child that cannot be
// reached adds nothing, and the parent's scrape still succeeds.
func ExampleChildGatherer() {
	dir, err := os.MkdirTemp("", "metrics")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	socket := filepath.Join(dir, "child.sock")
	parent := prometheus.NewRegistry()
	telemetry.NewSupervision(parent).Restarts.Inc()
	h := telemetry.Handler(prometheus.Gatherers{parent, telemetry.ChildGatherer(socket, slog.New(slog.NewTextHandler(io.Discard, nil)))}, slog.Default())

	fmt.Println("no child yet:")
	printMetrics(h, "shoestring_worker_restarts_total", "shoestring_jobs_total")

	// The child: its own registry, served on the socket.
	child := prometheus.NewRegistry()
	telemetry.NewJobs(child).TaskDone("echo", "default", "completed", time.Millisecond)
	ln, err := net.Listen("unix", socket)
	if err != nil {
		fmt.Println(err)
		return
	}
	srv := &http.Server{Handler: telemetry.Handler(child, slog.Default())}
	go srv.Serve(ln)
	defer srv.Close()

	fmt.Println("with the child:")
	printMetrics(h, "shoestring_worker_restarts_total", `shoestring_jobs_total{outcome="completed"`)
	// Output:
	// no child yet:
	// shoestring_worker_restarts_total 1
	// with the child:
	// shoestring_jobs_total{outcome="completed",queue="default",type="echo"} 1
	// shoestring_worker_restarts_total 1
}
