package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/storage"
)

// Settings of the shoestring processes besides their defaults.
const (
	apiToken  = "bench-token"
	echoQueue = "default" // where shoestring puts a job that names no queue
)

// Time limits: every wait below ends, whatever shoestring does.
const (
	stopGrace       = 30 * time.Second // over SHUTDOWN_TIMEOUT's default 25 s
	readyTimeout    = 30 * time.Second
	enqueueLimit    = 2 * time.Minute
	pollInterval    = 10 * time.Millisecond
	httpPollTimeout = time.Second
)

// echoJob is the body of every POST /api/v1/jobs the bench sends, and echoPayload its
// payload as shoestring enqueues it (re-encoded from tasks/demo.Echo). The bench does
// not import tasks/demo, so that it builds whatever state the host package is in.
var (
	echoJob     = []byte(`{"type":"echo","payload":{"message":"x"}}`)
	echoPayload = []byte(`{"message":"x","sleep_ms":0}`)
)

// bench is one run: the shoestring binary, the redis-server, and the report the
// figures fill in. Only run's goroutine uses it.
type bench struct {
	opts      options
	dir       string // temp dir: logs, blobs, binaries' working dir
	bin       string // the shoestring binary
	version   string
	cfg       config.Config // shoestring's defaults
	ps        *procs
	redis     *redisServer
	inspector *asynq.Inspector
	rep       *report
	progress  io.Writer
	started   time.Time
}

func (b *bench) logf(format string, args ...any) {
	fmt.Fprintf(b.progress, "[%5.1fs] %s\n", time.Since(b.started).Seconds(), fmt.Sprintf(format, args...))
}

// figureNames are the figures runFigures measures, for -only: enqueue; drain (20,000
// jobs, shoestring and baseline b); scaling (drain at scaleN); serve (idle RSS, cached
// /health, thumbnails).
var figureNames = []string{"enqueue", "drain", "scaling", "serve"}

// runFigures measures every figure in turn on an empty Redis; a figure that fails is
// reported and the others still run.
func (b *bench) runFigures(ctx context.Context) *report {
	b.rep = &report{}
	figures := []struct {
		name string
		run  func(context.Context) error
	}{
		{"enqueue", b.enqueueFigure},
		{"drain", b.drainFigure},
		{"scaling", b.scalingFigure},
		{"serve", b.serveFigures},
	}
	for _, f := range figures {
		if b.opts.only != nil && !b.opts.only[f.name] {
			continue
		}
		if ctx.Err() != nil {
			b.rep.fail(f.name, ctx.Err())
			continue
		}
		b.logf("figure: %s", f.name)
		err := b.redis.flush(ctx)
		if err == nil {
			err = f.run(ctx)
		}
		if err != nil {
			b.logf("%s failed: %v", f.name, err)
			b.rep.fail(f.name, err)
		}
	}
	return b.rep
}

// env is the environment of a shoestring process: the bench's, less any shoestring
// setting, plus the bench's settings and extra ("NAME=value").
func (b *bench) env(extra ...string) []string {
	ours := map[string]bool{"API_TOKEN": true, "DEMO_TASKS": true}
	for _, s := range config.Settings() {
		ours[s.Name] = true
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if !ours[name] && !strings.HasPrefix(name, "SHOESTRING_") {
			env = append(env, kv)
		}
	}
	env = append(env,
		"REDIS_URL="+b.redis.URL(),
		"BLOB_URL=file://"+filepath.Join(b.dir, "blobs"),
		"DEMO_TASKS=true",
		"API_TOKEN="+apiToken,
	)
	return append(env, extra...)
}

// stop stops p, noting in the report a process that did not stop cleanly.
func (b *bench) stop(p *proc) {
	if err := p.Stop(); err != nil {
		b.logf("warning: %v", err)
		b.rep.note("warning: " + err.Error())
	}
}

// errExited is returned when a process the bench waits on exits.
var errExited = errors.New("exited")

// startHTTP starts shoestring in mode (web or serve) on a free port and returns it with
// its base URL once /health/ready answers 200. It retries on a new port when the
// process exits early (another process may have taken the port).
func (b *bench) startHTTP(ctx context.Context, mode string, extra ...string) (*proc, string, error) {
	return b.startHTTPFrom(ctx, b.bin, mode, extra...)
}

// startHTTPFrom is startHTTP with the binary at bin.
func (b *bench) startHTTPFrom(ctx context.Context, bin, mode string, extra ...string) (*proc, string, error) {
	var lastErr error
	for range 3 {
		port, err := freePort()
		if err != nil {
			return nil, "", err
		}
		env := b.env(append([]string{"PORT=" + strconv.Itoa(port)}, extra...)...)
		p, err := b.ps.start("shoestring-"+mode, bin, []string{mode}, env, b.dir, stopGrace)
		if err != nil {
			return nil, "", err
		}
		url := "http://127.0.0.1:" + strconv.Itoa(port)
		lastErr = waitStatus(ctx, p, url+"/health/ready", http.StatusOK, readyTimeout)
		if lastErr == nil {
			return p, url, nil
		}
		b.stop(p)
		if !errors.Is(lastErr, errExited) {
			break
		}
	}
	return nil, "", fmt.Errorf("start shoestring %s: %w", mode, lastErr)
}

