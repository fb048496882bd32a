package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// reapTimeout bounds the wait for a process to be reaped after SIGKILL.
const reapTimeout = 5 * time.Second

// proc is one process the bench started (redis-server, a shoestring). Its stdout and
// stderr go to a log file whose last lines explain a failure.
type proc struct {
	name    string
	cmd     *exec.Cmd
	logPath string
	grace   time.Duration // how long stop waits after SIGTERM before SIGKILL

	done chan struct{} // closed when cmd.Wait has returned; err is set before
	err  error
	stop sync.Once
}

// procs is every process the bench started, so that run stops whatever is left on any
// way out, an error or a panic in its goroutine included. Safe for concurrent use.
type procs struct {
	dir   string // where the log files go
	spawn func(*exec.Cmd) error

	mu   sync.Mutex // guards list
	list []*proc
}

func newProcs(dir string) *procs {
	return &procs{dir: dir, spawn: newSpawner()}
}

// start starts bin with args and env (the whole environment) in dir. grace is how
// long a stop waits for the process to exit after SIGTERM.
func (ps *procs) start(name, bin string, args, env []string, dir string, grace time.Duration) (*proc, error) {
	ps.mu.Lock()
	logPath := filepath.Join(ps.dir, fmt.Sprintf("%02d-%s.log", len(ps.list)+1, name))
	ps.mu.Unlock()
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	defer logf.Close() // the child has its own copy
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Dir = dir
	cmd.Stdout = logf
	cmd.Stderr = logf
	setProcAttr(cmd)
	if err := ps.spawn(cmd); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, logPath: logPath, grace: grace, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	ps.mu.Lock()
	ps.list = append(ps.list, p)
	ps.mu.Unlock()
	return p, nil
}

// run starts bin with args in dir, in the bench's environment, and waits for it to
// exit, for at most timeout. It returns the exit error with the output's last lines.
func (ps *procs) run(ctx context.Context, name, bin string, args []string, dir string, timeout time.Duration) error {
	p, err := ps.start(name, bin, args, os.Environ(), dir, time.Second)
	if err != nil {
		return err
	}
	select {
	case <-p.done:
		return p.exitErr("exited")
	case <-ctx.Done():
		_ = p.Stop() // it was cut short: that is the error
		return fmt.Errorf("%s: %w", name, ctx.Err())
	case <-time.After(timeout):
		_ = p.Stop()
		return fmt.Errorf("%s: still running after %v; stopped", name, timeout)
	}
}

// stopAll stops every process still running, the latest started first (a shoestring
// before the redis-server it uses), and returns what went wrong.
func (ps *procs) stopAll() error {
	ps.mu.Lock()
	list := ps.list
	ps.mu.Unlock()
	var errs []error
	for i := len(list) - 1; i >= 0; i-- {
		errs = append(errs, list[i].Stop())
	}
	return errors.Join(errs...)
}

func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Stop sends SIGTERM and waits up to the grace period for the process to exit, then
// SIGKILLs its process group. It returns the exit error of a process that did not
// exit cleanly after SIGTERM. Safe to call twice; does nothing for a process that had
// exited.
func (p *proc) Stop() error {
	var err error
	p.stop.Do(func() { err = p.terminate() })
	return err
}

func (p *proc) terminate() error {
	if p.exited() {
		return nil // whoever waited on it has reported how it ended
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return p.exitErr("after SIGTERM")
	case <-time.After(p.grace):
	}
	if err := killGroup(p.pid()); err != nil {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return fmt.Errorf("stop %s: still running %v after SIGTERM; killed", p.name, p.grace)
	case <-time.After(reapTimeout):
		return fmt.Errorf("stop %s (pid %d): still running %v after SIGKILL", p.name, p.pid(), reapTimeout)
	}
}

func (p *proc) exitErr(when string) error {
	if p.err == nil {
		return nil
	}
	return fmt.Errorf("%s (pid %d) %s: %w; last lines of %s:\n%s", p.name, p.pid(), when, p.err, p.logPath, p.logTail(30))
}

// logTail returns the last n lines of the process's log.
func (p *proc) logTail(n int) string {
	data, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago (never 6379,
// the usual Redis: the bench keeps off it); callers retry when another process takes
// it first.
func freePort() (int, error) {
	for range 5 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("pick a free port: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		if err := ln.Close(); err != nil {
			return 0, fmt.Errorf("pick a free port: %w", err)
		}
		if port != 6379 {
			return port, nil
		}
	}
	return 0, errors.New("pick a free port: the kernel keeps offering 6379")
}
