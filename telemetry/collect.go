package telemetry

import (
	"context"
	"log/slog"
	"slices"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoestring-go/shoestring/health"
)

// QueueInspector reads queue statistics; *asynq.Inspector is one.
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

var _ QueueInspector = (*asynq.Inspector)(nil)

// queueCollector reads the configured queues from asynq at scrape time: one Queues
// call and one GetQueueInfo per queue (asynq's own statistics, as GET /api/v1/queues).
type queueCollector struct {
	ins     QueueInspector
	queues  []string
	logger  *slog.Logger
	size    *prometheus.Desc
	latency *prometheus.Desc
}

// RegisterQueues registers the gauges shoestring_queue_size{queue,state} (state
// pending, active, scheduled, retry, or failed for asynq's archived tasks) and
// shoestring_queue_latency_seconds{queue} (age of the oldest pending task), read from
// ins at each scrape for the given queues. A queue asynq has not seen yet reads 0; a
// queue that cannot be read (Redis down) is left out of that scrape and logged at
// debug level, so the scrape itself still succeeds.
func RegisterQueues(reg prometheus.Registerer, ins QueueInspector, queues []string, logger *slog.Logger) {
	reg.MustRegister(&queueCollector{
		ins: ins, queues: slices.Sorted(slices.Values(queues)), logger: orDiscard(logger),
		size: prometheus.NewDesc(Prefix+"queue_size", "Tasks in a queue by state (pending, active, scheduled, retry, failed).",
			[]string{"queue", "state"}, nil),
		latency: prometheus.NewDesc(Prefix+"queue_latency_seconds", "Age of the oldest pending task of a queue, in seconds (0 when none).",
			[]string{"queue"}, nil),
	})
}

func (c *queueCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.size
	ch <- c.latency
}

func (c *queueCollector) Collect(ch chan<- prometheus.Metric) {
	known, err := c.ins.Queues()
	if err != nil {
		c.logger.Debug("metrics: list queues", "err", err)
		return
	}
	for _, q := range c.queues {
		var qi asynq.QueueInfo
		if slices.Contains(known, q) {
			info, err := c.ins.GetQueueInfo(q)
			if err != nil {
				c.logger.Debug("metrics: read queue", "queue", q, "err", err)
				continue
			}
			qi = *info
		}
		for _, s := range []struct {
			state string
			n     int
		}{{"pending", qi.Pending}, {"active", qi.Active}, {"scheduled", qi.Scheduled}, {"retry", qi.Retry}, {"failed", qi.Archived}} {
			ch <- prometheus.MustNewConstMetric(c.size, prometheus.GaugeValue, float64(s.n), q, s.state)
		}
		ch <- prometheus.MustNewConstMetric(c.latency, prometheus.GaugeValue, qi.Latency.Seconds(), q)
	}
}

// healthCollector reports each health check's status at scrape time.
type healthCollector struct {
	reg     *health.Registry
	timeout time.Duration
	status  *prometheus.Desc
}

// RegisterHealth registers the gauge shoestring_health_status{check}: 1 Healthy, 0.5
// Degraded, 0 Unhealthy. A scrape reads the checks through hr.Run, so it reuses the
// results cached for HEALTH_CACHE (with single flight) and runs a check only when its
// result has expired, as a request to /health would: scrapes add no check runs beyond
// what the cache allows. timeout bounds the wait (the checks' own timeouts apply too).
func RegisterHealth(reg prometheus.Registerer, hr *health.Registry, timeout time.Duration) {
	reg.MustRegister(&healthCollector{reg: hr, timeout: timeout,
		status: prometheus.NewDesc(Prefix+"health_status", "Health check status: 1 Healthy, 0.5 Degraded, 0 Unhealthy.",
			[]string{"check"}, nil)})
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.status }

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	rep := c.reg.Run(ctx, nil)
	for name, res := range rep.Checks {
		ch <- prometheus.MustNewConstMetric(c.status, prometheus.GaugeValue, statusValue(res.Status), name)
	}
}

func statusValue(s health.Status) float64 {
	switch s {
	case health.Healthy:
		return 1
	case health.Degraded:
		return 0.5
	default:
		return 0
	}
}