// waitStatus polls url until it answers want, p exits, or timeout passes.
func waitStatus(ctx context.Context, p *proc, url string, want int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	client := &http.Client{Timeout: httpPollTimeout}
	tick := time.NewTicker(5 * pollInterval)
	defer tick.Stop()
	last := "no answer"
	for {
		if resp, err := getOnce(ctx, client, url); err != nil {
			last = err.Error()
		} else if resp.status == want {
			return nil
		} else {
			last = fmt.Sprintf("status %d: %.200s", resp.status, resp.body)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w (%v); last lines of %s:\n%s", p.name, errExited, p.err, p.logPath, p.logTail(10))
		case <-ctx.Done():
			return fmt.Errorf("%s: no %d from %s within %v (%w); last: %s", p.name, want, url, timeout, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

// getOnce sends one GET and returns its answer.
func getOnce(ctx context.Context, client *http.Client, url string) (cannedAnswer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return cannedAnswer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return cannedAnswer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return cannedAnswer{}, fmt.Errorf("GET %s: %w", url, err)
	}
	return cannedAnswer{status: resp.StatusCode, header: resp.Header, body: body}, nil
}

// --- enqueue ---

// enqueueFigure loads POST /api/v1/jobs of `shoestring web` and of baseline (a), both
// up at once and loaded in turns.
func (b *bench) enqueueFigure(ctx context.Context) error {
	p, ssURL, err := b.startHTTP(ctx, "web")
	if err != nil {
		return err
	}
	defer b.stop(p)
	bp, baseURL, err := b.startBaseline(ctx, "enqueue", "/ready", "-redis", b.redis.addr)
	if err != nil {
		return err
	}
	defer b.stop(bp)

	for _, url := range []string{ssURL, baseURL} {
		if err := jobLoad(url, b.opts.warmup, enqueueConc).run(ctx).err(b.opts.warmup); err != nil {
			return fmt.Errorf("warm-up of %s: %w", url, err)
		}
	}
	n := b.opts.enqueueN
	b.logf("enqueue: shoestring web and baseline (a) in %d turns each, %s requests", b.opts.rounds, count(n))
	// CPU accounted: the server's, redis-server's, the load generator's (this process).
	ssLoad, baseLoad := jobLoad(ssURL, n, enqueueConc), jobLoad(baseURL, n, enqueueConc)
	ssLoad.cpuOf = []int{p.pid(), b.redis.proc.pid(), 0}
	baseLoad.cpuOf = []int{bp.pid(), b.redis.proc.pid(), 0}
	ssLoad.redis, baseLoad.redis = b.redis, b.redis
	ss, base := interleave(ctx, b.opts.rounds, ssLoad, baseLoad)
	if err := ss.err(n); err != nil {
		return fmt.Errorf("shoestring web: %w", err)
	}
	if err := base.err(n); err != nil {
		return fmt.Errorf("baseline (a): %w", err)
	}
	// More clients than the figure's: what sharing round trips (group commit) does when
	// requests queue up.
	b.logf("enqueue: again with %d clients", enqueueConcHigh)
	ssHigh, baseHigh := jobLoad(ssURL, n, enqueueConcHigh), jobLoad(baseURL, n, enqueueConcHigh)
	ssHigh.cpuOf, baseHigh.cpuOf = ssLoad.cpuOf, baseLoad.cpuOf
	ssH, baseH := interleave(ctx, b.opts.rounds, ssHigh, baseHigh)
	if err := ssH.err(n); err != nil {
		return fmt.Errorf("shoestring web, %d clients: %w", enqueueConcHigh, err)
	}
	if err := baseH.err(n); err != nil {
		return fmt.Errorf("baseline (a), %d clients: %w", enqueueConcHigh, err)
	}
	// Every 202 must have put one task on the queue.
	qi, err := b.inspector.GetQueueInfo(echoQueue)
	if err != nil {
		return fmt.Errorf("count the tasks enqueued: %w", err)
	}
	if want := 2*b.opts.warmup + ss.ok + base.ok + ssH.ok + baseH.ok; qi.Pending != want {
		return fmt.Errorf("%d tasks pending after %d requests accepted", qi.Pending, want)
	}
	b.rep.cmds = append(b.rep.cmds, cmdTable{what: fmt.Sprintf("enqueue of %s", count(ss.ok)), per: "request",
		ss: ss.cmds, base: base.cmds, ssN: ss.ok, baseN: base.ok, baseline: "a"})
	what := fmt.Sprintf("enqueue: %s × POST /api/v1/jobs (echo), %d clients", count(n), enqueueConc)
	b.rep.add(
		row{figure: what, unit: "req/s", ss: ss.perSec(), base: base.perSec(), better: higher, baseline: "a"},
		row{figure: "enqueue latency p50", unit: "ms", ss: ms(ss.pct(50)), base: ms(base.pct(50)), better: lower, baseline: "a"},
		row{figure: "enqueue latency p99", unit: "ms", ss: ms(ss.pct(99)), base: ms(base.pct(99)), better: lower, baseline: "a"},
	)
	if len(ss.cpu) == 3 && len(base.cpu) == 3 {
		b.rep.add(
			row{figure: "enqueue CPU per request, server", unit: "µs", ss: us(ss.cpuPerReq(0)), base: us(base.cpuPerReq(0)), better: lower, baseline: "a"},
			row{figure: "enqueue CPU per request, redis-server", unit: "µs", ss: us(ss.cpuPerReq(1)), base: us(base.cpuPerReq(1)), better: lower, baseline: "a"},
			row{figure: "enqueue CPU per request, load generator (the bench)", unit: "µs", ss: us(ss.cpuPerReq(2)), base: us(base.cpuPerReq(2)), better: lower, baseline: "a"},
		)
		b.cpuBudget(ss, base, enqueueConc)
	}
	b.rep.add(row{figure: fmt.Sprintf("enqueue: the same, %d clients", enqueueConcHigh), unit: "req/s", ss: ssH.perSec(), base: baseH.perSec(), better: higher, baseline: "a"})
	if len(ssH.cpu) == 3 && len(baseH.cpu) == 3 {
		b.rep.add(
			row{figure: fmt.Sprintf("enqueue CPU per request, server, %d clients", enqueueConcHigh), unit: "µs", ss: us(ssH.cpuPerReq(0)), base: us(baseH.cpuPerReq(0)), better: lower, baseline: "a"},
			row{figure: fmt.Sprintf("enqueue CPU per request, redis-server, %d clients", enqueueConcHigh), unit: "µs", ss: us(ssH.cpuPerReq(1)), base: us(baseH.cpuPerReq(1)), better: lower, baseline: "a"},
		)
		b.cpuBudget(ssH, baseH, enqueueConcHigh)
	}
	return nil
}

// cpuBudget notes where the enqueue's rate goes: the load generator, the server and
// redis-server share the machine's cores, so while they use the same CPU time per
// second with either server, the rates are in the inverse ratio of their CPU time per
// request, the three together. It notes the cores each run used, that ratio, and the
// most the server and redis-server could use per request between them for 0.9x of
// (a)'s rate, the load generator's and the cores used being (a)'s.
func (b *bench) cpuBudget(ss, base loadResult, conc int) {
	var ssAll, baseAll time.Duration
	for i := range 3 {
		ssAll += ss.cpuPerReq(i)
		baseAll += base.cpuPerReq(i)
	}
	if ssAll == 0 || baseAll == 0 {
		return
	}
	cores := func(r loadResult, all time.Duration) float64 { return r.perSec() * all.Seconds() }
	b.rep.add(row{figure: fmt.Sprintf("enqueue CPU per request, all three, %d clients", conc), unit: "µs", ss: us(ssAll), base: us(baseAll), better: lower, baseline: "a"})
	b.rep.note(fmt.Sprintf("enqueue at %d clients: the three processes kept %.2f cores busy with shoestring and %.2f with (a), "+
		"and used %.1f and %.1f µs of CPU per request: at equal cores the CPU allows %.2fx of (a)'s rate. 0.9x would need "+
		"the server and redis-server to use at most %.1f µs per request between them (they used %.1f, (a) %.1f).",
		conc, cores(ss, ssAll), cores(base, baseAll), us(ssAll), us(baseAll), float64(baseAll)/float64(ssAll),
		us(baseAll)/0.9-us(base.cpuPerReq(2)), us(ss.cpuPerReq(0)+ss.cpuPerReq(1)), us(base.cpuPerReq(0)+base.cpuPerReq(1))))
}

// Clients of the enqueue figure (issue 10's), and of its second run.
const (
	enqueueConc     = 10
	enqueueConcHigh = 40
)

// jobLoad is n POST /api/v1/jobs of an echo job from conc clients.
func jobLoad(url string, n, conc int) load {
	return load{conc: conc, count: n, dur: enqueueLimit, want: http.StatusAccepted,
		newReq: func(ctx context.Context) (*http.Request, error) {
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/api/v1/jobs", bytes.NewReader(echoJob))
			if err != nil {
				return nil, err
			}
			req.Header.Set("Authorization", "Bearer "+apiToken)
			req.Header.Set("Content-Type", "application/json")
			return req, nil
		}}
}

// --- drain ---

// drain is one queue of n echo jobs worked off.
type drain struct {
	n       int
	prefill time.Duration // enqueueing the n jobs (not part of the drain)
	startup time.Duration // start of the worker until its first task left pending
	run     time.Duration // first task taken until none pending or active
	// CPU time used during run by the worker process and by redis-server; zero where
	// /proc is missing.
	workerCPU, redisCPU time.Duration
	runs                int // drains this is the median of (by run time)
	// Redis's commands during run (INFO commandstats, the bench's polling included);
	// nil when they could not be read.
	cmds map[string]cmdStat
}

// median returns the drain of median run time among ds (the lower middle one of an
// even count), counting len(ds) runs.
func median(ds []drain) drain {
	s := slices.Clone(ds)
	slices.SortFunc(s, func(a, b drain) int { return cmp.Compare(a.run, b.run) })
	m := s[(len(s)-1)/2]
	m.runs = len(ds)
	return m
}

// cpuPerJob is worker and Redis CPU time per job.
func (d drain) cpuPerJob() (worker, redis time.Duration) {
	return d.workerCPU / time.Duration(d.n), d.redisCPU / time.Duration(d.n)
}

func (d drain) perJob() time.Duration { return d.run / time.Duration(d.n) }

func (b *bench) drainFigure(ctx context.Context) error {
	n := b.opts.drainN
	// Turns, shoestring then baseline, so that a change in the machine's load weighs
	// on both alike; the medians are compared.
	var sss, bases []drain
	for range b.opts.drainRuns {
		ss, err := b.drainShoestring(ctx, n)
		if err != nil {
			return fmt.Errorf("shoestring worker: %w", err)
		}
		base, err := b.drainBare(ctx, n)
		if err != nil {
			return fmt.Errorf("baseline (b): %w", err)
		}
		sss, bases = append(sss, ss), append(bases, base)
	}
	ss, base := median(sss), median(bases)
	// Each pair ran back to back, so a drift in the machine's load weighs less on its
	// ratio than on the ratio of the medians.
	ratios := make([]float64, len(sss))
	for i := range sss {
		ratios[i] = float64(sss[i].run) / float64(bases[i].run)
	}
	slices.Sort(ratios)
	b.rep.cmds = append(b.rep.cmds, cmdTable{what: "drain of " + count(n), per: "job",
		ss: ss.cmds, base: base.cmds, ssN: ss.n, baseN: base.n, baseline: "b"})
	b.rep.scaling = append(b.rep.scaling, ss)
	b.rep.bareScaling = append(b.rep.bareScaling, base)
	b.rep.add(
		row{figure: fmt.Sprintf("drain: %s echo jobs, concurrency 10, median of %d", count(n), ss.runs), unit: "s", ss: ss.run.Seconds(), base: base.run.Seconds(), better: lower, baseline: "b"},
		row{figure: "drain cost per job", unit: "µs", ss: us(ss.perJob()), base: us(base.perJob()), better: lower, baseline: "b"},
		row{figure: fmt.Sprintf("drain cost, shoestring / baseline (b) run after it: median of %d pairs (all: %s)", len(ratios), fmtRatios(ratios)),
			unit: "ratio", ss: ratios[(len(ratios)-1)/2], note: "1.00 is parity", better: lower},
		row{figure: "worker start until its first task", unit: "ms", ss: ms(ss.startup), base: ms(base.startup), better: lower, baseline: "b"},
	)
	if ss.workerCPU > 0 && base.workerCPU > 0 {
		ssw, ssr := ss.cpuPerJob()
		bw, br := base.cpuPerJob()
		b.rep.add(
			row{figure: "drain CPU per job, worker process", unit: "µs", ss: us(ssw), base: us(bw), better: lower, baseline: "b"},
			row{figure: "drain CPU per job, redis-server", unit: "µs", ss: us(ssr), base: us(br), better: lower, baseline: "b"},
		)
	}
	return nil
}

// scalingFigure drains each of scaleN with shoestring, and the largest with baseline
// (b) too, to tell shoestring's growth from asynq's and Redis's. The sizes take turns
// (1k, 10k, 100k, then again), so that a slow spell of a shared machine, which lasts
// seconds, weighs on every size and not on the size drained during it. A drain of a
// tenth of the largest or less lasts a second or two at most, less than such a spell,
// so it runs three times a turn, and a hundredth or less (0.15 s on 2 cores) nine
// times: its median is of that many times as many runs. (With one 10k drain a turn, a
// slow spell during one of its three runs made it the dearest size, 1.22x the
// cheapest, in one run of five on 2026-12-04; with three 1k drains a turn, the 1k size
// was the dearest, at 1.41x and 1.27x, in two runs that day, on two VMs.)
//
// Baseline (b) drains the smallest size too, each run just after shoestring's: whether
// a short drain costs more per job for asynq alone tells a start-up cost of shoestring's
// from asynq's and Redis's.
func (b *bench) scalingFigure(ctx context.Context) error {
	largest, smallest := slices.Max(b.opts.scaleN), slices.Min(b.opts.scaleN)
	runs := make([][]drain, len(b.opts.scaleN))
	var bareSmall []drain
	for range b.opts.drainRuns {
		for i, n := range b.opts.scaleN {
			reps := 1
			switch {
			case n*100 <= largest:
				reps = 9
			case n*10 <= largest:
				reps = 3
			}
			for range reps {
				d, err := b.drainShoestring(ctx, n)
				if err != nil {
					return fmt.Errorf("%s jobs: %w", count(n), err)
				}
				runs[i] = append(runs[i], d)
				if n == smallest && n != largest {
					bd, err := b.drainBare(ctx, n)
					if err != nil {
						return fmt.Errorf("baseline (b), %s jobs: %w", count(n), err)
					}
					bareSmall = append(bareSmall, bd)
				}
			}
		}
	}
	turns := make([]drain, len(runs))
	for i, ds := range runs {
		turns[i] = median(ds)
	}
	b.rep.scaling = append(b.rep.scaling, turns...)
	n := largest
	d, err := b.drainBare(ctx, n)
	if err != nil {
		return fmt.Errorf("baseline (b), %s jobs: %w", count(n), err)
	}
	b.rep.bareScaling = append(b.rep.bareScaling, d)
	if len(bareSmall) > 0 {
		bs := median(bareSmall)
		b.rep.bareScaling = append(b.rep.bareScaling, bs)
		ss := turns[slices.Index(b.opts.scaleN, smallest)]
		big := turns[slices.Index(b.opts.scaleN, largest)]
		b.rep.add(row{figure: fmt.Sprintf("drain cost per job at %s over %s jobs (the largest: one (b) drain, against shoestring's median)", count(smallest), count(largest)),
			unit: "ratio", ss: float64(ss.perJob()) / float64(big.perJob()), base: float64(bs.perJob()) / float64(d.perJob()),
			baseline: "b"})
	}
	// Is the cost per job flat? The dearest size over the cheapest, of the sizes drained
	// in turns (the drain figure's own size, drained earlier, is left out: a slow spell
	// then would count as growth).
	lo, hi := turns[0].perJob(), turns[0].perJob()
	for _, d := range turns {
		lo, hi = min(lo, d.perJob()), max(hi, d.perJob())
	}
	b.rep.add(row{figure: fmt.Sprintf("drain cost per job, dearest / cheapest of %d sizes drained in turns (%s to %s jobs)",
		len(turns), count(smallest), count(n)), unit: "ratio", ss: float64(hi) / float64(lo),
		note: "1.00 is flat"})
	// The same for the CPU time the worker and redis-server used per job: the work
	// itself, apart from the time it took. /proc counts CPU time in 10 ms ticks: 10 µs
	// per job of a 1k drain.
	cpus := make([]time.Duration, len(runs))
	each := make([]string, len(runs))
	for i, ds := range runs {
		cpus[i] = medianCPUPerJob(ds)
		each[i] = num(us(cpus[i]))
	}
	if lo, hi := slices.Min(cpus), slices.Max(cpus); lo > 0 {
		b.rep.add(row{figure: fmt.Sprintf("drain CPU per job, worker + redis-server, dearest / cheapest of the %d sizes (each size's median: %s µs; 10 ms ticks)",
			len(turns), strings.Join(each, " / ")), unit: "ratio", ss: float64(hi) / float64(lo), note: "1.00 is flat"})
	}
	return nil
}

// medianCPUPerJob is the median among ds of the CPU time the worker and redis-server
// used per job (the lower middle one of an even count); zero where /proc is missing.
// Drains whose CPU time could not be read are left out.
func medianCPUPerJob(ds []drain) time.Duration {
	var c []time.Duration
	for _, d := range ds {
		if d.workerCPU <= 0 || d.redisCPU <= 0 {
			continue
		}
		w, r := d.cpuPerJob()
		c = append(c, w+r)
	}
	if len(c) == 0 {
		return 0
	}
	slices.Sort(c)
	return c[(len(c)-1)/2]
}

// drainShoestring prefills n echo jobs as shoestring records them, starts `shoestring
// worker` and times it until the queue is empty, then checks the job records.
func (b *bench) drainShoestring(ctx context.Context, n int) (drain, error) {
	ids, took, err := b.prefill(ctx, n)
	if err != nil {
		return drain{}, err
	}
	b.logf("drain: shoestring worker, %s jobs (prefilled in %.1f s)", count(n), took.Seconds())
	start := time.Now()
	p, err := b.ps.start("shoestring-worker", b.bin, []string{"worker"}, b.env("WORKER_CONCURRENCY=10"), b.dir, stopGrace)
	if err != nil {
		return drain{}, err
	}
	d, err := b.waitDrained(ctx, n, start, p)
	b.stop(p)
	if err != nil {
		return d, err
	}
	d.prefill = took
	return d, b.checkCompleted(ctx, ids)
}

// drainBare is drainShoestring with baseline (b) as the worker.
func (b *bench) drainBare(ctx context.Context, n int) (drain, error) {
	_, took, err := b.prefill(ctx, n)
	if err != nil {
		return drain{}, err
	}
	b.logf("drain: baseline (b), bare asynq.Server, %s jobs", count(n))
	queues, err := json.Marshal(b.cfg.Queues)
	if err != nil {
		return drain{}, err
	}
	start := time.Now()
	p, _, err := b.startBaseline(ctx, "worker", "", "-redis", b.redis.addr, "-queues", string(queues))
	if err != nil {
		return drain{}, err
	}
	d, err := b.waitDrained(ctx, n, start, p)
	b.stop(p)
	d.prefill = took
	return d, err
}

// prefill empties Redis and enqueues n echo jobs as POST /api/v1/jobs does (a job
// record, then the task with the job's id), from 32 goroutines. It returns their ids.
func (b *bench) prefill(ctx context.Context, n int) ([]string, time.Duration, error) {
	if err := b.redis.flush(ctx); err != nil {
		return nil, 0, err
	}
	jobs := storage.NewJobs(b.redis.client, b.cfg.JobRetention, "default")
	queue := asynq.NewClientFromRedisClient(b.redis.client)
	ids := make([]string, n)
	for i := range ids {
		ids[i] = storage.NewJobID()
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second+time.Duration(n)*500*time.Microsecond)
	defer cancel()
	var (
		next     atomic.Int64
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
	)
	start := time.Now()
	for range 32 {
		wg.Go(func() {
			for i := next.Add(1) - 1; i < int64(n) && ctx.Err() == nil; i = next.Add(1) - 1 {
				job := storage.Job{ID: ids[i], Type: "echo", Queue: echoQueue, State: storage.StatePending, CreatedAt: time.Now()}
				err := jobs.Create(ctx, job)
				if err == nil {
					_, err = queue.EnqueueContext(ctx, asynq.NewTask(job.Type, echoPayload), asynq.TaskID(job.ID), asynq.Queue(echoQueue))
				}
				if err != nil {
					errOnce.Do(func() { firstErr = fmt.Errorf("prefill %d jobs: %w", n, err) })
					cancel()
					return
				}
			}
		})
	}
	wg.Wait()
	if firstErr == nil && ctx.Err() != nil {
		firstErr = fmt.Errorf("prefill %d jobs: %w", n, ctx.Err())
	}
	return ids, time.Since(start), firstErr
}

// waitDrained polls asynq until none of the n tasks is pending or active, and returns
// when the first left pending and how long the rest took. p, when not nil, is the
// worker process: its exit ends the wait.
func (b *bench) waitDrained(ctx context.Context, n int, start time.Time, p *proc) (drain, error) {
	timeout := 20*time.Second + time.Duration(n)*time.Millisecond
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	cpu := func() (worker, redis time.Duration) {
		worker, _ = cpuTime(p.pid())
		redis, _ = cpuTime(b.redis.proc.pid())
		return worker, redis
	}
	var first time.Time
	var workerCPU0, redisCPU0 time.Duration
	for {
		qi, err := b.inspector.GetQueueInfo(echoQueue)
		if err != nil {
			return drain{}, fmt.Errorf("inspect queue %s: %w", echoQueue, err)
		}
		now := time.Now()
		if first.IsZero() && qi.Pending < n {
			first = now
			workerCPU0, redisCPU0 = cpu()
			if err := b.redis.resetStats(ctx); err != nil {
				return drain{}, err
			}
		}
		if qi.Pending+qi.Active == 0 {
			if bad := qi.Retry + qi.Archived; bad > 0 {
				return drain{}, fmt.Errorf("%d of %d tasks failed (retry %d, archived %d)", bad, n, qi.Retry, qi.Archived)
			}
			workerCPU, redisCPU := cpu()
			d := drain{n: n, startup: first.Sub(start), run: now.Sub(first),
				workerCPU: workerCPU - workerCPU0, redisCPU: redisCPU - redisCPU0}
			d.cmds, err = b.redis.commandStats(ctx)
			return d, err
		}
		select {
		case <-p.done:
			return drain{}, fmt.Errorf("%s %w mid-drain (%v); last lines of %s:\n%s", p.name, errExited, p.err, p.logPath, p.logTail(10))
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return drain{}, fmt.Errorf("drain of %d jobs not done within %v: %d pending, %d active", n, timeout, qi.Pending, qi.Active)
			}
			return drain{}, fmt.Errorf("drain of %d jobs: %w", n, ctx.Err())
		case <-tick.C:
		}
	}
}

// checkCompleted reads up to 100 of the job records, evenly spread over ids, and
// fails unless each says completed: the worker did shoestring's whole job.
func (b *bench) checkCompleted(ctx context.Context, ids []string) error {
	jobs := storage.NewJobs(b.redis.client, b.cfg.JobRetention, "default")
	step := max(1, len(ids)/100)
	for i := 0; i < len(ids); i += step {
		j, err := jobs.Get(ctx, ids[i])
		if err != nil {
			return fmt.Errorf("check job records: %w", err)
		}
		if j.State != storage.StateCompleted {
			return fmt.Errorf("job %s is %s after the drain, want completed", j.ID, j.State)
		}
	}
	return nil
}

// --- serve: idle RSS, cached /health, thumbnails ---

func (b *bench) serveFigures(ctx context.Context) error {
	if err := b.buildServeFigures(ctx); err != nil {
		return err
	}
	// Last: copying the binary reads the build's file, and with it its page cache.
	if err := b.installedIdleRSS(ctx); err != nil {
		b.logf("idle RSS of a fresh copy failed: %v", err)
		b.rep.fail("idle RSS of a fresh copy", err)
	}
	return nil
}

// buildServeFigures runs the serve figures on the build's binary.
func (b *bench) buildServeFigures(ctx context.Context) error {
	b.logf("serve: shoestring serve (web + worker child)")
	p, url, err := b.startHTTP(ctx, "serve")
	if err != nil {
		return err
	}
	defer b.stop(p)
	steps := []struct {
		name string
		run  func(context.Context, *proc, string) error
	}{
		{"idle RSS", b.idleRSS},
		{"cached /health", b.healthFigure},
		{"thumbnails", b.thumbnailFigure},
	}
	for _, s := range steps {
		if p.exited() {
			return fmt.Errorf("shoestring serve %w (%v); last lines of %s:\n%s", errExited, p.err, p.logPath, p.logTail(10))
		}
		if err := s.run(ctx, p, url); err != nil {
			b.logf("%s failed: %v", s.name, err)
			b.rep.fail(s.name, err)
		}
	}
	return nil
}

// idleRSS lets serve idle for idleWait, then reads the RSS of the parent and its
// worker child. The binary is the build the other figures ran: its page cache is as
// they left it.
func (b *bench) idleRSS(ctx context.Context, p *proc, _ string) error {
	return b.idle(ctx, p, fmt.Sprintf("idle RSS (%v after ready)", b.opts.idleWait))
}

// installedIdleRSS is idleRSS for a fresh install: serve runs from a new copy of the
// binary, written in 32 KiB writes as tar and containerd extract a slug or an image
// layer (io.Copy's buffer). By the time the serve figures run, the page cache of the
// file the earlier figures ran may hold folios larger than 64 KiB, which Linux 6.18
// maps whole on a fault (README, Performance): on 2026-12-04 that file's idle RSS
// measured 39.0-41.5 MiB in four runs, and a fresh copy's 33.1-34.3, with none in
// such folios.
func (b *bench) installedIdleRSS(ctx context.Context) error {
	bin := filepath.Join(b.dir, "installed", "shoestring")
	if err := install(b.bin, bin); err != nil {
		return err
	}
	b.logf("serve: shoestring serve from a fresh copy of the binary")
	p, _, err := b.startHTTPFrom(ctx, bin, "serve")
	if err != nil {
		return err
	}
	defer b.stop(p)
	return b.idle(ctx, p, fmt.Sprintf("idle RSS (%v after ready), a fresh copy of the binary (%s, written in 32 KiB writes)", b.opts.idleWait, fsType(bin)))
}

// idle lets p idle for idleWait and adds its RSS figures as what.
func (b *bench) idle(ctx context.Context, p *proc, what string) error {
	b.logf("%s: serve idles %v", what, b.opts.idleWait)
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-p.done:
		return fmt.Errorf("shoestring serve %w (%v)", errExited, p.err)
	case <-time.After(b.opts.idleWait):
	}
	return b.addRSS(p, what)
}

// install copies the executable src to dst (its directory made) in 32 KiB writes.
func install(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("install the binary: %w", err)
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("install the binary: %w", err)
	}
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		return fmt.Errorf("install the binary: %w", err)
	}
	// The wrappers hide *os.File's ReadFrom and WriteTo, which would copy in the
	// kernel (copy_file_range), in whatever chunks it likes.
	_, err = io.CopyBuffer(struct{ io.Writer }{out}, struct{ io.Reader }{in}, make([]byte, 32<<10))
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("install the binary: %w", err)
	}
	return nil
}

