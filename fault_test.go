package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// The fault tests kill processes and Redis on purpose and check that no work is lost.
// Their figures are logged (go test -v -run 'Fault|Recovery|Outage|Sigterm').

// TestFastRecoveryRestartPolicy: SIGKILL the child while a 3 s echo task runs, with the
// restart policy: the task completes within 10 s of the kill (asynq alone: over 60 s),
// its second attempt is counted, and meanwhile its record says interrupted, not failed.
func TestFastRecoveryRestartPolicy(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["WORKER_EXIT_POLICY"] = "restart"
	in := startInstance(t, env)
	in.waitReady()

	id := in.postJSON("/api/v1/jobs", `{"type":"echo","payload":{"message":"survivor","sleep_ms":3000}}`, http.StatusAccepted)["id"].(string)
	waitFor(t, 10*time.Second, "task active", func() bool { return in.job(id).State == "active" })
	kill := time.Now()
	if err := syscall.Kill(in.childPID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var interrupted jobView
	waitFor(t, 5*time.Second, "record to say interrupted", func() bool {
		interrupted = in.job(id)
		return interrupted.State != "active"
	})
	if interrupted.State == "failed" || interrupted.State == "retry" || (interrupted.State == "pending" && !strings.Contains(interrupted.Error, "interrupted")) {
		t.Errorf("after the kill the record says %+v, want pending and interrupted", interrupted)
	}
	j := in.waitJob(id, 10*time.Second)
	took := time.Since(kill)
	if j.State != "completed" || j.Attempts != 2 || string(j.Result) != `{"message":"survivor"}` {
		t.Fatalf("job = %+v", j)
	}
	if took > 10*time.Second {
		t.Errorf("completed %v after the kill, want within 10 s", took)
	}
	t.Logf("restart policy: 3 s task completed %v after SIGKILL of the child (attempts %d)", took.Round(time.Millisecond), j.Attempts)
	in.waitReady() // the new child is up and the instance Ready again
	select {
	case <-in.done:
		t.Fatal("the parent exited under the restart policy")
	default:
	}
}

// TestFastRecoveryExitPolicy: under the exit policy the parent requeues the dead
// child's task before it exits, so when the deployable starts again the task runs at
// once.
func TestFastRecoveryExitPolicy(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	in := startInstance(t, env)
	in.waitReady()
	id := in.postJSON("/api/v1/jobs", `{"type":"echo","payload":{"message":"again","sleep_ms":3000}}`, http.StatusAccepted)["id"].(string)
	waitFor(t, 10*time.Second, "task active", func() bool { return in.job(id).State == "active" })
	syscall.Kill(in.childPID, syscall.SIGKILL)
	if code, _ := in.waitExit(3 * time.Second); code == 0 {
		t.Fatal("parent exited 0")
	}
	if st := in.job2(r, id); st != "pending" {
		t.Errorf("after the parent exited the record says %s, want pending (requeued)", st)
	}
	restart := time.Now()
	in2 := startInstance(t, env)
	j := in2.waitJob(id, 10*time.Second)
	if j.State != "completed" || j.Attempts != 2 {
		t.Fatalf("job = %+v", j)
	}
	t.Logf("exit policy: task completed %v after the deployable started again", time.Since(restart).Round(time.Millisecond))
}

// TestFaultKills is the fault test of the README: 1,000 echo tasks and 20 batch:count
// tasks, and ten SIGKILLs of the child at random moments under the restart policy.
// Every task must end completed, none lost, none stuck active, and no batch task may
// redo more than one unit per interruption.
func TestFaultKills(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: seconds of killing")
	}
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["WORKER_EXIT_POLICY"] = "restart"
	env["WORKER_MAX_RESTARTS"] = "5"
	env["WORKER_RESTART_WINDOW"] = "3s" // kills come every second or two: keep the backoff short
	env["WORKER_CONCURRENCY"] = "10"
	in := startInstance(t, env)
	in.waitReady()

	var ids []string
	var batch []string
	var mu sync.Mutex
	var wg sync.WaitGroup
	for w := range 10 {
		wg.Go(func() {
			for i := range 100 {
				ms := rand.IntN(40)
				id := in.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"e%d-%d","sleep_ms":%d}}`, w, i, ms), http.StatusAccepted)["id"].(string)
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	for range 20 {
		id := in.postJSON("/api/v1/jobs", `{"type":"batch:count","payload":{"n":60,"step_ms":100}}`, http.StatusAccepted)["id"].(string)
		batch = append(batch, id)
	}
	wg.Wait()

	kills := 0
	for kills < 10 {
		in.waitReady()
		time.Sleep(time.Duration(300+rand.IntN(1200)) * time.Millisecond) // a random moment
		pid := in.currentChild(t)
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatalf("kill %d: %v", pid, err)
		}
		kills++
		waitFor(t, 5*time.Second, "a new child", func() bool { return in.currentChild(t) != pid })
	}
	start := time.Now()
	all := append(append([]string{}, ids...), batch...)
	for _, id := range all {
		if j := in.waitJob(id, 60*time.Second); j.State != "completed" {
			t.Errorf("task %s ended %+v", id, j)
		}
	}
	var redone, interrupted int64
	for _, id := range batch {
		j := in.job(id)
		var res struct {
			Counted  int64 `json:"counted"`
			UnitsRun int64 `json:"units_run"`
		}
		json.Unmarshal(j.Result, &res)
		extra := res.UnitsRun - res.Counted
		if res.Counted != 60 || extra > int64(j.Attempts-1) {
			t.Errorf("batch %s: counted %d, units run %d over %d attempts: more than one unit redone per interruption", id, res.Counted, res.UnitsRun, j.Attempts)
		}
		redone += extra
		interrupted += int64(j.Attempts - 1)
	}
	rdb := r.Client(t)
	for _, q := range []string{"critical", "default", "low"} {
		if n, _ := rdb.LLen(context.Background(), "asynq:{"+q+"}:active").Result(); n != 0 {
			t.Errorf("queue %s: %d tasks stuck active", q, n)
		}
	}
	t.Logf("fault test: %d kills; %d echo + %d batch tasks all completed (%v after the last kill); batch interruptions %d, units redone %d",
		kills, len(ids), len(batch), time.Since(start).Round(time.Millisecond), interrupted, redone)
}

// currentChild returns the pid of the newest worker child the parent logged.
func (in *instance) currentChild(tb testing.TB) int {
	in.mu.Lock()
	defer in.mu.Unlock()
	pid := 0
	for _, l := range in.lines {
		if l["msg"] == "worker child started" {
			pid = int(l["child_pid"].(float64))
		}
	}
	return pid
}

// TestRedisOutage stops Redis (AOF on) for 10 s during a run: the parent neither exits
// nor crash-loops, liveness stays 200, readiness and /health go 503 and come back,
// enqueueing during the outage answers 503 promptly, and every accepted task completes.
func TestRedisOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: a 10 s outage")
	}
	t.Parallel()
	r := storagetest.StartRealRedis(t)
	env := sharedEnv(r, t)
	env["HEALTH_CACHE"] = "0"
	env["HEALTH_TIMEOUT"] = "1s"
	in := startInstance(t, env)
	in.waitReady()
	var ids []string
	for i := range 60 {
		ids = append(ids, in.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"o%d","sleep_ms":200}}`, i), http.StatusAccepted)["id"].(string))
	}
	time.Sleep(500 * time.Millisecond) // some done, some active, most waiting

	r.Stop(t)
	down := time.Now()
	var slowest time.Duration
	for time.Since(down) < 10*time.Second {
		in.getJSON("/health/live", http.StatusOK, nil)
		in.getJSON("/health/ready", http.StatusServiceUnavailable, nil)
		in.getJSON("/health", http.StatusServiceUnavailable, nil)
		start := time.Now()
		resp, err := apiPost(in.base+"/api/v1/jobs", `{"type":"echo"}`)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "unavailable") {
			t.Errorf("enqueue during the outage: %d %s", resp.StatusCode, body)
		}
		took := time.Since(start)
		slowest = max(slowest, took)
		if took > 6*time.Second {
			t.Errorf("enqueue during the outage took %v", took)
		}
		select {
		case <-in.done:
			t.Fatalf("the parent exited during the outage (code %d)", in.exitCode)
		default:
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("redis outage: enqueue answered 503 in at most %v", slowest.Round(time.Millisecond))
	r.Start(t)
	up := time.Now()
	in.waitReady()
	t.Logf("redis outage: ready again %v after Redis came back", time.Since(up).Round(time.Millisecond))
	for _, id := range ids {
		if j := in.waitJob(id, 60*time.Second); j.State != "completed" {
			t.Errorf("task %s: %+v", id, j)
		}
	}
	t.Logf("redis outage: all %d accepted tasks completed %v after Redis came back", len(ids), time.Since(up).Round(time.Millisecond))
	if n := strings.Count(in.output(), `"msg":"worker child started"`); n != 1 {
		t.Errorf("the child was started %d times: crash loop", n)
	}
}

