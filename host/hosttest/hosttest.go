// Package hosttest runs an app built on host inside a test or an example: its web
// tier and its worker, each a Host built by the same function, in this process, on a
// Redis the caller provides (storagetest.StartRedis starts one), with real HTTP on
// 127.0.0.1. It is the split deployment in miniature; the combined mode's child
// process needs the built binary instead.
package hosttest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/storage"
)

// App is a running app: the web tier at URL and, unless started WebOnly, a worker.
type App struct {
	// URL is the web tier's base URL, http://127.0.0.1:PORT.
	URL string
	// Web and Worker are the two Hosts (Worker is nil with WebOnly).
	Web, Worker *host.Host

	mu  sync.Mutex
	out strings.Builder // both processes' logs

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options adjust Start and Run.
type Options struct {
	// WebOnly starts no worker: enqueued jobs stay pending.
	WebOnly bool
}

// Start is Run for a test: it fails the test when the app does not start, stops the
// app at test cleanup, and prints its logs then if the test failed. env must set
// REDIS_URL; BLOB_URL defaults to a fresh test directory.
func Start(tb testing.TB, build func(h *host.Host), env map[string]string, opts ...Options) *App {
	tb.Helper()
	vars := map[string]string{"BLOB_URL": "file://" + tb.TempDir()}
	for k, v := range env {
		vars[k] = v
	}
	a, err := Run(build, vars, opts...)
	if err != nil {
		tb.Fatalf("hosttest: %v", err)
	}
	tb.Cleanup(func() {
		a.Stop()
		if tb.Failed() {
			tb.Logf("app output:\n%s", a.Output())
		}
	})
	return a
}

// Run builds two Hosts with build (it registers the app's kinds, routes and checks, as
// main does), runs one as "web" and one as "worker" with env (REDIS_URL is required;
// PORT=0, LOG_FORMAT=json, LOG_FLUSH_INTERVAL=0 (a test reads a line as soon as it is
// logged), BLOB_URL=mem:// and SHUTDOWN_TIMEOUT=3s unless given), and
// returns once the web tier answers /health/ready with 200 and the worker has opened
// its dependencies (its Config, Redis and Bucket answer), within 15 s. Stop it with
// Stop. Errors: an early exit of either Host (with its logs), or the 15 s deadline.
func Run(build func(h *host.Host), env map[string]string, opts ...Options) (*App, error) {
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	vars := map[string]string{"PORT": "0", "LOG_FORMAT": "json", "LOG_FLUSH_INTERVAL": "0", "BLOB_URL": "mem://", "SHUTDOWN_TIMEOUT": "3s"}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	a := &App{Web: host.New()}
	build(a.Web)
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	addr := make(chan string, 1)
	exited := make(chan error, 2)
	run := func(h *host.Host, mode string, w io.Writer) {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			err := h.Run(ctx, []string{"app", mode}, getenv, w, w)
			if ctx.Err() == nil {
				exited <- errors.Join(errors.New(mode+" exited early"), err)
			}
		}()
	}
	run(a.Web, "web", &addrWriter{a: a, addr: addr})
	if !o.WebOnly {
		a.Worker = host.New()
		build(a.Worker)
		run(a.Worker, "worker", &addrWriter{a: a})
	}
	fail := func(err error) (*App, error) {
		a.Stop()
		return nil, fmt.Errorf("%w\n%s", err, a.Output())
	}
	select {
	case base := <-addr:
		a.URL = base
	case err := <-exited:
		return fail(err)
	case <-time.After(15 * time.Second):
		return fail(errors.New("web tier not listening after 15 s"))
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(a.URL + "/health/ready")
		if err == nil {
			resp.Body.Close()
			// The worker's accessors (Config, Redis, Bucket) answer once it has opened
			// its dependencies, which it does apart from the web tier.
			if resp.StatusCode == http.StatusOK && (a.Worker == nil || a.Worker.Redis() != nil) {
				return a, nil
			}
		}
		select {
		case err := <-exited:
			return fail(err)
		default:
		}
		if time.Now().After(deadline) {
			return fail(errors.New("/health/ready not 200 after 15 s"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop stops both Hosts, as SIGTERM would, and waits for them. Safe to call twice.
func (a *App) Stop() {
	a.cancel()
	a.wg.Wait()
}

// Wait polls job id through the web tier every 20 ms until the job has finished
// (completed or failed) and returns its record. storage.ErrNotFound (no such job) is
// returned at once; other errors of Host.Job (Redis away) are retried. When ctx ends
// first, Wait returns the last record read and ctx's error, with the last error of
// Host.Job if the last poll failed. Safe for concurrent use.
func (a *App) Wait(ctx context.Context, id string) (storage.Job, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var (
		last    storage.Job
		lastErr error
	)
	for {
		job, err := a.Web.Job(ctx, id)
		switch {
		case err == nil:
			last, lastErr = job, nil
			if job.State == storage.StateCompleted || job.State == storage.StateFailed {
				return job, nil
			}
		case errors.Is(err, storage.ErrNotFound):
			return last, err
		case ctx.Err() == nil:
			lastErr = err
		}
		select {
		case <-ctx.Done():
			if lastErr != nil {
				return last, fmt.Errorf("%w (last poll: %w)", ctx.Err(), lastErr)
			}
			return last, ctx.Err()
		case <-tick.C:
		}
	}
}

// Output returns what both Hosts have logged so far.
func (a *App) Output() string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.out.String()
}

// addrWriter keeps the logs and sends the web tier's address, from its
// "http listening" line, on addr.
type addrWriter struct {
	a    *App
	addr chan<- string
	buf  []byte
}

func (w *addrWriter) Write(p []byte) (int, error) {
	w.a.mu.Lock()
	w.a.out.Write(p)
	w.a.mu.Unlock()
	if w.addr == nil {
		return len(p), nil
	}
	w.buf = append(w.buf, p...)
	for {
		line, rest, ok := bytes.Cut(w.buf, []byte("\n"))
		if !ok {
			return len(p), nil
		}
		w.buf = rest
		var l struct{ Msg, Addr string }
		if json.Unmarshal(line, &l) == nil && l.Msg == "http listening" {
			if _, port, err := net.SplitHostPort(l.Addr); err == nil {
				w.addr <- "http://127.0.0.1:" + port
				w.addr, w.buf = nil, nil
				return len(p), nil
			}
		}
	}
}