// memFigures are a process's resident memory, in bytes.
type memFigures struct {
	rss  int64 // VmRSS: what the acceptance figures count
	anon int64 // RssAnon: heap, stacks, the runtime's own
	file int64 // RssFile: mapped file pages, this binary's mostly
	pss  int64 // Pss: RSS with each page shared with other processes split between them
	// large is how much of file is the binary's pages in folios of the page cache
	// larger than the fault-around window (64 KiB), which the kernel may map whole on
	// a fault; known says the kernel told (it takes CAP_SYS_ADMIN).
	large int64
	known bool
}

// addRSS adds the RSS of serve's parent and child to the report, with how much of it
// is anonymous and how much file pages (which the two map from one binary, so RSS
// counts them twice, and their PSS once).
func (b *bench) addRSS(p *proc, what string) error {
	child, err := workerChild(p.pid())
	if err != nil {
		return err
	}
	parent, err := memOf(p.pid())
	if err != nil {
		return err
	}
	kid, err := memOf(child)
	if err != nil {
		return err
	}
	split := func(m memFigures) string {
		s := fmt.Sprintf("anonymous %.1f, file %.1f", mb(m.anon), mb(m.file))
		if m.known {
			s += fmt.Sprintf(" (the binary's, in folios over 64 KiB: %.1f)", mb(m.large))
		}
		return s
	}
	b.rep.add(
		row{figure: what + ", parent (web)", unit: "MiB", ss: mb(parent.rss), note: split(parent)},
		row{figure: what + ", child (worker)", unit: "MiB", ss: mb(kid.rss), note: split(kid)},
		row{figure: what + ", parent + child", unit: "MiB", ss: mb(parent.rss + kid.rss),
			note: split(memFigures{anon: parent.anon + kid.anon, file: parent.file + kid.file,
				large: parent.large + kid.large, known: parent.known && kid.known})},
		row{figure: what + ", parent + child, PSS (the pages they share counted once)", unit: "MiB", ss: mb(parent.pss + kid.pss)},
	)
	return nil
}

