package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// load is a closed-loop HTTP load: conc clients, each sending its next request when
// the last is answered, over keep-alive connections to 127.0.0.1.
type load struct {
	conc  int
	count int           // requests in all; 0 sends for dur
	dur   time.Duration // how long it sends; with count, the most it may take
	want  int           // the status every answer must have
	// newReq builds one request; it is called concurrently.
	newReq func(ctx context.Context) (*http.Request, error)
	// cpuOf are the processes whose CPU time the load accounts (0: the bench's own).
	cpuOf []int
	// redis, when set, is the server whose commands the load counts.
	redis *redisServer
}

// loadResult is what a load measured. Latencies are of answered requests, sorted.
type loadResult struct {
	ok       int
	failed   int
	firstErr error
	elapsed  time.Duration
	lat      []time.Duration
	cpu      []time.Duration    // CPU time each of load.cpuOf used meanwhile; nil without /proc
	cmds     map[string]cmdStat // load.redis's commands meanwhile; nil when not counted
}

// cpuPerReq is the CPU time the i-th of load.cpuOf used per answered request.
func (r loadResult) cpuPerReq(i int) time.Duration {
	if i >= len(r.cpu) || r.ok == 0 {
		return 0
	}
	return r.cpu[i] / time.Duration(r.ok)
}

// perSec is the rate of answered requests.
func (r loadResult) perSec() float64 { return float64(r.ok) / r.elapsed.Seconds() }

// pct is the p-th percentile latency (0 < p <= 100), nearest rank.
func (r loadResult) pct(p float64) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := int(float64(len(r.lat))*p/100+0.5) - 1
	return r.lat[min(max(i, 0), len(r.lat)-1)]
}

// err is nil when every request got the status wanted and, when want > 0, want
// requests were answered.
func (r loadResult) err(want int) error {
	switch {
	case r.failed > 0:
		return fmt.Errorf("%d of %d requests failed; first: %w", r.failed, r.ok+r.failed, r.firstErr)
	case want > 0 && r.ok < want:
		return fmt.Errorf("cut short: %d of %d requests answered", r.ok, want)
	}
	return nil
}

// merge adds x to r, as if both had run in one go.
func (r loadResult) merge(x loadResult) loadResult {
	r.ok += x.ok
	r.failed += x.failed
	r.firstErr = cmp.Or(r.firstErr, x.firstErr)
	r.elapsed += x.elapsed
	r.lat = append(r.lat, x.lat...)
	slices.Sort(r.lat)
	if x.cmds != nil {
		if r.cmds == nil {
			r.cmds = map[string]cmdStat{}
		}
		for name, c := range x.cmds {
			t := r.cmds[name]
			r.cmds[name] = cmdStat{calls: t.calls + c.calls, usec: t.usec + c.usec}
		}
	}
	if r.cpu == nil {
		r.cpu = slices.Clone(x.cpu)
	} else if len(x.cpu) == len(r.cpu) {
		for i := range r.cpu {
			r.cpu[i] += x.cpu[i]
		}
	}
	return r
}

// interleave runs a and b in turns, rounds times each, every turn a rounds-th of its
// count (or duration), and returns each one's merged result: a change in the
// machine's load during the run (other processes) then weighs on both alike.
func interleave(ctx context.Context, rounds int, a, b load) (loadResult, loadResult) {
	share := func(l load, i int) load {
		if l.count > 0 {
			// The shares add up to count (at least one request each: 0 would mean "for dur").
			l.count = max(1, l.count/rounds+min(1, max(0, l.count%rounds-i)))
		} else {
			l.dur /= time.Duration(rounds)
		}
		return l
	}
	var ra, rb loadResult
	for i := range rounds {
		ra = ra.merge(share(a, i).run(ctx))
		rb = rb.merge(share(b, i).run(ctx))
	}
	return ra, rb
}

// newClient returns an HTTP client that keeps conc connections alive to one host.
func newClient(conc int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 2 * time.Second}).DialContext,
			MaxIdleConns:        conc,
			MaxIdleConnsPerHost: conc,
			MaxConnsPerHost:     conc,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		},
	}
}

// run sends the load and returns what it measured. Errors are in the result.
func (l load) run(ctx context.Context) loadResult {
	client := newClient(l.conc)
	defer client.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, l.dur)
	defer cancel()

	var (
		next atomic.Int64
		mu   sync.Mutex // guards res
		res  loadResult
		wg   sync.WaitGroup
		per  = l.count/l.conc + 1
	)
	if l.redis != nil {
		if err := l.redis.resetStats(ctx); err != nil {
			return loadResult{failed: 1, firstErr: err}
		}
	}
	cpu0, cpuOK := cpuTimes(l.cpuOf)
	starts := time.Now()
	for range l.conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			lat := make([]time.Duration, 0, per)
			failed, first := 0, error(nil)
			for ctx.Err() == nil && (l.count == 0 || next.Add(1) <= int64(l.count)) {
				t0 := time.Now()
				err := l.do(ctx, client)
				switch {
				case err == nil:
					lat = append(lat, time.Since(t0))
				case ctx.Err() == nil: // not the end of the load cutting it off
					failed++
					first = cmp.Or(first, err)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			res.lat = append(res.lat, lat...)
			res.failed += failed
			res.firstErr = cmp.Or(res.firstErr, first)
		}()
	}
	wg.Wait()
	res.elapsed = time.Since(starts)
	if cpu1, ok := cpuTimes(l.cpuOf); ok && cpuOK {
		for i := range cpu1 {
			cpu1[i] -= cpu0[i]
		}
		res.cpu = cpu1
	}
	if l.redis != nil {
		cmds, err := l.redis.commandStats(context.WithoutCancel(ctx))
		if err != nil {
			res.failed++
			res.firstErr = cmp.Or(res.firstErr, err)
		}
		res.cmds = cmds
	}
	res.ok = len(res.lat)
	slices.Sort(res.lat)
	return res
}

// cpuTimes reads the CPU time of each of pids (0: the bench); ok is false when one
// cannot be read.
func cpuTimes(pids []int) ([]time.Duration, bool) {
	if len(pids) == 0 {
		return nil, false
	}
	out := make([]time.Duration, len(pids))
	for i, pid := range pids {
		t, err := cpuTime(pid)
		if err != nil {
			return nil, false
		}
		out[i] = t
	}
	return out, true
}

// do sends one request and reads its answer to the end.
func (l load) do(ctx context.Context, client *http.Client) error {
	req, err := l.newReq(ctx)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return fmt.Errorf("%s %s: read answer: %w", req.Method, req.URL.Path, err)
	}
	if resp.StatusCode != l.want {
		return fmt.Errorf("%s %s: status %d, want %d: %.200s", req.Method, req.URL.Path, resp.StatusCode, l.want, body)
	}
	return nil
}
