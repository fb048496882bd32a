package host

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestWebGCPercent(t *testing.T) {
	const mb = 1 << 20
	for _, tc := range []struct {
		live, roots uint64
		want        int
	}{
		{0, 0, 400},
		{1 * mb, 0, 400},      // (16-1)/1 = 15: capped
		{3 * mb, 0, 400},      // 433: capped
		{4 * mb, 0, 300},      // goal 4 + 4*3 = 16 MB
		{4 * mb, 2 * mb, 200}, // goal 4 + 6*2 = 16 MB: stacks and globals count
		{6 * mb, 0, 166},      // 100 * 10/6
		{8 * mb, 0, 100},      // twice the live heap is 16 MB: Go's default
		{7 * mb, 2 * mb, 100}, // Go's default goal, 7 + 9 = 16 MB
		{16 * mb, 0, 100},     // never below the default
		{64 * mb, 1 * mb, 100},
		{1 << 40, 0, 100},
	} {
		if got := webGCPercent(tc.live, tc.roots); got != tc.want {
			t.Errorf("webGCPercent(%d, %d) = %d, want %d", tc.live, tc.roots, got, tc.want)
		}
	}
}

// gogc reads the process's GOGC as the runtime has it (-1: off).
func gogc() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(int64(s[0].Value.Uint64()))
}

// webGCSeen is the number of collections the tuner's last tune had seen.
func webGCSeen() uint64 {
	webGC.mu.Lock()
	defer webGC.mu.Unlock()
	return webGC.seen
}

// gcCycles is the number of collections so far.
func gcCycles() uint64 {
	s := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var keep []byte

func noEnv(string) string { return "" }

// TestWebGC: with GOGC at Go's default and not in the environment, GOGC follows the
// live heap after every collection (no timer), one tuner serves every web tier in the
// process, and the last stop puts Go's default back.
func TestWebGC(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	debug.SetGCPercent(100)
	runtime.GC()

	stopA := startWebGC(noEnv)
	raised := gogc()
	if raised <= 100 {
		t.Fatalf("GOGC %d at start with a small live heap, want over 100", raised)
	}

	keep = make([]byte, 64<<20) // a live heap over webHeapFloor
	for i := range keep {
		keep[i] = 1
	}
	waitGC(t)
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after a collection found 64 MB live, want 100", got)
	}
	keep = nil
	waitGC(t)
	if got := gogc(); got <= 100 {
		t.Errorf("GOGC %d after a collection found the 64 MB gone, want over 100", got)
	}

	stopB := startWebGC(noEnv) // a second web tier in the process
	stopA()
	stopA() // a second call is a no-op
	waitGC(t)
	if got := gogc(); got <= 100 {
		t.Errorf("GOGC %d with one of two web tiers stopped, want still raised", got)
	}
	stopB()
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after the last stop, want 100 (put back)", got)
	}
	n := webGCSeen()
	runtime.GC()
	runtime.GC()
	time.Sleep(50 * time.Millisecond) // time for a stale sentinel's cleanup to run
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after collections with no web tier, want 100", got)
	}
	if got := webGCSeen(); got != n {
		t.Errorf("a tune saw collection %d after the last stop (at %d), want none", got, n)
	}
}

// waitGC forces a collection and waits up to 10 s for a tune that has seen it.
func waitGC(t *testing.T) {
	t.Helper()
	runtime.GC()
	n := gcCycles()
	deadline := time.Now().Add(10 * time.Second)
	for webGCSeen() < n {
		if time.Now().After(deadline) {
			t.Fatal("no tune within 10 s of a collection")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWebGCLeftAlone: GOGC set in the environment, or to anything but Go's default by
// the app, stands while web tiers run and after they stop.
func TestWebGCLeftAlone(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	for _, tc := range []struct {
		name   string
		found  int
		getenv func(string) string
	}{
		{"GOGC=100 in the environment", 100, func(k string) string {
			if k == "GOGC" {
				return "100"
			}
			return ""
		}},
		{"GOGC 123 set by the app", 123, noEnv},
		{"GOGC off", -1, noEnv},
	} {
		debug.SetGCPercent(tc.found)
		runtime.GC()
		stop := startWebGC(tc.getenv)
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
		if got := gogc(); got != tc.found {
			t.Errorf("%s: GOGC %d while a web tier runs, want %d", tc.name, got, tc.found)
		}
		stop()
		if got := gogc(); got != tc.found {
			t.Errorf("%s: GOGC %d after it stopped, want %d", tc.name, got, tc.found)
		}
	}
}
