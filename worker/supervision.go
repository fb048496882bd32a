package worker

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/shoestring-go/shoestring/storage"
)

// Exit policies of a Supervision.
const (
	PolicyExit    = "exit"    // the child's death ends the Supervision: the deployable exits
	PolicyRestart = "restart" // the child is restarted in place, within a restart budget
)

// Restart backoff: equal jitter over an exponential base, as in "Exponential Backoff And
// Jitter" (AWS Architecture Blog, 2015): the n-th restart in a window waits d/2 + rand(d/2)
// with d = min(backoffMax, backoffBase * 2^(n-1)).
const (
	backoffBase = 500 * time.Millisecond
	backoffMax  = 30 * time.Second
)

// Supervision keeps the combined-mode worker child running under an exit policy. When
// the child dies it first makes the child's in-flight tasks runnable again (their asynq
// lease would otherwise hold them for 30 s, and the recoverer sweeps once a minute),
// then restarts the child or gives up, per Policy. It also watches the child's
// heartbeat: a child whose heartbeat stops while its process lives is wedged and is
// killed; a child whose watchdog asked for a recycle and is still alive after
// RecycleGrace is killed.
//
// Start once; Stop once or more, from any goroutine.
type Supervision struct {
	// New makes the Supervisor of each (re)start.
	New         func() *Supervisor
	Policy      string
	MaxRestarts int // restarts allowed within Window; one more ends the Supervision
	// Window is the span MaxRestarts counts in; 0 means 5 minutes
	// (WORKER_RESTART_WINDOW's default).
	Window   time.Duration
	Beats    *storage.Heartbeats
	InFlight *storage.InFlight
	Queues   []string // the queues the child serves
	// StaleAfter: heartbeat absent this long (Redis answering) while the child lives:
	// the child is wedged and is killed; 0 means 3 HeartbeatTTLs. RecycleGrace: how
	// long a child that asked for a recycle may take to exit by itself; 0 means
	// DefaultStopTimeout (longer than a worker with the default ShutdownTimeout takes
	// to drain).
	StaleAfter   time.Duration
	RecycleGrace time.Duration
	// OnReady is called when a child's first heartbeat is seen; OnDown as soon as a child
	// died. Both from the Supervision's goroutines, never at the same time.
	OnReady func()
	OnDown  func()
	// OnRestart is called after each restart of the child; OnRecovered with the number
	// of the dead child's tasks put back in their queue (pending or scheduled); OnRecycle
	// with one of the Recycle constants when a child ended for a recycle, its watchdog's
	// or the supervisor's own kill of a wedged child. All optional, called like OnDown.
	OnRestart   func()
	OnRecovered func(n int)
	OnRecycle   func(reason string)
	// Logger gets the child's deaths, restarts and recoveries; nil: no lines.
	Logger *slog.Logger

	done    chan Exit // receives the final Exit when the policy gives up; buffered 1
	stop    chan struct{}
	stopped chan struct{} // closed when the loop has ended
	once    sync.Once
	last    Exit // written by the loop before stopped is closed

	// The current child, for ChildStatus: written by Start and the loop.
	mu        sync.Mutex
	pid       int
	startedAt time.Time
	restarts  int
}

// ChildStatus reports the current worker child: its pid (0 while none runs), when it
// started, and how many times it was restarted since the Supervision started. Safe for
// concurrent use.
func (s *Supervision) ChildStatus() (pid int, started time.Time, restarts int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pid, s.startedAt, s.restarts
}

func (s *Supervision) setChild(pid int, restarted bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pid, s.startedAt = pid, time.Now()
	if restarted {
		s.restarts++
	}
}

