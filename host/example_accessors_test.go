package host_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/web"
)

// New returns an empty Host: register the app's kinds, routes, checks and schedules
// on it, then hand it to Main (or Run). Its accessors answer once Run has started.
func ExampleNew() {
	h := host.New()
	host.Register(h, resize)
	fmt.Println(h.Redis() == nil, h.Bucket() == nil, h.Config().Port)
	// Output:
	// true true 0
}

// Job reads a job's record: its state, attempts, progress, result and error.
func ExampleHost_Job() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	ctx := context.Background()
	id, _ := a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64})
	job := waitDone(a, id)
	fmt.Println(job.ID == id, job.Type, job.State, job.Attempts, string(job.Result), job.CompletedAt != nil)
	// Output:
	// true image:resize completed 1 "cat.png at 64px" true
}

// Config is the validated configuration Run loaded from the environment.
func ExampleHost_Config() {
	a, stop := runAppEnv(func(h *host.Host) {}, map[string]string{"QUEUES": "images=3,default=1", "WORKER_CONCURRENCY": "4"})
	defer stop()

	cfg := a.Worker.Config()
	queues := slices.Sorted(func(yield func(string) bool) {
		for q := range cfg.Queues {
			if !yield(q) {
				return
			}
		}
	})
	fmt.Println(queues, cfg.Queues["images"], cfg.WorkerConcurrency)
	// Output:
	// [default images] 3 4
}

// Bucket is the blob store at BLOB_URL (here a directory both processes share); what
// a task writes there is served at /api/v1/files/{key}.
func ExampleHost_Bucket() {
	dir, err := os.MkdirTemp("", "blobs")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)
	a, stop := runAppEnv(func(h *host.Host) {}, map[string]string{"BLOB_URL": "file://" + dir})
	defer stop()

	ctx := context.Background()
	if err := a.Worker.Bucket().WriteAll(ctx, "reports/2026-11.csv", []byte("month,total\n2026-11,42\n"), nil); err != nil {
		fmt.Println(err)
		return
	}
	body, _ := get(a.URL + web.FilesPath + "reports/2026-11.csv")
	fmt.Print(body)
	// Output:
	// month,total
	// 2026-11,42
}

// Redis is the process's Redis client, for the app's own keys (under its own prefix).
func ExampleHost_Redis() {
	app := func(h *host.Host) {
		h.Router().HandleFunc("/visits", func(w http.ResponseWriter, r *http.Request) {
			n, err := h.Redis().Incr(r.Context(), "myapp:visits").Result()
			if err != nil {
				web.WriteError(w, r, err)
				return
			}
			web.WriteJSON(w, http.StatusOK, map[string]int64{"visits": n})
		}).Methods(http.MethodGet)
	}
	a, stop := runApp(app)
	defer stop()

	get(a.URL + "/visits")
	body, _ := get(a.URL + "/visits")
	fmt.Print(body)
	// Output:
	// {"visits":2}
}

// Logger is the process's structured logger: the app's lines carry proc=web or
// proc=worker, like the host's, in LOG_FORMAT (here json).
func ExampleHost_Logger() {
	app := func(h *host.Host) {
		h.Router().HandleFunc("/signup", func(w http.ResponseWriter, r *http.Request) {
			h.Logger().Info("signed up", "plan", "free")
			w.WriteHeader(http.StatusNoContent)
		}).Methods(http.MethodPost)
	}
	a, stop := runApp(app)
	defer stop()

	resp, err := http.Post(a.URL+"/signup", "", nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	for line := range strings.Lines(a.Output()) {
		var l struct{ Msg, Proc, Plan string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Msg == "signed up" {
			fmt.Println(l.Proc, l.Msg, l.Plan)
		}
	}
	// Output:
	// web signed up free
}

// RateLimit allows a client UPLOAD_RATE requests a minute (a burst of as many),
// counted in Redis across instances; past it, 429 with Retry-After.
func ExampleHost_RateLimit() {
	app := func(h *host.Host) {
		comment := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusCreated) })
		h.Router().Handle("/comments", h.RateLimit(comment)).Methods(http.MethodPost)
	}
	a, stop := runAppEnv(app, map[string]string{"UPLOAD_RATE": "2"})
	defer stop()

	for range 3 {
		resp, err := http.Post(a.URL+"/comments", "text/plain", strings.NewReader("first!"))
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode, resp.Header.Get("Retry-After") != "")
	}
	// Output:
	// 201 false
	// 201 false
	// 429 true
}

// get GETs url and returns its body.
func get(url string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

// A Host is one app. Build it in one function, as main does before Main, so that a
// test can build the same app and run it: hosttest.Run runs its web tier and its
// worker in the test's process.
func ExampleHost() {
	build := func(h *host.Host) {
		host.Register(h, resize)
		h.Router().HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) {
			web.WriteJSON(w, http.StatusOK, map[string]string{"hello": "world"})
		}).Methods(http.MethodGet)
	}
	// func main() { h := host.New(); build(h); os.Exit(h.Main()) }

	a, stop := runApp(build)
	defer stop()
	body, _ := get(a.URL + "/hello")
	fmt.Print(body)
	// Output:
	// {"hello":"world"}
}
