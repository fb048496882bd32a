package telemetry_test

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shoestring-go/shoestring/telemetry"
)

// downInspector is Redis away: every read fails.
type downInspector struct{}

func (downInspector) Queues() ([]string, error) { return nil, errors.New("redis down") }
func (downInspector) GetQueueInfo(string) (*asynq.QueueInfo, error) {
	return nil, errors.New("redis down")
}

// failingCollector is a collector whose metric cannot be collected.
type failingCollector struct{ d *prometheus.Desc }

func (f failingCollector) Describe(ch chan<- *prometheus.Desc) { ch <- f.d }
func (f failingCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.NewInvalidMetric(f.d, errors.New("boom"))
}

// TestNilLoggers: each function that takes a logger accepts nil for none, and the
// scrape still answers with what could be gathered, as their docs say. With nil they
// used to panic: the queue collector (recovered by client_golang into a failed
// gather), the handler's error log and the child gatherer (an aborted answer).
func TestNilLoggers(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	ok := prometheus.NewCounter(prometheus.CounterOpts{Name: "ok_total", Help: "ok"})
	ok.Inc()
	reg.MustRegister(ok, failingCollector{prometheus.NewDesc("broken_total", "broken", nil, nil)})
	telemetry.RegisterQueues(reg, downInspector{}, []string{"default"}, nil)
	g := prometheus.Gatherers{reg, telemetry.ChildGatherer(filepath.Join(t.TempDir(), "no-child.sock"), nil)}
	srv := httptest.NewServer(telemetry.Handler(g, nil))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read the scrape: %v", err)
	}
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "ok_total 1") || strings.Contains(string(body), "broken_total") {
		t.Errorf("scrape: %d\n%s", resp.StatusCode, body)
	}
}
