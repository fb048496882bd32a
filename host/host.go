// Package host is shoestring's public API: build your own app on it with your task
// kinds, routes, health checks and schedules, then hand control to Main. One binary
// then runs as the combined web tier plus a supervised child worker (itself,
// re-executed as "worker"), or as separate web and worker processes sharing Redis.
//
// A whole app:
//
//	func main() {
//		h := host.New()
//		host.Register(h, func(ctx context.Context, t *worker.Task, g Greet) (any, error) {
//			return "hello " + g.Name, nil
//		})
//		h.Router().HandleFunc("/greet/{name}", greetRoute(h)).Methods(http.MethodPost)
//		os.Exit(h.Main())
//	}
//
// Register, Router and Check are for main, before Main or Run: they are not safe for
// concurrent use, and registering after Run has started panics. Enqueue, Job and the
// accessors (Config, Logger, Redis, Bucket) are safe for concurrent use once Run has
// opened its dependencies, which it does before any route, task or check runs.
//
// Errors that refuse work are those of package worker/task (ErrUnknownType,
// ErrUnknownQueue, ErrDuplicate, ErrUnavailable) and *InvalidError; web.WriteError
// turns each into its status code, so an app's routes answer as the host's do.
// Package host/hosttest runs an app's web tier and worker inside a test.
package host

import (
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/gorilla/mux"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
)

// Host is one app: its task kinds, routes and health checks, and the process it runs
// as. Build it with New.
type Host struct {
	// Registration state: written by main before Run, read-only after (frozen).
	mu        sync.Mutex
	frozen    bool
	kinds     map[string]*kind
	router    *mux.Router
	checks    []health.Check
	schedules []*scheduled

	// deps is set by Run once Redis and the blob store are open; nil before.
	deps atomic.Pointer[deps]
}

// deps are what a running process opened, shared with the app through the accessors.
type deps struct {
	cfg    config.Config
	logger *slog.Logger
	rdb    redis.UniversalClient
	bucket *blob.Bucket
	jobs   *storage.Jobs
	queue  *asynq.Client
	// kinds are the kinds this run serves (DEMO_TASKS may leave some out); trial is
	// combined mode on the embedded Redis.
	kinds map[string]*kind
	trial bool
}

// New returns a Host with no task kinds, routes or checks of its own.
func New() *Host {
	r := mux.NewRouter()
	r.NotFoundHandler = web.NotFound
	r.MethodNotAllowedHandler = web.MethodNotAllowedFor(r)
	return &Host{kinds: make(map[string]*kind), router: r}
}

// Router returns the router for the app's own routes (gorilla/mux). They are served on
// $PORT behind the host's middleware (request log, panic recovery, a body limit of
// MAX_UPLOAD_BYTES), after the host's own routes. A route under one of the host's
// paths (the health base path, /admin, /api/v1/jobs, /api/v1/files, /api/v1/queues,
// /api/v1/schedules, /metrics, /dashboard) would be shadowed: Run panics naming it.
//
// Add routes before Run: the router is then served concurrently, so adding one later
// is a data race. Reading it later (building URLs with Get(name).URL) is safe.
func (h *Host) Router() *mux.Router { return h.router }

// Length checked apart, as storage.ValidJobID explains.
var checkNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)

// Check adds c to the health checks: it counts in the aggregate at /health, answers at
// /health/{c.Name}, and shows in the IETF health+json output; tag it health.TagReady to
// gate readiness. c.Name must be 1-63 lowercase letters, digits, '_' or '-', and not a
// built-in check's (self, redis, storage, worker, queue) or another's: a bad or
// duplicate name panics, at Check or, for a built-in's, at Run.
func (h *Host) Check(c health.Check) {
	h.mustNotBeFrozen("Check")
	if len(c.Name) > 63 || !checkNameRe.MatchString(c.Name) || c.Name == "live" || c.Name == "ready" {
		panic(fmt.Sprintf("host: health check name %q must be 1-63 of [a-z0-9_-], and not live or ready", c.Name))
	}
	if c.Checker == nil {
		panic(fmt.Sprintf("host: health check %q has no Checker", c.Name))
	}
	if slices.ContainsFunc(h.checks, func(o health.Check) bool { return o.Name == c.Name }) {
		panic(fmt.Sprintf("host: health check %q added twice", c.Name))
	}
	h.checks = append(h.checks, c)
}

// Config returns the validated configuration Run loaded; the zero Config before Run.
// After Run returns, the accessors keep answering with what it had opened (closed by
// then: Redis calls fail with "client is closed"); with Runs in parallel, with the
// latest to start.
func (h *Host) Config() config.Config {
	if d := h.deps.Load(); d != nil {
		return d.cfg
	}
	return config.Config{}
}

// Logger returns the process's logger (proc=web or proc=worker); slog's default before
// Run.
func (h *Host) Logger() *slog.Logger {
	if d := h.deps.Load(); d != nil {
		return d.logger
	}
	return slog.Default()
}

// Redis returns the process's one Redis client, shared with asynq; nil before Run.
// Keys an app writes should start with its own prefix, never "shoestring:" or "asynq:".
// In a worker process its hooks start the job of every task fetched through it from
// QUEUES (see worker.New): run no asynq server of your own on those queues with it.
func (h *Host) Redis() redis.UniversalClient {
	if d := h.deps.Load(); d != nil {
		return d.rdb
	}
	return nil
}

// Bucket returns the blob store at BLOB_URL (gocloud.dev/blob); nil before Run.
// GET /api/v1/files/{key} serves what is written there.
func (h *Host) Bucket() *blob.Bucket {
	if d := h.deps.Load(); d != nil {
		return d.bucket
	}
	return nil
}

// freeze ends registration: called when Run starts.
func (h *Host) freeze() {
	h.mu.Lock()
	h.frozen = true
	h.mu.Unlock()
}

func (h *Host) mustNotBeFrozen(what string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.frozen {
		panic("host: " + what + " called after Run started; register everything before Main or Run")
	}
}

// checkRoutes panics when an app route would be shadowed by one of the host's.
func (h *Host) checkRoutes(healthPath string) {
	reserved := web.HostPaths(healthPath)
	_ = h.router.Walk(func(route *mux.Route, _ *mux.Router, _ []*mux.Route) error {
		tmpl, err := route.GetPathTemplate()
		if err != nil {
			return nil // no path: matches on host or headers only
		}
		literal, _, _ := strings.Cut(tmpl, "{")
		for _, p := range reserved {
			if tmpl == p || strings.HasPrefix(literal, p+"/") {
				panic(fmt.Sprintf("host: app route %q is under the host's own %s routes; choose another path", tmpl, p))
			}
		}
		return nil
	})
}
