package main

import (
	"bytes"
	"fmt"
	"image"
	"image/png"
	"io"
	"mime/multipart"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

func smallPNG(tb testing.TB) []byte {
	tb.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, image.NewGray(image.Rect(0, 0, 40, 30))); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// TestUploadRateLimitAcrossInstances: sixty uploads in a burst from one client,
// alternating between two instances on one Redis, get at most UPLOAD_RATE (30)
// accepted between them; the rest are 429 with Retry-After.
func TestUploadRateLimitAcrossInstances(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	a, b := startInstance(t, env, "web"), startInstance(t, env, "web")
	a.waitReady()
	b.waitReady()
	img := smallPNG(t)
	var accepted, limited int
	for i := range 60 {
		in := a
		if i%2 == 1 {
			in = b
		}
		var buf bytes.Buffer
		body, ct := multipartImage(t, &buf, img)
		resp, err := http.Post(in.base+"/api/v1/images", ct, body)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		switch resp.StatusCode {
		case http.StatusAccepted:
			accepted++
		case http.StatusTooManyRequests:
			limited++
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err != nil || s < 1 || s > 60 {
				t.Errorf("429 with Retry-After %q", resp.Header.Get("Retry-After"))
			}
		default:
			t.Errorf("upload %d: %d", i, resp.StatusCode)
		}
	}
	t.Logf("60 uploads over two instances: %d accepted, %d limited", accepted, limited)
	if accepted > 31 || accepted < 25 || limited == 0 {
		t.Errorf("%d accepted, %d limited; want about 30 accepted between both instances", accepted, limited)
	}
}

// multipartImage writes an upload body with data as its image into buf.
func multipartImage(tb testing.TB, buf *bytes.Buffer, data []byte) (io.Reader, string) {
	tb.Helper()
	mw := multipart.NewWriter(buf)
	fw, _ := mw.CreateFormFile("image", "photo.png")
	fw.Write(data)
	mw.Close()
	return buf, mw.FormDataContentType()
}

// TestTrickledBodyIsCutOff: a body sent at one byte every 5 s is cut off within 60 s,
// on the JSON API (the server's ReadTimeout) and on the upload route (its minimum data
// rate).
func TestTrickledBodyIsCutOff(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	in := startInstance(t, sharedEnv(r, t), "web")
	in.waitReady()
	var wg sync.WaitGroup
	for _, route := range []struct{ path, ct string }{
		{"/api/v1/jobs", "application/json"},
		{"/api/v1/images", "multipart/form-data; boundary=x"},
	} {
		wg.Go(func() {
			conn, err := net.Dial("tcp", strings.TrimPrefix(in.base, "http://"))
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: %s\r\nAuthorization: Bearer %s\r\nContent-Length: 100000\r\n\r\n",
				route.path, route.ct, testAPIToken)
			start := time.Now()
			closed := make(chan struct{})
			go func() { io.Copy(io.Discard, conn); close(closed) }() // the server's answer, then its close
			tick := time.NewTicker(5 * time.Second)
			defer tick.Stop()
			for range 20 { // at most 100 s
				if _, err := conn.Write([]byte("x")); err != nil {
					break
				}
				select {
				case <-closed:
				case <-tick.C:
					continue
				}
				break
			}
			took := time.Since(start)
			t.Logf("%s: trickled body cut off after %v", route.path, took.Round(time.Second))
			if took > 60*time.Second {
				t.Errorf("%s: trickled body still read after %v", route.path, took)
			}
		})
	}
	wg.Wait()
}

// TestServedFilesAndOriginals: a thumbnail is served as inert data (nosniff, a
// sandboxing CSP, inline with its file name) and cached no longer than the job's
// retention; the original upload is gone once the thumbnails exist.
func TestServedFilesAndOriginals(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["JOB_RETENTION"] = "2h"
	in := startInstance(t, env)
	in.waitReady()
	code, body := in.upload(smallPNG(t), "20")
	if code != http.StatusAccepted {
		t.Fatalf("upload: %d %v", code, body)
	}
	id := body["id"].(string)
	j := in.waitJob(id, 15*time.Second)
	if j.State != "completed" {
		t.Fatalf("job %+v", j)
	}
	resp, err := http.Get(in.base + "/api/v1/files/thumbnails/" + id + "/20.jpg")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	h := resp.Header
	maxAge, _ := strconv.Atoi(strings.TrimPrefix(h.Get("Cache-Control"), "public, max-age="))
	if resp.StatusCode != 200 || h.Get("X-Content-Type-Options") != "nosniff" ||
		h.Get("Content-Security-Policy") != "default-src 'none'; sandbox" ||
		h.Get("Content-Disposition") != `inline; filename=20.jpg` || maxAge <= 0 || maxAge > 7200 {
		t.Errorf("thumbnail: %d %v", resp.StatusCode, h)
	}
	resp, err = http.Get(in.base + "/api/v1/files/uploads/" + id + ".png")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("original after its thumbnails: %d, want 404 (deleted)", resp.StatusCode)
	}
}
