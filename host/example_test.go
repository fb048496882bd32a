package host_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
)

// Resize is an app's task kind: its payload names its kind and validates itself.
type Resize struct {
	URL   string `json:"url"`
	Width int    `json:"width"`
}

func (Resize) Kind() string { return "image:resize" }

func (r Resize) Validate() error {
	if r.Width < 1 || r.Width > 4096 {
		return errors.New("width must be 1-4096")
	}
	return nil
}

// resize is the handler: it returns the task's result.
func resize(ctx context.Context, t *worker.Task, r Resize) (any, error) {
	return fmt.Sprintf("%s at %dpx", r.URL, r.Width), nil
}

// Main is the whole of an app's main: register, then hand over to Main, which runs
// the command line's mode until SIGINT or SIGTERM and returns the exit code. One
// binary, deployed, runs as:
//
//	myapp                 # serve: the web tier and its supervised child worker
//	myapp web             # the web tier alone (split deployment)
//	myapp worker          # a worker alone
//	myapp healthcheck     # exit 0 when this instance's /health/live answers 200
//	myapp version
func ExampleHost_Main() {
	h := host.New()
	host.Register(h, resize)
	os.Exit(h.Main())
}

// Register a kind; POST /api/v1/jobs and Enqueue can then queue it, and a worker runs
// it. A payload that fails Validate is refused with its message.
func ExampleRegister() {
	app := func(h *host.Host) {
		host.Register(h, resize, host.Queue("low"), host.MaxRetry(3), host.Timeout(time.Minute))
	}
	a, stop := runApp(app) // web tier and worker on an embedded Redis
	defer stop()

	fmt.Println(postJSON(a.URL+"/api/v1/jobs", `{"type":"image:resize","payload":{"url":"cat.png","width":0}}`))
	fmt.Println(postJSON(a.URL+"/api/v1/jobs", `{"type":"image:resize","payload":{"url":"cat.png","width":64,"dpi":2}}`))
	fmt.Println(postJSON(a.URL+"/api/v1/jobs", `{"type":"image:resize","payload":{"url":"cat.png","width":64}}`)[:3])
	// Output:
	// 400 {"error":"invalid payload: width must be 1-4096","field":"payload"}
	// 400 {"error":"invalid payload: unknown field \"dpi\"","field":"payload"}
	// 202
}

// Enqueue from Go (a route, a task, a schedule), then read the job back with Job.
func ExampleHost_Enqueue() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()
	h := a.Web

	ctx := context.Background()
	id, err := h.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.Queue("critical"))
	if err != nil {
		fmt.Println(err)
		return
	}
	job := waitDone(a, id)
	fmt.Println(job.State, job.Queue, string(job.Result))

	_, err = h.Enqueue(ctx, Resize{URL: "cat.png", Width: 9999})
	fmt.Println(err)
	// Output:
	// completed critical "cat.png at 64px"
	// invalid payload: width must be 1-4096
}

// JobID makes an enqueue idempotent: a second one with the same id is refused.
func ExampleJobID() {
	a, stop := runApp(func(h *host.Host) { host.Register(h, resize) })
	defer stop()

	ctx := context.Background()
	id, err := a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.JobID("resize-cat-64"))
	fmt.Println(id, err)
	_, err = a.Web.Enqueue(ctx, Resize{URL: "cat.png", Width: 64}, host.JobID("resize-cat-64"))
	fmt.Println(err)
	// Output:
	// resize-cat-64 <nil>
	// an identical job is already queued: job resize-cat-64 exists
}

// BeforeEnqueue checks what Validate cannot without I/O: here, that the image exists
// in the blob store. Its *InvalidError is the client's 4xx.
func ExampleBeforeEnqueue() {
	app := func(h *host.Host) {
		host.Register(h, resize, host.BeforeEnqueue(func(ctx context.Context, r Resize) error {
			ok, err := h.Bucket().Exists(ctx, r.URL)
			if err != nil {
				return err
			}
			if !ok {
				return &host.InvalidError{Field: "payload.url", Msg: "no such image", Unprocessable: true}
			}
			return nil
		}))
	}
	a, stop := runApp(app)
	defer stop()
	fmt.Println(postJSON(a.URL+"/api/v1/jobs", `{"type":"image:resize","payload":{"url":"dog.png","width":64}}`))
	// Output:
	// 422 {"error":"invalid payload: url: no such image","field":"payload.url"}
}