// TestSigtermUnderLoad: with tasks running and an upload still being sent, SIGTERM ends
// both processes with exit 0 within SHUTDOWN_TIMEOUT; the upload is answered 202; the
// unfinished tasks complete after the next start.
func TestSigtermUnderLoad(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["SHUTDOWN_TIMEOUT"] = "6s"
	env["WORKER_CONCURRENCY"] = "4"
	in := startInstance(t, env)
	in.waitReady()
	var ids []string
	for i := range 12 {
		ms := []int{200, 2000, 8000}[i%3]
		ids = append(ids, in.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"s%d","sleep_ms":%d}}`, i, ms), http.StatusAccepted)["id"].(string))
	}
	waitFor(t, 10*time.Second, "tasks active", func() bool { return in.job(ids[2]).State == "active" })

	// An upload whose body is still arriving when SIGTERM lands.
	photo, err := os.ReadFile(filepath.Join(goroot(t), "src/image/testdata/video-001.jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	pr, pw := io.Pipe()
	mw := multipart.NewWriter(pw)
	type answer struct {
		code int
		id   string
		err  error
	}
	answered := make(chan answer, 1)
	go func() {
		resp, err := http.Post(in.base+"/api/v1/images", mw.FormDataContentType(), pr)
		if err != nil {
			answered <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var acc map[string]any
		json.NewDecoder(resp.Body).Decode(&acc)
		id, _ := acc["id"].(string)
		answered <- answer{code: resp.StatusCode, id: id}
	}()
	fw, _ := mw.CreateFormFile("image", "photo.jpg")
	fw.Write(photo[:len(photo)/2])
	time.Sleep(200 * time.Millisecond) // the request is in flight

	sent := time.Now()
	in.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(300 * time.Millisecond)
	fw.Write(photo[len(photo)/2:])
	mw.Close()
	pw.Close()

	a := <-answered
	if a.err != nil || a.code != http.StatusAccepted {
		t.Fatalf("upload in flight at SIGTERM: %d %v", a.code, a.err)
	}
	code, _ := in.waitExit(7 * time.Second)
	took := time.Since(sent)
	if code != 0 || took > 6*time.Second {
		t.Fatalf("exit %d after %v, want 0 within SHUTDOWN_TIMEOUT 6s", code, took)
	}
	if processAlive(in.childPID) {
		t.Fatal("child alive after the parent exited")
	}
	t.Logf("SIGTERM under load: both exited 0 in %v", took.Round(time.Millisecond))

	in2 := startInstance(t, env)
	for _, id := range append(ids, a.id) {
		if id == "" {
			continue
		}
		if j := in2.waitJob(id, 40*time.Second); j.State != "completed" {
			t.Errorf("task %s after restart: %+v", id, j)
		}
	}
}

// TestWatchdogRecycleRestarts: a worker over WORKER_MAX_RSS is recycled between tasks
// (its task in flight still completes), the supervisor restarts it per the restart
// policy, and when the restart budget is spent the deployable exits non-zero.
func TestWatchdogRecycleRestarts(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["WORKER_EXIT_POLICY"] = "restart"
	env["WORKER_MAX_RESTARTS"] = "2"
	env["WORKER_RESTART_WINDOW"] = "1m"
	env["WORKER_MAX_RSS"] = "1MiB" // every Go process is over it: recycled at once
	in := startInstance(t, env)
	id := in.postJSON("/api/v1/jobs", `{"type":"echo","payload":{"message":"finish me","sleep_ms":800}}`, http.StatusAccepted)["id"].(string)

	code, took := in.waitExit(60 * time.Second)
	if code == 0 {
		t.Fatalf("parent exited 0 after its restart budget was spent")
	}
	out := in.output()
	for _, want := range []string{"resident memory", `"msg":"restarting worker child"`, `"msg":"worker restart budget spent"`} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %s", want)
		}
	}
	if n := strings.Count(out, `"msg":"worker child started"`); n != 3 {
		t.Errorf("child started %d times, want 3 (first + 2 restarts)", n)
	}
	if st := in.job2(r, id); st != "completed" && st != "pending" {
		t.Errorf("the task in flight at the recycle ended %s, want completed (or requeued)", st)
	}
	t.Logf("watchdog recycle: 3 children, parent exited %d after %v", code, took.Round(time.Millisecond))
}
