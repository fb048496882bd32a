// Command bench measures shoestring against bare net/http and asynq doing the same
// work, side by side in one run, and prints the figures as markdown tables:
//
//	go run ./bench                 # the default counts, about 3 minutes on 2 cores
//	go run ./bench -quick          # smaller counts, about a minute
//	go run ./bench -only drain     # some figures: enqueue, drain, scaling, serve
//
// Each baseline runs as a process of its own (this program re-executed as `bench
// baseline KIND`), as shoestring does, and every figure reports the CPU time the
// server or worker and redis-server used per request or job beside the rate.
//
// It needs redis-server on PATH and starts its own on a free 127.0.0.1 port (never
// 6379), builds the shoestring binary from this module, and stops every process it
// started when it ends, on errors and Ctrl-C too. vipsthumbnail (Debian package
// libvips-tools), when installed, is the baseline of the thumbnail figure.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/config"
)

const modulePath = "github.com/shoestring-go/shoestring"

// buildTimeout bounds go build of shoestring (a cold build cache takes a minute).
const buildTimeout = 5 * time.Minute

func main() {
	if len(os.Args) > 1 && os.Args[1] == "baseline" {
		if err := runBaseline(os.Args[2:], os.Stderr); err != nil {
			fmt.Fprintf(os.Stderr, "bench: %v\n", err)
			os.Exit(1)
		}
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

// options are the sizes of the figures.
type options struct {
	enqueueN   int             // POST /api/v1/jobs requests measured
	warmup     int             // requests sent before measuring
	drainN     int             // jobs drained, shoestring vs asynq
	scaleN     []int           // jobs drained by shoestring, to see the cost per job
	healthConc int             // concurrent connections on /health
	healthDur  time.Duration   // how long /health is loaded
	idleWait   time.Duration   // how long serve idles before its RSS is read
	thumbRuns  int             // thumbnail jobs averaged
	rounds     int             // turns shoestring and its baseline take under HTTP load
	drainRuns  int             // drains of each size, of which the median is reported
	only       map[string]bool // the figures to run (see figureNames); nil: all
}

var (
	defaultOptions = options{enqueueN: 20_000, warmup: 1_000, drainN: 20_000, scaleN: []int{1_000, 10_000, 100_000},
		healthConc: 50, healthDur: 5 * time.Second, idleWait: 10 * time.Second, thumbRuns: 5, rounds: 5, drainRuns: 3}
	quickOptions = options{enqueueN: 2_000, warmup: 200, drainN: 2_000, scaleN: []int{1_000, 3_000, 10_000},
		healthConc: 50, healthDur: 2 * time.Second, idleWait: 3 * time.Second, thumbRuns: 2, rounds: 2, drainRuns: 1}
)

// run is the whole program: it prints the header and the tables to stdout, progress
// to stderr, and returns an error when a figure could not be measured.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quick := fs.Bool("quick", false, "smaller counts: under a minute")
	keep := fs.Bool("keep", false, "keep the temp dir with the processes' logs")
	only := fs.String("only", "", "comma-separated figures to run (enqueue, drain, scaling, serve); all when empty")
	if err := fs.Parse(args[1:]); errors.Is(err, flag.ErrHelp) {
		return nil
	} else if err != nil {
		return err
	}
	opts := defaultOptions
	if *quick {
		opts = quickOptions
	}
	if *only != "" {
		opts.only = map[string]bool{}
		for name := range strings.SplitSeq(*only, ",") {
			name = strings.TrimSpace(name)
			if !slices.Contains(figureNames, name) {
				return fmt.Errorf("-only: no figure %q (have %s)", name, strings.Join(figureNames, ", "))
			}
			opts.only[name] = true
		}
	}
	started := time.Now()
	printHeader(stdout, args[1:])

	dir, err := os.MkdirTemp("", "shoestring-bench-")
	if err != nil {
		return fmt.Errorf("make temp dir: %w", err)
	}
	if *keep {
		fmt.Fprintf(stderr, "logs kept in %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	ps := newProcs(dir)
	// Whatever happens below, a panic in this goroutine included, nothing started
	// here outlives the bench (Pdeathsig covers a crash elsewhere).
	defer func() {
		if err := ps.stopAll(); err != nil {
			fmt.Fprintf(stderr, "bench: stopping processes: %v\n", err)
		}
	}()

	b, err := setup(ctx, opts, dir, ps, stderr)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "- redis: redis-server %s on %s (the bench's own, no persistence, flushed between figures)\n", b.redis.version, b.redis.addr)
	fmt.Fprintf(stdout, "- shoestring: %s\n\n", b.version)

	rep := b.runFigures(ctx)
	rep.print(stdout)
	fmt.Fprintf(stdout, "\nwhole run: %.0f s; load average at the end: %s\n", time.Since(started).Seconds(), loadAvg())
	return rep.err()
}

// setup builds shoestring, starts redis-server and returns the bench ready to run.
func setup(ctx context.Context, opts options, dir string, ps *procs, progress io.Writer) (*bench, error) {
	b := &bench{opts: opts, dir: dir, ps: ps, progress: progress, started: time.Now()}
	redisBin, err := findRedisServer() // before the build: fail fast
	if err != nil {
		return nil, err
	}
	root, err := moduleRoot(ctx)
	if err != nil {
		return nil, err
	}
	b.logf("building shoestring in %s", root)
	if b.bin, err = buildShoestring(ctx, ps, root, dir); err != nil {
		return nil, err
	}
	if out, err := exec.CommandContext(ctx, b.bin, "version").Output(); err == nil {
		b.version = strings.TrimSpace(string(out)) + treeState(ctx, root)
	}
	// shoestring's defaults, for what the bench writes itself (job records) and the
	// queues the bare asynq server serves.
	if b.cfg, err = config.Load(func(string) string { return "" }); err != nil {
		return nil, fmt.Errorf("shoestring's default config: %w", err)
	}
	if b.redis, err = startRedis(ctx, ps, redisBin, dir); err != nil {
		return nil, err
	}
	b.inspector = asynq.NewInspectorFromRedisClient(b.redis.client)
	return b, nil
}

func printHeader(w io.Writer, args []string) {
	fmt.Fprintln(w, "# shoestring bench")
	fmt.Fprintln(w)
	fmt.Fprintf(w, "- machine: %d CPUs (nproc), %s, %s/%s\n", runtime.NumCPU(), cpuModel(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(w, "- Go: %s\n", runtime.Version())
	fmt.Fprintf(w, "- date: %s\n", time.Now().UTC().Format("2006-01-02 15:04:05 MST"))
	fmt.Fprintf(w, "- command: %s\n", strings.Join(append([]string{"go run ./bench"}, args...), " "))
	fmt.Fprintf(w, "- load average at the start (1, 5, 15 min): %s (other processes on the machine skew every figure)\n", loadAvg())
}

// moduleRoot returns the directory of shoestring's go.mod: go env GOMOD, or the
// nearest go.mod above the working directory.
func moduleRoot(ctx context.Context) (string, error) {
	var gomod string
	if out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output(); err == nil {
		gomod = strings.TrimSpace(string(out))
	}
	if gomod == "" || gomod == os.DevNull {
		dir, err := os.Getwd()
		if err != nil {
			return "", fmt.Errorf("find the module root: %w", err)
		}
		for gomod = filepath.Join(dir, "go.mod"); !fileExists(gomod); gomod = filepath.Join(dir, "go.mod") {
			parent := filepath.Dir(dir)
			if parent == dir {
				return "", errors.New("find the module root: no go.mod here or above; run from the shoestring repository")
			}
			dir = parent
		}
	}
	if mod := modulePathOf(gomod); mod != modulePath {
		return "", fmt.Errorf("find the module root: %s is module %q, not %s; run from the shoestring repository", gomod, mod, modulePath)
	}
	return filepath.Dir(gomod), nil
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// modulePathOf returns the module path a go.mod declares, or "".
func modulePathOf(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if mod, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(mod), `"`)
		}
	}
	return ""
}

// buildShoestring builds the module's main package into dir and returns its path.
// go build runs as the bench's other processes do, so it dies with the bench.
func buildShoestring(ctx context.Context, ps *procs, root, dir string) (string, error) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("build shoestring: %w", err)
	}
	bin := filepath.Join(dir, "shoestring")
	if err := ps.run(ctx, "go-build", gobin, []string{"build", "-o", bin, "."}, root, buildTimeout); err != nil {
		return "", fmt.Errorf("build shoestring: %w", err)
	}
	return bin, nil
}

// treeState says which commit the tree is at, and whether it has changes, when git
// can tell; "" otherwise.
func treeState(ctx context.Context, root string) string {
	head, err := exec.CommandContext(ctx, "git", "-C", root, "rev-parse", "--short", "HEAD").Output()
	if err != nil {
		return ""
	}
	s := ", tree at " + strings.TrimSpace(string(head))
	if st, err := exec.CommandContext(ctx, "git", "-C", root, "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(st) > 0 {
		s += " with uncommitted changes"
	}
	return s
}
