package worker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// Exit is how a child process ended.
type Exit struct {
	PID    int
	Code   int    // exit code; -1 when killed by a signal
	Signal string // the signal that killed it, "" when it exited by itself
	Err    error  // error from Wait other than a non-zero exit, if any
}

// Success reports whether the child exited by itself with code 0.
func (e Exit) Success() bool { return e.Err == nil && e.Code == 0 && e.Signal == "" }

func (e Exit) String() string {
	switch {
	case e.Err != nil:
		return e.Err.Error()
	case e.Signal != "":
		return "killed by signal " + e.Signal
	default:
		return fmt.Sprintf("exit code %d", e.Code)
	}
}

// orDiscard is l, or a logger that writes nothing when l is nil: the package's
// loggers are optional.
func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}

// DefaultStopTimeout is Supervisor.StopTimeout's default: longer than a worker child
// with the default DefaultShutdownTimeout takes to stop (it returns within about 1.5 s
// more), and as long as Heroku waits between SIGTERM and SIGKILL.
const DefaultStopTimeout = 30 * time.Second

// Supervisor runs one child process (the combined-mode worker) and reports its end.
//
// The child is started in its own process group, so a terminal's Ctrl-C reaches only the
// parent, which then stops the child in order. On Linux the child gets SIGKILL when the
// thread that started it dies (Pdeathsig): the goroutine that starts the child locks its
// OS thread and keeps it until the child has exited, because Go may otherwise retire that
// thread and kill a healthy child (Go issue 27505). The child also watches its parent pid
// itself (see WatchParent), which covers other systems.
//
// Start once; Stop any number of times from any goroutine.
type Supervisor struct {
	Path   string    // executable, usually os.Executable()
	Args   []string  // arguments after the program name, e.g. ["worker"]
	Env    []string  // the child's whole environment
	Stdout io.Writer // where the child's output goes; the platform's log stream
	Stderr io.Writer
	// StopTimeout is how long Stop waits after SIGTERM before SIGKILL; 0 means
	// DefaultStopTimeout.
	StopTimeout time.Duration
	// Logger gets the child's start and end; nil: no lines.
	Logger *slog.Logger
	// WorkerID is the worker id the child was told to use (in Env), so its heartbeat
	// and in-flight tasks can be found.
	WorkerID string

	pid    int
	exited chan Exit // buffered 1; receives the one Exit
	done   chan struct{}
	exit   Exit // written before done is closed
	once   sync.Once
}

// Start starts the child and returns once it is running (its pid known). Errors: the
// executable cannot be started. Start fills the zero Logger and StopTimeout with their
// defaults, in s.
func (s *Supervisor) Start(ctx context.Context) error {
	s.Logger = orDiscard(s.Logger)
	if s.StopTimeout <= 0 {
		s.StopTimeout = DefaultStopTimeout
	}
	s.exited = make(chan Exit, 1)
	s.done = make(chan struct{})
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when this thread exits, so hold it for the child's whole life.
		runtime.LockOSThread()
		cmd := exec.Command(s.Path, s.Args...)
		cmd.Env = s.Env
		cmd.Stdout, cmd.Stderr = s.Stdout, s.Stderr
		cmd.SysProcAttr = childProcAttr()
		if err := cmd.Start(); err != nil {
			runtime.UnlockOSThread()
			started <- err
			return
		}
		s.pid = cmd.Process.Pid
		started <- nil
		err := cmd.Wait()
		s.exit = exitOf(s.pid, cmd.ProcessState, err)
		close(s.done)
		s.exited <- s.exit
		// The thread stays locked: it is retired when this goroutine ends, which is
		// harmless now that the child is gone.
	}()
	if err := <-started; err != nil {
		s.done, s.exited = nil, nil // Stop has nothing to stop
		return fmt.Errorf("start worker child %s: %w", s.Path, err)
	}
	s.Logger.InfoContext(ctx, "worker child started", "child_pid", s.pid, "worker_id", s.WorkerID)
	return nil
}

// PID is the child's process id; valid after Start.
func (s *Supervisor) PID() int { return s.pid }

// Exited delivers the child's Exit once, when it ends for any reason.
func (s *Supervisor) Exited() <-chan Exit { return s.exited }

// Stop asks the child's process group to stop (SIGTERM), waits up to StopTimeout, then
// kills the group (SIGKILL), and returns how the child ended. It blocks until the child
// is gone; safe if the child already exited or never started, and to call more than
// once.
func (s *Supervisor) Stop() Exit {
	if s.done == nil {
		return Exit{}
	}
	s.once.Do(func() {
		select {
		case <-s.done:
			return
		default:
		}
		_ = syscall.Kill(-s.pid, syscall.SIGTERM)
		t := time.NewTimer(s.StopTimeout)
		defer t.Stop()
		select {
		case <-s.done:
		case <-t.C:
			s.Logger.Warn("worker child did not stop in time; killing it", "child_pid", s.pid, "timeout", s.StopTimeout)
			_ = syscall.Kill(-s.pid, syscall.SIGKILL)
			<-s.done
		}
	})
	<-s.done
	return s.exit
}

func exitOf(pid int, ps *os.ProcessState, err error) Exit {
	e := Exit{PID: pid}
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		e.Err = err
		e.Code = -1
		return e
	}
	e.Code = ps.ExitCode()
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal().String()
	}
	return e
}

// WatchParent calls onGone once, soon after the process's parent changes from ppid
// (the parent died and the child was re-parented). It polls every interval (0 or less:
// every second) until ctx is done. It is the child's side of the supervision
// contract, for when Pdeathsig did not fire.
func WatchParent(ctx context.Context, ppid int, interval time.Duration, onGone func()) {
	if interval <= 0 {
		interval = time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if os.Getppid() != ppid {
				onGone()
				return
			}
		}
	}
}
