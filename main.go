// Command shoestring runs a web tier and its background workers as one deployable: the
// HTTP tier enqueues work into Redis (asynq) and supervises a child worker process, the
// same binary re-executed. See README.md and DESIGN.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "shoestring:", err)
		os.Exit(exitCode(err))
	}
}

// Environment variables the parent sets for its child; not user settings.
const (
	envParentPID = "SHOESTRING_PARENT_PID"
	envWorkerID  = "SHOESTRING_WORKER_ID"
)

// usageError is a bad command line: exit code 2, like a bad configuration.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// exitCode is 2 for a bad command line or configuration, 1 for everything else.
func exitCode(err error) int {
	var ce *config.Error
	var ue *usageError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

const usage = `usage: shoestring [serve|web|worker|healthcheck [URL]|version]
  serve (default)  HTTP tier plus a supervised child worker
  web              HTTP tier only
  worker           worker only
  healthcheck URL  exit 0 when URL (default: this instance's liveness) answers 200
  version          print the version`

// run is the whole program: it picks the mode from args[1], builds every dependency
// from its parameters, and returns when ctx is cancelled (a clean stop returns nil) or
// the mode fails. Nothing else reads the environment.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	mode := "serve"
	if len(args) > 1 {
		mode = args[1]
	}
	switch mode {
	case "version":
		fmt.Fprintln(stdout, versionString())
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	case "healthcheck":
		return healthcheck(ctx, args[2:], getenv)
	case "serve", "web", "worker":
	default:
		return &usageError{fmt.Sprintf("unknown command %q\n%s", mode, usage)}
	}

	getenv, err := withDotenv(getenv, ".env")
	if err != nil {
		return err
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	proc := "web"
	if mode == "worker" {
		proc = "worker"
	}
	logger := newLogger(cfg, stdout).With("proc", proc)
	redis.SetLogger(storage.RedisLogger{L: logger.With("component", "go-redis")})
	switch mode {
	case "web":
		return runWeb(ctx, cfg, logger, nil)
	case "worker":
		return runWorker(ctx, cfg, logger, getenv)
	default:
		return runServe(ctx, cfg, logger, getenv, stdout, stderr)
	}
}

// withDotenv returns a getenv that falls back to the values in the .env file at path
// when it exists; the real environment always wins.
func withDotenv(getenv func(string) string, path string) (func(string) string, error) {
	vals, err := godotenv.Read(path)
	if errors.Is(err, os.ErrNotExist) {
		return getenv, nil
	}
	if err != nil {
		// godotenv's message quotes the offending line, which may hold a secret.
		return nil, &usageError{fmt.Sprintf("read %s: malformed line (check quotes and KEY=value syntax)", path)}
	}
	return func(k string) string {
		if v := getenv(k); v != "" {
			return v
		}
		return vals[k]
	}, nil
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func versionString() string {
	version, commit := "(devel)", "unknown"
	if bi, ok := debug.ReadBuildInfo(); ok {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				commit = s.Value
			}
		}
	}
	return fmt.Sprintf("shoestring %s commit %s %s", version, commit, runtime.Version())
}

// stopTimeouts splits SHUTDOWN_TIMEOUT (at least 3 s, as config enforces): in-flight
// tasks get all but max(20%, 2 s) of it to finish before asynq requeues them, which
// leaves the child time to record their state and remove its heartbeat; the parent kills
// a child still alive 250 ms before the end, so both processes are gone within it.
func stopTimeouts(total time.Duration) (drain, kill time.Duration) {
	return total - max(total/5, 2*time.Second), total - 250*time.Millisecond
}

// redisDeps opens what every mode shares: the Redis client and the blob store.
type redisDeps struct {
	rdb    *redis.Client
	bucket *blob.Bucket
}

func openDeps(ctx context.Context, cfg config.Config, logger *slog.Logger, redisURL string) (*redisDeps, error) {
	rdb, err := storage.OpenRedis(redisURL, cfg.RedisTLSSkipVerify)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		// Not fatal: readiness says so, and the app recovers when Redis does, rather
		// than crash-looping on the platform.
		logger.ErrorContext(ctx, "redis unreachable at start", "redis", config.Redacted(redisURL), "err", err)
	} else {
		logger.InfoContext(ctx, "redis connected", "redis", config.Redacted(redisURL))
	}
	bucket, err := storage.OpenBucket(ctx, cfg.BlobURL)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	return &redisDeps{rdb: rdb, bucket: bucket}, nil
}

