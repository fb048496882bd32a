package host

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/telemetry"
)

// Environment variables the parent sets for its child; not user settings.
const (
	envParentPID = "SHOESTRING_PARENT_PID"
	envWorkerID  = "SHOESTRING_WORKER_ID"
	// envMetricsSocket is the unix socket on which the child serves its metrics for
	// the parent's /metrics (see package telemetry).
	envMetricsSocket = "SHOESTRING_METRICS_SOCKET"
)

// usageError is a bad command line: exit code 2, like a bad configuration.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

// ExitCode is the process exit code for an error Run returned: 0 for nil, 2 for a bad
// command line or configuration (*config.Error), 1 for everything else.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ce *config.Error
	var ue *usageError
	if errors.As(err, &ce) || errors.As(err, &ue) {
		return 2
	}
	return 1
}

const usage = `usage: %[1]s [serve|web|worker|healthcheck [URL]|version]
  serve (default)  HTTP tier plus a supervised child worker
  web              HTTP tier only
  worker           worker only
  healthcheck URL  exit 0 when URL (default: this instance's liveness) answers 200
  version          print the version`

// Main runs the app as the command line says (os.Args), configured by the environment
// and a .env file in the working directory (which never overrides a real variable),
// until SIGINT or SIGTERM asks it to stop. It prints any error to stderr and returns
// the exit code for os.Exit: 0 after a clean stop, 2 for bad configuration, 1 otherwise.
func (h *Host) Main() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := h.Run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", filepath.Base(os.Args[0]), err)
		return ExitCode(err)
	}
	return 0
}

// Run is the whole program, for Main and for tests: it picks the mode from args[1]
// (serve, the default; web; worker; healthcheck [URL]; version), reads every setting
// through getenv (falling back to ./.env), logs to stdout, and returns when ctx is
// cancelled (a clean stop returns nil) or the mode fails. Registration ends when Run
// starts. Errors: *config.Error for bad settings (every problem listed), a usage error
// for a bad command line (ExitCode 2 for both), or what stopped the process.
//
// Run panics when an app route is under one of the host's paths (see Router).
func (h *Host) Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	h.freeze()
	prog := "shoestring"
	if len(args) > 0 {
		prog = filepath.Base(args[0])
	}
	mode := "serve"
	if len(args) > 1 {
		mode = args[1]
	}
	switch mode {
	case "version":
		fmt.Fprintln(stdout, versionString(prog))
		return nil
	case "help", "-h", "--help":
		fmt.Fprintf(stdout, usage+"\n", prog)
		return nil
	case "healthcheck", "serve", "web", "worker":
	default:
		return &usageError{fmt.Sprintf("unknown command %q\n"+usage, mode, prog)}
	}

	getenv, err := withDotenv(getenv, ".env")
	if err != nil {
		return err
	}
	if mode == "healthcheck" {
		return healthcheck(ctx, args[2:], getenv)
	}
	cfg, err := config.Load(getenv)
	if err != nil {
		return err
	}
	h.checkRoutes(cfg.HealthPath)
	trial := mode == "serve" && cfg.RedisURL == ""
	kinds := h.activeKinds(cfg.DemoTasksOn(trial))
	schedules, err := h.resolveSchedules(cfg, kinds)
	if err != nil {
		return err
	}
	rs := runSpec{cfg: cfg, kinds: kinds, trial: trial, schedules: schedules}
	proc := "web"
	if mode == "worker" {
		proc = "worker"
	}
	logger, closeLog := newLogger(cfg, stdout)
	defer closeLog()
	rs.logger = logger.With("proc", proc)
	redis.SetLogger(storage.RedisLogger{L: rs.logger.With("component", "go-redis")})
	switch mode {
	case "web":
		return h.runWeb(ctx, rs, nil, "")
	case "worker":
		return h.runWorker(ctx, rs, getenv)
	default:
		return h.runServe(ctx, rs, getenv, stdout, stderr)
	}
}

// runSpec is what one Run decided before starting its mode.
type runSpec struct {
	cfg       config.Config
	logger    *slog.Logger
	kinds     map[string]*kind // the kinds this run serves
	trial     bool             // combined mode on the embedded Redis
	schedules []*scheduled
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

// logBufferSize bounds the log lines a process holds (LOG_FLUSH_INTERVAL): about 150
// lines of a task's outcome.
const logBufferSize = 32 << 10

// newLogger logs to w in cfg's format and level, through a LogBuffer when
// cfg.LogFlushInterval is set. Call closeLog before exit: it writes what is buffered.
func newLogger(cfg config.Config, w io.Writer) (logger *slog.Logger, closeLog func()) {
	var lb *telemetry.LogBuffer
	if cfg.LogFlushInterval > 0 {
		lb = telemetry.NewLogBuffer(w, logBufferSize, cfg.LogFlushInterval)
		w = lb
	}
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	var h slog.Handler
	if cfg.LogFormat == "json" {
		h = slog.NewJSONHandler(w, opts)
	} else {
		h = slog.NewTextHandler(w, opts)
	}
	if lb == nil {
		return slog.New(h), func() {}
	}
	return slog.New(telemetry.LogHandler(h, lb)), func() { lb.Close() }
}

func versionString(prog string) string {
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
	return fmt.Sprintf("%s %s commit %s %s", prog, version, commit, runtime.Version())
}

// healthcheck exits 0 when url (default this instance's liveness route on $PORT and
// HEALTH_PATH) answers 200 within 2 s: a Docker HEALTHCHECK that needs no curl.
func healthcheck(ctx context.Context, args []string, getenv func(string) string) error {
	url := ""
	if len(args) > 0 {
		url = args[0]
	} else {
		port := cmp.Or(getenv("PORT"), "8080")
		path := cmp.Or(getenv("HEALTH_PATH"), "/health")
		for len(path) > 1 && path[len(path)-1] == '/' {
			path = path[:len(path)-1]
		}
		url = "http://127.0.0.1:" + port + path + "/live"
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
