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
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
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
	At          time.Time      `json:"-"` // when the check ran (a cached result keeps its time)
	Data        map[string]any `json:"data,omitempty"`
	Err         error          `json:"-"`
	// Observed is the check's measurement for the IETF format's observedValue and
	// observedUnit (e.g. 1.2 "ms" of round trip); nil reports how long the check took.
	Observed *Observation `json:"-"`
}

// Observation is a measured value and its unit, as in the IETF health+json draft.
type Observation struct {
	Value float64
	Unit  string
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
	// Measurement names what the check observes in the IETF health+json format, where
	// checks are keyed "name:measurement" (e.g. "redis:responseTime"); default "status".
	Measurement string
	// ComponentType is the IETF componentType ("datastore", "system", "component").
	ComponentType string
}

// HasTag reports whether c carries tag.
func (c Check) HasTag(tag string) bool { return slices.Contains(c.Tags, tag) }

// Options configure a Registry.
type Options struct {
	// Timeout bounds each check that sets none of its own; 0 (or less) means
	// DefaultTimeout.
	Timeout time.Duration
	// Cache is how long a check's result is reused; 0 runs the check on every request
	// (concurrent requests still share one run).
	Cache time.Duration
	// FailureThreshold is how many consecutive Unhealthy results a check needs before it
	// is reported Unhealthy; the ones before are reported Degraded. 0 or 1: at once.
	FailureThreshold int
	// HistorySize bounds the kept status changes; default 50.
	HistorySize int
	// Logger gets a line per status change; nil: none.
	Logger *slog.Logger
}

// Change is one status change of a check, as kept in the history.
type Change struct {
	Check       string    `json:"check"`
	From        Status    `json:"from"`
	To          Status    `json:"to"`
	At          time.Time `json:"at"`
	Description string    `json:"description,omitempty"`
}

// Registry holds the named checks and runs them with caching, single flight and the
// failure threshold. Make one with NewRegistry: the zero Registry is not usable.
// Register everything before serving; Run is safe for concurrent use.
type Registry struct {
	opts    Options
	entries []*entry

	histMu  sync.Mutex
	history []Change // oldest first, at most opts.HistorySize
}

// entry is one check and its cached state; mu guards everything below it.
type entry struct {
	Check
	runs atomic.Int64 // times the checker actually ran
	// last is the status and time of res, stored with them under mu, so that the
	// aggregate of cached results can be read without taking every check's lock.
	last atomic.Pointer[snapshot]

	mu       sync.Mutex
	res      Result
	at       time.Time // when res was computed; zero before the first run
	inflight chan struct{}
	failures int    // consecutive Unhealthy raw results
	reported Status // the status last reported, for change detection
}

// DefaultTimeout bounds a check when neither it nor its Registry's Options set a
// timeout: HEALTH_TIMEOUT's default.
const DefaultTimeout = 2 * time.Second