func (d *redisDeps) Close() {
	d.bucket.Close()
	d.rdb.Close()
}

// runServe is combined mode: the HTTP tier, and one supervised child worker.
func runServe(ctx context.Context, cfg config.Config, logger *slog.Logger, getenv func(string) string, stdout, stderr io.Writer) error {
	redisURL := cfg.RedisURL
	if redisURL == "" {
		emb, err := storage.StartEmbedded()
		if err != nil {
			return err
		}
		defer emb.Stop()
		redisURL = emb.URL()
		logger.Warn("REDIS_URL is not set: using an EMBEDDED in-memory Redis. Queued jobs and their records " +
			"do NOT survive a restart. Set REDIS_URL for anything but trying shoestring out.")
	}
	cfg.RedisURL = redisURL

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	_, kill := stopTimeouts(cfg.ShutdownTimeout)
	env := append(os.Environ(), config.Env(getenv)...)
	env = append(env, "REDIS_URL="+redisURL, envParentPID+"="+strconv.Itoa(os.Getpid()))
	svLog := logger.With("component", "supervisor")
	host, _ := os.Hostname()
	sv := &worker.Supervision{
		New: func() *worker.Supervisor {
			id := storage.NewWorkerID(host, os.Getpid())
			return &worker.Supervisor{Path: exe, Args: []string{"worker"}, Env: append(slices.Clip(env), envWorkerID+"="+id),
				Stdout: stdout, Stderr: stderr, StopTimeout: kill, Logger: svLog, WorkerID: id}
		},
		Policy: cfg.WorkerExitPolicy, MaxRestarts: cfg.WorkerMaxRestarts, Window: cfg.WorkerRestartWindow,
		StaleAfter: 3 * worker.HeartbeatTTL, RecycleGrace: cfg.ShutdownTimeout, Logger: svLog,
	}
	return runWeb(ctx, cfg, logger, sv)
}

// runWeb runs the HTTP tier; with sv, also the child worker it supervises. It returns
// nil after a requested stop, or an error when the child died and sv gave up on it.
func runWeb(ctx context.Context, cfg config.Config, logger *slog.Logger, sv *worker.Supervision) error {
	if cfg.RedisURL == "" {
		return &usageError{"web needs REDIS_URL: the embedded Redis lives only in combined mode (shoestring serve)"}
	}
	deps, err := openDeps(ctx, cfg, logger, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer deps.Close()

	beats := storage.NewHeartbeats(deps.rdb)
	inspector := asynq.NewInspectorFromRedisClient(deps.rdb)
	started := time.Now()
	endpoints := newHealth(cfg, deps, beats, inspector, started, logger)
	state := endpoints.State
	recycle := make(chan struct{}, 1)
	var admin *health.Admin
	if cfg.AdminToken != "" {
		admin = &health.Admin{State: state, Token: cfg.AdminToken, Started: started, Recycle: func() {
			select {
			case recycle <- struct{}{}:
			default: // already recycling
			}
		}}
	}

	handler := web.NewServer(web.Deps{
		Logger:     logger.With("component", "http"),
		Jobs:       storage.NewJobs(deps.rdb, cfg.JobRetention),
		Queue:      asynq.NewClientFromRedisClient(deps.rdb),
		Inspector:  inspector,
		Bucket:     deps.bucket,
		Health:     endpoints,
		HealthPath: cfg.HealthPath,
		Admin:      admin,
		Limits: web.Limits{MaxUploadBytes: cfg.MaxUploadBytes, MaxImagePixels: cfg.MaxImagePixels,
			ThumbnailSizes: cfg.ThumbnailSizes, Queues: cfg.Queues},
	})

	// Listen first, so a taken port is an error from run, and liveness answers before
	// the child is even started (a PaaS kills an app that has not bound its port in 60 s).
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.Port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", cfg.Port, err)
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	logger.InfoContext(ctx, "http listening", "addr", ln.Addr().String())

	drain, _ := stopTimeouts(cfg.ShutdownTimeout)
	shutdownHTTP := func(d time.Duration) {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			logger.Warn("http drain cut short", "err", err)
			srv.Close()
		}
	}

	var exited <-chan worker.Exit
	recycled := false
	if sv == nil {
		state.Set(health.Ready)
	} else {
		jobs := storage.NewJobs(deps.rdb, cfg.JobRetention)
		sv.Beats, sv.InFlight = beats, storage.NewInFlight(deps.rdb, jobs)
		for q := range cfg.Queues {
			sv.Queues = append(sv.Queues, q)
		}
		sv.OnReady = func() {
			if state.Transition(health.Starting, health.Ready) {
				logger.Info("ready: worker child heartbeat seen")
			}
		}
		sv.OnDown = func() { state.Transition(health.Ready, health.Starting) }
		recoverOrphans(ctx, sv.InFlight, logger)
		if err := sv.Start(ctx); err != nil {
			shutdownHTTP(time.Second)
			return err
		}
		exited = sv.Done()
	}

	select {
	case err := <-serveErr:
		if sv != nil {
			sv.Stop()
		}
		return fmt.Errorf("http server: %w", err)
	case ex := <-exited:
		state.Set(health.Busy)
		logger.Error("worker child is gone; exiting so the platform restarts the deployable",
			"child_pid", ex.PID, "exit_code", ex.Code, "signal", ex.Signal)
		shutdownHTTP(time.Second)
		return fmt.Errorf("worker child (pid %d) exited unexpectedly: %s", ex.PID, ex)
	case <-recycle:
		recycled = true
		logger.Warn("recycle requested (POST /admin/recycle): draining, then exiting for the platform to restart")
	case <-ctx.Done():
	}

	// A requested stop: readiness turns 503 before anything else stops.
	state.Set(health.Draining)
	logger.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	done := make(chan worker.Exit, 1)
	if sv != nil {
		go func() { done <- sv.Stop() }()
	} else {
		done <- worker.Exit{}
	}
	shutdownHTTP(drain)
	ex := <-done
	if sv != nil && !ex.Success() {
		return fmt.Errorf("worker child did not stop cleanly: %s", ex)
	}
	logger.Info("stopped")
	if recycled {
		return errRecycled
	}
	return nil
}

