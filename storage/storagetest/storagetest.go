// Package storagetest starts a Redis server owned by one test, so that tests are hermetic,
// can run in parallel, and can stop, kill and restart Redis for fault tests. It never
// touches the machine's shared Redis on port 6379.
package storagetest

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// EnvRequireRedisServer is the variable (.ci/run sets it to 1) that turns "redis-server not
// installed" skips and the miniredis fallback into test failures.
const EnvRequireRedisServer = "SHOESTRING_REQUIRE_REDIS_SERVER"

const (
	// readyTimeout bounds how long one start waits for the server to answer PING.
	readyTimeout = 10 * time.Second
	// restartTimeout bounds how long Start keeps retrying the same port, which may still
	// be held by a connection or by another process for a moment.
	restartTimeout = 10 * time.Second
	// stopGrace is how long a server gets to exit after SIGTERM before it is killed.
	stopGrace = 5 * time.Second
	// reapTimeout bounds the wait for the exit of a process sent SIGKILL.
	reapTimeout = 10 * time.Second
	// startAttempts is how many free ports a first start tries before giving up.
	startAttempts = 5
	// probeTimeout bounds one readiness probe: connect, PING and INFO.
	probeTimeout = 250 * time.Millisecond
	// pollInterval is the pause between two readiness probes.
	pollInterval = 20 * time.Millisecond
	// retryBackoff is the pause between two restart attempts on the same port.
	retryBackoff = 100 * time.Millisecond
	// logTailLines is how many lines of the server log a startup failure shows.
	logTailLines = 20
)

// redisServerDirs are searched, after PATH, for redis-server: Debian installs it in
// /usr/bin, and /usr/sbin is not on every user's PATH.
var redisServerDirs = []string{"/usr/sbin", "/usr/bin"}

// errExitedEarly reports that redis-server exited before it answered PING, usually because
// its port was taken between picking it and binding it.
var errExitedEarly = errors.New("redis-server exited before answering PING")

// Redis is a Redis server owned by one test: a redis-server child process, or an
// in-process miniredis when redis-server is not installed (see StartRedis). Its methods are
// safe for concurrent use; Stop, Kill and Start run one at a time. Methods that take a
// testing.TB may call tb.Fatal, so call them from the test's goroutine.
type Redis struct {
	addr string               // "127.0.0.1:PORT"; fixed for the life of the Redis
	mr   *miniredis.Miniredis // the fallback server; nil for a real redis-server

	// Set once by start; the same on every restart.
	bin     string
	dir     string
	logPath string
	port    int

	// args, when set, replaces the default command line after the port, bind, dir and
	// logfile options (a sentinel's config file and --sentinel, a replica's --replicaof).
	args func() []string

	mu   sync.Mutex // held for the whole of Stop, Kill, Start and the cleanup
	proc *process   // guarded by mu; nil while the server is stopped
}

// process is one run of redis-server. The goroutine started by launch is the only caller of
// cmd.Wait; it stores the result in err and then closes done.
type process struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // cmd.Wait's result; read it only after done is closed
}

// StartRedis starts `redis-server` (found on PATH, or in /usr/sbin, /usr/bin) on 127.0.0.1 at
// a free port, with its --dir in tb.TempDir(), appendonly yes (appendfsync everysec),
// save "" and its log in redis.log in that dir. It waits (polling, deadline 10 s) until the
// server answers PING and registers tb.Cleanup to stop it (SIGTERM, then SIGKILL after 5 s)
// and reap it. If the port is taken before redis-server binds it, it retries on a new port
// a few times; a failure to start calls tb.Fatalf with the last lines of the log.
//
// When redis-server is not installed it logs that and falls back to an in-process miniredis
// whose TTLs follow the wall clock; but if os.Getenv(EnvRequireRedisServer) is "1" it calls
// tb.Fatalf instead. Tests that stop, kill or restart the server use StartRealRedis.
//
// StartRedis is safe to call from parallel tests: every call gets its own port and dir.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	return start(tb, findRedisServer(), os.Getenv(EnvRequireRedisServer) == "1", false)
}

