package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/telemetry"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
	"github.com/shoestring-go/shoestring/worker/task"
)

// stopTimeouts splits SHUTDOWN_TIMEOUT (at least 3 s, as config enforces): in-flight
// tasks get all but max(20%, 2 s) of it to finish before asynq requeues them, which
// leaves the child time to record their state and remove its heartbeat; the parent kills
// a child still alive 250 ms before the end, so both processes are gone within it.
func stopTimeouts(total time.Duration) (drain, kill time.Duration) {
	return total - max(total/5, 2*time.Second), total - 250*time.Millisecond
}

// open connects what every mode shares (the Redis client, the blob store, the job
// records and the asynq client), publishes them to the accessors, and returns a func
// that closes them.
func (h *Host) open(ctx context.Context, rs runSpec) (*deps, func(), error) {
	cfg, logger := rs.cfg, rs.logger
	rdb, err := storage.OpenRedis(cfg.RedisURL, cfg.RedisTLSSkipVerify)
	if err != nil {
		return nil, nil, err
	}
	rdb.AddHook(storage.RecordHook(rdb)) // a job's record and task in one round trip
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := storage.PingRedis(pctx, rdb); err != nil {
		// Not fatal: readiness says so, and the app recovers when Redis does, rather
		// than crash-looping on the platform.
		logger.ErrorContext(ctx, "redis unreachable at start", "redis", config.Redacted(cfg.RedisURL), "err", err)
	} else {
		logger.InfoContext(ctx, "redis connected", "redis", config.Redacted(cfg.RedisURL))
	}
	bucket, err := storage.OpenBucket(ctx, cfg.BlobURL, storage.BlobCredentials{
		AWSAccessKeyID: cfg.AWSAccessKeyID, AWSSecretAccessKey: cfg.AWSSecretAccessKey, AWSSessionToken: cfg.AWSSessionToken,
		AzureAccount: cfg.AzureStorageAccount, AzureKey: cfg.AzureStorageKey, AzureConnectionString: cfg.AzureStorageConnectionString,
	})
	if err != nil {
		rdb.Close()
		return nil, nil, err
	}
	d := &deps{cfg: cfg, logger: logger, rdb: rdb, bucket: bucket, kinds: rs.kinds, trial: rs.trial,
		jobs: storage.NewJobs(rdb, cfg.JobRetention, slices.Sorted(maps.Keys(cfg.Queues))...), queue: asynq.NewClientFromRedisClient(rdb)}
	// The accessors keep answering with d after it is closed: a handler still running
	// then gets "client is closed" from Redis, never a nil client.
	h.deps.Store(d)
	return d, func() {
		bucket.Close()
		rdb.Close()
	}, nil
}

// runServe is combined mode: the HTTP tier, and one supervised child worker: this same
// binary re-executed as "worker", so it has the same registrations.
func (h *Host) runServe(ctx context.Context, rs runSpec, getenv func(string) string, stdout, stderr io.Writer) error {
	cfg, logger := rs.cfg, rs.logger
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
	rs.cfg = cfg

	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find own executable: %w", err)
	}
	_, kill := stopTimeouts(cfg.ShutdownTimeout)
	env := append(os.Environ(), config.Env(getenv)...)
	// The child gets REDIS_URL and REDIS_CLUSTER_ADDRS as they are here, whatever its
	// own environment holds, and builds cfg.RedisURL from them as Load did here (from
	// both, for a cluster); in trial mode, the embedded Redis's URL.
	childRedisURL := getenv("REDIS_URL")
	if rs.trial {
		childRedisURL = redisURL
	}
	env = append(env, "REDIS_URL="+childRedisURL, "REDIS_CLUSTER_ADDRS="+getenv("REDIS_CLUSTER_ADDRS"),
		envParentPID+"="+strconv.Itoa(os.Getpid()))
	if cfg.WorkerMaxRSS > 0 && os.Getenv("GOMEMLIMIT") == "" {
		// The Go runtime collects harder as the heap nears this, well before the
		// watchdog's recycle at WORKER_MAX_RSS.
		env = append(env, "GOMEMLIMIT="+strconv.FormatInt(cfg.WorkerMaxRSS*9/10, 10))
	}
	if rs.trial && cfg.DemoTasks == "" {
		// The child sees a REDIS_URL; it must still serve the kinds of trial mode.
		env = append(env, "DEMO_TASKS=true")
	}
	// The child's metrics socket, in a directory only this user can enter (MkdirTemp
	// makes it 0700). Without one, /metrics has the parent's metrics only.
	socket := ""
	if dir, err := os.MkdirTemp("", "shoestring-metrics-"); err != nil {
		logger.Warn("no directory for the worker's metrics socket: /metrics will lack its task metrics", "err", err)
	} else {
		defer os.RemoveAll(dir)
		socket = filepath.Join(dir, "worker.sock")
		env = append(env, envMetricsSocket+"="+socket)
	}
	svLog := logger.With("component", "supervisor")
	hostname, _ := os.Hostname()
	sv := &worker.Supervision{
		New: func() *worker.Supervisor {
			id := storage.NewWorkerID(hostname, os.Getpid())
			return &worker.Supervisor{Path: exe, Args: []string{"worker"}, Env: append(slices.Clip(env), envWorkerID+"="+id),
				Stdout: stdout, Stderr: stderr, StopTimeout: kill, Logger: svLog, WorkerID: id}
		},
		Policy: cfg.WorkerExitPolicy, MaxRestarts: cfg.WorkerMaxRestarts, Window: cfg.WorkerRestartWindow,
		StaleAfter: 3 * worker.HeartbeatTTL, RecycleGrace: cfg.ShutdownTimeout, Logger: svLog,
	}
	return h.runWeb(ctx, rs, sv, socket)
}

