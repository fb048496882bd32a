package host_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
)

// Width is a payload whose Validate names the bad field with an *InvalidError.
type Width struct {
	Px int `json:"px"`
}

func (Width) Kind() string { return "image:width" }

func (w Width) Validate() error {
	if w.Px > 4096 {
		return &host.InvalidError{Field: "payload.px", Msg: "at most 4096", Unprocessable: true}
	}
	return nil
}

// An *InvalidError says which field is wrong; Enqueue returns it as Validate or
// BeforeEnqueue did, and web.WriteError answers it with 400, or 422 when
// Unprocessable, naming the field.
func ExampleInvalidError() {
	a, stop := runApp(func(h *host.Host) {
		host.Register(h, func(context.Context, *worker.Task, Width) (any, error) { return nil, nil })
	})
	defer stop()

	_, err := a.Web.Enqueue(context.Background(), Width{Px: 9000})
	var invalid *host.InvalidError
	fmt.Println(errors.As(err, &invalid), invalid.Field)

	rec := httptest.NewRecorder()
	web.WriteError(rec, httptest.NewRequest("POST", "/", nil), err)
	fmt.Println(rec.Code, strings.TrimSpace(rec.Body.String()))
	// Output:
	// true payload.px
	// 422 {"error":"invalid payload: px: at most 4096","field":"payload.px"}
}

// Enqueue and Job need the Redis that Run connects to: before it, they return
// ErrNotRunning, which is an ErrUnavailable (a 503 from web.WriteError).
func ExampleErrNotRunning() {
	h := host.New()
	host.Register(h, resize)
	_, err := h.Enqueue(context.Background(), Resize{URL: "cat.png", Width: 64})
	fmt.Println(errors.Is(err, host.ErrNotRunning), errors.Is(err, host.ErrUnavailable))
	// Output:
	// true true
}

// ErrUnavailable means Redis did not answer in time (or, here, is not connected yet):
// nothing was queued, and the client should try again. web.WriteError answers it
// with 503 and Retry-After.
func ExampleErrUnavailable() {
	h := host.New()
	host.Register(h, resize)
	_, err := h.Enqueue(context.Background(), Resize{URL: "cat.png", Width: 64})
	if errors.Is(err, host.ErrUnavailable) {
		fmt.Println("try again shortly")
	}
	// Output:
	// try again shortly
}

// A kind the app did not register is refused, from Go and over HTTP.
func ExampleErrUnknownType() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	_, err := a.Web.Enqueue(context.Background(), Report{Month: "2026-11"})
	fmt.Println(errors.Is(err, host.ErrUnknownType))
	fmt.Println(postJSON(a.URL+"/api/v1/jobs", `{"type":"report:build","payload":{}}`))
	// Output:
	// true
	// 422 {"error":"unknown task type \"report:build\"","field":"type"}
}

// ErrUnknownQueue: the queue is not one of QUEUES, so no worker would run it.
func ExampleErrUnknownQueue() {
	a, stop := runAppEnv(func(h *host.Host) { host.Register(h, resize) }, map[string]string{"QUEUES": "images=2,default=1"})
	defer stop()

	_, err := a.Web.Enqueue(context.Background(), Resize{URL: "cat.png", Width: 64}, host.Queue("low"))
	fmt.Println(errors.Is(err, host.ErrUnknownQueue))
	_, err = a.Web.Enqueue(context.Background(), Resize{URL: "cat.png", Width: 64}, host.Queue("images"))
	fmt.Println(err)
	// Output:
	// true
	// <nil>
}

// ErrDuplicate: a JobID already taken, or a task UniqueFor still holds. The web
// tier answers it with 409.
func ExampleErrDuplicate() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	ctx := context.Background()
	_, _ = a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.JobID("cat-64"))
	_, err := a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.JobID("cat-64"))
	rec := httptest.NewRecorder()
	web.WriteError(rec, httptest.NewRequest("POST", "/", nil), err)
	fmt.Println(errors.Is(err, host.ErrDuplicate), rec.Code)
	// Output:
	// true 409
}

// ErrNotFound: no such job, or its record is past JOB_RETENTION.
func ExampleErrNotFound() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	_, err := a.Web.Job(context.Background(), "no-such-job")
	fmt.Println(errors.Is(err, host.ErrNotFound))
	// Output:
	// true
}

// ExitCode turns what Run returned into the process's exit code: 0 for a clean stop,
// 2 for a bad command line or configuration, 1 for anything else.
func ExampleExitCode() {
	h := host.New()
	discard := strings.Builder{}
	err := h.Run(context.Background(), []string{"myapp", "frobnicate"}, func(string) string { return "" }, &discard, &discard)
	fmt.Println(host.ExitCode(nil), host.ExitCode(err), host.ExitCode(errors.New("redis: connection refused")))
	// Output:
	// 0 2 1
}
