// Package health answers the questions platforms, uptime pingers and people ask of a
// running deployable: is the process alive (liveness), should it get traffic
// (readiness), and how are its parts (the aggregate of named checks).
//
// The statuses and their HTTP mapping follow ASP.NET Core health checks: Healthy and
// Degraded answer 200, Unhealthy 503; the aggregate is the worst status of its checks.
package health

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
)

// Status is a check's verdict. Its zero value is Healthy; higher is worse.
type Status int

// Statuses, from best to worst.
const (
	Healthy Status = iota
	Degraded
	Unhealthy
)

func (s Status) String() string {
	switch s {
	case Healthy:
		return "Healthy"
	case Degraded:
		return "Degraded"
	default:
		return "Unhealthy"
	}
}

// MarshalText encodes a Status as its name.
func (s Status) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes a Status from its name.
func (s *Status) UnmarshalText(b []byte) error {
	switch string(b) {
	case "Healthy":
		*s = Healthy
	case "Degraded":
		*s = Degraded
	case "Unhealthy":
		*s = Unhealthy
	default:
		return fmt.Errorf("unknown health status %q", b)
	}
	return nil
}

// HTTPStatus is the response code for s: 200 for Healthy and Degraded, 503 otherwise.
func (s Status) HTTPStatus() int {
	if s == Unhealthy {
		return 503
	}
	return 200
}

// Result is the outcome of one check run.
type Result struct {
	Status      Status         `json:"status"`
	Description string         `json:"description,omitempty"`
	Duration    time.Duration  `json:"-"`
	Data        map[string]any `json:"data,omitempty"`
	Err         error          `json:"-"`
}

// Checker checks one part of the deployable. Check must return promptly when ctx is
// done; the registry treats a check that overruns its timeout as Unhealthy anyway.
type Checker interface {
	Check(ctx context.Context) Result
}

// CheckFunc adapts a function to Checker.
type CheckFunc func(ctx context.Context) Result

// Check calls f.
func (f CheckFunc) Check(ctx context.Context) Result { return f(ctx) }

// Tag marking checks that gate readiness.
const TagReady = "ready"

// Check is a registered, named Checker.
type Check struct {
	Name    string
	Checker Checker
	Tags    []string
	Timeout time.Duration // 0 means the registry's default
}

// Registry holds the named checks and runs them. Register everything before serving;
// Run is safe for concurrent use.
type Registry struct {
	timeout time.Duration
	checks  []Check
}

// NewRegistry returns an empty registry whose checks time out after timeout unless
// they set their own.
func NewRegistry(timeout time.Duration) *Registry { return &Registry{timeout: timeout} }

// Register adds c. It panics on a duplicate or empty name: that is a programming error.
func (r *Registry) Register(c Check) {
	if c.Name == "" || slices.ContainsFunc(r.checks, func(o Check) bool { return o.Name == c.Name }) {
		panic(fmt.Sprintf("health: bad or duplicate check name %q", c.Name))
	}
	if c.Timeout <= 0 {
		c.Timeout = r.timeout
	}
	r.checks = append(r.checks, c)
}

// Names returns the registered check names in registration order.
func (r *Registry) Names() []string {
	names := make([]string, len(r.checks))
	for i, c := range r.checks {
		names[i] = c.Name
	}
	return names
}

// Report is the outcome of running a set of checks.
type Report struct {
	Status    Status
	CheckedAt time.Time
	Duration  time.Duration
	Checks    map[string]Result
}

// Run runs the checks that keep selects (all of them when keep is nil) concurrently,
// each bounded by its timeout: a check still running then is reported Unhealthy "timed
// out after 2s" and Run returns without waiting for it. The report's status is the
// worst of its checks (Healthy when none ran).
func (r *Registry) Run(ctx context.Context, keep func(Check) bool) Report {
	start := time.Now()
	rep := Report{CheckedAt: start.UTC(), Checks: make(map[string]Result)}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, c := range r.checks {
		if keep != nil && !keep(c) {
			continue
		}
		wg.Go(func() {
			res := runOne(ctx, c)
			mu.Lock()
			rep.Checks[c.Name] = res
			rep.Status = max(rep.Status, res.Status)
			mu.Unlock()
		})
	}
	wg.Wait()
	rep.Duration = time.Since(start)
	return rep
}

func runOne(ctx context.Context, c Check) Result {
	ctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	start := time.Now()
	done := make(chan Result, 1) // buffered: an overrunning check must not leak blocked
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- Result{Status: Unhealthy, Description: fmt.Sprintf("check panicked: %v", p)}
			}
		}()
		done <- c.Checker.Check(ctx)
	}()
	var res Result
	select {
	case res = <-done:
	case <-ctx.Done():
		res = Result{Status: Unhealthy, Description: fmt.Sprintf("timed out after %v", c.Timeout)}
	}
	res.Duration = time.Since(start)
	if res.Err != nil && res.Description == "" {
		res.Description = res.Err.Error()
	}
	return res
}

// HasTag reports whether c carries tag.
func (c Check) HasTag(tag string) bool { return slices.Contains(c.Tags, tag) }
