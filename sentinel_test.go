package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// TestSentinelFailover runs the binary in combined mode against Redis Sentinel
// (a master, a replica, three sentinels), enqueues 10 jobs a second through the API,
// and SIGKILLs the master: enqueueing answers 503 promptly while there is no master,
// works again within 15 s once a sentinel has promoted the replica, no shoestring
// process exits, and at most 1% of the accepted jobs are lost (writes the master
// acknowledged but had not yet sent to its replica: replication is asynchronous).
func TestSentinelFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test: a Redis failover")
	}
	t.Parallel()
	s := storagetest.StartSentinel(t)
	env := sharedEnv(s.Master, t)
	env["REDIS_URL"] = s.URL()
	in := startInstance(t, env)
	in.waitReady()

	type attempt struct {
		at   time.Time
		took time.Duration
		code int
		id   string
	}
	var (
		mu       sync.Mutex
		attempts []attempt
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 10 * time.Second}
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			wg.Go(func() { // one slow answer must not hold back the next enqueue
				req, _ := http.NewRequest(http.MethodPost, in.base+"/api/v1/jobs",
					strings.NewReader(fmt.Sprintf(`{"type":"echo","payload":{"message":"s%d","sleep_ms":50}}`, i)))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer "+testAPIToken)
				a := attempt{at: time.Now()}
				resp, err := client.Do(req)
				a.took = time.Since(a.at)
				if err == nil {
					var acc struct{ ID string }
					json.NewDecoder(resp.Body).Decode(&acc)
					resp.Body.Close()
					a.code, a.id = resp.StatusCode, acc.ID
				}
				mu.Lock()
				attempts = append(attempts, a)
				mu.Unlock()
			})
		}
	})
	time.Sleep(3 * time.Second) // steady enqueueing before the failure
	s.Master.Kill(t)
	kill := time.Now()
	var back time.Time // the first enqueue accepted, sent after the kill
	waitFor(t, 20*time.Second, "an enqueue accepted after the failover", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for _, a := range attempts {
			if a.at.After(kill) && a.code == http.StatusAccepted && (back.IsZero() || a.at.Before(back)) {
				back = a.at
			}
		}
		return !back.IsZero()
	})
	time.Sleep(3 * time.Second) // steady again after it
	close(stop)
	wg.Wait()

	var accepted []string
	refused, other := 0, 0
	var slowestRefusal time.Duration
	for _, a := range attempts {
		switch a.code {
		case http.StatusAccepted:
			accepted = append(accepted, a.id)
		case http.StatusServiceUnavailable:
			refused++
			slowestRefusal = max(slowestRefusal, a.took)
		default:
			other++
			t.Errorf("enqueue at +%v: status %d after %v", a.at.Sub(kill).Round(time.Millisecond), a.code, a.took)
		}
	}
	down := back.Sub(kill)
	if down > 15*time.Second {
		t.Errorf("enqueueing came back %v after the master died, want within 15 s", down)
	}
	if slowestRefusal > 3*time.Second {
		t.Errorf("while there was no master a refusal took %v, want 503 promptly", slowestRefusal)
	}

	// Every accepted job completes, or is lost with the writes the replica never got.
	lost := 0
	deadline := time.Now().Add(20 * time.Second)
	for _, id := range accepted {
		for {
			st := jobState(t, in.base, id)
			if st == "completed" {
				break
			}
			if time.Now().After(deadline) {
				lost++
				t.Logf("job %s never completed (state %q)", id, st)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if allowed := len(accepted) / 100; lost > allowed {
		t.Errorf("%d of %d accepted jobs lost, want at most 1%% (%d)", lost, len(accepted), allowed)
	}
	select {
	case <-in.done:
		t.Fatalf("shoestring exited (code %d) during the failover", in.exitCode)
	default:
	}
	if strings.Contains(in.output(), `"msg":"worker child exited unexpectedly"`) {
		t.Errorf("the worker child exited during the failover")
	}
	t.Logf("sentinel failover: enqueue accepted again %.1f s after SIGKILL of the master; %d accepted, %d refused 503 (slowest %v), %d lost",
		down.Seconds(), len(accepted), refused, slowestRefusal.Round(time.Millisecond), lost)
}

// jobState returns a job's state, or "" when the API does not know it (a lost job).
func jobState(tb testing.TB, base, id string) string {
	tb.Helper()
	resp, err := http.Get(base + "/api/v1/jobs/" + id)
	if err != nil {
		tb.Fatalf("GET job %s: %v", id, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, resp.Body)
		return ""
	}
	var j jobView
	json.NewDecoder(resp.Body).Decode(&j)
	return j.State
}
