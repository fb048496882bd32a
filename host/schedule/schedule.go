// Package schedule computes when periodic work is due. A Schedule is a 5-field cron
// spec or a descriptor (@hourly, @daily, @weekly, @monthly, @yearly), parsed by
// github.com/robfig/cron/v3, with an optional CRON_TZ= or TZ= prefix (UTC without
// one, never the machine's local zone, so every instance computes the same ticks), or
// "@every <duration>", whose ticks are aligned to the Unix epoch for the same reason.
//
// Cron ticks follow the wall clock of their zone, with two corrections to robfig's
// arithmetic across daylight-saving transitions, as Vixie/ISC cron does them:
//   - spring forward: a time that falls in the skipped hour (02:30 when clocks jump
//     from 02:00 to 03:00) ticks once, at the transition instant, instead of being
//     skipped for the day;
//   - fall back: a time that occurs twice (01:30 when clocks go from 02:00 back to
//     01:00) ticks once, at its first occurrence.
//
// A Schedule is an immutable value, safe for concurrent use.
package schedule

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed spec; build it with Parse.
type Schedule struct {
	spec  string
	every time.Duration      // > 0 for @every
	cron  *cron.SpecSchedule // otherwise
}

var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// Parse parses spec. @every durations must be whole seconds from 1 s to 366 days.
// Errors name what is wrong with the spec.
func Parse(spec string) (Schedule, error) {
	spec = strings.TrimSpace(spec)
	body := spec
	if strings.HasPrefix(body, "CRON_TZ=") || strings.HasPrefix(body, "TZ=") {
		_, rest, ok := strings.Cut(body, " ")
		if !ok {
			return Schedule{}, fmt.Errorf("%q: a time zone prefix needs a spec after it", spec)
		}
		body = strings.TrimSpace(rest)
	} else if !strings.HasPrefix(body, "@every") {
		spec = "CRON_TZ=UTC " + spec // robfig defaults to time.Local, which differs per machine
	}
	if d, ok := strings.CutPrefix(body, "@every"); ok {
		every, err := time.ParseDuration(strings.TrimSpace(d))
		if err != nil {
			return Schedule{}, fmt.Errorf("%q: @every needs a duration such as 15m: %v", spec, err)
		}
		if every < time.Second || every > 366*24*time.Hour || every%time.Second != 0 {
			return Schedule{}, fmt.Errorf("%q: @every must be whole seconds, from 1s to 366 days", spec)
		}
		return Schedule{spec: strings.TrimPrefix(spec, "CRON_TZ=UTC "), every: every}, nil
	}
	s, err := parser.Parse(spec)
	if err != nil {
		return Schedule{}, fmt.Errorf("%q: %v", strings.TrimPrefix(spec, "CRON_TZ=UTC "), err)
	}
	ss, ok := s.(*cron.SpecSchedule)
	if !ok {
		return Schedule{}, fmt.Errorf("%q: unsupported schedule", spec)
	}
	return Schedule{spec: strings.TrimPrefix(spec, "CRON_TZ=UTC "), cron: ss}, nil
}

// String returns the spec as written.
func (s Schedule) String() string { return s.spec }

// Next returns the first tick strictly after t, or the zero Time when there is none
// within five years (a spec such as "0 0 30 2 *").
func (s Schedule) Next(t time.Time) time.Time {
	if s.every > 0 {
		d := int64(s.every / time.Second)
		return time.Unix((floorDiv(t.Unix(), d)+1)*d, 0).UTC()
	}
	for range 1000 { // each pass skips one repeated wall-clock time; a year has at most a few
		n := s.cron.Next(t)
		if n.IsZero() {
			return n
		}
		if g, ok := s.gapTick(t, n); ok {
			return g
		}
		if !s.repeated(n) {
			return n
		}
		t = n
	}
	return time.Time{}
}

// Prev returns the latest tick at or before t, looking back at most 367 days, and
// false when there is none in that span.
func (s Schedule) Prev(t time.Time) (time.Time, bool) {
	if s.every > 0 {
		d := int64(s.every / time.Second)
		return time.Unix(floorDiv(t.Unix(), d)*d, 0).UTC(), true
	}
	// Widening windows keep the walk short: a per-minute spec is found in the first.
	for _, w := range []time.Duration{time.Minute, time.Hour, 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		u := s.Next(t.Add(-w))
		if u.IsZero() || u.After(t) {
			continue
		}
		for {
			n := s.Next(u)
			if n.IsZero() || n.After(t) {
				return u, true
			}
			u = n
		}
	}
	return time.Time{}, false
}

// Period returns the time from tick to the tick after it: how long a missed tick stays
// worth catching up.
func (s Schedule) Period(tick time.Time) time.Duration {
	if s.every > 0 {
		return s.every
	}
	n := s.Next(tick)
	if n.IsZero() {
		return 0
	}
	return n.Sub(tick)
}

// gapTick reports the first forward daylight-saving transition in (t, n) whose skipped
// wall-clock minutes include one the spec matches: that transition instant is a tick
// robfig skipped.
func (s Schedule) gapTick(t, n time.Time) (time.Time, bool) {
	loc := s.cron.Location
	u := t.In(loc)
	for {
		_, end := u.ZoneBounds()
		if end.IsZero() || !end.Before(n) {
			return time.Time{}, false
		}
		if end.After(t) {
			_, before := end.Add(-time.Second).In(loc).Zone()
			_, after := end.In(loc).Zone()
			if after > before {
				// Wall-clock readings from end (in the old offset) for after-before seconds
				// never happened.
				wall := end.In(time.FixedZone("", before))
				for m := 0; m < (after-before)/60; m++ {
					if s.matches(wall.Add(time.Duration(m) * time.Minute)) {
						return end, true
					}
				}
			}
		}
		u = end.In(loc)
	}
}

// repeated reports whether n's wall-clock time already occurred earlier, in the hour
// a backward transition repeats.
func (s Schedule) repeated(n time.Time) bool {
	nl := n.In(s.cron.Location)
	start, _ := nl.ZoneBounds()
	if start.IsZero() {
		return false
	}
	_, now := nl.Zone()
	_, prev := start.Add(-time.Second).In(s.cron.Location).Zone()
	return prev > now && n.Sub(start) < time.Duration(prev-now)*time.Second
}

// starBit marks a field written as "*" (robfig/cron's spec.go).
const starBit = 1 << 63

// matches reports whether the wall-clock minute of w (fields read in w's own zone)
// satisfies the spec, with robfig/cron's day rule: day-of-month and day-of-week are
// ANDed when either is "*", ORed otherwise.
func (s Schedule) matches(w time.Time) bool {
	c := s.cron
	if c.Minute&(1<<uint(w.Minute())) == 0 || c.Hour&(1<<uint(w.Hour())) == 0 || c.Month&(1<<uint(w.Month())) == 0 {
		return false
	}
	dom := c.Dom&(1<<uint(w.Day())) > 0
	dow := c.Dow&(1<<uint(w.Weekday())) > 0
	if c.Dom&starBit > 0 || c.Dow&starBit > 0 {
		return dom && dow
	}
	return dom || dow
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}
