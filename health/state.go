package health

import "sync/atomic"

// Readiness states of an instance, after Azure's role model: it starts Starting, turns
// Ready when it can take work, may be set Busy (alive but not to be sent traffic), and
// ends Draining when it is shutting down. Only Ready answers 200 on the readiness route.
const (
	Starting int32 = iota
	Ready
	Busy
	Draining
)

var stateNames = [...]string{"starting", "ready", "busy", "draining"}

// State is the instance's readiness state. Safe for concurrent use.
type State struct{ v atomic.Int32 }

// Set changes the state, except that Draining is final.
func (s *State) Set(v int32) {
	for {
		old := s.v.Load()
		if old == Draining || s.v.CompareAndSwap(old, v) {
			return
		}
	}
}

// Get returns the current state.
func (s *State) Get() int32 { return s.v.Load() }

// String names the current state.
func (s *State) String() string { return stateNames[s.v.Load()] }

// Transition changes the state from from to to, and reports whether it did: it does
// nothing when the state is no longer from.
func (s *State) Transition(from, to int32) bool { return s.v.CompareAndSwap(from, to) }