// Start starts the first child and returns once it runs. Errors: it cannot be started.
//
// Start fills the zero fields with their defaults, in s.
func (s *Supervision) Start(ctx context.Context) error {
	if s.Window <= 0 {
		s.Window = 5 * time.Minute
	}
	if s.StaleAfter <= 0 {
		s.StaleAfter = 3 * HeartbeatTTL
	}
	if s.RecycleGrace <= 0 {
		s.RecycleGrace = DefaultStopTimeout
	}
	s.Logger = orDiscard(s.Logger)
	s.done = make(chan Exit, 1)
	s.stop = make(chan struct{})
	s.stopped = make(chan struct{})
	sup := s.New()
	if err := sup.Start(ctx); err != nil {
		close(s.stopped)
		return err
	}
	s.setChild(sup.PID(), false)
	go s.loop(ctx, sup)
	return nil
}

// Done delivers the child's Exit when the Supervision gives up on it: under PolicyExit
// at the first unexpected death, under PolicyRestart when the restart budget is spent.
func (s *Supervision) Done() <-chan Exit { return s.done }

// Stop stops the current child gracefully (Supervisor.Stop) and ends the Supervision;
// it returns how the child ended. Safe after Done fired and to call more than once.
func (s *Supervision) Stop() Exit {
	if s.stop == nil {
		return Exit{} // never started
	}
	s.once.Do(func() { close(s.stop) })
	<-s.stopped
	return s.last
}

func (s *Supervision) loop(ctx context.Context, sup *Supervisor) {
	defer close(s.stopped)
	var restarts []time.Time
	for {
		id := sup.WorkerID
		mctx, cancel := context.WithCancel(ctx)
		monitored := make(chan struct{})
		var wedged bool // written by the monitor goroutine before monitored is closed
		go func() {
			defer close(monitored)
			wedged = s.monitor(mctx, sup, id)
		}()
		stopMonitor := func() { cancel(); <-monitored }

		var ex Exit
		select {
		case <-s.stop:
			stopMonitor()
			s.last = sup.Stop()
			return
		case ex = <-sup.Exited():
		}
		stopMonitor()
		// The platform signals every process of the deployable at once; a child that
		// stopped cleanly may have got its SIGTERM first. Give the parent's a moment.
		if ex.Success() {
			select {
			case <-s.stop:
				s.last = ex
				return
			case <-time.After(500 * time.Millisecond):
			}
		}
		s.Logger.Error("worker child exited unexpectedly", "child_pid", ex.PID, "exit_code", ex.Code, "signal", ex.Signal)
		s.setChild(0, false)
		if s.OnDown != nil {
			s.OnDown() // before anything slow: no worker runs now
		}
		s.recoverTasks(id, "worker process died ("+ex.String()+")")
		if wedged {
			s.notifyRecycle(RecycleWedged)
		} else {
			s.takeRecycle(id)
		}

		now := time.Now()
		restarts = append(restarts, now)
		for len(restarts) > 0 && now.Sub(restarts[0]) > s.Window {
			restarts = restarts[1:]
		}
		if s.Policy != PolicyRestart || len(restarts) > s.MaxRestarts {
			if s.Policy == PolicyRestart {
				s.Logger.Error("worker restart budget spent", "restarts", len(restarts)-1, "window", s.Window)
			}
			s.last = ex
			s.done <- ex
			return
		}
		wait := backoff(len(restarts))
		s.Logger.Warn("restarting worker child", "in", wait.Round(time.Millisecond), "restart", len(restarts), "of", s.MaxRestarts, "window", s.Window)
		select {
		case <-s.stop:
			s.last = Exit{} // a requested stop with no child running is a clean one
			return
		case <-time.After(wait):
		}
		sup = s.New()
		if err := sup.Start(ctx); err != nil {
			s.Logger.Error("restart worker child", "err", err)
			s.last = Exit{Err: err, Code: -1}
			s.done <- s.last
			return
		}
		s.setChild(sup.PID(), true)
		if s.OnRestart != nil {
			s.OnRestart()
		}
	}
}

// takeRecycle tells OnRecycle why the dead child recycled itself, if it did.
func (s *Supervision) takeRecycle(id string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reason, err := s.Beats.TakeRecycled(ctx, id)
	if err != nil {
		s.Logger.Warn("read why the worker child recycled", "worker_id", id, "err", err)
		return
	}
	if reason != "" {
		s.notifyRecycle(reason)
	}
}

