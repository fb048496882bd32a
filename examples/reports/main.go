// Command reports is an example app built on shoestring: POST /reports queues a report
// that a worker builds in checkpointed units of 100 rows and stores as CSV; its health
// check says how many reports were built. Run it with `go run . serve`.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"strings"

	"github.com/redis/go-redis/v9"

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

// progress is the checkpoint: the rows built so far.
type progress struct {
	Done int      `json:"done"`
	CSV  []string `json:"csv"`
}

const unit = 100 // rows per checkpointed unit

func build(h *host.Host) func(context.Context, *worker.Task, Report) (any, error) {
	return func(ctx context.Context, t *worker.Task, r Report) (any, error) {
		var p progress
		if _, err := t.Checkpoint.Load(ctx, &p); err != nil { // resume after a crash
			return nil, err
		}
		for p.Done < r.Rows {
			for i := p.Done; i < min(p.Done+unit, r.Rows); i++ {
				p.CSV = append(p.CSV, fmt.Sprintf("%d,%d", i+1, (i+1)*(i+1)))
			}
			p.Done = min(p.Done+unit, r.Rows)
			if err := t.Checkpoint.Save(ctx, p); err != nil { // one unit committed
				return nil, err
			}
			if err := t.Checkpoint.Progress(ctx, int64(p.Done), int64(r.Rows)); err != nil {
				return nil, err
			}
		}
		key := "reports/" + t.ID + ".csv"
		csv := "n,square\n" + strings.Join(p.CSV, "\n") + "\n"
		if err := h.Bucket().WriteAll(ctx, key, []byte(csv), nil); err != nil {
			return nil, err
		}
		if err := h.Redis().Incr(ctx, "reports:built").Err(); err != nil {
			return nil, err
		}
		return map[string]any{"title": r.Title, "rows": r.Rows, "url": web.FilesPath + key}, nil
	}
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