// workerChild returns the pid of the `shoestring worker` child of pid.
func workerChild(pid int) (int, error) {
	kids, err := childPIDs(pid)
	if err != nil {
		return 0, err
	}
	for _, k := range kids {
		if args := strings.Fields(cmdline(k)); len(args) > 1 && args[1] == "worker" {
			return k, nil
		}
	}
	return 0, fmt.Errorf("no worker child of pid %d among %v", pid, kids)
}

// healthFigure loads serve's cached /health and baseline (c), which answers the same
// bytes, in turns, with healthConc keep-alive connections for healthDur each.
func (b *bench) healthFigure(ctx context.Context, p *proc, url string) error {
	answer, err := b.captureHealth(ctx, p, url+"/health")
	if err != nil {
		return err
	}
	canned, err := json.Marshal(cannedJSON{Status: answer.status, Header: answer.header, Body: answer.body})
	if err != nil {
		return err
	}
	answerFile := filepath.Join(b.dir, "health-answer.json")
	if err := os.WriteFile(answerFile, canned, 0o600); err != nil {
		return fmt.Errorf("write the canned /health answer: %w", err)
	}
	bp, baseURL, err := b.startBaseline(ctx, "health", "/health", "-answer", answerFile)
	if err != nil {
		return err
	}
	defer b.stop(bp)
	ssLoad, baseLoad := b.healthLoad(url+"/health", answer.status), b.healthLoad(baseURL+"/health", answer.status)
	ssLoad.cpuOf, baseLoad.cpuOf = []int{p.pid()}, []int{bp.pid()}
	for _, l := range []load{ssLoad, baseLoad} {
		warm := l
		warm.dur = 500 * time.Millisecond
		if err := warm.run(ctx).err(0); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	b.logf("cached /health: shoestring serve and baseline (c) in %d turns each, %d connections, %v",
		b.opts.rounds, b.opts.healthConc, b.opts.healthDur)
	ss, base := interleave(ctx, b.opts.rounds, ssLoad, baseLoad)
	if err := ss.err(0); err != nil {
		return fmt.Errorf("shoestring: %w", err)
	}
	if err := base.err(0); err != nil {
		return fmt.Errorf("baseline (c): %w", err)
	}
	what := fmt.Sprintf("GET /health (cached), %d connections, %v", b.opts.healthConc, b.opts.healthDur)
	b.rep.add(
		row{figure: what, unit: "req/s", ss: ss.perSec(), base: base.perSec(), better: higher, baseline: "c"},
		row{figure: "GET /health latency p99", unit: "ms", ss: ms(ss.pct(99)), base: ms(base.pct(99)), better: lower, baseline: "c"},
	)
	if len(ss.cpu) == 1 && len(base.cpu) == 1 {
		b.rep.add(row{figure: "GET /health CPU per request, server", unit: "µs", ss: us(ss.cpuPerReq(0)), base: us(base.cpuPerReq(0)), better: lower, baseline: "c"})
	}
	b.rep.note(fmt.Sprintf("(c) answers what shoestring's /health answered: status %d, %d bytes: %s", answer.status, len(answer.body), bytes.TrimSpace(answer.body)))
	return nil
}

// captureHealth polls url until it answers 200 and returns that answer, less the
// headers net/http writes itself.
func (b *bench) captureHealth(ctx context.Context, p *proc, url string) (cannedAnswer, error) {
	if err := waitStatus(ctx, p, url, http.StatusOK, readyTimeout); err != nil {
		return cannedAnswer{}, err
	}
	a, err := getOnce(ctx, &http.Client{Timeout: httpPollTimeout}, url)
	if err != nil {
		return cannedAnswer{}, err
	}
	a.header = a.header.Clone()
	a.header.Del("Date")
	a.header.Del("Content-Length")
	return a, nil
}

// healthLoad is GET url from healthConc clients for healthDur.
func (b *bench) healthLoad(url string, want int) load {
	return load{conc: b.opts.healthConc, dur: b.opts.healthDur, want: want,
		newReq: func(ctx context.Context) (*http.Request, error) {
			return http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		}}
}

// thumbnailFigure times thumbRuns thumbnail jobs of a 3840x2400 JPEG end to end, then
// vipsthumbnail making the same widths, then reads serve's RSS again.
func (b *bench) thumbnailFigure(ctx context.Context, p *proc, url string) error {
	img, err := benchJPEG(thumbWidth, thumbHeight)
	if err != nil {
		return err
	}
	b.logf("thumbnails: %d × %dx%d JPEG (%.1f MB) → %s", b.opts.thumbRuns, thumbWidth, thumbHeight, float64(len(img))/1e6, thumbSizes)
	var e2e, inWorker time.Duration
	for range b.opts.thumbRuns {
		t, w, err := thumbnailJob(ctx, url, img)
		if err != nil {
			return err
		}
		e2e += t
		inWorker += w
	}
	runs := time.Duration(b.opts.thumbRuns)
	vips, err := b.vipsThumbnails(ctx, img, b.opts.thumbRuns)
	what := fmt.Sprintf("thumbnails %dx%d JPEG → %s, upload to completed, mean of %d", thumbWidth, thumbHeight, thumbSizes, b.opts.thumbRuns)
	switch {
	case errors.Is(err, errNoVips):
		b.rep.add(row{figure: what, unit: "ms", ss: ms(e2e / runs), note: "vipsthumbnail not installed; skipped"})
	case err != nil:
		b.rep.add(row{figure: what, unit: "ms", ss: ms(e2e / runs), note: "vipsthumbnail failed: " + err.Error()})
	default:
		b.rep.add(row{figure: what, unit: "ms", ss: ms(e2e / runs), base: ms(vips), better: lower, baseline: "vips"})
	}
	b.rep.add(row{figure: "thumbnails: job created_at → completed_at (queue wait + work)", unit: "ms", ss: ms(inWorker / runs)})
	return b.addRSS(p, "RSS after the thumbnails")
}

// --- units ---

// fmtRatios lists rs as "0.97x, 1.02x".
func fmtRatios(rs []float64) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = fmt.Sprintf("%.2fx", r)
	}
	return strings.Join(parts, ", ")
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
func mb(n int64) float64         { return float64(n) / (1 << 20) }

// count formats n with thousands separators: 20,000.
func count(n int) string {
	s := strconv.Itoa(n)
	var out []byte
	for i, c := range []byte(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, c)
	}
	return string(out)
}

// sortedDrains returns ds ordered by job count.
func sortedDrains(ds []drain) []drain {
	ds = slices.Clone(ds)
	slices.SortFunc(ds, func(a, b drain) int { return a.n - b.n })
	return ds
}

// baselineClient is the baselines' Redis client: go-redis's defaults but for RESP2,
// which shoestring speaks (storage.OpenRedis), so that a ratio measures what shoestring
// does, not a client option (RESP3 costs a syscall per command).
func baselineClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Protocol: 2})
}
