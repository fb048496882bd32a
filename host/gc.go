package host

import (
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// The web tier's garbage collector. Serving enqueues, its live heap is about 1 MB, so
// with Go's defaults (GOGC=100: collect when the heap reaches twice the live set, and
// not before 4 MB) it collected about 50 times a second at 9,000 enqueues a second,
// once every 200 requests. While a web tier runs, GOGC is set after every collection
// so that the next heap goal is webHeapFloor while that is more than Go's default
// goal, and Go's default once it is not: the goal is the larger of webHeapFloor and
// Go's default goal, so the heap holds at most webHeapFloor - 4 MB (12 MB) more than
// it would under Go's defaults. GOGC is set once the collection's sweep has finished
// (a few milliseconds; measured up to 8 ms): until then a live heap that grew in a
// burst has the old GOGC. Measured with GOGC=400 (`shoestring web`, 10 clients,
// 3 runs each way, alternating): 10% less of the web process's CPU per request, 9%
// more requests a second; about 12 MB more resident after a burst; idle, 10 s after
// start, the same.
//
// Go's heap goal (runtime/mgcpacer.go; the GC guide, go.dev/doc/gc-guide) is
//
//	live + (live + stacks + globals) * GOGC/100, and at least 4 MB * GOGC/100,
//
// where live is the heap marked by the last collection and stacks and globals are
// what it scanned of them (runtime/metrics "/gc/heap/live:bytes",
// "/gc/scan/stack:bytes", "/gc/scan/globals:bytes").
const (
	webHeapFloor    = 16 << 20
	webGCPercentMax = 400 // 4 MB * 400/100 = webHeapFloor: the goal before any collection (not under GOEXPERIMENT=heapminimum512kib)
)

// webGCPercent is the GOGC that makes the heap goal webHeapFloor after a collection
// that found live bytes of heap and roots bytes of stacks and globals, between 100
// (Go's default) and webGCPercentMax.
func webGCPercent(live, roots uint64) int {
	if live >= webHeapFloor {
		return 100
	}
	p := 100 * float64(webHeapFloor-live) / float64(live+roots)
	return int(min(max(p, 100), webGCPercentMax))
}

// webGC is the process's one GOGC tuner, shared by every web tier the process runs (an
// app's tests may run several at once): the first start reads GOGC, the last stop puts
// it back.
var webGC struct {
	mu    sync.Mutex
	users int
	on    bool   // tuning: GOGC was Go's default and is not set in the environment
	chain uint64 // the running chain of sentinels; a sentinel of an older one does not re-arm
	set   int    // the GOGC last set
	found int    // the GOGC before the first start
	seen  uint64 // the collections the last tune had seen (tests read it)
	tunes uint64 // tunes since the process started (tests read it)
}

// gcSentinel is allocated unreachable, so that its cleanup runs after the next
// collection. It holds pointers and is larger than 16 bytes, so the runtime's tiny
// allocator does not batch it with live objects (which would keep its cleanup from
// running).
type gcSentinel [4]*byte

// webGCSamples is read by readWebGC, under webGC.mu.
var webGCSamples = []metrics.Sample{
	{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"},
	{Name: "/gc/scan/globals:bytes"}, {Name: "/gc/cycles/total:gc-cycles"},
}

// gcFigures are the process's GOGC and its last collection's figures.
type gcFigures struct {
	gogc   int    // -1: off
	live   uint64 // bytes of heap marked
	roots  uint64 // bytes of stacks and globals scanned
	cycles uint64 // collections so far
}

// readWebGC reads the process's GOGC and its last collection's figures, in one
// metrics.Read; ok is false when this Go lacks one of them. webGC.mu is held.
func readWebGC() (f gcFigures, ok bool) {
	metrics.Read(webGCSamples)
	for _, s := range webGCSamples {
		if s.Value.Kind() != metrics.KindUint64 {
			return f, false
		}
	}
	v := func(i int) uint64 { return webGCSamples[i].Value.Uint64() }
	return gcFigures{gogc: int(int64(v(0))), live: v(1), roots: v(2) + v(3), cycles: v(4)}, true
}

// startWebGC starts tuning the process's GOGC for a web tier, and returns the function
// that stops it; each start needs its stop, and both are safe for concurrent use. GOGC
// is tuned only when it is Go's default, 100, and not set in the environment (getenv
// reads the process's own, which the Go runtime read at start): GOGC set by the
// operator, or by the app with debug.SetGCPercent before the web tier starts, stands.
// GOGC is set at once and again after every collection, once its sweep has finished
// (a cleanup on an unreachable sentinel, so no timer runs while the process is idle);
// the last stop puts back the GOGC the first start found. An app that sets GOGC while
// a web tier runs takes it over: tuning stops, and the last stop leaves the app's value.
func startWebGC(getenv func(string) string) (stop func()) {
	webGC.mu.Lock()
	defer webGC.mu.Unlock()
	webGC.users++
	if webGC.users == 1 {
		f, ok := readWebGC()
		webGC.found = f.gogc
		webGC.on = ok && f.gogc == 100 && getenv("GOGC") == ""
		if webGC.on {
			webGC.chain++
			webGC.set = f.gogc
			retuneLocked()
		}
	}
	var once sync.Once
	return func() { once.Do(stopWebGC) }
}

func stopWebGC() {
	webGC.mu.Lock()
	defer webGC.mu.Unlock()
	webGC.users--
	if webGC.users == 0 && webGC.on {
		webGC.on = false
		webGC.chain++ // the armed sentinel's cleanup finds its chain gone
		if f, ok := readWebGC(); ok && f.gogc == webGC.set {
			debug.SetGCPercent(webGC.found)
		}
	}
}

// retuneLocked sets GOGC from the last collection's figures and arms a sentinel for
// the next; it stops tuning instead when GOGC is no longer what it last set (the app
// set its own). webGC.mu is held.
func retuneLocked() {
	f, ok := readWebGC()
	if !ok || f.gogc != webGC.set {
		webGC.on = false
		webGC.chain++
		return
	}
	webGC.tunes++
	webGC.seen = f.cycles
	if p := webGCPercent(f.live, f.roots); p != webGC.set {
		webGC.set = p
		debug.SetGCPercent(p)
	}
	runtime.AddCleanup(new(gcSentinel), afterGC, webGC.chain)
}

// afterGC runs on the runtime's cleanup goroutine after a collection found a sentinel
// of chain unreachable.
func afterGC(chain uint64) {
	webGC.mu.Lock()
	defer webGC.mu.Unlock()
	if chain == webGC.chain { // tuning stops with a new chain, and starts with one
		retuneLocked()
	}
}
