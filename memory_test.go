package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// peakRSS returns pid's peak resident set (VmHWM) in bytes.
func peakRSS(tb testing.TB, pid int) int64 {
	tb.Helper()
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Skipf("no /proc/%d/status (peak RSS is read from Linux's procfs): %v", pid, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if kb, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n << 10
		}
	}
	tb.Fatalf("no VmHWM in /proc/%d/status", pid)
	return 0
}

// gifScreenBomb is a 35-byte GIF whose logical screen is w x h and whose only frame is
// one pixel.
func gifScreenBomb(w, h uint16) []byte {
	var b bytes.Buffer
	b.WriteString("GIF89a")
	binary.Write(&b, binary.LittleEndian, w)
	binary.Write(&b, binary.LittleEndian, h)
	b.Write([]byte{0x80, 0, 0, 0, 0, 0, 255, 255, 255})
	b.Write([]byte{0x2C, 0, 0, 0, 0, 1, 0, 1, 0, 0})
	b.Write([]byte{2, 2, 0x4C, 0x01, 0, 0x3B})
	return b.Bytes()
}

// TestGIFScreenBomb: the 35-byte GIF declaring a 7000x7000 screen is refused at upload
// when a 7000 px thumbnail would take more than IMAGE_MEMORY_BUDGET, and with a small
// width it is made (or fails) once, with the worker's peak RSS at most 300 MB.
func TestGIFScreenBomb(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	in := startInstance(t, sharedEnv(r, t))
	in.waitReady()
	bomb := gifScreenBomb(7000, 7000)
	code, body := in.upload(bomb, "7000")
	if code != http.StatusUnprocessableEntity || !strings.Contains(fmt.Sprint(body["error"]), "IMAGE_MEMORY_BUDGET") {
		t.Errorf("upload with sizes=7000: %d %v, want 422 naming IMAGE_MEMORY_BUDGET", code, body)
	}
	code, body = in.upload(bomb, "100")
	if code != http.StatusAccepted {
		t.Fatalf("upload with sizes=100: %d %v", code, body)
	}
	j := in.waitJob(body["id"].(string), 30*time.Second)
	if j.Attempts != 1 {
		t.Errorf("job %+v: want one attempt", j)
	}
	peak := peakRSS(t, in.childPID)
	t.Logf("bomb at 100 px: %s after %d attempt(s); worker peak RSS %d MB", j.State, j.Attempts, peak/1e6)
	if peak > 300e6 {
		t.Errorf("worker peak RSS %d MB, want at most 300", peak/1e6)
	}
}

// TestConcurrentWallpapers: ten concurrent uploads of a 3840x2400 PNG all complete,
// with the worker's peak RSS at most 400 MB: decodes wait for IMAGE_MEMORY_BUDGET.
func TestConcurrentWallpapers(t *testing.T) {
	t.Parallel()
	img := image.NewNRGBA(image.Rect(0, 0, 3840, 2400))
	for y := range 2400 {
		for x := range 3840 {
			img.SetNRGBA(x, y, color.NRGBA{uint8(x / 15), uint8(y / 10), uint8((x + y) / 25), 255})
		}
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		t.Fatal(err)
	}
	r := storagetest.StartRedis(t)
	in := startInstance(t, sharedEnv(r, t))
	in.waitReady()
	ids := make([]string, 10)
	var wg sync.WaitGroup
	for i := range ids {
		wg.Go(func() {
			code, body := in.upload(buf.Bytes(), "")
			if code != http.StatusAccepted {
				t.Errorf("upload %d: %d %v", i, code, body)
				return
			}
			ids[i] = body["id"].(string)
		})
	}
	wg.Wait()
	for _, id := range ids {
		if id == "" {
			continue
		}
		if j := in.waitJob(id, 120*time.Second); j.State != "completed" {
			t.Errorf("job %s: %+v", id, j)
		}
	}
	peak := peakRSS(t, in.childPID)
	t.Logf("10 x %d KB PNG (3840x2400): worker peak RSS %d MB", buf.Len()>>10, peak/1e6)
	if peak > 400e6 {
		t.Errorf("worker peak RSS %d MB, want at most 400", peak/1e6)
	}
}
