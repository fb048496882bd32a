// Package web is shoestring's HTTP tier: the router, middleware, the JSON API that
// accepts work and reports on it, the health routes, and the app's own routes behind
// the same middleware.
package web

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// Submitter validates and enqueues one job; the host's is the one path shared by
// POST /api/v1/jobs and Host.Enqueue. Errors are those WriteError maps.
type Submitter interface {
	Submit(ctx context.Context, r task.Request) (storage.Job, error)
}

// SubmitterFunc adapts a function to Submitter.
type SubmitterFunc func(ctx context.Context, r task.Request) (storage.Job, error)

// Submit calls f.
func (f SubmitterFunc) Submit(ctx context.Context, r task.Request) (storage.Job, error) {
	return f(ctx, r)
}

// QueueInspector reads queue statistics; *asynq.Inspector is one.
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

var _ QueueInspector = (*asynq.Inspector)(nil)

// Deps are what the HTTP tier needs. Logger, Jobs, Submitter, Inspector, Bucket,
// Health and Queues are required, and QueueAdmin with Admin. The rest are optional:
// HealthPath "" is /health, FileMaxAge 0 lets no client cache a blob, MaxBodyBytes 0
// puts no limit on App's bodies, and the others say what nil does.
type Deps struct {
	Logger    *slog.Logger
	Jobs      *storage.Jobs
	Submitter Submitter
	Inspector QueueInspector
	Bucket    *blob.Bucket
	Health    *health.Endpoints
	// HealthPath is the base of the health routes, e.g. "/health".
	HealthPath string
	// Admin serves /admin/* and, with its token, /dashboard; nil leaves those routes
	// unmounted (404).
	Admin *health.Admin
	// Queues are the queues GET /api/v1/queues reports: the ones the workers serve.
	Queues map[string]int
	// FileMaxAge bounds how long a client may cache a served blob: blobs expire with
	// their job's retention.
	FileMaxAge time.Duration
	// APITokens guard POST /api/v1/jobs, GET /api/v1/queues and GET /api/v1/schedules
	// (Bearer, any of them). With none, those routes are 404 unless APIOpen (trial
	// mode), which leaves them open.
	APITokens []string
	APIOpen   bool
	// Schedules lists the periodic jobs for GET /api/v1/schedules; nil lists none.
	Schedules func(ctx context.Context) ([]ScheduleView, error)
	// App serves what no host route matches: the app's own routes. Its request bodies
	// are limited to MaxBodyBytes. nil answers 404.
	App          http.Handler
	MaxBodyBytes int64

	// For the dashboard. Beats lists live workers (heartbeats younger than
	// HeartbeatTTL); Child is the combined-mode worker child, nil in web mode;
	// QueueAdmin does the dashboard's actions on queues and tasks (required with Admin).
	Beats        WorkerLister
	HeartbeatTTL time.Duration
	Child        ChildStatus
	QueueAdmin   QueueAdmin
	// Metrics serves GET /metrics (a Prometheus handler) to a Bearer token among
	// MetricsTokens (METRICS_TOKEN, ADMIN_TOKEN; empty ones ignored). With no token, or
	// nil Metrics, /metrics answers 404.
	Metrics       http.Handler
	MetricsTokens []string
	// Requests records every request by route template and status; nil records none.
	Requests RequestObserver
}

// ScheduleView is one schedule as GET /api/v1/schedules reports it. LastState is the
// last tick's job state, "expired" when its record is past JOB_RETENTION, or
// "skipped: <reason>".
type ScheduleView struct {
	Name          string     `json:"name"`
	Cron          string     `json:"cron"`
	Type          string     `json:"type"`
	Queue         string     `json:"queue"`
	SkipIfRunning bool       `json:"skip_if_running"`
	CatchUp       bool       `json:"catch_up"`
	NextRunAt     *time.Time `json:"next_run_at"`
	LastRunAt     *time.Time `json:"last_run_at"`
	LastJobID     string     `json:"last_job_id"`
	LastState     string     `json:"last_state"`
}

// NewServer returns the HTTP handler of the whole API. It is safe for concurrent use.
func NewServer(d Deps) http.Handler {
	return addRoutes(d)
}