// NewRegistry returns an empty registry. The zero Options work: checks get
// DefaultTimeout, and results are not cached.
func NewRegistry(opts Options) *Registry {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	if opts.HistorySize <= 0 {
		opts.HistorySize = 50
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{opts: opts}
}

// Register adds c. It panics on a duplicate or empty name: that is a programming error.
func (r *Registry) Register(c Check) {
	if c.Name == "" || slices.ContainsFunc(r.entries, func(o *entry) bool { return o.Name == c.Name }) {
		panic(fmt.Sprintf("health: bad or duplicate check name %q", c.Name))
	}
	if c.Timeout <= 0 {
		c.Timeout = r.opts.Timeout
	}
	if c.Measurement == "" {
		c.Measurement = "status"
	}
	if c.ComponentType == "" {
		c.ComponentType = "component"
	}
	r.entries = append(r.entries, &entry{Check: c})
}

// Names returns the registered check names in registration order.
func (r *Registry) Names() []string {
	names := make([]string, len(r.entries))
	for i, e := range r.entries {
		names[i] = e.Name
	}
	return names
}

// Runs reports how many times the check called name has actually run (cache misses).
func (r *Registry) Runs(name string) int64 {
	for _, e := range r.entries {
		if e.Name == name {
			return e.runs.Load()
		}
	}
	return 0
}

// History returns the kept status changes, oldest first.
func (r *Registry) History() []Change {
	r.histMu.Lock()
	defer r.histMu.Unlock()
	return slices.Clone(r.history)
}

// snapshot is a settled result's status and when it was computed.
type snapshot struct {
	status Status
	at     time.Time
}

// Report is the outcome of running a set of checks.
type Report struct {
	Status    Status
	CheckedAt time.Time
	Duration  time.Duration
	Checks    map[string]Result
	checks    []Check // the checks in Checks, for formats that need their metadata
}

// Run returns the results of the checks that keep selects (all when keep is nil),
// concurrently, each bounded by its timeout: a check still running then is reported
// Unhealthy "timed out after 2s" and Run returns without waiting for it. A result
// younger than Options.Cache is reused, and concurrent callers share one run of each
// check. The report's status is the worst of its checks (Healthy when none ran).
func (r *Registry) Run(ctx context.Context, keep func(Check) bool) Report {
	start := time.Now()
	rep := Report{CheckedAt: start.UTC(), Checks: make(map[string]Result, len(r.entries))}
	var misses []*entry
	for _, e := range r.entries {
		if keep != nil && !keep(e.Check) {
			continue
		}
		rep.checks = append(rep.checks, e.Check)
		// Fast path, no goroutine: a cached result (what a crowd of pingers gets).
		if res, ok := r.cached(e); ok {
			rep.Checks[e.Name] = res
			rep.Status = max(rep.Status, res.Status)
			continue
		}
		misses = append(misses, e)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, e := range misses {
		wg.Go(func() {
			res := r.result(ctx, e)
			mu.Lock()
			rep.Checks[e.Name] = res
			rep.Status = max(rep.Status, res.Status)
			mu.Unlock()
		})
	}
	wg.Wait()
	rep.Duration = time.Since(start)
	return rep
}

// cachedStatus returns the worst status of the checks that keep selects (all when keep
// is nil) and true when each has a result younger than Options.Cache as of now;
// false, with no check run, when any has none (Run must run it). Healthy when none is
// selected. It takes no lock and allocates nothing: it is what a crowd of pingers of
// the terse answer costs.
func (r *Registry) cachedStatus(keep func(Check) bool, now time.Time) (Status, bool) {
	if r.opts.Cache <= 0 {
		return Healthy, false
	}
	worst := Healthy
	for _, e := range r.entries {
		if keep != nil && !keep(e.Check) {
			continue
		}
		s := e.last.Load()
		if s == nil || now.Sub(s.at) >= r.opts.Cache {
			return Healthy, false
		}
		worst = max(worst, s.status)
	}
	return worst, true
}

// cached returns e's result while it is younger than the cache time.
func (r *Registry) cached(e *entry) (Result, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if !e.at.IsZero() && r.opts.Cache > 0 && time.Since(e.at) < r.opts.Cache {
		return e.res, true
	}
	return Result{}, false
}

// result returns e's cached result, or runs it once for every concurrent caller.
func (r *Registry) result(ctx context.Context, e *entry) Result {
	e.mu.Lock()
	if !e.at.IsZero() && r.opts.Cache > 0 && time.Since(e.at) < r.opts.Cache {
		res := e.res // filled while this caller waited to start
		e.mu.Unlock()
		return res
	}
	if ch := e.inflight; ch != nil {
		e.mu.Unlock()
		select {
		case <-ch:
			e.mu.Lock()
			defer e.mu.Unlock()
			return e.res
		case <-ctx.Done():
			return Result{Status: Unhealthy, Description: "request cancelled"}
		}
	}
	ch := make(chan struct{})
	e.inflight = ch
	e.mu.Unlock()

	// Detached from this request: the result serves every waiting caller.
	raw := runOne(context.WithoutCancel(ctx), e.Check)
	e.runs.Add(1)

	e.mu.Lock()
	res := r.settle(e, raw)
	e.res, e.at, e.inflight = res, time.Now(), nil
	e.last.Store(&snapshot{status: res.Status, at: e.at})
	e.mu.Unlock()
	close(ch)
	return res
}

// settle applies the failure threshold to a raw result and records a status change.
// Called with e.mu held.
func (r *Registry) settle(e *entry, raw Result) Result {
	res := raw
	if raw.Status == Unhealthy {
		e.failures++
		if t := r.opts.FailureThreshold; e.failures < t {
			res.Status = Degraded
			res.Description = fmt.Sprintf("%s (failure %d of %d before Unhealthy)", raw.Description, e.failures, t)
		}
	} else {
		e.failures = 0
	}
	if res.Status != e.reported {
		ch := Change{Check: e.Name, From: e.reported, To: res.Status, At: time.Now().UTC(), Description: res.Description}
		e.reported = res.Status
		level := slog.LevelWarn
		if ch.To < ch.From {
			level = slog.LevelInfo
		}
		r.opts.Logger.Log(context.Background(), level, "health check status changed",
			"check", e.Name, "from", ch.From.String(), "to", ch.To.String(), "description", ch.Description)
		r.histMu.Lock()
		r.history = append(r.history, ch)
		if n := len(r.history) - r.opts.HistorySize; n > 0 {
			r.history = slices.Delete(r.history, 0, n)
		}
		r.histMu.Unlock()
	}
	return res
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
	res.Duration, res.At = time.Since(start), start.UTC()
	if res.Err != nil && res.Description == "" {
		res.Description = res.Err.Error()
	}
	return res
}
