package worker_test

import (
	"context"
	"fmt"
	"time"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker"
)

// Book is a long task: one unit of work per page.
type Book struct {
	Pages int64 `json:"pages"`
}

func (Book) Kind() string { return "book:render" }

// A handler commits its progress page by page. Here the first run is stopped after
// page 2 (a deploy: its worker shuts down and puts the task back), and the next worker
// resumes at page 2 instead of starting over.
func ExampleCheckpoint() {
	emb, err := storage.StartEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer emb.Stop()

	stopped := make(chan struct{}) // closed when the first run has saved page 2
	render := func(ctx context.Context, t *worker.Task, b Book) (any, error) {
		var next int64 // the first page not yet rendered
		if _, err := t.Checkpoint.Load(ctx, &next); err != nil {
			return nil, err
		}
		fmt.Printf("attempt %d starts at page %d\n", t.Attempt, next)
		for ; next < b.Pages; next++ {
			// Render page next here: idempotently, as delivery is at-least-once.
			if err := t.Checkpoint.Save(ctx, next+1); err != nil {
				return nil, err
			}
			if err := t.Checkpoint.Progress(ctx, next+1, b.Pages); err != nil {
				return nil, err
			}
			if t.Attempt == 1 && next+1 == 2 {
				close(stopped)
				<-ctx.Done() // the worker is stopping
				return nil, ctx.Err()
			}
		}
		return map[string]int64{"pages": b.Pages}, nil
	}
	app := func(h *host.Host) { host.Register(h, render) }
	env := map[string]string{"REDIS_URL": emb.URL()}

	first, err := hosttest.Run(app, env)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer first.Stop() // a second Stop does nothing
	id, err := first.Web.Enqueue(context.Background(), Book{Pages: 5})
	if err != nil {
		fmt.Println(err)
		return
	}
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		fmt.Println("the first run did not reach page 2")
		return
	}
	first.Stop()

	second, err := hosttest.Run(app, env)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer second.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job, err := second.Wait(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.State, job.Progress.Done, job.Progress.Total, string(job.Result))
	// Output:
	// attempt 1 starts at page 0
	// attempt 2 starts at page 2
	// completed 5 5 {"pages":5}
}
