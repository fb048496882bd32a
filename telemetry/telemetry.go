// Package telemetry is shoestring's Prometheus instrumentation (client_golang): the
// shoestring_* metrics, the collectors that read queues and health at scrape time, and
// the gatherer through which a combined-mode parent serves its worker child's metrics.
//
// Every process builds its own registry with NewRegistry; nothing is registered with
// client_golang's global default registry. Which metrics a process registers depends
// on what it runs: the web tier registers HTTP, Queue and Health metrics and, as a
// supervisor, Supervision; a worker registers Jobs. The metric names are a contract:
// users' alerts depend on them. A nil *slog.Logger given to any function here logs
// nothing.
package telemetry

import (
	"maps"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
)

// Prefix starts the name of every metric shoestring defines.
const Prefix = "shoestring_"

// NewRegistry returns an empty registry for one process, with the Go runtime and
// process collectors (go_*, process_*) registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// outcomes are the values of shoestring_jobs_total's outcome label.
var outcomes = [...]string{worker.OutcomeCompleted, worker.OutcomeFailed, worker.OutcomeRetried, worker.OutcomeInterrupted}

// Jobs counts task attempts by kind, queue and outcome (shoestring_jobs_total) and
// times them (shoestring_job_duration_seconds); it is the worker's worker.Metrics.
// Safe for concurrent use.
type Jobs struct {
	total    *prometheus.CounterVec
	duration *prometheus.HistogramVec

	mu     sync.RWMutex
	series map[jobKey]*jobSeries // the label lookups, cached per (type, queue)
}

type jobKey struct{ typ, queue string }

type jobSeries struct {
	outcome  [len(outcomes)]prometheus.Counter
	duration prometheus.Observer
}

// NewJobs registers the job metrics with reg.
func NewJobs(reg prometheus.Registerer) *Jobs {
	j := &Jobs{
		total: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: Prefix + "jobs_total",
			Help: "Task attempts finished, by task kind, queue and outcome (completed, failed, retried, interrupted).",
		}, []string{"type", "queue", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: Prefix + "job_duration_seconds",
			Help: "How long task attempts ran, in seconds, by task kind and queue.",
			// 5 ms to about 10 min: thumbnails take tenths of a second, reports minutes.
			Buckets: prometheus.ExponentialBucketsRange(0.005, 600, 16),
		}, []string{"type", "queue"}),
		series: make(map[jobKey]*jobSeries),
	}
	reg.MustRegister(j.total, j.duration)
	return j
}

// Init creates the series of kind typ in queue at zero, so that they are scraped (and
// rate() works) before the first task of the kind finishes.
func (j *Jobs) Init(typ, queue string) { j.lookup(typ, queue) }

// TaskDone records one attempt of a task of kind typ from queue: its outcome (one of
// worker's Outcome constants; any other is ignored) and how long it ran. After the first
// attempt of a (typ, queue) pair it allocates nothing.
func (j *Jobs) TaskDone(typ, queue, outcome string, took time.Duration) {
	s := j.lookup(typ, queue)
	for i, o := range outcomes {
		if o == outcome {
			s.outcome[i].Inc()
			s.duration.Observe(took.Seconds())
			return
		}
	}
}

func (j *Jobs) lookup(typ, queue string) *jobSeries {
	k := jobKey{typ, queue}
	j.mu.RLock()
	s, ok := j.series[k]
	j.mu.RUnlock()
	if ok {
		return s
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if s, ok := j.series[k]; ok {
		return s
	}
	s = &jobSeries{duration: j.duration.WithLabelValues(typ, queue)}
	for i, o := range outcomes {
		s.outcome[i] = j.total.WithLabelValues(typ, queue, o)
	}
	j.series[k] = s
	return s
}

// Supervision counts what a supervisor does for its worker child: restarts
// (shoestring_worker_restarts_total) and recycles (shoestring_watchdog_recycles_total).
type Supervision struct {
	Restarts prometheus.Counter
	Recycles *prometheus.CounterVec
}

// NewSupervision registers the supervision counters with reg, every recycle reason
// (worker's Recycle constants) at zero.
func NewSupervision(reg prometheus.Registerer) *Supervision {
	s := &Supervision{
		Restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: Prefix + "worker_restarts_total",
			Help: "Times the worker child was restarted after it died (WORKER_EXIT_POLICY=restart).",
		}),
		Recycles: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: Prefix + "watchdog_recycles_total",
			Help: "Worker children recycled because they were hung, had collapsed throughput, used too much memory, or were wedged (reason).",
		}, []string{"reason"}),
	}
	for _, r := range []string{worker.RecycleHung, worker.RecycleThroughput, worker.RecycleRSS, worker.RecycleWedged} {
		s.Recycles.WithLabelValues(r)
	}
	reg.MustRegister(s.Restarts, s.Recycles)
	return s
}

// NewRecovered registers shoestring_tasks_recovered_total with reg: tasks of dead
// workers put back in their queue at once (pending, or scheduled with a backoff), by a
// supervisor whose child died or by a process that found workers dead at its start.
func NewRecovered(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{
		Name: Prefix + "tasks_recovered_total",
		Help: "Tasks of dead workers put back in their queue at once (pending, or scheduled with backoff), rather than after asynq's lease expired.",
	})
	reg.MustRegister(c)
	return c
}

// HTTP times requests by route template and status code
// (shoestring_http_request_duration_seconds); it is the web tier's
// web.RequestObserver. Safe for concurrent use.
type HTTP struct {
	duration *prometheus.HistogramVec

	// series are the label lookups, cached per (route, code). The map is never written
	// once stored: a new pair stores a copy with it, under mu. The pairs are bounded
	// (route templates by status codes), so after the first requests every request
	// reads it without a lock or a write to memory other requests read.
	mu     sync.Mutex
	series atomic.Pointer[map[httpKey]prometheus.Observer]
}

type httpKey struct {
	route string
	code  int
}

// NewHTTP registers the HTTP metrics with reg.
func NewHTTP(reg prometheus.Registerer) *HTTP {
	h := &HTTP{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: Prefix + "http_request_duration_seconds",
			Help: "HTTP requests, by route template (\"unmatched\" when no route matched) and status code, in seconds.",
			// 1 ms to about 30 s: health and JSON routes take milliseconds, uploads seconds.
			Buckets: prometheus.ExponentialBucketsRange(0.001, 30, 14),
		}, []string{"route", "code"}),
	}
	h.series.Store(&map[httpKey]prometheus.Observer{})
	reg.MustRegister(h.duration)
	return h
}

// ObserveRequest records one request answered with code after took, under its route
// template (e.g. "/api/v1/jobs/{id}", never the raw path, so the label stays bounded).
// Safe for concurrent use; after the first request of a (route, code) pair it takes no
// lock and allocates nothing.
func (h *HTTP) ObserveRequest(route string, code int, took time.Duration) {
	k := httpKey{route, code}
	o, ok := (*h.series.Load())[k]
	if !ok {
		o = h.add(k)
	}
	o.Observe(took.Seconds())
}

// add stores the series of k in a copy of the series map.
func (h *HTTP) add(k httpKey) prometheus.Observer {
	h.mu.Lock()
	defer h.mu.Unlock()
	old := *h.series.Load()
	if o, ok := old[k]; ok {
		return o
	}
	o := h.duration.WithLabelValues(k.route, strconv.Itoa(k.code))
	m := maps.Clone(old)
	m[k] = o
	h.series.Store(&m)
	return o
}

var _ worker.Metrics = (*Jobs)(nil)

var _ web.RequestObserver = (*HTTP)(nil)
