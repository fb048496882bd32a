package worker_test

import (
	"context"
	"fmt"
	"os"
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

// Photo names an uploaded picture to resize.
type Photo struct {
	Blob string `json:"blob"`
}

func (Photo) Kind() string { return "photo:resize" }

// startApp runs app on a Redis of its own, returning the app and a function that
// stops both.
func startApp(app func(*host.Host)) (*hosttest.App, func(), error) {
	emb, err := storage.StartEmbedded()
	if err != nil {
		return nil, nil, err
	}
	a, err := hosttest.Run(app, map[string]string{"REDIS_URL": emb.URL()})
	if err != nil {
		emb.Stop()
		return nil, nil, err
	}
	return a, func() { a.Stop(); emb.Stop() }, nil
}

// A handler gets the job's id, kind, queue and payload, and which run this is: Attempt
// counts every run, Retried the runs an error ended, of at most MaxRetry.
func ExampleTask() {
	ran := make(chan string, 1)
	resize := func(ctx context.Context, t *worker.Task, p Photo) (any, error) {
		// t.Type is the kind; t.Queue is "default", the queue a kind goes to unless told.
		select {
		case ran <- fmt.Sprintf("%s on %s: %s, attempt %d, retried %d of %d", t.Type, t.Queue, t.Payload,
			t.Attempt, t.Retried, t.MaxRetry):
		default: // a second delivery (the task is at-least-once) prints nothing
		}
		return nil, nil
	}
	a, stop, err := startApp(func(h *host.Host) { host.Register(h, resize, host.MaxRetry(3)) })
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	if _, err := a.Web.Enqueue(context.Background(), Photo{Blob: "uploads/cat.jpg"}); err != nil {
		fmt.Println(err)
		return
	}
	select {
	case line := <-ran:
		fmt.Println(line)
	case <-time.After(10 * time.Second):
		fmt.Println("the task did not run")
	}
	// Output:
	// photo:resize on default: {"blob":"uploads/cat.jpg"}, attempt 1, retried 0 of 3
}

// Input that no retry can fix fails the job at once, whatever retries it has left:
// wrap worker.SkipRetry in the handler's error. Any other error is retried with
// asynq's backoff while MaxRetry lasts (25 unless the kind or the enqueue says).
func ExampleTask_skipRetry() {
	resize := func(ctx context.Context, t *worker.Task, p Photo) (any, error) {
		// Say decoding found it is not a picture: running again will not change that.
		return nil, fmt.Errorf("%s is not a JPEG or PNG: %w", p.Blob, worker.SkipRetry)
	}
	a, stop, err := startApp(func(h *host.Host) { host.Register(h, resize) })
	if err != nil {
		fmt.Println(err)
		return
	}
	defer stop()
	id, err := a.Web.Enqueue(context.Background(), Photo{Blob: "uploads/notes.txt"})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job, err := a.Wait(ctx, id)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(job.State, job.Attempts)
	fmt.Println(job.Error)
	// Output:
	// failed 1
	// uploads/notes.txt is not a JPEG or PNG: skip retry for the task
}

// WatchParent is the child's side: it calls onGone once the process's parent is no
// longer ppid (the parent died and the child was re-parented). Here the pid watched is
// not this process's parent, so onGone is called at the first poll.
func ExampleWatchParent() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gone := make(chan struct{})
	go worker.WatchParent(ctx, os.Getppid()+1, 10*time.Millisecond, func() { close(gone) })
	select {
	case <-gone:
		fmt.Println("parent gone: stop the work and exit")
	case <-ctx.Done():
		fmt.Println("parent still there")
	}
	// Output:
	// parent gone: stop the work and exit
}
