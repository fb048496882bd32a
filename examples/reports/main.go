// Command reports is an example app built on shoestring: POST /reports queues a report
// that a worker builds in checkpointed units of 100 rows, each stored as it is made,
// then joined into one CSV; its health check says how many reports were built. Run it
// with `go run . serve`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
)

// Report is the task's payload: a title and how many rows to build.
type Report struct {
	Title string `json:"title"`
	Rows  int    `json:"rows"`
}

func (Report) Kind() string { return "report:build" }

func (r Report) Validate() error {
	if r.Title == "" || len(r.Title) > 100 {
		return errors.New("title must be 1-100 characters")
	}
	if r.Rows < 1 || r.Rows > 100_000 {
		return errors.New("rows must be 1-100000")
	}
	return nil
}

// progress is the checkpoint: how many rows are built. The rows themselves are in one
// blob per unit, so the checkpoint stays a few bytes however long the report grows.
type progress struct {
	Done int `json:"done"`
}

const unit = 100 // rows per checkpointed unit

func partKey(id string, part int) string { return fmt.Sprintf("reports/%s/part-%05d.csv", id, part) }

func build(h *host.Host) func(context.Context, *worker.Task, Report) (any, error) {
	return func(ctx context.Context, t *worker.Task, r Report) (any, error) {
		bucket := h.Bucket()
		var p progress
		if _, err := t.Checkpoint.Load(ctx, &p); err != nil { // resume after a crash
			return nil, err
		}
		for p.Done < r.Rows {
			n := min(unit, r.Rows-p.Done)
			var rows strings.Builder
			for i := p.Done + 1; i <= p.Done+n; i++ {
				fmt.Fprintf(&rows, "%d,%d\n", i, i*i)
			}
			// The unit is durable (and idempotent: a redo rewrites the same part) ...
			if err := bucket.WriteAll(ctx, partKey(t.ID, p.Done/unit), []byte(rows.String()), nil); err != nil {
				return nil, err
			}
			p.Done += n
			// ... before the checkpoint says it is done.
			if err := t.Checkpoint.Save(ctx, p); err != nil {
				return nil, err
			}
			if err := t.Checkpoint.Progress(ctx, int64(p.Done), int64(r.Rows)); err != nil {
				return nil, err
			}
		}
		key := "reports/" + t.ID + ".csv"
		if err := assemble(ctx, bucket, key, t.ID, (r.Rows+unit-1)/unit); err != nil {
			return nil, err
		}
		if err := h.Redis().Incr(ctx, "reports:built").Err(); err != nil {
			return nil, err
		}
		return map[string]any{"title": r.Title, "rows": r.Rows, "url": web.FilesPath + key}, nil
	}
}

// assemble streams the parts of report id into one CSV at key, then deletes them.
func assemble(ctx context.Context, bucket *blob.Bucket, key, id string, parts int) error {
	w, err := bucket.NewWriter(ctx, key, &blob.WriterOptions{ContentType: "text/csv"})
	if err != nil {
		return err
	}
	_, err = io.WriteString(w, "n,square\n")
	for i := 0; i < parts && err == nil; i++ {
		var part []byte
		if part, err = bucket.ReadAll(ctx, partKey(id, i)); err == nil {
			_, err = w.Write(part)
		}
	}
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("assemble %s: %w", key, err)
	}
	for i := range parts {
		_ = bucket.Delete(ctx, partKey(id, i)) // a leftover part is harmless
	}
	return nil
}

func main() {
	h := host.New()
	host.Register(h, build(h), host.Queue("low"))

	h.Router().HandleFunc("/reports", func(w http.ResponseWriter, r *http.Request) {
		var rep Report
		if err := web.DecodeJSON(w, r, &rep); err != nil {
			web.WriteError(w, r, err)
			return
		}
		id, err := h.Enqueue(r.Context(), rep)
		if err != nil {
			web.WriteError(w, r, err) // Validate's message as a 400, Redis down as a 503
			return
		}
		web.WriteJSON(w, http.StatusAccepted, map[string]string{"id": id, "status_url": "/api/v1/jobs/" + id})
	}).Methods(http.MethodPost)

	h.Check(health.Check{Name: "reports", Checker: health.CheckFunc(func(ctx context.Context) health.Result {
		n, err := h.Redis().Get(ctx, "reports:built").Int()
		if err != nil && !errors.Is(err, redis.Nil) {
			return health.Result{Status: health.Unhealthy, Description: err.Error()}
		}
		return health.Result{Status: health.Healthy, Data: map[string]any{"built": n}}
	})})

	os.Exit(h.Main())
}
