package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/telemetry"
	"github.com/shoestring-go/shoestring/web"
)

// metricsServer serves a worker process's registry, which has no HTTP tier of its own:
// on the unix socket its parent named (the combined-mode child; the parent's /metrics
// scrapes it), else on METRICS_PORT (a worker of a split deployment: /metrics behind
// the metrics token, and /health/live), else nowhere. Start once; Stop once or more.
type metricsServer struct {
	logger *slog.Logger
	srv    *http.Server // nil when not serving
	done   chan struct{}
}

// Start listens and serves in the background. A taken METRICS_PORT is an error, as a
// taken PORT is; a socket that cannot be made is only logged, as the child's work
// matters more than its metrics.
func (m *metricsServer) Start(ctx context.Context, cfg config.Config, reg *prometheus.Registry, socket string) error {
	var ln net.Listener
	var handler http.Handler
	switch {
	case socket != "":
		// A child that died leaves its socket file behind; its successor takes the path.
		if err := os.Remove(socket); err != nil && !errors.Is(err, os.ErrNotExist) {
			m.logger.WarnContext(ctx, "metrics socket: the parent's /metrics will lack this worker's task metrics", "err", err)
			return nil
		}
		l, err := net.Listen("unix", socket)
		if err != nil {
			// Not fatal: metrics must never stop the work.
			m.logger.WarnContext(ctx, "metrics socket: the parent's /metrics will lack this worker's task metrics", "err", err)
			return nil
		}
		ln = l
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", telemetry.Handler(reg, m.logger))
		handler = mux
	case cfg.MetricsPort >= 0:
		l, err := net.Listen("tcp", ":"+strconv.Itoa(cfg.MetricsPort))
		if err != nil {
			return fmt.Errorf("listen on METRICS_PORT %d: %w", cfg.MetricsPort, err)
		}
		ln = l
		live := &health.Endpoints{Registry: health.NewRegistry(health.Options{}), State: &health.State{}, Logger: m.logger}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", web.MetricsHandler(telemetry.Handler(reg, m.logger), cfg.MetricsToken, cfg.AdminToken))
		mux.Handle("GET "+cfg.HealthPath+"/live", live.Live())
		handler = mux
	default:
		return nil
	}
	m.srv = &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
	m.done = make(chan struct{})
	go func() {
		defer close(m.done)
		if err := m.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			m.logger.Error("metrics server stopped", "err", err)
		}
	}()
	m.logger.InfoContext(ctx, "metrics listening", "addr", ln.Addr().String())
	return nil
}

// Stop closes the listener and gives scrapes in flight a second to finish. Safe if
// never started.
func (m *metricsServer) Stop() {
	if m.srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := m.srv.Shutdown(ctx); err != nil {
		m.srv.Close()
	}
	<-m.done
}