// recoverOrphans requeues the tasks of workers that died without a supervisor to do it
// (the whole deployable was killed): those with an in-flight index and no heartbeat.
func recoverOrphans(ctx context.Context, inflight *storage.InFlight, logger *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	orphans, err := inflight.Orphans(ctx)
	if err != nil {
		logger.Warn("look for tasks of dead workers", "err", err)
		return
	}
	for _, id := range orphans {
		rec, err := inflight.Recover(ctx, id, "worker "+id+" died (no heartbeat)")
		if err != nil {
			logger.Warn("requeue tasks of dead worker", "worker_id", id, "err", err)
			continue
		}
		logger.Warn("requeued the tasks of a dead worker", "worker_id", id, "tasks", len(rec))
	}
}

// newHealth registers the built-in checks and returns the health endpoints, with the
// instance starting.
func newHealth(cfg config.Config, deps *redisDeps, beats *storage.Heartbeats, inspector *asynq.Inspector, started time.Time, logger *slog.Logger) *health.Endpoints {
	backlog := backlogFunc(inspector, cfg.Queues)
	reg := health.NewRegistry(health.Options{Timeout: cfg.HealthTimeout, Cache: cfg.HealthCache,
		FailureThreshold: cfg.HealthFailureThreshold, Logger: logger.With("component", "health")})
	reg.Register(health.Check{Name: "self", Checker: health.SelfCheck(started), Measurement: "uptime", ComponentType: "system"})
	reg.Register(health.Check{Name: "redis", Tags: []string{health.TagReady}, Measurement: "responseTime", ComponentType: "datastore",
		Checker: health.PingCheck(func(ctx context.Context) error { return deps.rdb.Ping(ctx).Err() })})
	reg.Register(health.Check{Name: "storage", Measurement: "reachable", ComponentType: "datastore",
		Checker: health.StorageCheck(deps.bucket.IsAccessible)})
	reg.Register(health.Check{Name: "worker", Measurement: "heartbeat",
		Checker: health.WorkerCheck(beats, worker.HeartbeatTTL, backlog, cfg.WorkerStaleAfter)})
	reg.Register(health.Check{Name: "queue", Measurement: "latency",
		Checker: health.QueueCheck(backlog, cfg.QueueLatencyWarn, cfg.QueueLatencyFail)})
	return &health.Endpoints{Registry: reg, State: &health.State{}, Details: cfg.HealthDetails, APIKey: cfg.HealthAPIKey,
		CacheMaxAge: cfg.HealthCache, CORSOrigins: cfg.HealthCORSOrigins, Logger: logger}
}

