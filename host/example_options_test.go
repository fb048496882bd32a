package host_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/worker"
)

// Report is a second task kind for the examples below.
type Report struct {
	Month string `json:"month"`
}

func (Report) Kind() string { return "report:build" }

// An Args is a payload type: its Kind names the task kind, and an optional Validate
// refuses a bad payload before it is queued, with its message as the client's 400.
func ExampleArgs() {
	fmt.Println(Resize{}.Kind()) // Register reads the kind from the zero value
	fmt.Println(Resize{URL: "cat.png", Width: 0}.Validate())
	// Output:
	// image:resize
	// width must be 1-4096
}

// An Option set at Register is the kind's default; the same Option given to Enqueue
// (or in POST /api/v1/jobs) is this job's choice, and wins.
func ExampleOption() {
	queueOf := func(ctx context.Context, t *worker.Task, r Report) (any, error) { return t.Queue, nil }
	a, stop := runApp(func(h *host.Host) { host.Register(h, queueOf, host.Queue("low")) })
	defer stop()

	ctx := context.Background()
	byDefault, _ := a.Web.Enqueue(ctx, Report{Month: "2026-11"})
	chosen, _ := a.Web.Enqueue(ctx, Report{Month: "2026-12"}, host.Queue("critical"))
	fmt.Println(string(waitDone(a, byDefault).Result), string(waitDone(a, chosen).Result))
	// Output:
	// "low" "critical"
}

// Queue picks one of QUEUES (by default critical, default and low, weighted 6:3:1);
// a queue the workers do not serve is refused.
func ExampleQueue() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize, host.Queue("low")) })
	defer stop()

	ctx := context.Background()
	id, _ := a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64})
	fmt.Println(waitDone(a, id).Queue)
	_, err := a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.Queue("bulk"))
	fmt.Println(errors.Is(err, host.ErrUnknownQueue), err)
	// Output:
	// low
	// true queue is not served: "bulk" (QUEUES: critical, default, low)
}

// MaxRetry(0) fails a job at its first error; the handler sees its budget in
// Task.Retried and Task.MaxRetry.
func ExampleMaxRetry() {
	flaky := func(ctx context.Context, t *worker.Task, r Report) (any, error) {
		return nil, fmt.Errorf("source for %s not ready (retry %d of %d)", r.Month, t.Retried, t.MaxRetry)
	}
	a, stop := runApp(func(h *host.Host) { host.Register(h, flaky, host.MaxRetry(0)) })
	defer stop()

	id, _ := a.Web.Enqueue(context.Background(), Report{Month: "2026-11"})
	job := waitDone(a, id)
	fmt.Println(job.State, job.Attempts, job.Error)
	// Output:
	// failed 1 source for 2026-11 not ready (retry 0 of 0)
}

// Timeout bounds one run: the handler's context has that deadline.
func ExampleTimeout() {
	budget := func(ctx context.Context, t *worker.Task, r Report) (any, error) {
		deadline, _ := ctx.Deadline()
		return time.Until(deadline).Round(time.Minute).String(), nil
	}
	a, stop := runApp(func(h *host.Host) { host.Register(h, budget, host.Timeout(10*time.Minute)) })
	defer stop()

	id, _ := a.Web.Enqueue(context.Background(), Report{Month: "2026-11"})
	fmt.Println(string(waitDone(a, id).Result))
	// Output:
	// "10m0s"
}

// ProcessIn delays a job: it is "scheduled" until then.
func ExampleProcessIn() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	ctx := context.Background()
	id, _ := a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.ProcessIn(time.Hour))
	job, _ := a.Web.Job(ctx, id)
	fmt.Println(job.State)
	// Output:
	// scheduled
}

// UniqueFor refuses the same task (kind, queue and payload) for the given time, or
// until the first completes.
func ExampleUniqueFor() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	ctx := context.Background()
	r := Resize{URL: "cat.png", Width: 64}
	_, err := a.Web.Enqueue(ctx, r, host.UniqueFor(time.Hour), host.ProcessIn(time.Minute))
	fmt.Println(err)
	_, err = a.Web.Enqueue(ctx, r, host.UniqueFor(time.Hour))
	fmt.Println(errors.Is(err, host.ErrDuplicate))
	_, err = a.Web.Enqueue(ctx, Resize{URL: "dog.png", Width: 64}, host.UniqueFor(time.Hour))
	fmt.Println(err)
	// Output:
	// <nil>
	// true
	// <nil>
}