var _ web.ChildStatus = (*worker.Supervision)(nil)

// errRecycled ends a process recycled through /admin/recycle: a non-zero exit, so that
// every platform (systemd's Restart=on-failure too) starts it again.
var errRecycled = errors.New("recycled on request (POST /admin/recycle); exiting for a restart")

// runWeb runs the HTTP tier; with sv, also the child worker it supervises, whose
// metrics it serves at /metrics with its own, scraped from childMetrics (a unix
// socket). It returns nil after a requested stop, or an error when the child died and
// sv gave up on it.
func (h *Host) runWeb(ctx context.Context, rs runSpec, sv *worker.Supervision, childMetrics string) error {
	cfg, logger := rs.cfg, rs.logger
	defer startWebGC(os.Getenv)()
	d, tk, stop, err := h.start(ctx, rs, "web")
	if err != nil {
		return err
	}
	defer stop()
	sw := &sweeper{bucket: d.bucket, rdb: d.rdb, retention: cfg.JobRetention, logger: logger.With("component", "sweeper")}
	if err := sw.Start(ctx); err != nil {
		return err
	}
	defer sw.Stop()
	if rs.trial && len(cfg.APITokens) == 0 {
		logger.Warn("trial mode: POST /api/v1/jobs, GET /api/v1/queues and GET /api/v1/schedules are open to anyone; set API_TOKEN to require a token")
	}
	beats := storage.NewHeartbeats(d.rdb)
	inspector := asynq.NewInspectorFromRedisClient(d.rdb)
	started := time.Now()
	endpoints := h.newHealth(d, beats, inspector, started, tk)
	state := endpoints.State
	reg := telemetry.NewRegistry()
	requests := telemetry.NewHTTP(reg)
	telemetry.RegisterQueues(reg, inspector, slices.Collect(maps.Keys(cfg.Queues)), logger.With("component", "metrics"))
	telemetry.RegisterHealth(reg, endpoints.Registry, cfg.HealthTimeout+time.Second)
	var gatherer prometheus.Gatherer = reg
	recovered := telemetry.NewRecovered(reg)
	rp := newReaper(d, logger)
	rp.OnRecovered = func(n int) { recovered.Add(float64(n)) }
	if err := rp.Start(ctx); err != nil {
		return err
	}
	defer rp.Stop()
	if sv != nil {
		supervision := telemetry.NewSupervision(reg)
		sv.OnRestart = supervision.Restarts.Inc
		sv.OnRecovered = func(n int) { recovered.Add(float64(n)) }
		sv.OnRecycle = func(reason string) { supervision.Recycles.WithLabelValues(reason).Inc() }
		if childMetrics != "" {
			gatherer = prometheus.Gatherers{reg, telemetry.ChildGatherer(childMetrics, logger.With("component", "metrics"))}
		}
	}
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
	var child web.ChildStatus // an interface holding a nil *Supervision would not be nil
	if sv != nil {
		child = sv
	}
	tier := &httpTier{port: cfg.Port, logger: logger, handler: web.NewServer(web.Deps{
		Logger:        logger.With("component", "http"),
		Jobs:          d.jobs,
		Submitter:     web.SubmitterFunc(func(ctx context.Context, r task.Request) (storage.Job, error) { return h.submitTo(ctx, d, r) }),
		Schedules:     tk.scheduleViews,
		Inspector:     inspector,
		Bucket:        d.bucket,
		Health:        endpoints,
		HealthPath:    cfg.HealthPath,
		Admin:         admin,
		Queues:        cfg.Queues,
		FileMaxAge:    cfg.JobRetention,
		APITokens:     cfg.APITokens,
		APIOpen:       rs.trial,
		App:           h.router,
		MaxBodyBytes:  cfg.MaxUploadBytes,
		Beats:         beats,
		HeartbeatTTL:  worker.HeartbeatTTL,
		Child:         child,
		QueueAdmin:    inspector,
		Metrics:       telemetry.Handler(gatherer, logger.With("component", "metrics")),
		MetricsTokens: []string{cfg.MetricsToken, cfg.AdminToken},
		Requests:      requests,
	})}
	// Listen first, so a taken port is an error from Run, and liveness answers before
	// the child is even started (a PaaS kills an app that has not bound its port in 60 s).
	if err := tier.Start(ctx); err != nil {
		return err
	}

	var exited <-chan worker.Exit
	var trim sync.Once
	if sv == nil {
		state.Set(health.Ready)
		trim.Do(func() { trimStartup(logger) })
	} else {
		sv.Beats, sv.InFlight = beats, storage.NewInFlight(d.rdb, d.jobs)
		for q := range cfg.Queues {
			sv.Queues = append(sv.Queues, q)
		}
		sv.OnReady = func() {
			if state.Transition(health.Starting, health.Ready) {
				logger.Info("ready: worker child heartbeat seen")
			}
			trim.Do(func() { trimStartup(logger) })
		}
		sv.OnDown = func() { state.Transition(health.Ready, health.Starting) }
		recoverOrphans(ctx, sv.InFlight, logger, recovered)
		if err := sv.Start(ctx); err != nil {
			tier.Stop(time.Second)
			return err
		}
		exited = sv.Done()
	}

	recycled := false
	select {
	case err := <-tier.serveErr:
		if sv != nil {
			sv.Stop()
		}
		return fmt.Errorf("http server: %w", err)
	case ex := <-exited:
		state.Set(health.Busy)
		logger.Error("worker child is gone; exiting so the platform restarts the deployable",
			"child_pid", ex.PID, "exit_code", ex.Code, "signal", ex.Signal)
		tier.Stop(time.Second)
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
	drain, _ := stopTimeouts(cfg.ShutdownTimeout)
	tier.Stop(drain)
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

// httpTier is the HTTP server on $PORT: Start listens and serves; Stop drains.
type httpTier struct {
	port    int
	handler http.Handler
	logger  *slog.Logger

	srv      *http.Server
	serveErr chan error // receives Serve's error if it stops on its own
}

// Start binds the port (a taken port is an error here) and serves in the background.
func (t *httpTier) Start(ctx context.Context) error {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(t.port))
	if err != nil {
		return fmt.Errorf("listen on port %d: %w", t.port, err)
	}
	// ReadTimeout cuts off a body trickled in slowly (the upload route extends its own
	// deadline while data arrives at a useful rate); WriteTimeout bounds a handler and
	// its response (file downloads extend theirs by the file's size).
	t.srv = &http.Server{Handler: t.handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 60 * time.Second, IdleTimeout: 2 * time.Minute}
	t.serveErr = make(chan error, 1)
	go func() {
		if err := t.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			t.serveErr <- err
		}
	}()
	t.logger.InfoContext(ctx, "http listening", "addr", ln.Addr().String())
	return nil
}

