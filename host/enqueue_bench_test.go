package host_test

import (
	"bytes"
	"io"
	"net/http"
	"testing"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage/storagetest"
	"github.com/shoestring-go/shoestring/tasks/demo"
)

// BenchmarkEnqueueAPI posts echo jobs to POST /api/v1/jobs of an in-process web tier
// (no worker) from 10 goroutines over keep-alive connections: with -cpuprofile it
// shows where the enqueue path spends its time.
func BenchmarkEnqueueAPI(b *testing.B) {
	r := storagetest.StartRedis(b)
	a := hosttest.Start(b, func(h *host.Host) { demo.Register(h) },
		map[string]string{"REDIS_URL": r.URL(), "API_TOKEN": testToken, "DEMO_TASKS": "true", "LOG_LEVEL": "info", "LOG_FLUSH_INTERVAL": "100ms"},
		hosttest.Options{WebOnly: true})
	body := []byte(`{"type":"echo","payload":{"message":"hello"}}`)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 10}}
	b.SetParallelism(5) // 2 CPUs x 5 = 10 clients
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, _ := http.NewRequest(http.MethodPost, a.URL+"/api/v1/jobs", bytes.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusAccepted {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
}