// errRecycled ends a process recycled through /admin/recycle: a non-zero exit, so that
// every platform (systemd's Restart=on-failure too) starts it again.
var errRecycled = errors.New("recycled on request (POST /admin/recycle); exiting for a restart")

// backlogFunc reads the pending tasks of the configured queues through asynq.
func backlogFunc(ins *asynq.Inspector, queues map[string]int) health.BacklogFunc {
	return func(ctx context.Context) (health.Backlog, error) {
		known, err := ins.Queues()
		if err != nil {
			return health.Backlog{}, err
		}
		bl := health.Backlog{Queues: make(map[string]health.QueueBacklog, len(queues))}
		for name := range queues {
			if !slices.Contains(known, name) {
				bl.Queues[name] = health.QueueBacklog{}
				continue
			}
			qi, err := ins.GetQueueInfo(name)
			if err != nil {
				return health.Backlog{}, fmt.Errorf("queue %s: %w", name, err)
			}
			bl.Queues[name] = health.QueueBacklog{Pending: int64(qi.Pending), Oldest: qi.Latency}
			bl.Pending += int64(qi.Pending)
			bl.Oldest = max(bl.Oldest, qi.Latency)
		}
		return bl, nil
	}
}

// runWorker is the worker alone: the combined-mode child, or a worker process of a
// split deployment.
func runWorker(ctx context.Context, cfg config.Config, logger *slog.Logger, getenv func(string) string) error {
	if cfg.RedisURL == "" {
		return &usageError{"worker needs REDIS_URL: the embedded Redis lives only in combined mode (shoestring serve)"}
	}
	deps, err := openDeps(ctx, cfg, logger, cfg.RedisURL)
	if err != nil {
		return err
	}
	defer deps.Close()
	drain, _ := stopTimeouts(cfg.ShutdownTimeout)
	recycle := make(chan string, 1)
	w := worker.New(worker.Config{
		Concurrency: cfg.WorkerConcurrency, Queues: cfg.Queues, ShutdownTimeout: drain,
		MaxImagePixels: cfg.MaxImagePixels, Retention: cfg.JobRetention, LogLevel: cfg.LogLevel,
		ID: getenv(envWorkerID),
		Watchdog: worker.WatchdogConfig{
			HangGrace: cfg.HangGrace, DegradedRatio: cfg.DegradedRatio, DegradedFor: cfg.DegradedFor,
			Window: cfg.ThroughputWindow, MaxRSS: cfg.WorkerMaxRSS,
			OnRecycle: func(reason string) { recycle <- reason },
		},
	}, deps.rdb, deps.bucket, logger)
	ppid, err := strconv.Atoi(getenv(envParentPID))
	if err != nil {
		// A worker of a split deployment: nobody else requeues what dead workers held.
		recoverOrphans(ctx, storage.NewInFlight(deps.rdb, storage.NewJobs(deps.rdb, cfg.JobRetention)), logger)
	}
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer w.Stop()

	parentGone := make(chan struct{})
	if ppid > 0 {
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go worker.WatchParent(wctx, ppid, 250*time.Millisecond, func() { close(parentGone) })
	}
	select {
	case <-ctx.Done():
		logger.Info("stopping: signal received")
		return nil
	case reason := <-recycle:
		logger.Error("stopping for a recycle: in-flight tasks finish or go back to their queue", "reason", reason)
		return fmt.Errorf("worker recycled by its watchdog: %s", reason)
	case <-parentGone:
		logger.Error("parent process is gone; stopping")
		return errors.New("parent process exited")
	}
}

// healthcheck exits 0 when url (default this instance's liveness route on $PORT)
// answers 200 within 2 s: a Docker HEALTHCHECK that needs no curl.
func healthcheck(ctx context.Context, args []string, getenv func(string) string) error {
	url := ""
	if len(args) > 0 {
		url = args[0]
	} else {
		port := getenv("PORT")
		if port == "" {
			port = "8080"
		}
		url = "http://127.0.0.1:" + port + "/health/live"
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return &usageError{fmt.Sprintf("healthcheck: bad URL %q: %v", url, err)}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck %s: %w", url, err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck %s: status %d", url, resp.StatusCode)
	}
	return nil
}