// Stop stops accepting connections and gives requests in flight up to d to finish,
// then closes what is left. Safe if never started.
func (t *httpTier) Stop(d time.Duration) {
	if t.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := t.srv.Shutdown(ctx); err != nil {
		t.logger.Warn("http drain cut short", "err", err)
		t.srv.Close()
	}
}

// recoverOrphans requeues the tasks of workers that died without a supervisor to do it
// (the whole deployable was killed): those with an in-flight index and no heartbeat.
// It adds the tasks put back in their queue to recovered.
func recoverOrphans(ctx context.Context, inflight *storage.InFlight, logger *slog.Logger, recovered prometheus.Counter) {
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
		for _, r := range rec {
			if r.Requeued() {
				recovered.Inc()
			}
		}
	}
}

// newHealth registers the built-in checks, then the app's, and returns the health
// endpoints with the instance starting. An app check named like a built-in panics.
func (h *Host) newHealth(d *deps, beats *storage.Heartbeats, inspector *asynq.Inspector, started time.Time, tk *ticker) *health.Endpoints {
	cfg := d.cfg
	backlog := backlogFunc(inspector, cfg.Queues)
	reg := health.NewRegistry(health.Options{Timeout: cfg.HealthTimeout, Cache: cfg.HealthCache,
		FailureThreshold: cfg.HealthFailureThreshold, Logger: d.logger.With("component", "health")})
	reg.Register(health.Check{Name: "self", Checker: health.SelfCheck(started), Measurement: "uptime", ComponentType: "system"})
	reg.Register(health.Check{Name: "redis", Tags: []string{health.TagReady}, Measurement: "responseTime", ComponentType: "datastore",
		Checker: health.PingCheck(func(ctx context.Context) error { return storage.PingRedis(ctx, d.rdb) })})
	reg.Register(health.Check{Name: "storage", Measurement: "reachable", ComponentType: "datastore",
		Checker: health.StorageCheck(d.bucket.IsAccessible)})
	reg.Register(health.Check{Name: "worker", Measurement: "heartbeat",
		Checker: health.WorkerCheck(beats, worker.HeartbeatTTL, backlog, cfg.WorkerStaleAfter)})
	reg.Register(health.Check{Name: "queue", Measurement: "latency",
		Checker: health.QueueCheck(backlog, cfg.QueueLatencyWarn, cfg.QueueLatencyFail)})
	if len(tk.entries) > 0 {
		reg.Register(health.Check{Name: "schedule", Measurement: "lateness", Checker: tk.check(cfg.ScheduleGrace)})
	}
	builtin := append(reg.Names(), "schedule")
	for _, c := range h.checks {
		if slices.Contains(builtin, c.Name) {
			panic(fmt.Sprintf("host: health check %q has the name of a built-in check", c.Name))
		}
		reg.Register(c)
	}
	return &health.Endpoints{Registry: reg, State: &health.State{}, Details: cfg.HealthDetails, APIKey: cfg.HealthAPIKey,
		CacheMaxAge: cfg.HealthCache, CORSOrigins: cfg.HealthCORSOrigins, Logger: d.logger}
}

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

