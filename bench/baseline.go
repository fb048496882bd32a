package main

// The baselines: what the same work costs with nothing but net/http and asynq. Each
// runs as a process of its own (the bench binary, re-executed as `bench baseline
// KIND`), as shoestring does: a server sharing the load generator's process would skip
// the cross-process wakeups shoestring pays, and its CPU time could not be told apart.

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// runBaseline is `bench baseline KIND FLAGS`: it serves baseline KIND until SIGTERM.
//
//	enqueue -redis ADDR -listen ADDR   (a) POST /api/v1/jobs
//	worker  -redis ADDR -queues JSON    (b) a bare asynq.Server
//	health  -listen ADDR -answer FILE   (c) the canned /health answer in FILE
func runBaseline(args []string, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("baseline: which? enqueue, worker or health")
	}
	fs := flag.NewFlagSet("baseline "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisAddr := fs.String("redis", "", "redis-server address")
	listen := fs.String("listen", "", "HTTP listen address")
	queues := fs.String("queues", `{"default":1}`, "asynq queues and weights, as JSON")
	answerFile := fs.String("answer", "", "the canned answer, as JSON")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch args[0] {
	case "enqueue":
		rdb := baselineClient(*redisAddr)
		defer rdb.Close()
		mux := http.NewServeMux()
		mux.Handle("POST /api/v1/jobs", bareEnqueue(asynq.NewClientFromRedisClient(rdb)))
		mux.HandleFunc("GET /ready", func(http.ResponseWriter, *http.Request) {})
		return serveUntil(ctx, *listen, mux)
	case "health":
		data, err := os.ReadFile(*answerFile)
		if err != nil {
			return fmt.Errorf("baseline health: %w", err)
		}
		var a cannedJSON
		if err := json.Unmarshal(data, &a); err != nil {
			return fmt.Errorf("baseline health: %s: %w", *answerFile, err)
		}
		return serveUntil(ctx, *listen, bareHealth(cannedAnswer{status: a.Status, header: a.Header, body: a.Body}))
	case "worker":
		var qs map[string]int
		if err := json.Unmarshal([]byte(*queues), &qs); err != nil {
			return fmt.Errorf("baseline worker: -queues: %w", err)
		}
		rdb := baselineClient(*redisAddr)
		defer rdb.Close()
		srv, err := startBareWorker(rdb, qs)
		if err != nil {
			return err
		}
		<-ctx.Done()
		srv.Shutdown()
		return nil
	}
	return fmt.Errorf("baseline: no baseline %q", args[0])
}

// cannedJSON is a cannedAnswer as the bench hands it to baseline (c).
type cannedJSON struct {
	Status int         `json:"status"`
	Header http.Header `json:"header"`
	Body   []byte      `json:"body"`
}

// serveUntil serves h on addr until ctx is done, then drains for up to 5 s.
func serveUntil(ctx context.Context, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("baseline: listen: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("baseline: serve: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// startBaseline starts baseline kind as a process of its own with args, and, for an
// HTTP one, returns its base URL once readyPath answers 200.
func (b *bench) startBaseline(ctx context.Context, kind, readyPath string, args ...string) (*proc, string, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, "", fmt.Errorf("start baseline %s: %w", kind, err)
	}
	var url string
	if readyPath != "" {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		url = "http://127.0.0.1:" + strconv.Itoa(port)
		args = append(args, "-listen", "127.0.0.1:"+strconv.Itoa(port))
	}
	p, err := b.ps.start("baseline-"+kind, self, append([]string{"baseline", kind}, args...), os.Environ(), b.dir, 10*time.Second)
	if err != nil {
		return nil, "", err
	}
	if readyPath != "" {
		if err := waitStatus(ctx, p, url+readyPath, http.StatusOK, readyTimeout); err != nil {
			b.stop(p)
			return nil, "", err
		}
	}
	return p, url, nil
}

// bareEnqueue is baseline (a): POST /api/v1/jobs as plainly as it can be done,
// decoding the same JSON body and enqueueing its task with asynq, no job record.
func bareEnqueue(client *asynq.Client) http.Handler {
	type jobRequest struct {
		Type    string          `json:"type"`
		Payload json.RawMessage `json:"payload"`
	}
	type accepted struct {
		ID    string `json:"id"`
		Type  string `json:"type"`
		State string `json:"state"`
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req jobRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Type == "" {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		info, err := client.EnqueueContext(r.Context(), asynq.NewTask(req.Type, req.Payload))
		if err != nil {
			http.Error(w, `{"error":"unavailable"}`, http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		_ = json.NewEncoder(w).Encode(accepted{ID: info.ID, Type: req.Type, State: "pending"})
	})
}

// cannedAnswer is one HTTP answer, recorded to be replayed.
type cannedAnswer struct {
	status int
	header http.Header
	body   []byte
}

// bareHealth is baseline (c): a handler writing the answer shoestring's cached
// /health gave, headers and all.
func bareHealth(a cannedAnswer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		for k, v := range a.header {
			w.Header()[k] = v
		}
		w.WriteHeader(a.status)
		_, _ = w.Write(a.body)
	})
}

// startBareWorker is baseline (b): one asynq.Server, concurrency 10, on the same
// queues as shoestring's worker, with a handler that does nothing.
func startBareWorker(rdb redis.UniversalClient, queues map[string]int) (*asynq.Server, error) {
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 10,
		Queues:      queues,
		LogLevel:    asynq.WarnLevel,
	})
	noop := asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
	if err := srv.Start(noop); err != nil {
		return nil, fmt.Errorf("start bare asynq server: %w", err)
	}
	return srv, nil
}
