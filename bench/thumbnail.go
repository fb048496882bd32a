package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"io"
	"math"
	"math/rand/v2"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// The thumbnail figure: a photo-sized JPEG, three widths, at shoestring's quality.
const (
	thumbWidth   = 3840
	thumbHeight  = 2400
	thumbSizes   = "160,320,640"
	thumbQuality = 85 // shoestring's (tasks/thumbnail jpegQuality)
	thumbTimeout = time.Minute
)

// errNoVips is returned when vipsthumbnail is not on PATH.
var errNoVips = errors.New("vipsthumbnail not installed")

// benchJPEG returns a w×h JPEG with content a camera might give: gradients, a wave and
// per-pixel noise (so it compresses like a photo, not like a flat test card). The same
// every run.
func benchJPEG(w, h int) ([]byte, error) {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for y := range h {
		px := img.Pix[y*img.Stride : y*img.Stride+4*w]
		for x := range w {
			n := rng.Uint64()
			wave := 64 * math.Sin(float64(x)/97+float64(y)/61)
			px[4*x+0] = clampByte(255*x/w + noise(n, 0))
			px[4*x+1] = clampByte(255*y/h + noise(n, 8))
			px[4*x+2] = clampByte(128 + int(wave) + noise(n, 16))
			px[4*x+3] = 0xFF
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, &jpeg.Options{Quality: 90}); err != nil {
		return nil, fmt.Errorf("encode the bench JPEG: %w", err)
	}
	return buf.Bytes(), nil
}

// noise is -16..15 from the byte of n at shift.
func noise(n uint64, shift uint) int { return int(n>>shift&31) - 16 }

func clampByte(v int) uint8 { return uint8(min(max(v, 0), 255)) }

// jobStatus is the part of GET /api/v1/jobs/{id} the bench reads.
type jobStatus struct {
	State  string `json:"state"`
	Error  string `json:"error"`
	Result struct {
		Thumbnails []struct {
			Width int `json:"width"`
		} `json:"thumbnails"`
	} `json:"result"`
	CreatedAt   time.Time  `json:"created_at"`
	CompletedAt *time.Time `json:"completed_at"`
}

// thumbnailJob uploads img to POST /api/v1/images with thumbSizes and polls its job
// until it is completed. It returns the time from the upload's start until the
// completion was seen, and the job's own created_at → completed_at.
func thumbnailJob(ctx context.Context, url string, img []byte) (time.Duration, time.Duration, error) {
	body, ctype, err := multipartImage(img)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, thumbTimeout)
	defer cancel()
	client := &http.Client{Timeout: thumbTimeout}
	start := time.Now()
	statusURL, err := upload(ctx, client, url+"/api/v1/images", body, ctype)
	if err != nil {
		return 0, 0, err
	}
	job, err := pollJob(ctx, client, url+statusURL)
	took := time.Since(start)
	if err != nil {
		return 0, 0, err
	}
	if job.State != "completed" || job.CompletedAt == nil {
		return 0, 0, fmt.Errorf("thumbnail job %s: %s", job.State, job.Error)
	}
	if got, want := len(job.Result.Thumbnails), strings.Count(thumbSizes, ",")+1; got != want {
		return 0, 0, fmt.Errorf("thumbnail job made %d thumbnails, want %d", got, want)
	}
	return took, job.CompletedAt.Sub(job.CreatedAt), nil
}

// multipartImage is the body of an upload: the image as field "image", and "sizes".
func multipartImage(img []byte) ([]byte, string, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	h := textproto.MIMEHeader{}
	h.Set("Content-Disposition", `form-data; name="image"; filename="bench.jpg"`)
	h.Set("Content-Type", "image/jpeg")
	part, err := mw.CreatePart(h)
	if err == nil {
		_, err = part.Write(img)
	}
	if err == nil {
		err = mw.WriteField("sizes", thumbSizes)
	}
	if err == nil {
		err = mw.Close()
	}
	if err != nil {
		return nil, "", fmt.Errorf("build the upload: %w", err)
	}
	return buf.Bytes(), mw.FormDataContentType(), nil
}

// upload posts body and returns the status_url of the job it answers 202 with.
func upload(ctx context.Context, client *http.Client, url string, body []byte, ctype string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", ctype)
	resp, err := client.Do(req)
	if err != nil {
		return "", fmt.Errorf("upload: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return "", fmt.Errorf("upload: read answer: %w", err)
	}
	if resp.StatusCode != http.StatusAccepted {
		return "", fmt.Errorf("upload: status %d, want 202: %.200s", resp.StatusCode, data)
	}
	var acc struct {
		StatusURL string `json:"status_url"`
	}
	if err := json.Unmarshal(data, &acc); err != nil || !strings.HasPrefix(acc.StatusURL, "/") {
		return "", fmt.Errorf("upload: no status_url in %.200s", data)
	}
	return acc.StatusURL, nil
}

// pollJob polls url until the job is completed or failed, or ctx ends.
func pollJob(ctx context.Context, client *http.Client, url string) (jobStatus, error) {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		a, err := getOnce(ctx, client, url)
		if err != nil {
			return jobStatus{}, fmt.Errorf("poll job: %w", err)
		}
		if a.status != http.StatusOK {
			return jobStatus{}, fmt.Errorf("poll job: status %d: %.200s", a.status, a.body)
		}
		var job jobStatus
		if err := json.Unmarshal(a.body, &job); err != nil {
			return jobStatus{}, fmt.Errorf("poll job: %w: %.200s", err, a.body)
		}
		if job.State == "completed" || job.State == "failed" {
			return job, nil
		}
		select {
		case <-ctx.Done():
			return jobStatus{}, fmt.Errorf("poll job: still %s: %w", job.State, ctx.Err())
		case <-tick.C:
		}
	}
}

// vipsThumbnails runs vipsthumbnail once per width of thumbSizes on img, runs times,
// and returns the mean time of one run (the three widths). errNoVips when it is not
// installed.
func (b *bench) vipsThumbnails(ctx context.Context, img []byte, runs int) (time.Duration, error) {
	bin, err := exec.LookPath("vipsthumbnail")
	if err != nil {
		return 0, errNoVips
	}
	in := filepath.Join(b.dir, "bench.jpg")
	if err := os.WriteFile(in, img, 0o644); err != nil {
		return 0, fmt.Errorf("write the bench JPEG: %w", err)
	}
	b.logf("thumbnails: vipsthumbnail, %d runs", runs)
	var total time.Duration
	for range runs {
		start := time.Now()
		for w := range strings.SplitSeq(thumbSizes, ",") {
			out := filepath.Join(b.dir, "vips-"+w+".jpg[Q="+strconv.Itoa(thumbQuality)+"]")
			if err := b.ps.run(ctx, "vipsthumbnail", bin, []string{in, "--size", w + "x", "-o", out}, b.dir, thumbTimeout); err != nil {
				return 0, err
			}
		}
		total += time.Since(start)
	}
	return total / time.Duration(runs), nil
}