// DemoTask kinds exist only where DEMO_TASKS is true: on a public deployment nobody
// can keep the workers busy with them.
func ExampleDemoTask() {
	sleep := func(ctx context.Context, t *worker.Task, r Report) (any, error) { return nil, nil }
	app := func(h *host.Host) { host.Register(h, sleep, host.DemoTask()) }

	a, stop := runAppEnv(app, map[string]string{"DEMO_TASKS": "false"})
	_, err := a.Web.Enqueue(context.Background(), Report{})
	stop()
	fmt.Println(errors.Is(err, host.ErrUnknownType))

	a, stop = runAppEnv(app, map[string]string{"DEMO_TASKS": "true"})
	defer stop()
	_, err = a.Web.Enqueue(context.Background(), Report{})
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

// schedules returns GET /api/v1/schedules's list.
func schedules(url string) []map[string]any {
	var list struct{ Schedules []map[string]any }
	if err := getAuthJSON(url+"/api/v1/schedules", &list); err != nil {
		panic(err)
	}
	return list.Schedules
}

// ScheduleName names a schedule and its jobs ("<name>@<tick unix seconds>"); two
// schedules of one kind need two names.
func ExampleScheduleName() {
	a, stop := runApp(func(h *host.Host) {
		host.Register(h, resize)
		h.Schedule("@hourly", Resize{URL: "banner.png", Width: 1200}, host.ScheduleName("banner-large"))
		h.Schedule("@hourly", Resize{URL: "banner.png", Width: 300}, host.ScheduleName("banner-small"))
	})
	defer stop()

	for _, s := range schedules(a.URL) {
		fmt.Println(s["name"], s["type"], s["cron"])
	}
	// Output:
	// banner-large image:resize @hourly
	// banner-small image:resize @hourly
}

// SkipIfRunning skips a tick while the last tick's job has not finished: for work
// that must not overlap itself.
func ExampleSkipIfRunning() {
	a, stop := runApp(func(h *host.Host) {
		host.Register(h, resize)
		h.Schedule("@every 15m", Resize{URL: "feed.png", Width: 64}, host.SkipIfRunning())
	})
	defer stop()

	s := schedules(a.URL)[0]
	fmt.Println(s["name"], s["skip_if_running"])
	// Output:
	// image:resize true
}

// NoCatchUp: an app started after a missed tick waits for the next one instead of
// running the latest missed tick at once.
func ExampleNoCatchUp() {
	a, stop := runApp(func(h *host.Host) {
		host.Register(h, resize)
		h.Schedule("0 3 * * *", Resize{URL: "nightly.png", Width: 64}, host.NoCatchUp())
	})
	defer stop()

	s := schedules(a.URL)[0]
	fmt.Println(s["name"], s["catch_up"])
	// Output:
	// image:resize false
}

// TaskOptions are a kind's defaults, given at Register; they can be built up like any
// other value, here from the app's own setting.
func ExampleTaskOption() {
	slowSource := true // the app's own configuration
	opts := []host.TaskOption{host.Queue("low")}
	if slowSource {
		opts = append(opts, host.Timeout(time.Hour), host.MaxRetry(3))
	}
	build := func(h *host.Host) { host.Register(h, resize, opts...) }

	a, stop := runApp(build)
	defer stop()
	id, _ := a.Web.Enqueue(context.Background(), Resize{URL: "cat.png", Width: 64})
	fmt.Println(waitDone(a, id).Queue)
	// Output:
	// low
}

// EnqueueOptions are one job's choices, given to Enqueue (or Schedule); they win over
// the kind's defaults.
func ExampleEnqueueOption() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize, host.Queue("low")) })
	defer stop()

	urgent := true
	opts := []host.EnqueueOption{host.JobID("resize-cat")}
	if urgent {
		opts = append(opts, host.Queue("critical"))
	}
	id, _ := a.Web.Enqueue(context.Background(), Resize{URL: "cat.png", Width: 64}, opts...)
	job := waitDone(a, id)
	fmt.Println(job.ID, job.Queue)
	// Output:
	// resize-cat critical
}
