package main

// The baselines: what the same work costs with nothing but net/http and asynq, run
// inside the bench process.

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
)

// localServer is an HTTP server on a free 127.0.0.1 port.
type localServer struct {
	url string
	srv *http.Server
}

// serveLocal serves h on 127.0.0.1 until Stop.
func serveLocal(h http.Handler) (*localServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for a baseline: %w", err)
	}
	s := &localServer{url: "http://" + ln.Addr().String(), srv: &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}}
	// Serve fails only with its listener; the load then reports the failed requests.
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Stop drains the server for up to 5 s.
func (s *localServer) Stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.srv.Shutdown(ctx); err != nil {
		s.srv.Close()
	}
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

// bareWorker is baseline (b): one asynq.Server, concurrency 10, on the same queues as
// shoestring's worker, with a handler that does nothing.
type bareWorker struct{ srv *asynq.Server }

func startBareWorker(rdb redis.UniversalClient, queues map[string]int) (*bareWorker, error) {
	srv := asynq.NewServerFromRedisClient(rdb, asynq.Config{
		Concurrency: 10,
		Queues:      queues,
		LogLevel:    asynq.WarnLevel,
	})
	noop := asynq.HandlerFunc(func(context.Context, *asynq.Task) error { return nil })
	if err := srv.Start(noop); err != nil {
		return nil, fmt.Errorf("start bare asynq server: %w", err)
	}
	return &bareWorker{srv: srv}, nil
}

// Stop stops fetching and waits for the tasks in flight.
func (b *bareWorker) Stop() { b.srv.Shutdown() }
