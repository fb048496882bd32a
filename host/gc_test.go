package host

import (
	"context"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"testing"
	"time"
)

func TestWebGCPercent(t *testing.T) {
	for _, tc := range []struct {
		live uint64
		want int
	}{
		{0, 400},
		{1 << 20, 400},  // 16/1 - 1 = 15: capped
		{4 << 20, 300},  // 16 MB before a collection
		{6 << 20, 166},  // 100 * (16/6 - 1)
		{8 << 20, 100},  // twice the live heap is 16 MB: Go's default
		{64 << 20, 100}, // never below the default
		{1 << 40, 100},
	} {
		if got := webGCPercent(tc.live); got != tc.want {
			t.Errorf("webGCPercent(%d) = %d, want %d", tc.live, got, tc.want)
		}
	}
}

// gogc reads the process's GOGC as the runtime has it.
func gogc(t *testing.T) int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	return int(s[0].Value.Uint64())
}

// liveHeap is the live heap as of the last collection.
func liveHeap() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

var keep []byte

// TestTuneWebGC: without GOGC in the environment, the web tier's GOGC follows its live
// heap (a large one gets Go's default) and is put back when ctx ends; with GOGC set,
// it is left alone.
func TestTuneWebGC(t *testing.T) {
	t.Cleanup(func() { debug.SetGCPercent(100) })
	debug.SetGCPercent(100)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		tuneWebGC(ctx, func(string) string { return "" }, 10*time.Millisecond)
	}()
	keep = make([]byte, 64<<20) // a live heap over webHeapFloor
	for i := range keep {
		keep[i] = 1
	}
	runtime.GC()
	waitGOGC(t, 100, "a 64 MB live heap")
	keep = nil
	runtime.GC()
	want := webGCPercent(liveHeap())
	if want == 100 {
		t.Fatalf("this test process's live heap is %d bytes without the 64 MB: too large to show a raised GOGC", liveHeap())
	}
	waitGOGC(t, want, "a small live heap")
	cancel()
	<-done
	if got := gogc(t); got != 100 {
		t.Errorf("GOGC %d after ctx ended, want 100 (put back)", got)
	}

	debug.SetGCPercent(150)
	tuneWebGC(context.Background(), func(k string) string {
		if k == "GOGC" {
			return "150"
		}
		return ""
	}, time.Hour) // returns at once: GOGC is the operator's
	if got := gogc(t); got != 150 {
		t.Errorf("GOGC %d with GOGC=150 set, want 150", got)
	}
}

// waitGOGC waits up to 2 s for GOGC to be want.
func waitGOGC(t *testing.T, want int, what string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for gogc(t) != want {
		if time.Now().After(deadline) {
			t.Fatalf("with %s: GOGC %d, want %d", what, gogc(t), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