// StartRealRedis is StartRedis for tests that must stop, kill or restart the server: when
// redis-server is not installed it calls tb.Skip, or tb.Fatalf when EnvRequireRedisServer
// is "1". It never falls back to miniredis.
func StartRealRedis(tb testing.TB) *Redis {
	tb.Helper()
	return start(tb, findRedisServer(), os.Getenv(EnvRequireRedisServer) == "1", true)
}

// findRedisServer returns the path of redis-server, or "" when it is not installed.
func findRedisServer() string {
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	for _, dir := range redisServerDirs {
		if p, err := exec.LookPath(filepath.Join(dir, "redis-server")); err == nil {
			return p
		}
	}
	return ""
}

// start is StartRedis (mustBeReal false) and StartRealRedis (mustBeReal true) with the
// redis-server path and the EnvRequireRedisServer setting as parameters, so that tests can
// exercise the fallback on a machine that has redis-server. A bin that is "" or not an
// executable file counts as "not installed".
func start(tb testing.TB, bin string, requireReal, mustBeReal bool) *Redis {
	tb.Helper()
	return startArgs(tb, bin, requireReal, mustBeReal, nil)
}

// startArgs is start with the command line args gives (see Redis.args); nil: the
// default one.
func startArgs(tb testing.TB, bin string, requireReal, mustBeReal bool, args func(r *Redis) []string) *Redis {
	tb.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		switch {
		case requireReal:
			tb.Fatalf("storagetest: redis-server not found; install the Debian package redis-server (%s=1)", EnvRequireRedisServer)
		case mustBeReal:
			tb.Skip("storagetest: needs redis-server (apt-get install redis-server)")
		}
		return startMiniredis(tb)
	}

	// TempDir before Cleanup: cleanups run last-registered first, so the server is
	// stopped before its dir is removed.
	dir := tb.TempDir()
	r := &Redis{bin: path, dir: dir, logPath: filepath.Join(dir, "redis.log")}
	if args != nil {
		r.args = func() []string { return args(r) }
	}
	tb.Cleanup(func() { r.cleanup(tb) })

	r.mu.Lock()
	defer r.mu.Unlock()
	var lastErr error
	for range startAttempts {
		port, err := freePort()
		if err != nil {
			tb.Fatalf("storagetest: %v", err)
		}
		r.port = port
		r.addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		lastErr = r.launchLocked(time.Now().Add(readyTimeout))
		if lastErr == nil {
			return r
		}
		if !errors.Is(lastErr, errExitedEarly) {
			break
		}
	}
	tb.Fatalf("storagetest: start redis-server: %v\nlast lines of %s:\n%s", lastErr, r.logPath, logTail(r.logPath, logTailLines))
	return nil
}

// startMiniredis starts the in-process fallback. ClockTTL makes its TTLs run down with the
// wall clock, as they do in redis-server; by default miniredis only expires keys on
// FastForward.
func startMiniredis(tb testing.TB) *Redis {
	tb.Helper()
	mr := miniredis.NewMiniRedis()
	mr.ClockTTL(true)
	if err := mr.StartAddr("127.0.0.1:0"); err != nil {
		tb.Fatalf("storagetest: start miniredis: %v", err)
	}
	r := &Redis{addr: mr.Addr(), mr: mr}
	tb.Cleanup(mr.Close)
	tb.Logf("storagetest: redis-server not found; using in-process miniredis at %s (set %s=1 to fail instead)", r.addr, EnvRequireRedisServer)
	return r
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago. Another process may
// take it before redis-server binds it; callers retry with a new port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		return 0, fmt.Errorf("pick a free port: %w", err)
	}
	return port, nil
}

// Addr returns the server's address, "127.0.0.1:PORT". It stays the same across Stop and
// Start.
func (r *Redis) Addr() string { return r.addr }

// URL returns the server's address as a Redis URL, "redis://127.0.0.1:PORT/0".
func (r *Redis) URL() string { return "redis://" + r.addr + "/0" }

// Real reports whether the server is a real redis-server, not the miniredis fallback.
func (r *Redis) Real() bool { return r.mr == nil }

