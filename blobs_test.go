package main

import (
	"bytes"
	"encoding/json"
	"image/jpeg"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// TestCloudBlobStores runs the built binary on each cloud blob store: an in-process S3
// server over HTTP (s3://) and Azurite (azblob://, skipped without it unless
// SHOESTRING_REQUIRE_AZURITE=1). An upload is made into thumbnails that download
// through /api/v1/files, and the storage health check turns Unhealthy (503) while the
// store is down and Healthy again when it is back, without a restart.
func TestCloudBlobStores(t *testing.T) {
	t.Parallel()
	type store struct {
		url         string
		env         map[string]string
		stop, start func()
	}
	stores := map[string]func(t *testing.T) store{
		"s3": func(t *testing.T) store {
			s := storagetest.StartS3(t)
			return store{s.URL(), s.Env(), s.Stop, func() { s.Start(t) }}
		},
		"azblob": func(t *testing.T) store {
			a := storagetest.StartAzurite(t)
			return store{a.URL(), a.Env(), func() { a.Stop(t) }, func() { a.Start(t) }}
		},
	}
	photo, err := os.ReadFile(filepath.Join(goroot(t), "src/image/testdata/video-001.jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	for name, startStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := startStore(t)
			r := storagetest.StartRedis(t)
			env := sharedEnv(r, t)
			env["BLOB_URL"] = st.url
			env["HEALTH_CACHE"] = "0"
			env["HEALTH_TIMEOUT"] = "1s"
			for k, v := range st.env {
				env[k] = v
			}
			in := startInstance(t, env)
			in.waitReady()
			in.getJSON("/health/storage", http.StatusOK, nil)

			status, acc := in.upload(photo, "40,100")
			if status != http.StatusAccepted {
				t.Fatalf("upload status %d: %v", status, acc)
			}
			j := in.waitJob(acc["id"].(string), 30*time.Second)
			if j.State != "completed" {
				t.Fatalf("job = %+v", j)
			}
			var res struct {
				Thumbnails []struct {
					Width int
					URL   string
				}
			}
			if err := json.Unmarshal(j.Result, &res); err != nil || len(res.Thumbnails) != 2 {
				t.Fatalf("result %s: %v", j.Result, err)
			}
			for _, th := range res.Thumbnails {
				resp, err := http.Get(in.base + th.URL)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
					t.Fatalf("GET %s: %d %s", th.URL, resp.StatusCode, resp.Header.Get("Content-Type"))
				}
				img, err := jpeg.Decode(bytes.NewReader(body))
				if err != nil || img.Bounds().Dx() != th.Width {
					t.Errorf("GET %s: %v, want a JPEG %d wide", th.URL, err, th.Width)
				}
			}
			// The original is deleted once its thumbnails exist (KEEP_ORIGINALS=false).
			in.getJSON("/api/v1/files/uploads/"+acc["id"].(string)+".jpg", http.StatusNotFound, nil)

			st.stop()
			var check struct {
				Status string `json:"status"`
				Checks map[string]struct {
					Status      string `json:"status"`
					Description string `json:"description"`
				} `json:"checks"`
			}
			down := time.Now()
			waitFor(t, 10*time.Second, "storage Unhealthy", func() bool {
				resp, err := http.Get(in.base + "/health/storage")
				if err != nil {
					return false
				}
				defer resp.Body.Close()
				_ = json.NewDecoder(resp.Body).Decode(&check)
				return resp.StatusCode == http.StatusServiceUnavailable
			})
			if c := check.Checks["storage"]; c.Status != "Unhealthy" || c.Description == "" {
				t.Errorf("storage check while down = %+v, want Unhealthy with a description", check)
			}
			t.Logf("storage check 503 %v after the store stopped: %+v", time.Since(down).Round(time.Millisecond), check.Checks["storage"])
			in.getJSON("/health/live", http.StatusOK, nil)

			st.start()
			up := time.Now()
			waitFor(t, 20*time.Second, "storage Healthy again", func() bool {
				resp, err := http.Get(in.base + "/health/storage")
				if err != nil {
					return false
				}
				resp.Body.Close()
				return resp.StatusCode == http.StatusOK
			})
			t.Logf("storage check 200 %v after the store restarted", time.Since(up).Round(time.Millisecond))
			resp, err := http.Get(in.base + res.Thumbnails[0].URL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("thumbnail after the restart: %d", resp.StatusCode)
			}
		})
	}
}
