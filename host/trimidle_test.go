package host

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// TestTrimWhenIdle: the start-up trim waits while tasks run or end, happens after
// idleTicks quiet ticks, happens at the deadline under endless load, and not at all
// once stopped. Ticks are sent by hand: nothing here depends on the clock.
func TestTrimWhenIdle(t *testing.T) {
	t.Parallel()
	type step struct{ ended, running int64 }
	// run sends a tick for each step in turn, the step's activity read by that tick; it
	// fires the deadline, or cancels, instead of tick number deadlineAt or cancelAt (from
	// 1; 0 for never), and returns the tick at which trim was called (0: never).
	run := func(t *testing.T, steps []step, deadlineAt, cancelAt int) int {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		tick, deadline, next := make(chan time.Time), make(chan time.Time), make(chan step)
		var trims atomic.Int32
		activity := func() (int64, int64) { s := <-next; return s.ended, s.running }
		done := make(chan struct{})
		go func() {
			defer close(done)
			trimWhenIdle(ctx, activity, tick, deadline, func() { trims.Add(1) })
		}()
		for n, s := range steps {
			n++
			switch n {
			case deadlineAt:
				deadline <- time.Now()
				<-done
				return n * int(trims.Load())
			case cancelAt:
				cancel()
				<-done
				return n * int(trims.Load())
			}
			select {
			case tick <- time.Now():
				next <- s
			case <-done:
				return (n - 1) * int(trims.Load())
			}
		}
		cancel()
		<-done
		if trims.Load() > 0 {
			return len(steps)
		}
		return 0
	}
	quiet := func(n int, ended int64) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{ended: ended}
		}
		return s
	}

	// Idle from the start: the first tick sets the baseline, then idleTicks quiet ticks.
	if at := run(t, quiet(10, 0), 0, 0); at != idleTicks+1 {
		t.Errorf("idle worker trimmed after %d ticks, want %d", at, idleTicks+1)
	}
	// Busy, then idle: tasks running or ending reset the count.
	busy := []step{{0, 3}, {2, 3}, {5, 0}, {5, 1}, {6, 0}}
	if at := run(t, append(busy, quiet(10, 6)...), 0, 0); at != len(busy)+idleTicks {
		t.Errorf("trimmed after %d ticks, want %d (idleTicks after the last activity)", at, len(busy)+idleTicks)
	}
	// A long task running, nothing ending: not idle.
	long := make([]step, 10)
	for i := range long {
		long[i] = step{running: 1}
	}
	if at := run(t, long, 0, 0); at != 0 {
		t.Errorf("trimmed at tick %d while a task ran", at)
	}
	// Never idle: the deadline trims.
	endless := make([]step, 20)
	for i := range endless {
		endless[i] = step{ended: int64(i), running: 1}
	}
	if at := run(t, endless, 12, 0); at != 12 {
		t.Errorf("under endless load: trimmed at %d, want at the deadline (12)", at)
	}
	// Stopped before it was idle: no trim.
	if at := run(t, endless, 0, 5); at != 0 {
		t.Errorf("stopped worker trimmed at tick %d", at)
	}
}
