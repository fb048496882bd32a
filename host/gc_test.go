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
	webGC.mu.Lock()
	defer webGC.mu.Unlock()
	f, _ := readWebGC()
	return f.gogc
}

// webGCState is the tuner's state: users, tuning, the collections its last tune had
// seen and its tunes so far.
func webGCState() (users int, on bool, seen, tunes uint64) {
	webGC.mu.Lock()
	defer webGC.mu.Unlock()
	return webGC.users, webGC.on, webGC.seen, webGC.tunes
}

func readUint64s(names ...string) []uint64 {
	s := make([]metrics.Sample, len(names))
	for i, n := range names {
		s[i].Name = n
	}
	metrics.Read(s)
	v := make([]uint64, len(s))
	for i := range s {
		v[i] = s[i].Value.Uint64()
	}
	return v
}

var keep []byte

func noEnv(string) string { return "" }

// TestWebGC: with GOGC at Go's default and not in the environment, GOGC follows the
// live heap after every collection (no timer) so that the heap goal is 16 MB while
// that is more than Go's default, one tuner serves every web tier in the process, and
// the last stop puts Go's default back.
func TestWebGC(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100); keep = nil })
	debug.SetGCPercent(100)
	runtime.GC()

	stopA := startWebGC(noEnv)
	t.Cleanup(stopA)
	if got := gogc(); got <= 100 {
		t.Fatalf("GOGC %d at start with a small live heap, want over 100", got)
	}

	keep = make([]byte, 6<<20) // live heap and roots about 7 MB: between the clamps
	waitGC(t)
	v := readUint64s("/gc/heap/goal:bytes", "/gc/heap/live:bytes", "/gc/scan/stack:bytes", "/gc/scan/globals:bytes")
	goal, base := v[0], v[1]+v[2]+v[3]
	if goal > webHeapFloor || goal < webHeapFloor-base/100-1 {
		t.Errorf("heap goal %d with %d live and %d of roots (GOGC %d), want %d less at most 1%% of live + roots (GOGC is whole)",
			goal, v[1], v[2]+v[3], gogc(), webHeapFloor)
	}

	keep = make([]byte, 64<<20) // a live heap over webHeapFloor
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
	t.Cleanup(stopB)
	stopA()
	stopA() // a second call is a no-op
	if users, on, _, _ := webGCState(); users != 1 || !on {
		t.Fatalf("with one of two web tiers stopped: %d users, tuning %v; want 1, true", users, on)
	}
	waitGC(t)
	if got := gogc(); got <= 100 {
		t.Errorf("GOGC %d with one of two web tiers stopped, want still raised", got)
	}
	stopB()
	if users, on, _, _ := webGCState(); users != 0 || on {
		t.Fatalf("after the last stop: %d users, tuning %v; want 0, false", users, on)
	}
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after the last stop, want 100 (put back)", got)
	}
	_, _, _, n := webGCState()
	for range 2 {
		runtime.GC()
		drainCleanups(t)
	}
	if got := gogc(); got != 100 {
		t.Errorf("GOGC %d after collections with no web tier, want 100", got)
	}
	if _, _, _, got := webGCState(); got != n {
		t.Errorf("%d tunes after the last stop, want none", got-n)
	}
}

// TestWebGCRestart: web tiers stopped and started again before a collection leave one
// tuner, which tunes once a collection.
func TestWebGCRestart(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	debug.SetGCPercent(100)
	for range 3 {
		stop := startWebGC(noEnv)
		stop()
	}
	stop := startWebGC(noEnv)
	t.Cleanup(stop)
	runtime.GC() // the sentinels of the stopped tuners
	drainCleanups(t)
	for i := range 4 {
		_, _, _, n := webGCState()
		runtime.GC()
		drainCleanups(t)
		if _, _, _, got := webGCState(); got-n != 1 {
			t.Errorf("collection %d: %d tunes, want 1", i, got-n)
		}
	}
}

// waitGC forces a collection and waits up to 10 s for a tune that has seen it,
// forcing another every 100 ms (a sentinel armed after a collection's marking
// survives it).
func waitGC(t *testing.T) {
	t.Helper()
	runtime.GC()
	n := readUint64s("/gc/cycles/total:gc-cycles")[0]
	start, forced := time.Now(), time.Now()
	for {
		if _, _, seen, _ := webGCState(); seen >= n {
			return
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("no tune within 10 s of a collection")
		}
		if time.Since(forced) > 100*time.Millisecond {
			runtime.GC()
			forced = time.Now()
		}
		time.Sleep(time.Millisecond)
	}
}

// drainCleanups waits up to 10 s until every cleanup queued so far has run (the
// runtime counts a block of cleanups executed after they have run).
func drainCleanups(t *testing.T) {
	t.Helper()
	queued := readUint64s("/gc/cleanups/queued:cleanups")[0]
	deadline := time.Now().Add(10 * time.Second)
	for readUint64s("/gc/cleanups/executed:cleanups")[0] < queued {
		if time.Now().After(deadline) {
			t.Fatal("cleanups queued 10 s ago have not run")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestWebGCLeftAlone: GOGC set in the environment, or to anything but Go's default by
// the app before or while web tiers run, stands while they run and after they stop.
func TestWebGCLeftAlone(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	for _, tc := range []struct {
		name   string
		found  int
		getenv func(string) string
		later  int // set by the app while the web tier runs, if not 0
	}{
		{"GOGC=100 in the environment", 100, func(k string) string {
			if k == "GOGC" {
				return "100"
			}
			return ""
		}, 0},
		{"GOGC 123 set by the app", 123, noEnv, 0},
		{"GOGC off", -1, noEnv, 0},
		{"GOGC 250 set by the app while a web tier runs", 100, noEnv, 250},
	} {
		debug.SetGCPercent(tc.found)
		runtime.GC()
		stop := startWebGC(tc.getenv)
		want := tc.found
		if tc.later != 0 {
			debug.SetGCPercent(tc.later)
			want = tc.later
		}
		runtime.GC()
		drainCleanups(t)
		if got := gogc(); got != want {
			t.Errorf("%s: GOGC %d while a web tier runs, want %d", tc.name, got, want)
		}
		if _, on, _, _ := webGCState(); on {
			t.Errorf("%s: tuning", tc.name)
		}
		stop()
		if got := gogc(); got != want {
			t.Errorf("%s: GOGC %d after it stopped, want %d", tc.name, got, want)
		}
	}
}
