// Package web is shoestring's HTTP tier: the router, middleware, the JSON API that
// accepts work and reports on it, and the health routes.
package web

import (
	"context"
	"log/slog"
	"net/http"

	"github.com/hibiken/asynq"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
)

// Enqueuer puts tasks on a queue; *asynq.Client is one.
type Enqueuer interface {
	EnqueueContext(ctx context.Context, t *asynq.Task, opts ...asynq.Option) (*asynq.TaskInfo, error)
}

// QueueInspector reads queue statistics; *asynq.Inspector is one.
type QueueInspector interface {
	Queues() ([]string, error)
	GetQueueInfo(queue string) (*asynq.QueueInfo, error)
}

var (
	_ Enqueuer       = (*asynq.Client)(nil)
	_ QueueInspector = (*asynq.Inspector)(nil)
)

// Limits bound what the API accepts.
type Limits struct {
	MaxUploadBytes int64          // request body of an upload, in bytes
	MaxImagePixels int64          // width*height of an uploaded image
	ThumbnailSizes []int          // widths made when an upload names none
	Queues         map[string]int // queues a job may name; the worker serves these
}

// Deps are what the HTTP tier needs. All are required.
type Deps struct {
	Logger    *slog.Logger
	Jobs      *storage.Jobs
	Queue     Enqueuer
	Inspector QueueInspector
	Bucket    *blob.Bucket
	Health    *health.Endpoints
	// HealthPath is the base of the health routes, e.g. "/health".
	HealthPath string
	// Admin serves /admin/*; nil leaves those routes unmounted (404).
	Admin  *health.Admin
	Limits Limits
}

// NewServer returns the HTTP handler of the whole API. It is safe for concurrent use.
func NewServer(d Deps) http.Handler {
	return addRoutes(d)
}
