package hosttest_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
	"github.com/shoestring-go/shoestring/worker"
)

// Greet is the app's task kind.
type Greet struct {
	Name string `json:"name"`
}

func (Greet) Kind() string { return "greet" }

// build is the app, as its main builds it before Main.
func build(h *host.Host) {
	host.Register(h, func(ctx context.Context, t *worker.Task, g Greet) (any, error) {
		return "hello " + g.Name, nil
	})
}

// Run starts the app's web tier and a worker in this process, on the Redis at
// REDIS_URL (here an embedded one), and returns once /health/ready answers 200.
func ExampleRun() {
	redis, err := storage.StartEmbedded()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer redis.Stop()
	a, err := hosttest.Run(build, map[string]string{"REDIS_URL": redis.URL()})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer a.Stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	id, _ := a.Web.Enqueue(ctx, Greet{Name: "Ada"})
	job, err := a.Wait(ctx, id)
	fmt.Println(job.State, string(job.Result), err)
	// Output:
	// completed "hello Ada" <nil>
}

// Start is Run inside a test: on a redis-server of the test's own, stopped with the
// app at the test's end, and the app's logs printed if the test failed.
func ExampleStart() {
	_ = func(t *testing.T) { // func TestGreet(t *testing.T)
		a := hosttest.Start(t, build, map[string]string{"REDIS_URL": storagetest.StartRedis(t).URL()})
		id, err := a.Web.Enqueue(t.Context(), Greet{Name: "Ada"})
		if err != nil {
			t.Fatal(err)
		}
		if job, err := a.Wait(t.Context(), id); err != nil || string(job.Result) != `"hello Ada"` {
			t.Fatalf("job %s: %+v, %v", id, job, err)
		}
	}
}

// WebOnly runs no worker: jobs stay pending, to test what the web tier does.
func ExampleOptions() {
	a, stop := run(hosttest.Options{WebOnly: true})
	defer stop()

	id, _ := a.Web.Enqueue(context.Background(), Greet{Name: "Ada"})
	job, _ := a.Web.Job(context.Background(), id)
	fmt.Println(a.Worker == nil, job.State)
	// Output:
	// true pending
}

// Wait returns a job's record once it has finished, or ctx's error with the last
// record read.
func ExampleApp_Wait() {
	a, stop := run(hosttest.Options{WebOnly: true})
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	id, _ := a.Web.Enqueue(ctx, Greet{Name: "Ada"})
	job, err := a.Wait(ctx, id) // no worker runs it
	fmt.Println(job.State, err)
	_, err = a.Wait(context.Background(), "no-such-job")
	fmt.Println(errors.Is(err, host.ErrNotFound))
	// Output:
	// pending context deadline exceeded
	// true
}

// Output is both processes' logs (LOG_FORMAT=json), each line tagged proc=web or
// proc=worker.
func ExampleApp_Output() {
	a, stop := run()
	defer stop()
	a.Stop()

	procs := map[string]bool{}
	for line := range strings.Lines(a.Output()) {
		var l struct{ Proc string }
		if json.Unmarshal([]byte(line), &l) == nil {
			procs[l.Proc] = true
		}
	}
	fmt.Println(procs["web"], procs["worker"])
	// Output:
	// true true
}

// Stop stops both processes, as SIGTERM would; a second Stop does nothing.
func ExampleApp_Stop() {
	a, stop := run()
	defer stop()
	a.Stop()
	_, err := a.Web.Enqueue(context.Background(), Greet{Name: "Ada"})
	fmt.Println(errors.Is(err, host.ErrUnavailable)) // its Redis client is closed
	// Output:
	// true
}

// run is ExampleRun's start-up: the app on an embedded Redis; stop stops both.
func run(opts ...hosttest.Options) (a *hosttest.App, stop func()) {
	redis, err := storage.StartEmbedded()
	if err != nil {
		panic(err)
	}
	a, err = hosttest.Run(build, map[string]string{"REDIS_URL": redis.URL()}, opts...)
	if err != nil {
		panic(err)
	}
	return a, func() { a.Stop(); redis.Stop() }
}