// Client returns a new go-redis client for the server, closed in tb.Cleanup (before the
// server is stopped, when Client was called after StartRedis).
func (r *Redis) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.addr})
	tb.Cleanup(func() {
		if err := c.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			tb.Errorf("storagetest: close redis client: %v", err)
		}
	})
	return c
}

// Stop stops the server gracefully (SIGTERM, which redis-server treats as SHUTDOWN) and
// waits for it to exit, sending SIGKILL if it has not exited after 5 s. The data stays in
// the AOF in the server's dir for Start. Stop does nothing if the server is stopped, and
// calls tb.Fatalf on the miniredis fallback ("needs a real redis-server").
func (r *Redis) Stop(tb testing.TB) {
	tb.Helper()
	r.requireReal(tb, "Stop")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.stopLocked(tb, true); err != nil {
		tb.Fatalf("storagetest: Stop: %v", err)
	}
}

// Kill sends SIGKILL to the server and waits for it to exit, as a crash would: writes not
// yet fsynced to the AOF (appendfsync everysec) may be lost. Kill does nothing if the server
// is stopped, and calls tb.Fatalf on the miniredis fallback ("needs a real redis-server").
func (r *Redis) Kill(tb testing.TB) {
	tb.Helper()
	r.requireReal(tb, "Kill")
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.stopLocked(tb, false); err != nil {
		tb.Fatalf("storagetest: Kill: %v", err)
	}
}

// Start starts a stopped or killed server again on the same port and dir, so it loads the
// AOF, and waits until it answers PING. While the port is still taken (a connection or
// another process holding it) it retries for up to 10 s, then calls tb.Fatalf with the last
// lines of the log. Start calls tb.Fatalf if the server is running, and on the miniredis
// fallback ("needs a real redis-server").
func (r *Redis) Start(tb testing.TB) {
	tb.Helper()
	r.requireReal(tb, "Start")
	r.mu.Lock()
	defer r.mu.Unlock()
	if p := r.proc; p != nil {
		select {
		case <-p.done:
			// It crashed on its own; a restart is what the test wants.
			tb.Logf("storagetest: redis-server at %s had exited: %v", r.addr, p.err)
			r.proc = nil
		default:
			tb.Fatalf("storagetest: Start: redis-server at %s is already running", r.addr)
		}
	}
	deadline := time.Now().Add(restartTimeout)
	for {
		err := r.launchLocked(deadline)
		if err == nil {
			return
		}
		if !errors.Is(err, errExitedEarly) || time.Now().After(deadline) {
			tb.Fatalf("storagetest: restart redis-server at %s: %v\nlast lines of %s:\n%s", r.addr, err, r.logPath, logTail(r.logPath, logTailLines))
		}
		// A pause between attempts, so a port held for seconds costs a few dozen
		// processes rather than thousands.
		time.Sleep(retryBackoff)
	}
}

func (r *Redis) requireReal(tb testing.TB, op string) {
	tb.Helper()
	if r.mr != nil {
		tb.Fatalf("storagetest: %s needs a real redis-server, but this is the in-process miniredis fallback; use StartRealRedis", op)
	}
}

// cleanup stops the server at the end of the test, reporting failures with tb.Errorf.
func (r *Redis) cleanup(tb testing.TB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.stopLocked(tb, true); err != nil {
		tb.Errorf("storagetest: cleanup: %v", err)
	}
}

// stopLocked ends the running server, if any: with SIGTERM and a 5 s grace when graceful,
// else with SIGKILL at once. It returns an error only when the process could not be reaped.
func (r *Redis) stopLocked(tb testing.TB, graceful bool) error {
	p := r.proc
	if p == nil {
		return nil
	}
	r.proc = nil
	select {
	case <-p.done:
		tb.Logf("storagetest: redis-server at %s had already exited: %v", r.addr, p.err)
		return nil
	default:
	}
	if graceful {
		if err := p.cmd.Process.Signal(sigterm); err != nil && !errors.Is(err, os.ErrProcessDone) {
			tb.Logf("storagetest: SIGTERM redis-server at %s: %v", r.addr, err)
		}
		select {
		case <-p.done:
			return nil
		case <-time.After(stopGrace):
			tb.Logf("storagetest: redis-server at %s still running %v after SIGTERM; sending SIGKILL", r.addr, stopGrace)
		}
	}
	return p.kill()
}