// start is what the web tier and the worker both begin with: it refuses to run
// without REDIS_URL (the embedded Redis lives in combined mode only), opens the
// dependencies and starts the schedule ticker. stop stops the ticker and closes the
// dependencies.
func (h *Host) start(ctx context.Context, rs runSpec, mode string) (d *deps, tk *ticker, stop func(), err error) {
	if rs.cfg.RedisURL == "" {
		return nil, nil, nil, &usageError{mode + " needs REDIS_URL: the embedded Redis lives only in combined mode (serve)"}
	}
	d, closeDeps, err := h.open(ctx, rs)
	if err != nil {
		return nil, nil, nil, err
	}
	tk = h.newTicker(d, rs.schedules)
	if err := tk.Start(ctx); err != nil {
		closeDeps()
		return nil, nil, nil, err
	}
	return d, tk, func() { tk.Stop(); closeDeps() }, nil
}

// runWorker is the worker alone: the combined-mode child, or a worker process of a
// split deployment. It serves every registered kind.
func (h *Host) runWorker(ctx context.Context, rs runSpec, getenv func(string) string) error {
	cfg, logger := rs.cfg, rs.logger
	// A deployment of only workers still ticks: every process enqueues the due ticks.
	d, _, stop, err := h.start(ctx, rs, "worker")
	if err != nil {
		return err
	}
	defer stop()
	if getenv("GOMEMLIMIT") == "" && cfg.WorkerMaxRSS == 0 {
		// No limit given: a soft one a little above what image decodes may hold, so the
		// heap does not grow to twice the live set (GOGC) on a small instance.
		debug.SetMemoryLimit(cfg.ImageMemoryBudget + 64<<20)
	}
	drain, _ := stopTimeouts(cfg.ShutdownTimeout)
	reg := telemetry.NewRegistry()
	jobs := telemetry.NewJobs(reg)
	for name, k := range h.kinds {
		jobs.Init(name, cmp.Or(k.defaults.queue, defaultQueue(cfg.Queues)))
	}
	ppid, perr := strconv.Atoi(getenv(envParentPID))
	split := perr != nil // no parent: a worker of a split deployment
	var recovered prometheus.Counter
	if split {
		recovered = telemetry.NewRecovered(reg)
	}
	ms := &metricsServer{logger: logger.With("component", "metrics")}
	if err := ms.Start(ctx, cfg, reg, getenv(envMetricsSocket)); err != nil {
		return err
	}
	defer ms.Stop()
	recycle := make(chan string, 1)
	w := worker.New(worker.Config{
		Concurrency: cfg.WorkerConcurrency, Fetchers: cfg.WorkerFetchers, Queues: cfg.Queues, ShutdownTimeout: drain,
		Retention: cfg.JobRetention, LogLevel: cfg.LogLevel,
		ID: getenv(envWorkerID), Metrics: jobs,
		Watchdog: worker.WatchdogConfig{
			HangGrace: cfg.HangGrace, DegradedRatio: cfg.DegradedRatio, DegradedFor: cfg.DegradedFor,
			Window: cfg.ThroughputWindow, MaxRSS: cfg.WorkerMaxRSS,
			OnRecycle: func(reason string) {
				select {
				case recycle <- reason:
				default: // already recycling
				}
			},
		},
	}, d.rdb, logger)
	for name, k := range d.kinds {
		w.Handle(name, k.handler)
	}
	if split {
		// Nobody else requeues what dead workers held.
		recoverOrphans(ctx, storage.NewInFlight(d.rdb, d.jobs), logger, recovered)
	}
	rp := newReaper(d, logger)
	if recovered != nil {
		rp.OnRecovered = func(n int) { recovered.Add(float64(n)) }
	}
	if err := rp.Start(ctx); err != nil {
		return err
	}
	defer rp.Stop()
	if err := w.Start(ctx); err != nil {
		return err
	}
	defer w.Stop()
	go func() {
		tick := time.NewTicker(idleTick)
		defer tick.Stop()
		trimWhenIdle(ctx, w.Activity, tick.C, time.After(trimDeadline), func() { trimStartup(logger) })
	}()

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

// newReaper returns the reaper of dead workers' tasks that every process runs (see
// worker.Reaper), over the configured queues.
func newReaper(d *deps, logger *slog.Logger) *worker.Reaper {
	hostname, _ := os.Hostname()
	return &worker.Reaper{InFlight: storage.NewInFlight(d.rdb, d.jobs), Queues: slices.Sorted(maps.Keys(d.cfg.Queues)),
		ID: hostname + ":" + strconv.Itoa(os.Getpid()), Logger: logger.With("component", "reaper")}
}

// A worker gives back its start-up memory once it has been idle for idleTicks ticks of
// idleTick (no task running, none ended), or trimDeadline after start, whichever is
// first. The trim (a forced collection, a read of smaps, unmapping the binary's
// start-up pages: about 12 ms, then a page fault wherever code runs again) is for an
// idle process; a worker that starts with a backlog would pay it in its first tasks.
const (
	idleTick     = 250 * time.Millisecond
	idleTicks    = 4
	trimDeadline = 30 * time.Second
)

// trimWhenIdle calls trim once activity (Worker.Activity) has not changed, with no
// task running, for idleTicks ticks in a row, or when deadline fires; it returns
// without trimming when ctx is done.
func trimWhenIdle(ctx context.Context, activity func() (ended, running int64), tick, deadline <-chan time.Time, trim func()) {
	last, quiet := int64(-1), 0
	for {
		select {
		case <-ctx.Done():
			return
		case <-deadline:
			trim()
			return
		case <-tick:
			ended, running := activity()
			if running == 0 && ended == last {
				quiet++
			} else {
				quiet = 0
			}
			last = ended
			if quiet >= idleTicks {
				trim()
				return
			}
		}
	}
}

// trimStartup gives back the memory that only start-up used (see trimAfterStart), once
// the process is up and before it idles; a failure costs only memory.
func trimStartup(logger *slog.Logger) {
	n, err := trimAfterStart()
	if err != nil {
		logger.Warn("give back start-up memory", "err", err)
		return
	}
	logger.Debug("gave back start-up memory", "binary_bytes_unmapped", n)
}
