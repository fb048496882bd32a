package health

import "sync/atomic"

// Readiness states of an instance, after Azure's role model: it starts Starting, turns
// Ready when it can take work (in combined mode: its worker child is up), may be set
// Busy by an operator (alive but not to be sent traffic), and ends Draining when it is
// shutting down. Only Ready answers 200 on the readiness route.
const (
	Starting int32 = iota
	Ready
	Busy
	Draining
)

var stateNames = [...]string{"starting", "ready", "busy", "draining"}

// State is the instance's readiness: a phase (Starting, Ready, Draining) that the
// process moves through, and an operator's Busy flag on top of it, so that clearing Busy
// never claims Ready while the worker is still starting. Safe for concurrent use.
type State struct {
	phase atomic.Int32
	busy  atomic.Bool
}

// Set moves to v: Busy sets the operator flag, the others the phase. Draining is final.
func (s *State) Set(v int32) {
	if v == Busy {
		s.busy.Store(true)
		return
	}
	for {
		old := s.phase.Load()
		if old == Draining || s.phase.CompareAndSwap(old, v) {
			return
		}
	}
}

// SetBusy sets or clears the operator's Busy flag; it reports false, changing nothing,
// while draining.
func (s *State) SetBusy(busy bool) bool {
	if s.phase.Load() == Draining {
		return false
	}
	s.busy.Store(busy)
	return true
}

// Get returns the effective state: Draining, else Busy when flagged, else the phase.
func (s *State) Get() int32 {
	p := s.phase.Load()
	if p != Draining && s.busy.Load() {
		return Busy
	}
	return p
}

// String names the effective state.
func (s *State) String() string { return stateNames[s.Get()] }

// Transition moves the phase from from to to (Starting and Ready), and reports whether
// it did: it does nothing when the phase is no longer from.
func (s *State) Transition(from, to int32) bool { return s.phase.CompareAndSwap(from, to) }
