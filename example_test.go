package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// buildExample copies examples/<name> to a directory outside this repository, points
// its go.mod's replace directive at this checkout, and builds it there, as a user's
// own module would be built. It returns the binary's path.
func buildExample(tb testing.TB, name string) string {
	tb.Helper()
	repo, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	src := filepath.Join(repo, "examples", name)
	dir := tb.TempDir()
	for _, f := range []string{"main.go", "go.mod", "go.sum"} {
		data, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			tb.Fatal(err)
		}
		if f == "go.mod" {
			re := regexp.MustCompile(`(?m)^replace github.com/shoestring-go/shoestring => .*$`)
			if !re.Match(data) {
				tb.Fatalf("%s/go.mod has no replace directive for shoestring", src)
			}
			data = re.ReplaceAll(data, []byte("replace github.com/shoestring-go/shoestring => "+repo))
		}
		if err := os.WriteFile(filepath.Join(dir, f), data, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	bin := filepath.Join(dir, name)
	// -mod=mod: go.sum gains what a newer checkout of shoestring needs, as "go get" would.
	build := exec.Command("go", "build", "-mod=mod", "-o", bin, ".")
	build.Dir = dir
	if out, err := build.CombinedOutput(); err != nil {
		tb.Fatalf("build examples/%s as its own module: %v\n%s", name, err, out)
	}
	return bin
}

// TestExampleApp: the example app, a module of its own built outside this repository,
// runs in combined mode on a real Redis: its route's typed, checkpointed task
// completes with the handler's result; the host's job API refuses its invalid and
// unknown-field payloads with the Validate message and accepts a valid one; its check
// is served; its child is its own binary in worker mode; killing that child makes it
// exit non-zero within 1 s.
func TestExampleApp(t *testing.T) {
	t.Parallel()
	bin := buildExample(t, "reports")
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["HEALTH_DETAILS"] = "always"
	in := startBinary(t, bin, env, "serve")
	in.waitReady()

	acc := in.postJSON("/reports", `{"title":"squares","rows":250}`, http.StatusAccepted)
	j := in.waitJob(acc["id"].(string), 15*time.Second)
	if j.State != "completed" || j.Progress.Done != 250 || j.Progress.Total != 250 {
		t.Fatalf("report job = %+v", j)
	}
	var res struct {
		Rows int
		URL  string
	}
	if err := json.Unmarshal(j.Result, &res); err != nil || res.Rows != 250 || !strings.HasPrefix(res.URL, "/api/v1/files/reports/") {
		t.Fatalf("result %s: %v", j.Result, err)
	}
	resp, err := http.Get(in.base + res.URL)
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if lines := bytes.Count(csv, []byte("\n")); resp.StatusCode != http.StatusOK || lines != 251 || !bytes.HasSuffix(csv, []byte("250,62500\n")) {
		t.Errorf("report CSV: %d, %d lines, ends %q", resp.StatusCode, lines, csv[max(0, len(csv)-20):])
	}

	bad := in.postJSON("/api/v1/jobs", `{"type":"report:build","payload":{"title":"","rows":5}}`, http.StatusBadRequest)
	if !strings.Contains(bad["error"].(string), "title must be 1-100 characters") {
		t.Errorf("invalid payload: %v", bad)
	}
	bad = in.postJSON("/api/v1/jobs", `{"type":"report:build","payload":{"title":"t","rows":5,"color":"red"}}`, http.StatusBadRequest)
	if !strings.Contains(bad["error"].(string), `unknown field "color"`) {
		t.Errorf("unknown field: %v", bad)
	}
	acc = in.postJSON("/api/v1/jobs", `{"type":"report:build","payload":{"title":"t","rows":5}}`, http.StatusAccepted)
	if j := in.waitJob(acc["id"].(string), 15*time.Second); j.State != "completed" {
		t.Errorf("valid payload: %+v", j)
	}
	var check struct{ Status string }
	in.getJSON("/health/reports", http.StatusOK, &check)
	if check.Status != "Healthy" {
		t.Errorf("/health/reports = %+v", check)
	}

	cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(in.childPID) + "/cmdline")
	if err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Readlink("/proc/" + strconv.Itoa(in.childPID) + "/exe")
	if args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00"); exe != bin || len(args) != 2 || args[1] != "worker" {
		t.Errorf("child runs %s %q, want %s worker", exe, args, bin)
	}
	if err := syscall.Kill(in.childPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code, took := in.waitExit(time.Second)
	if code == 0 {
		t.Errorf("exited 0 after its child was killed")
	}
	t.Logf("exited %d, %v after its child was SIGKILLed", code, took)
}
