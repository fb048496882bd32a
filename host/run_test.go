package host

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

// TestDotenvNeverOverrides: .env fills in what the environment lacks, and only that.
func TestDotenvNeverOverrides(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), ".env")
	os.WriteFile(path, []byte("PORT=9999\nLOG_FORMAT=json\n# comment\n"), 0o600)
	getenv, err := withDotenv(envMap(map[string]string{"PORT": "7000"}), path)
	if err != nil {
		t.Fatal(err)
	}
	if got := getenv("PORT"); got != "7000" {
		t.Errorf("PORT = %q: .env overrode the environment", got)
	}
	if got := getenv("LOG_FORMAT"); got != "json" {
		t.Errorf("LOG_FORMAT = %q: .env not read", got)
	}
	same, err := withDotenv(envMap(nil), filepath.Join(t.TempDir(), "missing.env"))
	if err != nil || same("PORT") != "" {
		t.Errorf("missing .env: %v", err)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	t.Parallel()
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/health/live" && r.URL.Path != "/status/live" {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	}))
	defer ok.Close()
	ctx := context.Background()
	var out bytes.Buffer
	h := New()
	if err := h.Run(ctx, []string{"app", "healthcheck", ok.URL + "/health/live"}, envMap(nil), &out, &out); err != nil {
		t.Errorf("healthcheck of a 200: %v", err)
	}
	err := h.Run(ctx, []string{"app", "healthcheck", ok.URL + "/health/ready"}, envMap(nil), &out, &out)
	if err == nil || ExitCode(err) != 1 {
		t.Errorf("healthcheck of a 503: %v", err)
	}
	// Default URL: the liveness route on $PORT, under HEALTH_PATH.
	port := ok.URL[strings.LastIndex(ok.URL, ":")+1:]
	if err := h.Run(ctx, []string{"app", "healthcheck"}, envMap(map[string]string{"PORT": port}), &out, &out); err != nil {
		t.Errorf("healthcheck on $PORT: %v", err)
	}
	env := envMap(map[string]string{"PORT": port, "HEALTH_PATH": "/status/"})
	if err := h.Run(ctx, []string{"app", "healthcheck"}, env, &out, &out); err != nil {
		t.Errorf("healthcheck with HEALTH_PATH=/status/: %v", err)
	}
}

func TestCommandLine(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	h := New()
	if err := h.Run(context.Background(), []string{"myapp", "version"}, envMap(nil), &out, &out); err != nil ||
		!strings.Contains(out.String(), "go1.") || !strings.HasPrefix(out.String(), "myapp ") {
		t.Errorf("version: %v %q", err, out.String())
	}
	err := h.Run(context.Background(), []string{"myapp", "frobnicate"}, envMap(nil), &out, &out)
	if err == nil || ExitCode(err) != 2 {
		t.Errorf("unknown command: %v (exit %d), want exit 2", err, ExitCode(err))
	}
	err = h.Run(context.Background(), []string{"myapp", "worker"}, envMap(nil), &out, &out)
	if err == nil || ExitCode(err) != 2 || !strings.Contains(err.Error(), "REDIS_URL") {
		t.Errorf("worker without REDIS_URL: %v", err)
	}
	if ExitCode(nil) != 0 {
		t.Errorf("ExitCode(nil) = %d", ExitCode(nil))
	}
}
