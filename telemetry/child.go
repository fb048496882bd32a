package telemetry

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Combined mode runs tasks in a child process, so the task metrics live in the child's
// registry, not the parent's that /metrics serves. The child serves its registry
// (Handler, at GET /metrics) on a unix socket in a private temporary directory the
// parent names (package host passes it in SHOESTRING_METRICS_SOCKET), and the parent's
// /metrics gathers its own registry and, through ChildGatherer, the child's.
// Why a socket pulled at scrape time rather than the child pushing, or counters in
// Redis: no port to choose or expose, access limited by the directory's permissions
// (0700) so no token is needed, nothing written to Redis per task, one source of truth
// per process (the Prometheus model), and a dead child is simply a refused connection.

// ChildTimeout bounds one scrape of the child's socket.
const ChildTimeout = 2 * time.Second

// ChildGatherer returns a Gatherer that scrapes the registry a child serves (Handler,
// at GET /metrics over HTTP) on the unix socket at path, and keeps only the
// shoestring_* families: go_* and process_* at the parent's /metrics are the parent's
// own. When the child cannot be reached (dead, restarting, not yet listening) or
// answers garbage, it gathers nothing and logs at debug level, so the parent's scrape
// still succeeds without the child's part. Counters restart from zero with each new
// child, as Prometheus expects of a restarted process.
func ChildGatherer(path string, logger *slog.Logger) prometheus.Gatherer {
	logger = orDiscard(logger)
	client := &http.Client{
		Timeout: ChildTimeout,
		Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", path)
			},
			MaxIdleConns: 1,
		},
	}
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := scrapeChild(client)
		if err != nil {
			logger.Debug("metrics: worker child not scraped; serving the parent's metrics only", "socket", path, "err", err)
			return nil, nil
		}
		return mfs, nil
	})
}

func scrapeChild(client *http.Client) ([]*dto.MetricFamily, error) {
	req, err := http.NewRequest(http.MethodGet, "http://worker/metrics", nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	byName, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("parse: %w", err)
	}
	var mfs []*dto.MetricFamily
	for name, mf := range byName {
		if strings.HasPrefix(name, Prefix) {
			mfs = append(mfs, mf)
		}
	}
	slices.SortFunc(mfs, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
	return mfs, nil
}

// Handler serves g in the Prometheus exposition formats (text unless the scraper asks
// for another). A collector that fails leaves its metrics out and the rest is served.
func Handler(g prometheus.Gatherer, logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:      slogErrorLog{orDiscard(logger)},
		ErrorHandling: promhttp.ContinueOnError,
	})
}

// orDiscard is l, or a logger that writes nothing when l is nil: each function taking
// a logger here accepts nil for none.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// slogErrorLog adapts a slog.Logger to promhttp's Logger.
type slogErrorLog struct{ l *slog.Logger }

func (s slogErrorLog) Println(v ...any) {
	s.l.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
}
