package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// binPath is the shoestring binary built once for the end-to-end tests.
var binPath string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "shoestring-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binPath = filepath.Join(dir, "shoestring")
	build := exec.Command("go", "build", "-o", binPath, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build shoestring:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// instance is one running shoestring process started by a test.
type instance struct {
	t        testing.TB
	cmd      *exec.Cmd
	base     string // http://127.0.0.1:PORT
	childPID int

	mu    sync.Mutex
	lines []map[string]any // JSON log lines seen so far
	raw   bytes.Buffer     // everything written to stdout and stderr

	done     chan struct{} // closed when the process has exited
	exitCode int           // valid after done
}

// startInstance starts the shoestring binary with args and env (plus PORT=0 and
// LOG_FORMAT=json) and waits until it logs its address and, for serve, its child's pid.
func startInstance(tb testing.TB, env map[string]string, args ...string) *instance {
	tb.Helper()
	return startBinary(tb, binPath, env, args...)
}

// startBinary is startInstance for any app built on host, at bin.
func startBinary(tb testing.TB, bin string, env map[string]string, args ...string) *instance {
	tb.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = tb.TempDir()
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME"), "PORT=0", "LOG_FORMAT=json"}
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	pr, pw := io.Pipe()
	in := &instance{t: tb, cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = io.MultiWriter(pw, &lockedWriter{in: in})
	cmd.Stderr = &lockedWriter{in: in}
	if err := cmd.Start(); err != nil {
		tb.Fatalf("start shoestring: %v", err)
	}
	go func() {
		err := cmd.Wait()
		in.exitCode = cmd.ProcessState.ExitCode()
		_ = err
		pw.Close()
		close(in.done)
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil {
				in.mu.Lock()
				in.lines = append(in.lines, m)
				in.mu.Unlock()
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	tb.Cleanup(func() {
		select {
		case <-in.done:
		default:
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-in.done:
			case <-time.After(30 * time.Second):
				_ = cmd.Process.Kill()
				<-in.done
			}
		}
		if in.childPID != 0 {
			_ = syscall.Kill(in.childPID, syscall.SIGKILL)
		}
		if tb.Failed() {
			tb.Logf("shoestring output:\n%s", in.output())
		}
	})
	if len(args) > 0 && args[0] == "worker" { // serves no HTTP
		in.waitLog("worker started", "worker_id")
		return in
	}
	addr := in.waitLog("http listening", "addr")
	_, port, _ := strings.Cut(addr.(string), "]:")
	in.base = "http://127.0.0.1:" + port
	if len(args) == 0 || args[0] == "serve" {
		in.childPID = int(in.waitLog("worker child started", "child_pid").(float64))
	}
	return in
}

type lockedWriter struct{ in *instance }

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.in.mu.Lock()
	defer w.in.mu.Unlock()
	return w.in.raw.Write(p)
}

func (in *instance) output() string {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.raw.String()
}

// waitLog waits up to 15 s for a log line with msg and returns its field key.
func (in *instance) waitLog(msg, key string) any {
	in.t.Helper()
	var v any
	waitFor(in.t, 15*time.Second, "log "+msg, func() bool {
		in.mu.Lock()
		defer in.mu.Unlock()
		for _, l := range in.lines {
			if l["msg"] == msg {
				v = l[key]
				return true
			}
		}
		select {
		case <-in.done:
			in.t.Fatalf("shoestring exited (code %d) before logging %q", in.exitCode, msg)
		default:
		}
		return false
	})
	return v
}

// waitExit waits up to d for the process to exit and returns its exit code and how long
// it took.
func (in *instance) waitExit(d time.Duration) (int, time.Duration) {
	in.t.Helper()
	start := time.Now()
	select {
	case <-in.done:
		return in.exitCode, time.Since(start)
	case <-time.After(d):
		in.t.Fatalf("shoestring still running %v later", d)
		return 0, 0
	}
}

// waitFor polls cond every 20 ms until it holds or d passes.
func waitFor(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (in *instance) waitReady() {
	in.t.Helper()
	waitFor(in.t, 15*time.Second, "/health/ready 200", func() bool {
		resp, err := http.Get(in.base + "/health/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

type jobView struct {
	ID       string `json:"id"`
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Progress struct {
		Done, Total int64
	} `json:"progress"`
	Result json.RawMessage `json:"result"`
	Error  string          `json:"error"`
}

func (in *instance) job(id string) jobView {
	in.t.Helper()
	var j jobView
	in.getJSON("/api/v1/jobs/"+id, http.StatusOK, &j)
	return j
}

func (in *instance) getJSON(path string, want int, v any) {
	in.t.Helper()
	resp, err := http.Get(in.base + path)
	if err != nil {
		in.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		in.t.Fatalf("GET %s: status %d, want %d: %s", path, resp.StatusCode, want, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			in.t.Fatalf("GET %s: %v in %s", path, err, body)
		}
	}
}

// waitJob polls a job until it reaches a final state and returns it.
func (in *instance) waitJob(id string, d time.Duration) jobView {
	in.t.Helper()
	var j jobView
	waitFor(in.t, d, "job "+id+" to finish", func() bool {
		j = in.job(id)
		return j.State == "completed" || j.State == "failed"
	})
	return j
}

func (in *instance) postJSON(path, body string, want int) map[string]any {
	in.t.Helper()
	resp, err := apiPost(in.base+path, body)
	if err != nil {
		in.t.Fatalf("POST %s: %v", path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		in.t.Fatalf("POST %s %s: status %d, want %d: %s", path, body, resp.StatusCode, want, raw)
	}
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	return m
}

func (in *instance) upload(data []byte, sizes string) (int, map[string]any) {
	in.t.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	fw, _ := mw.CreateFormFile("image", "photo")
	fw.Write(data)
	if sizes != "" {
		mw.WriteField("sizes", sizes)
	}
	mw.Close()
	resp, err := http.Post(in.base+"/api/v1/images", mw.FormDataContentType(), &buf)
	if err != nil {
		in.t.Fatalf("upload: %v", err)
	}
	defer resp.Body.Close()
	var m map[string]any
	raw, _ := io.ReadAll(resp.Body)
	_ = json.Unmarshal(raw, &m)
	return resp.StatusCode, m
}

func goroot(tb testing.TB) string {
	tb.Helper()
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		tb.Fatalf("go env GOROOT: %v", err)
	}
	return strings.TrimSpace(string(out))
}

func sharedEnv(r *storagetest.Redis, tb testing.TB) map[string]string {
	return map[string]string{
		"REDIS_URL":        r.URL(),
		"BLOB_URL":         "file://" + tb.TempDir(),
		"SHUTDOWN_TIMEOUT": "10s",
		"HEALTH_DETAILS":   "always",
		"API_TOKEN":        testAPIToken,
		"DEMO_TASKS":       "true",
	}
}

// testAPIToken is the API_TOKEN of sharedEnv; postJSON and apiPost send it.
const testAPIToken = "test-api-token"

// apiPost posts body as JSON with the test API token.
func apiPost(url, body string) (*http.Response, error) {
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testAPIToken)
	return http.DefaultClient.Do(req)
}

// TestThumbnailsEndToEnd uploads real photographs (Go's own image test data, which no
// one here made) to the built binary and checks every thumbnail's dimensions, then kills
// the worker child and checks that the parent exits non-zero.
func TestThumbnailsEndToEnd(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	in := startInstance(t, sharedEnv(r, t))
	in.waitReady()

	var health struct {
		Status string                     `json:"status"`
		Checks map[string]json.RawMessage `json:"checks"`
	}
	in.getJSON("/health", http.StatusOK, &health)
	for _, name := range []string{"self", "redis", "worker"} {
		if _, ok := health.Checks[name]; !ok {
			t.Errorf("/health checks lack %q: %+v", name, health)
		}
	}

	testdata := filepath.Join(goroot(t), "src/image/testdata")
	photos := []string{
		"video-001.jpeg",             // baseline
		"video-001.progressive.jpeg", // progressive
		"video-001.cmyk.jpeg",        // CMYK
		"video-001.221212.jpeg",      // odd chroma subsampling
		"video-005.gray.jpeg",        // grayscale
		"video-001.png",
		"video-001.gif",
	}
	requested := []int{40, 100, 5000} // 5000 is past every photo's width: never upscaled
	for _, name := range photos {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(testdata, name))
			if err != nil {
				t.Fatal(err)
			}
			cfg, _, err := image.DecodeConfig(bytes.NewReader(data))
			if err != nil {
				t.Fatal(err)
			}
			status, acc := in.upload(data, "40,100,5000")
			if status != http.StatusAccepted {
				t.Fatalf("upload status %d: %v", status, acc)
			}
			if acc["state"] != "pending" || acc["status_url"] != "/api/v1/jobs/"+acc["id"].(string) {
				t.Errorf("202 body = %v", acc)
			}
			j := in.waitJob(acc["id"].(string), 20*time.Second)
			if j.State != "completed" || j.Attempts != 1 || j.Progress.Done != 3 || j.Progress.Total != 3 {
				t.Fatalf("job = %+v", j)
			}
			var res struct {
				Thumbnails []struct {
					Width, Height int
					URL           string
					Bytes         int64
				}
			}
			if err := json.Unmarshal(j.Result, &res); err != nil {
				t.Fatal(err)
			}
			if len(res.Thumbnails) != len(requested) {
				t.Fatalf("got %d thumbnails, want %d: %s", len(res.Thumbnails), len(requested), j.Result)
			}
			for i, th := range res.Thumbnails {
				wantW := min(requested[i], cfg.Width)
				wantH := int(math.Round(float64(cfg.Height) * float64(wantW) / float64(cfg.Width)))
				resp, err := http.Get(in.base + th.URL)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/jpeg" {
					t.Fatalf("GET %s: %d %s", th.URL, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				img, err := jpeg.Decode(bytes.NewReader(body))
				if err != nil {
					t.Fatalf("%s is not a JPEG: %v", th.URL, err)
				}
				b := img.Bounds()
				if b.Dx() != wantW || b.Dy() != wantH || th.Width != wantW || th.Height != wantH || th.Bytes != int64(len(body)) {
					t.Errorf("thumbnail %d: served %dx%d, reported %+v; want %dx%d, %d bytes", requested[i], b.Dx(), b.Dy(), th, wantW, wantH, len(body))
				}
			}
		})
	}

	t.Run("undecodable image fails after one attempt", func(t *testing.T) {
		data, _ := os.ReadFile(filepath.Join(testdata, "video-001.jpeg"))
		status, acc := in.upload(data[:len(data)/3], "")
		if status != http.StatusAccepted {
			t.Fatalf("truncated JPEG upload: %d %v (its header is valid)", status, acc)
		}
		j := in.waitJob(acc["id"].(string), 20*time.Second)
		if j.State != "failed" || j.Attempts != 1 || !strings.Contains(j.Error, "decode") {
			t.Fatalf("job = %+v, want failed after 1 attempt with a decode error", j)
		}
	})

	// The child dies: the parent must exit non-zero within 2 s.
	if err := syscall.Kill(in.childPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	code, took := in.waitExit(2 * time.Second)
	if code == 0 {
		t.Fatalf("parent exited 0 after its child was killed")
	}
	t.Logf("parent exited %d, %v after the child was killed", code, took)
}

// TestChildDeathEndsParent: however the child dies, the parent exits non-zero within 2 s.
func TestChildDeathEndsParent(t *testing.T) {
	t.Parallel()
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM, syscall.SIGSEGV, syscall.SIGINT} {
		t.Run(sig.String(), func(t *testing.T) {
			t.Parallel()
			r := storagetest.StartRedis(t)
			in := startInstance(t, sharedEnv(r, t))
			in.waitReady()
			if err := syscall.Kill(in.childPID, sig); err != nil {
				t.Fatal(err)
			}
			code, took := in.waitExit(2 * time.Second)
			if code == 0 {
				t.Fatalf("parent exited 0 after its child got %v", sig)
			}
			t.Logf("%v: parent exited %d after %v", sig, code, took)
		})
	}
}

// TestParentKilledEndsChild: the parent dies by SIGKILL, and the child exits within 2 s.
func TestParentKilledEndsChild(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	in := startInstance(t, sharedEnv(r, t))
	in.waitReady()
	if err := in.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	waitFor(t, 2*time.Second, "the child to exit", func() bool { return !processAlive(in.childPID) })
	t.Logf("child gone %v after the parent was killed", time.Since(start))
}

// processAlive reports whether pid runs (a zombie awaiting its reaper counts as gone).
func processAlive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i < 0 || i+2 >= len(stat) || stat[i+2] != 'Z'
}

// TestSigtermDrains: with tasks in flight, SIGTERM makes both processes exit 0 within
// SHUTDOWN_TIMEOUT; every task either finished or went back to its queue, and all of
// them complete after the next start. Nothing is lost.
func TestSigtermDrains(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["SHUTDOWN_TIMEOUT"] = "5s" // in-flight tasks get 4 s
	env["WORKER_CONCURRENCY"] = "4"
	in := startInstance(t, env)
	in.waitReady()

	var ids []string
	// Two that finish inside the drain window, two that cannot and must be requeued,
	// and four waiting their turn.
	for _, ms := range []int{1000, 1000, 30000, 30000, 100, 100, 100, 100} {
		acc := in.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"m%d","sleep_ms":%d}}`, ms, ms), http.StatusAccepted)
		ids = append(ids, acc["id"].(string))
	}
	waitFor(t, 10*time.Second, "tasks to be active", func() bool { return in.job(ids[2]).State == "active" && in.job(ids[3]).State == "active" })

	if err := in.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, took := in.waitExit(5 * time.Second)
	if code != 0 {
		t.Fatalf("parent exited %d after SIGTERM, want 0", code)
	}
	if processAlive(in.childPID) {
		t.Fatalf("child %d still alive after the parent stopped", in.childPID)
	}
	if !strings.Contains(in.output(), `"msg":"worker stopped"`) {
		t.Errorf("the child did not log a clean stop")
	}
	t.Logf("both exited 0 %v after SIGTERM (SHUTDOWN_TIMEOUT 5s)", took)
	for _, id := range ids[:2] {
		if j := in.job2(r, id); j != "completed" {
			t.Errorf("1 s task %s is %s after the drain, want completed", id, j)
		}
	}

	// The next start runs what was requeued. 30 s tasks are too long to wait for:
	// the job record says pending, and asynq has them pending, not lost.
	rdb := r.Client(t)
	for _, id := range ids[2:4] {
		if st := in.job2(r, id); st != "pending" {
			t.Errorf("interrupted task %s: record state %s, want pending", id, st)
		}
		n, err := rdb.Exists(context.Background(), "asynq:{default}:t:"+id).Result()
		if err != nil || n != 1 {
			t.Errorf("interrupted task %s is gone from asynq (%v)", id, err)
		}
	}
	in2 := startInstance(t, env)
	in2.waitReady()
	for _, id := range append(ids[:2:2], ids[4:]...) {
		if j := in2.waitJob(id, 20*time.Second); j.State != "completed" {
			t.Errorf("task %s: %+v", id, j)
		}
	}
	for _, id := range ids[2:4] {
		waitFor(t, 10*time.Second, "requeued task to run again", func() bool {
			j := in2.job(id)
			return j.State == "active" && j.Attempts == 2
		})
	}
}

// job2 reads a job state straight from Redis, for when the instance is stopped.
func (in *instance) job2(r *storagetest.Redis, id string) string {
	in.t.Helper()
	st, err := r.Client(in.t).HGet(context.Background(), "shoestring:{default}:job:"+id, "state").Result()
	if err != nil {
		in.t.Fatalf("job %s: %v", id, err)
	}
	return st
}

// TestBadConfigExits2 lists every invalid setting at once, naming each, and never echoes
// a secret.
func TestBadConfigExits2(t *testing.T) {
	t.Parallel()
	cmd := exec.Command(binPath, "serve")
	cmd.Env = []string{"PORT=http", "WORKER_CONCURRENCY=0", "QUEUES=default=x", "SHUTDOWN_TIMEOUT=forever",
		"LOG_FORMAT=xml", "REDIS_URL=ftp://user:hunter2@example", "MAX_UPLOAD_BYTES=20 parsecs"}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("exit: %v, want code 2; output:\n%s", err, out)
	}
	for _, name := range []string{"PORT", "WORKER_CONCURRENCY", "QUEUES", "SHUTDOWN_TIMEOUT", "LOG_FORMAT", "REDIS_URL", "MAX_UPLOAD_BYTES"} {
		if !strings.Contains(string(out), name+":") {
			t.Errorf("output does not name %s:\n%s", name, out)
		}
	}
	if strings.Contains(string(out), "hunter2") {
		t.Errorf("the Redis password leaked:\n%s", out)
	}
}

// TestRedisPasswordNotLogged runs the web tier against an unreachable Redis whose URL
// holds a password, and checks that nothing it prints contains the password.
func TestRedisPasswordNotLogged(t *testing.T) {
	t.Parallel()
	in := startInstance(t, map[string]string{"REDIS_URL": "redis://app:s3cretpw@127.0.0.1:1/0", "BLOB_URL": "mem://"}, "web")
	resp, err := http.Get(in.base + "/health/ready")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("ready with Redis down = %d, want 503", resp.StatusCode)
	}
	in.getJSON("/health/live", http.StatusOK, nil) // liveness never touches Redis
	in.getJSON("/health", http.StatusServiceUnavailable, nil)
	in.cmd.Process.Signal(syscall.SIGTERM)
	in.waitExit(10 * time.Second)
	out := in.output()
	if !strings.Contains(out, "redis unreachable at start") {
		t.Fatalf("expected a log line about Redis; got:\n%s", out)
	}
	if strings.Contains(out, "s3cretpw") {
		t.Fatalf("password in output:\n%s", out)
	}
}

// TestSplitMode: `web` and `worker` run as separate processes against one Redis, and
// work enqueued through the web process is done by the worker process.
func TestSplitMode(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["HEALTH_CACHE"] = "0"
	web := startInstance(t, env, "web")
	web.waitReady()

	var h struct {
		Status string `json:"status"`
	}
	web.getJSON("/health/worker", http.StatusServiceUnavailable, &h) // no worker yet

	wk := exec.Command(binPath, "worker")
	wk.Dir = t.TempDir()
	wk.Env = []string{"REDIS_URL=" + r.URL(), "BLOB_URL=" + env["BLOB_URL"], "LOG_FORMAT=json", "DEMO_TASKS=true"}
	var wout bytes.Buffer
	wk.Stdout, wk.Stderr = &wout, &wout
	if err := wk.Start(); err != nil {
		t.Fatal(err)
	}
	var werr error
	wdone := make(chan struct{})
	go func() { werr = wk.Wait(); close(wdone) }()
	t.Cleanup(func() {
		wk.Process.Kill()
		<-wdone
	})

	acc := web.postJSON("/api/v1/jobs", `{"type":"echo","payload":{"message":"split"}}`, http.StatusAccepted)
	j := web.waitJob(acc["id"].(string), 15*time.Second)
	if j.State != "completed" || string(j.Result) != `{"message":"split"}` {
		t.Fatalf("job = %+v", j)
	}
	web.getJSON("/health/worker", http.StatusOK, &h) // the web tier sees the worker's heartbeat

	wk.Process.Signal(syscall.SIGTERM)
	select {
	case <-wdone:
		if werr != nil {
			t.Errorf("worker exit after SIGTERM: %v\n%s", werr, wout.String())
		}
	case <-time.After(25 * time.Second):
		t.Fatal("worker did not stop")
	}
	if !strings.Contains(wout.String(), `"proc":"worker"`) {
		t.Errorf("worker logs lack proc=worker:\n%s", wout.String())
	}
}

// TestEmbeddedRedis: with no REDIS_URL, combined mode runs on an embedded Redis that the
// child shares, and says loudly that nothing survives a restart.
func TestEmbeddedRedis(t *testing.T) {
	t.Parallel()
	in := startInstance(t, map[string]string{"BLOB_URL": "mem://"})
	in.waitReady()
	acc := in.postJSON("/api/v1/jobs", `{"type":"echo","payload":{"message":"embedded"}}`, http.StatusAccepted)
	if j := in.waitJob(acc["id"].(string), 15*time.Second); j.State != "completed" {
		t.Fatalf("job = %+v", j)
	}
	out := in.output()
	if !strings.Contains(out, "EMBEDDED in-memory Redis") || !strings.Contains(out, `"level":"WARN"`) {
		t.Errorf("no loud warning about the embedded Redis:\n%s", out)
	}
	if !strings.Contains(out, `"proc":"worker"`) || !strings.Contains(out, `"proc":"web"`) {
		t.Errorf("logs do not show both processes")
	}
}

// TestHealthThroughRedisOutage: with Redis stopped, liveness stays 200 while readiness
// and the aggregate answer 503 naming the redis check; when Redis is back, all is
// healthy again without restarting shoestring.
func TestHealthThroughRedisOutage(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRealRedis(t)
	env := sharedEnv(r, t)
	env["HEALTH_CACHE"] = "0"
	env["HEALTH_TIMEOUT"] = "1s"
	env["HEALTH_PATH"] = "/status"
	in := startInstance(t, env)
	waitFor(t, 15*time.Second, "ready", func() bool {
		resp, err := http.Get(in.base + "/status/ready")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == 200
	})

	r.Stop(t)
	var agg struct {
		Status string `json:"status"`
		Checks map[string]struct {
			Status      string `json:"status"`
			Description string `json:"description"`
		} `json:"checks"`
	}
	start := time.Now()
	in.getJSON("/status", http.StatusServiceUnavailable, &agg)
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("/status took %v with HEALTH_TIMEOUT=1s", took)
	}
	if agg.Checks["redis"].Status != "Unhealthy" || agg.Checks["redis"].Description == "" {
		t.Errorf("details do not name the redis check: %+v", agg)
	}
	in.getJSON("/status/ready", http.StatusServiceUnavailable, nil)
	in.getJSON("/status/live", http.StatusOK, nil)
	in.getJSON("/status/nosuchcheck", http.StatusNotFound, nil)
	if code, _ := exitOf(exec.Command(binPath, "healthcheck", in.base+"/status/live")); code != 0 {
		t.Errorf("healthcheck of liveness during the outage exited %d", code)
	}

	r.Start(t)
	waitFor(t, 20*time.Second, "healthy again", func() bool {
		resp, err := http.Get(in.base + "/status")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	})
	in.getJSON("/status/ready", http.StatusOK, nil)
	select {
	case <-in.done:
		t.Fatal("shoestring exited during the outage")
	default:
	}
}

func exitOf(cmd *exec.Cmd) (int, string) {
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), string(out)
	}
	if err != nil {
		return -1, err.Error()
	}
	return 0, string(out)
}

// TestAdminBusyAndRecycle: Busy turns readiness 503 and nothing else; Ready undoes it;
// recycle drains and exits non-zero for the platform to restart the deployable.
func TestAdminBusyAndRecycle(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["ADMIN_TOKEN"] = "adm1n"
	in := startInstance(t, env)
	in.waitReady()
	admin := func(path, token string) int {
		req, _ := http.NewRequest("POST", in.base+path, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := admin("/admin/busy", "nope"); c != 401 {
		t.Fatalf("wrong token: %d", c)
	}
	if c := admin("/admin/busy", "adm1n"); c != 200 {
		t.Fatalf("busy: %d", c)
	}
	in.getJSON("/health/ready", http.StatusServiceUnavailable, nil)
	in.getJSON("/health/live", http.StatusOK, nil)
	in.postJSON("/api/v1/jobs", `{"type":"echo"}`, http.StatusAccepted) // still takes work
	if c := admin("/admin/ready", "adm1n"); c != 200 {
		t.Fatalf("ready: %d", c)
	}
	in.getJSON("/health/ready", http.StatusOK, nil)

	if c := admin("/admin/recycle", "adm1n"); c != 202 {
		t.Fatalf("recycle: %d", c)
	}
	code, took := in.waitExit(10 * time.Second)
	if code == 0 {
		t.Errorf("recycle exited 0; want non-zero so every platform restarts it")
	}
	if processAlive(in.childPID) {
		t.Errorf("child still alive after recycle")
	}
	t.Logf("recycled: exit %d after %v", code, took)
}

// TestAdminRoutesOffWithoutToken: without ADMIN_TOKEN the admin routes do not exist.
func TestAdminRoutesOffWithoutToken(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	in := startInstance(t, sharedEnv(r, t), "web")
	resp, err := http.Post(in.base+"/admin/recycle", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("/admin/recycle without ADMIN_TOKEN: %d, want 404", resp.StatusCode)
	}
}

// TestHealthcheckReadsDotenv: `shoestring healthcheck` finds the instance through the
// PORT and HEALTH_PATH of a .env file, as serve does.
func TestHealthcheckReadsDotenv(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["HEALTH_PATH"] = "/status"
	in := startInstance(t, env, "web")
	waitFor(t, 15*time.Second, "liveness", func() bool {
		resp, err := http.Get(in.base + "/status/live")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	dir := t.TempDir()
	port := in.base[strings.LastIndex(in.base, ":")+1:]
	if err := os.WriteFile(filepath.Join(dir, ".env"), []byte("PORT="+port+"\nHEALTH_PATH=/status\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binPath, "healthcheck")
	cmd.Dir = dir
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("healthcheck with .env: %v\n%s", err, out)
	}
}
