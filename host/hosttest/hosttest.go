// Package hosttest runs an app built on host inside a test: its web tier and its
// worker, each a Host built by the same function, in this process, on a Redis the
// caller provides (storagetest.StartRedis starts one), with real HTTP on 127.0.0.1.
// It is the split deployment in miniature; the combined mode's child process needs
// the built binary instead.
package hosttest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/host"
)

// App is a running app: the web tier at URL and, unless started WebOnly, a worker.
type App struct {
	// URL is the web tier's base URL, http://127.0.0.1:PORT.
	URL string
	// Web and Worker are the two Hosts (Worker is nil with WebOnly).
	Web, Worker *host.Host

	mu  sync.Mutex
	out strings.Builder // both processes' logs
}

// Options adjust Start.
type Options struct {
	// WebOnly starts no worker: enqueued jobs stay pending.
	WebOnly bool
}

// Start builds two Hosts with build (it registers the app's kinds, routes and checks,
// as main does), runs one as "web" and one as "worker" with env (REDIS_URL is
// required; PORT, LOG_FORMAT and BLOB_URL are set for them unless given), and returns
// once the web tier is ready. Both stop at test cleanup; their logs are printed if the
// test failed. Start fails the test if either exits early.
func Start(tb testing.TB, build func(h *host.Host), env map[string]string, opts ...Options) *App {
	tb.Helper()
	var o Options
	if len(opts) > 0 {
		o = opts[0]
	}
	vars := map[string]string{"PORT": "0", "LOG_FORMAT": "json", "BLOB_URL": "file://" + tb.TempDir(),
		"SHUTDOWN_TIMEOUT": "3s"}
	for k, v := range env {
		vars[k] = v
	}
	getenv := func(k string) string { return vars[k] }
	a := &App{Web: host.New()}
	build(a.Web)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	addr := make(chan string, 1)
	exited := make(chan error, 2)
	run := func(h *host.Host, mode string, w io.Writer) {
		wg.Add(1)
		go func() {
			defer wg.Done()
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
	tb.Cleanup(func() {
		cancel()
		wg.Wait()
		if tb.Failed() {
			tb.Logf("app output:\n%s", a.Output())
		}
	})
	select {
	case base := <-addr:
		a.URL = base
	case err := <-exited:
		tb.Fatalf("hosttest: %v\n%s", err, a.Output())
	case <-time.After(15 * time.Second):
		tb.Fatalf("hosttest: web tier not listening after 15 s\n%s", a.Output())
	}
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get(a.URL + "/health/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return a
			}
		}
		if time.Now().After(deadline) {
			tb.Fatalf("hosttest: /health/ready not 200 after 15 s\n%s", a.Output())
		}
		time.Sleep(20 * time.Millisecond)
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
	sc := bufio.NewScanner(strings.NewReader(string(w.buf)))
	for sc.Scan() {
		var line struct{ Msg, Addr string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == "http listening" {
			_, port, _ := strings.Cut(line.Addr, "]:")
			w.addr <- "http://127.0.0.1:" + port
			w.addr, w.buf = nil, nil
			break
		}
	}
	return len(p), nil
}
