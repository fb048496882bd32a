package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
)

// Which way a figure is better.
const (
	higher = "higher"
	lower  = "lower"
)

// cmdTable is what Redis did for shoestring and for a baseline in one figure (INFO
// commandstats), to be shown per request or job.
type cmdTable struct {
	what, per, baseline string
	ss, base            map[string]cmdStat
	ssN, baseN          int // requests or jobs
}

// row is one figure of the main table.
type row struct {
	figure   string
	unit     string
	ss       float64 // shoestring
	base     float64 // the baseline; 0 when there is none
	baseline string  // which one: a, b, c, vips
	better   string  // higher or lower
	note     string  // shown in place of a missing baseline
}

// report is what the figures measured, what failed, and notes on both.
type report struct {
	rows        []row
	scaling     []drain // shoestring's drains
	bareScaling []drain // baseline (b)'s
	cmds        []cmdTable
	notes       []string
	failures    []string
}

func (r *report) add(rows ...row) { r.rows = append(r.rows, rows...) }
func (r *report) note(s string)   { r.notes = append(r.notes, s) }

func (r *report) fail(figure string, err error) {
	r.failures = append(r.failures, figure+": "+err.Error())
}

// err is nil when every figure was measured.
func (r *report) err() error {
	if len(r.failures) == 0 {
		return nil
	}
	return fmt.Errorf("%d figure(s) not measured; see above", len(r.failures))
}

func (r *report) print(w io.Writer) {
	fmt.Fprintln(w, "## shoestring vs baseline")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| figure | unit | shoestring | baseline | shoestring/baseline | better |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|---|")
	for _, x := range r.rows {
		base, ratio, better := "—", "—", x.better
		switch {
		case x.base > 0:
			base = fmt.Sprintf("%s (%s)", num(x.base), x.baseline)
			ratio = fmt.Sprintf("%.2fx", x.ss/x.base)
		case x.note != "":
			base = x.note
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", x.figure, x.unit, num(x.ss), base, ratio, better)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Baselines, each a process of its own (`bench baseline KIND`, Go's defaults, RESP2 as shoestring) on the same redis-server:")
	fmt.Fprintln(w, "(a) a net/http handler decoding the same JSON body and calling asynq.Client.Enqueue (no job record);")
	fmt.Fprintln(w, "(b) one asynq.Server, concurrency 10, on shoestring's default QUEUES, with a no-op handler;")
	fmt.Fprintln(w, "(c) a net/http handler writing the status, headers and body shoestring's cached /health answered;")
	fmt.Fprintf(w, "(vips) vipsthumbnail, one process per width, Q=%d. HTTP load: closed loop, Go clients with keep-alive in the bench process,\n", thumbQuality)
	fmt.Fprintln(w, "sharing the CPUs with what they measure. A drain is timed from the first task taken until none is pending or active;")
	fmt.Fprintln(w, "a worker's start includes its exec. CPU per request or job: utime + stime of the process (/proc, 10 ms ticks) over the")
	fmt.Fprintln(w, "load or the drain, divided by the requests answered or the jobs drained.")

	r.printScaling(w)
	for _, t := range r.cmds {
		t.print(w)
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintf(w, "- %s\n", n)
		}
	}
	if len(r.failures) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(w, "## not measured")
		fmt.Fprintln(w)
		for _, f := range r.failures {
			fmt.Fprintf(w, "- %s\n", strings.ReplaceAll(f, "\n", "\n    "))
		}
	}
}

func (r *report) printScaling(w io.Writer) {
	if len(r.scaling) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "## drain scaling: `shoestring worker`, WORKER_CONCURRENCY=10, echo jobs, each the median of its runs")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| jobs | prefill (s) | worker start → first task (ms) | drain (s) | µs per job | jobs/s | CPU µs per job of that drain, worker / redis-server |")
	fmt.Fprintln(w, "|--:|--:|--:|--:|--:|--:|--:|")
	line := func(label string, d drain) {
		cpu := "—"
		if d.workerCPU > 0 {
			wk, rd := d.cpuPerJob()
			cpu = num(us(wk)) + " / " + num(us(rd))
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", label, num(d.prefill.Seconds()), num(ms(d.startup)),
			num(d.run.Seconds()), num(us(d.perJob())), num(float64(d.n)/d.run.Seconds()), cpu)
	}
	for _, d := range sortedDrains(r.scaling) {
		line(count(d.n), d)
	}
	for _, d := range sortedDrains(r.bareScaling) {
		line(count(d.n)+" (baseline b)", d)
	}
}

// print tabulates, per request or job, Redis's commands for shoestring and the
// baseline, dearest first: where Redis's share of the cost goes.
func (t cmdTable) print(w io.Writer) {
	if t.ss == nil || t.base == nil || t.ssN == 0 || t.baseN == 0 {
		return
	}
	names := slices.Collect(maps.Keys(t.ss))
	for name := range t.base {
		if _, ok := t.ss[name]; !ok {
			names = append(names, name)
		}
	}
	per := func(m map[string]cmdStat, n int, name string) (calls, usec float64) {
		return float64(m[name].calls) / float64(n), float64(m[name].usec) / float64(n)
	}
	slices.SortFunc(names, func(a, b string) int {
		_, ua := per(t.ss, t.ssN, a)
		_, ub := per(t.ss, t.ssN, b)
		return cmp.Or(cmp.Compare(ub, ua), cmp.Compare(a, b))
	})
	fmt.Fprintln(w)
	fmt.Fprintf(w, "## Redis commands per %s, %s (INFO commandstats; a script's µs include the commands it calls, which are listed too)\n", t.per, t.what)
	fmt.Fprintln(w)
	fmt.Fprintf(w, "| command | shoestring calls | shoestring µs | baseline (%s) calls | baseline (%s) µs |\n", t.baseline, t.baseline)
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|")
	for _, name := range names {
		if name == readsStat {
			continue
		}
		sc, su := per(t.ss, t.ssN, name)
		bc, bu := per(t.base, t.baseN, name)
		if sc < 0.005 && bc < 0.005 {
			continue // the bench's own polling, and rarities
		}
		fmt.Fprintf(w, "| %s | %.2f | %.2f | %.2f | %.2f |\n", name, sc, su, bc, bu)
	}
	sr, _ := per(t.ss, t.ssN, readsStat)
	br, _ := per(t.base, t.baseN, readsStat)
	fmt.Fprintf(w, "| reads from clients (round trips, the bench's polling included) | %.2f | | %.2f | |\n", sr, br)
}

// num formats v with about three significant digits, thousands separated.
func num(v float64) string {
	switch {
	case math.IsNaN(v) || math.IsInf(v, 0):
		return "—"
	case v >= 1000:
		return count(int(math.Round(v)))
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}