func (s *Supervision) notifyRecycle(reason string) {
	if s.OnRecycle != nil {
		s.OnRecycle(reason)
	}
}

// backoff is the wait before the n-th restart (n >= 1) of a window.
func backoff(n int) time.Duration {
	d := backoffMax
	if n < 16 {
		d = min(backoffMax, backoffBase<<(n-1))
	}
	return d/2 + rand.N(d/2+1)
}

// recoverTasks requeues what the dead child was running, so it runs again at once.
func (s *Supervision) recoverTasks(id, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rec, err := s.InFlight.Recover(ctx, id, reason)
	if err != nil {
		// Not lost: asynq's lease expiry and recoverer still bring them back, later.
		s.Logger.Error("requeue the dead worker's tasks", "worker_id", id, "err", err)
	}
	// The child is dead for certain: its heartbeat must not count as a live worker
	// (below, and for the worker check) for the rest of its TTL.
	if err := s.Beats.Remove(ctx, id); err != nil {
		s.Logger.Warn("remove the dead worker's heartbeat", "worker_id", id, "err", err)
	}
	// asynq hands a task out before the worker can index it. If no other worker is
	// alive, every task still active in the child's queues was the child's.
	live, err := s.Beats.Live(ctx, time.Now().Add(-HeartbeatTTL))
	if err == nil && !slices.ContainsFunc(live, func(b storage.WorkerBeat) bool { return b.ID != id }) {
		more, err := s.InFlight.RecoverQueues(ctx, s.Queues, id, reason)
		if err != nil {
			s.Logger.Error("requeue the dead worker's unindexed tasks", "err", err)
		}
		rec = append(rec, more...)
	}
	requeued := 0
	for _, r := range rec {
		s.Logger.Warn("task of the dead worker", "task_id", r.ID, "queue", r.Queue, "now", r.State)
		if r.Requeued() {
			requeued++
		}
	}
	if s.OnRecovered != nil && requeued > 0 {
		s.OnRecovered(requeued)
	}
}

// monitor turns the instance Ready on the child's first heartbeat, then kills a child
// that is wedged (no heartbeat while Redis answers) or that asked for a recycle and has
// not exited. It returns when ctx is done or it killed the child, reporting whether it
// killed a wedged one.
func (s *Supervision) monitor(ctx context.Context, sup *Supervisor, id string) (wedged bool) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	ready := false
	lastSeen := time.Now()
	var recycleAsked time.Time
	for {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		b, ok, err := s.Beats.Get(ctx, id)
		now := time.Now()
		if err != nil {
			// Redis trouble says nothing about the child; silence counts only while
			// Redis answers (after an outage the child needs a beat to be seen again).
			lastSeen = now
			continue
		}
		if ok {
			lastSeen = now
			if !ready {
				ready = true
				t.Reset(time.Second)
				if s.OnReady != nil {
					s.OnReady()
				}
			}
			if b.Recycle != "" && recycleAsked.IsZero() {
				recycleAsked = now
			}
		}
		switch {
		case !recycleAsked.IsZero() && now.Sub(recycleAsked) > s.RecycleGrace:
			s.Logger.Error("worker child asked for a recycle but is still running; killing it", "child_pid", sup.PID())
			sup.Kill()
			return false
		case ready && now.Sub(lastSeen) > s.StaleAfter:
			s.Logger.Error("worker child heartbeat stopped while its process lives (wedged); killing it",
				"child_pid", sup.PID(), "silent_for", now.Sub(lastSeen).Round(time.Second))
			sup.Kill()
			return true
		}
	}
}

// Kill sends SIGKILL to the child's process group at once; Exited reports the end.
func (s *Supervisor) Kill() {
	if s.done == nil {
		return
	}
	select {
	case <-s.done:
		return // gone already: its pid may belong to someone else now
	default:
	}
	if s.pid > 0 {
		_ = syscall.Kill(-s.pid, syscall.SIGKILL)
	}
}