// Router is the app's own routes, behind the host's middleware. This one queues a
// task and answers with the job's status URL.
func ExampleHost_Router() {
	app := func(h *host.Host) {
		host.Register(h, resize)
		h.Router().HandleFunc("/resize", func(w http.ResponseWriter, r *http.Request) {
			var req Resize
			if err := web.DecodeJSON(w, r, &req); err != nil {
				web.WriteError(w, r, err)
				return
			}
			id, err := h.Enqueue(r.Context(), req)
			if err != nil {
				web.WriteError(w, r, err) // Validate's message as a 400
				return
			}
			web.WriteJSON(w, http.StatusAccepted, map[string]string{"status_url": "/api/v1/jobs/" + id})
		}).Methods(http.MethodPost)
	}
	a, stop := runApp(app)
	defer stop()

	fmt.Println(postJSON(a.URL+"/resize", `{"url":"cat.png","width":64}`)[:3])
	fmt.Println(postJSON(a.URL+"/resize", `{"url":"cat.png"}`))
	// Output:
	// 202
	// 400 {"error":"invalid payload: width must be 1-4096","field":"payload"}
}

// Check adds a health check: it counts in /health, answers at /health/{name}, and
// gates readiness when tagged health.TagReady.
func ExampleHost_Check() {
	app := func(h *host.Host) {
		h.Check(health.Check{Name: "feeds", Checker: health.CheckFunc(func(ctx context.Context) health.Result {
			return health.Result{Status: health.Degraded, Description: "feed source answers slowly"}
		})})
	}
	a, stop := runApp(app)
	defer stop()

	resp, err := http.Get(a.URL + "/health/feeds")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, strings.Contains(string(body), `"status":"Degraded"`))
	// Output:
	// 200 true
}

// Schedule a refresh every 15 minutes; every instance runs the schedule and each tick
// is enqueued once, as job "<name>@<tick unix seconds>". SCHEDULE does the same from
// the environment.
func ExampleHost_Schedule() {
	app := func(h *host.Host) {
		host.Register(h, resize)
		h.Schedule("*/15 * * * *", Resize{URL: "banner.png", Width: 1200}, host.ScheduleName("banner"), host.Queue("low"))
		h.Schedule("CRON_TZ=Europe/Paris 30 2 * * *", Resize{URL: "nightly.png", Width: 64}, host.ScheduleName("nightly"), host.SkipIfRunning())
	}
	a, stop := runApp(app)
	defer stop()

	var list struct {
		Schedules []struct{ Name, Cron, Queue string }
	}
	if err := getAuthJSON(a.URL+"/api/v1/schedules", &list); err != nil {
		fmt.Println(err)
		return
	}
	for _, s := range list.Schedules {
		fmt.Println(s.Name, s.Cron, s.Queue)
	}
	// Output:
	// banner */15 * * * * low
	// nightly CRON_TZ=Europe/Paris 30 2 * * * default
}

// Run is Main without the process: tests call it with their own arguments and
// environment. ExitCode maps its error to the process's exit code.
func ExampleHost_Run() {
	h := host.New()
	err := h.Run(context.Background(), []string{"myapp", "serve"}, func(k string) string {
		return map[string]string{"PORT": "http", "WORKER_CONCURRENCY": "0"}[k]
	}, io.Discard, io.Discard)
	fmt.Println(err)
	fmt.Println("exit code", host.ExitCode(err))
	// Output:
	// invalid configuration:
	//   PORT: must be a port number 0-65535 (got "http")
	//   WORKER_CONCURRENCY: must be between 1 and 1000 (got "0")
	// exit code 2
}

// runApp starts app's web tier and worker in this process on an embedded Redis, with
// hosttest.Run; stop ends both.
func runApp(app func(*host.Host)) (a *hosttest.App, stop func()) {
	return runAppEnv(app, nil)
}

// runAppEnv is runApp with more settings in env.
func runAppEnv(app func(*host.Host), env map[string]string) (a *hosttest.App, stop func()) {
	emb, err := storage.StartEmbedded()
	if err != nil {
		panic(err)
	}
	vars := map[string]string{"REDIS_URL": emb.URL(), "API_TOKEN": exampleToken}
	maps.Copy(vars, env)
	a, err = hosttest.Run(app, vars)
	if err != nil {
		panic(err)
	}
	return a, func() { a.Stop(); emb.Stop() }
}

// exampleToken is the API_TOKEN the examples run with.
const exampleToken = "example-token"

// postJSON sends body as JSON with the API token and returns "STATUS BODY".
func postJSON(url, body string) string {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+exampleToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
}

// getAuthJSON GETs url with the API token and decodes its JSON answer into v.
func getAuthJSON(url string, v any) error {
	req, _ := http.NewRequest(http.MethodGet, url, nil)
	req.Header.Set("Authorization", "Bearer "+exampleToken) // API_TOKEN
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// waitDone waits up to 10 s for job id to finish (hosttest.App.Wait).
func waitDone(a *hosttest.App, id string) storage.Job {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	job, _ := a.Wait(ctx, id)
	return job
}