// kill sends SIGKILL to the process group (which holds any AOF-rewrite child, too) and
// waits for the process to be reaped.
func (p *process) kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	if err := killGroup(p.cmd); err != nil {
		return fmt.Errorf("SIGKILL redis-server (pid %d): %w", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(reapTimeout):
		return fmt.Errorf("redis-server (pid %d) still running %v after SIGKILL", p.cmd.Process.Pid, reapTimeout)
	}
}

// launchLocked starts redis-server on r.port and waits until it answers PING or deadline
// passes. On success r.proc is the new process. An error wrapping errExitedEarly means the
// process has exited (usually it could not bind the port); on any other error the process
// has been killed and reaped.
func (r *Redis) launchLocked(deadline time.Time) error {
	logf, err := os.OpenFile(r.logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("open log: %w", err)
	}
	args := []string{"--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no"}
	if r.args != nil {
		args = r.args()
	}
	var first []string
	if len(args) > 0 && !strings.HasPrefix(args[0], "--") {
		first, args = args[:1], args[1:] // a config file comes first
	}
	cmd := exec.Command(r.bin, append(append(first,
		"--port", strconv.Itoa(r.port),
		"--bind", "127.0.0.1",
		"--dir", r.dir,
		"--logfile", r.logPath,
	), args...)...)
	cmd.Dir = r.dir
	// What redis-server prints before it opens its logfile (a bad option, say) lands in
	// the same file; both writers append.
	cmd.Stdout = logf
	cmd.Stderr = logf
	setProcAttr(cmd)
	err = startCmd(cmd)
	// The child has its own copy of the descriptor.
	logf.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", r.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()

	if err := waitReady(p, r.addr, deadline); err != nil {
		if errors.Is(err, errExitedEarly) {
			return err
		}
		if kerr := p.kill(); kerr != nil {
			return fmt.Errorf("%w; %v", err, kerr)
		}
		return err
	}
	r.proc = p
	return nil
}

// waitReady polls addr until the server there answers PING and is p (another test's server
// may have taken the port), p exits (errExitedEarly), or deadline passes.
func waitReady(p *process, addr string, deadline time.Time) error {
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w (%v)", errExitedEarly, p.err)
		default:
		}
		err := probe(addr, p.cmd.Process.Pid)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server (pid %d) not answering PING at %s by the deadline: %w", p.cmd.Process.Pid, addr, err)
		}
		select {
		case <-p.done:
		case <-time.After(pollInterval):
		}
	}
}

// probe returns nil when the server at addr answers PING with PONG (not LOADING) and
// INFO server shows process_id pid.
func probe(addr string, pid int) error {
	// Short, because a process that holds the port without answering would otherwise
	// stall every retry; a probe that times out is simply repeated.
	conn, err := net.DialTimeout("tcp", addr, probeTimeout)
	if err != nil {
		return err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(probeTimeout)); err != nil {
		return err
	}
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return err
	}
	br := bufio.NewReader(conn)
	line, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read PING reply: %w", err)
	}
	if line != "+PONG\r\n" {
		return fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	line, err = br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("read INFO reply: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return fmt.Errorf("INFO answered %q", strings.TrimSpace(line))
	}
	info := make([]byte, n+2)
	if _, err := io.ReadFull(br, info); err != nil {
		return fmt.Errorf("read INFO reply: %w", err)
	}
	if !strings.Contains("\r\n"+string(info), "\r\nprocess_id:"+strconv.Itoa(pid)+"\r\n") {
		return fmt.Errorf("the server at %s is not redis-server pid %d", addr, pid)
	}
	return nil
}

// logTail returns the last n lines of the file at path, or a note saying why it cannot.
func logTail(path string, n int) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
