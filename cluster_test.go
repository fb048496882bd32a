package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// TestRedisCluster runs the built binary on a real three-master Redis Cluster
// (storagetest.StartCluster), in serve mode and in split mode (one web, two workers):
// an upload's thumbnails are made and download through the API, and a SIGKILLed
// worker's running tasks are requeued and complete. Every multi-key script and
// pipeline shoestring sends must stay within one hash slot for this to work: a
// CROSSSLOT error fails the jobs.
func TestRedisCluster(t *testing.T) {
	t.Parallel()
	c := storagetest.StartCluster(t)
	photo, err := os.ReadFile(filepath.Join(goroot(t), "src/image/testdata/video-001.jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	env := func(t *testing.T) map[string]string {
		return map[string]string{
			"REDIS_URL":        c.URL(),
			"BLOB_URL":         "file://" + t.TempDir(),
			"SHUTDOWN_TIMEOUT": "10s",
			"HEALTH_DETAILS":   "always",
			"API_TOKEN":        testAPIToken,
			"DEMO_TASKS":       "true",
			"ADMIN_TOKEN":      e2eAdminToken,
		}
	}
	// clean fails on what a slot mistake logs: Redis's error, or (strict: an
	// instance nothing was killed under) any error of shoestring's.
	clean := func(t *testing.T, strict bool, ins ...*instance) {
		for _, in := range ins {
			for _, line := range strings.Split(in.output(), "\n") {
				if strings.Contains(line, "CROSSSLOT") || (strict && strings.Contains(line, `"level":"ERROR"`)) {
					t.Errorf("%v logged: %s", in.cmd.Args[1:], line)
				}
			}
		}
	}

	t.Run("serve", func(t *testing.T) {
		in := startInstance(t, env(t))
		in.waitReady()
		thumbnailsOnCluster(t, in, photo)

		// The child is SIGKILLed mid-task; the parent requeues the task and the new
		// child runs it again.
		id := in.postJSON("/api/v1/jobs", `{"type":"echo","payload":{"message":"survivor","sleep_ms":3000}}`, http.StatusAccepted)["id"].(string)
		waitFor(t, 10*time.Second, "task active", func() bool { return in.job(id).State == "active" })
		kill := time.Now()
		if err := syscall.Kill(in.childPID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		in.waitExit(10 * time.Second) // the exit policy: the deployable goes with its child
		first := in
		in = startInstance(t, env(t))
		j := in.waitJob(id, 20*time.Second)
		if j.State != "completed" || j.Attempts != 2 || string(j.Result) != `{"message":"survivor"}` {
			t.Fatalf("job after the kill = %+v", j)
		}
		t.Logf("cluster, serve: task completed %v after SIGKILL of the child, restart included (attempts %d)", time.Since(kill).Round(time.Millisecond), j.Attempts)
		readAll(t, in, id)
		clean(t, false, first)
		clean(t, true, in)
	})

	t.Run("split", func(t *testing.T) {
		e := env(t)
		e["WORKER_CONCURRENCY"] = "4"
		web := startInstance(t, e, "web")
		workers := startWorkers(t, e, 2)
		web.waitReady()
		thumbnailsOnCluster(t, web, photo)

		var ids []string
		for i := range 8 {
			ids = append(ids, web.postJSON("/api/v1/jobs", fmt.Sprintf(`{"type":"echo","payload":{"message":"c%d","sleep_ms":3000}}`, i), http.StatusAccepted)["id"].(string))
		}
		waitFor(t, 10*time.Second, "all eight tasks active", func() bool {
			for _, id := range ids {
				if web.job(id).State != "active" {
					return false
				}
			}
			return true
		})
		kill := time.Now()
		if err := workers[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		again := 0
		for i, id := range ids {
			j := web.waitJob(id, 20*time.Second)
			if j.State != "completed" || string(j.Result) != fmt.Sprintf(`{"message":"c%d"}`, i) {
				t.Errorf("job %s = %+v", id, j)
			}
			if j.Attempts > 1 {
				again++
			}
		}
		took := time.Since(kill)
		if again != 4 {
			t.Errorf("%d of 8 tasks ran twice, want the killed worker's 4", again)
		}
		if took > 10*time.Second {
			t.Errorf("all eight completed %v after the kill, want within 10 s", took)
		}
		var active int64
		rdb := c.Client(t)
		for _, q := range []string{"critical", "default", "low"} {
			n, err := rdb.LLen(context.Background(), "asynq:{"+q+"}:active").Result()
			if err != nil {
				t.Fatal(err)
			}
			active += n
		}
		if active != 0 {
			t.Errorf("%d tasks still active in asynq", active)
		}
		t.Logf("cluster, split: a worker SIGKILLed with %d of 8 running 3 s tasks; all completed %v after the kill", again, took.Round(time.Millisecond))
		readAll(t, web, ids[0])
		clean(t, true, web, workers[1])
	})
}

// readAll reads what an operator reads, each of which must answer 200 on a cluster:
// health, queues, schedules, metrics, and the dashboard's pages with job id's.
func readAll(t *testing.T, in *instance, id string) {
	t.Helper()
	var h struct{ Status string }
	in.getJSON("/health", http.StatusOK, &h)
	if h.Status != "Healthy" {
		t.Errorf("health %q, want Healthy", h.Status)
	}
	for _, path := range []string{"/api/v1/queues", "/api/v1/schedules", "/metrics", "/dashboard", "/dashboard/jobs", "/dashboard/jobs/" + id} {
		tok := testAPIToken
		if path != "/api/v1/queues" && path != "/api/v1/schedules" {
			tok = e2eAdminToken
		}
		resp, body := in.getPage(path, "Authorization", "Bearer "+tok)
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d %.200s", path, resp.StatusCode, body)
		}
	}
}

// thumbnailsOnCluster uploads photo, waits for its two thumbnails and downloads them.
func thumbnailsOnCluster(t *testing.T, in *instance, photo []byte) {
	t.Helper()
	status, acc := in.upload(photo, "40,100")
	if status != http.StatusAccepted {
		t.Fatalf("upload status %d: %v", status, acc)
	}
	j := in.waitJob(acc["id"].(string), 30*time.Second)
	var res struct {
		Thumbnails []struct {
			Width int
			URL   string
		}
	}
	if err := json.Unmarshal(j.Result, &res); j.State != "completed" || err != nil || len(res.Thumbnails) != 2 {
		t.Fatalf("job = %+v (%v)", j, err)
	}
	for _, th := range res.Thumbnails {
		resp, err := http.Get(in.base + th.URL)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		img, err := jpeg.Decode(bytes.NewReader(body))
		if resp.StatusCode != http.StatusOK || err != nil || img.Bounds().Dx() != th.Width {
			t.Errorf("GET %s: %d, %v, want a JPEG %d wide", th.URL, resp.StatusCode, err, th.Width)
		}
	}
}
