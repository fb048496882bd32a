package schedule

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func mustParse(tb testing.TB, spec string) Schedule {
	tb.Helper()
	s, err := Parse(spec)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// ticks returns the ticks of s in (from, to], in UTC.
func ticks(s Schedule, from, to time.Time) []time.Time {
	var out []time.Time
	for t := s.Next(from); !t.IsZero() && !t.After(to); t = s.Next(t) {
		out = append(out, t.UTC())
	}
	return out
}

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// TestDST: a 02:30 job runs once on the spring-forward day (at the transition, as
// Vixie cron does; robfig/cron skips it) and once on the fall-back day; a 01:30 job
// runs once on the fall-back day (robfig/cron runs it twice).
func TestDST(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, spec string
		from, to   string
		want       []string
	}{
		{"02:30 spring forward, New York", "CRON_TZ=America/New_York 30 2 * * *", "2026-03-07T12:00:00Z", "2026-03-10T12:00:00Z",
			[]string{"2026-03-08T07:00:00Z", "2026-03-09T06:30:00Z", "2026-03-10T06:30:00Z"}},
		{"02:30 fall back, New York", "CRON_TZ=America/New_York 30 2 * * *", "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z",
			[]string{"2026-11-01T07:30:00Z", "2026-11-02T07:30:00Z"}},
		{"01:30 fall back, New York", "CRON_TZ=America/New_York 30 1 * * *", "2026-10-31T12:00:00Z", "2026-11-02T12:00:00Z",
			[]string{"2026-11-01T05:30:00Z", "2026-11-02T06:30:00Z"}},
		{"02:30 spring forward, Berlin (TZ=)", "TZ=Europe/Berlin 30 2 * * *", "2026-03-28T12:00:00Z", "2026-03-30T12:00:00Z",
			[]string{"2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"}},
		{"hourly across spring forward", "CRON_TZ=America/New_York 0 * * * *", "2026-03-08T05:30:00Z", "2026-03-08T08:30:00Z",
			[]string{"2026-03-08T06:00:00Z", "2026-03-08T07:00:00Z", "2026-03-08T08:00:00Z"}},
		{"every 30 min of 01:xx across fall back", "CRON_TZ=America/New_York */30 1 * * *", "2026-11-01T04:50:00Z", "2026-11-01T07:00:00Z",
			[]string{"2026-11-01T05:00:00Z", "2026-11-01T05:30:00Z"}},
		{"02:30 in a zone without DST", "CRON_TZ=Asia/Tokyo 30 2 * * *", "2026-03-07T12:00:00Z", "2026-03-09T12:00:00Z",
			[]string{"2026-03-07T17:30:00Z", "2026-03-08T17:30:00Z"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var want []time.Time
			for _, w := range tc.want {
				want = append(want, utc(w))
			}
			if diff := cmp.Diff(want, ticks(mustParse(t, tc.spec), utc(tc.from), utc(tc.to))); diff != "" {
				t.Errorf("ticks (-want +got):\n%s", diff)
			}
		})
	}
}

// TestUTCByDefault: a spec without a zone prefix ticks in UTC whatever time.Local is.
func TestUTCByDefault(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "0 9 * * *")
	got := s.Next(time.Date(2026, 6, 1, 10, 0, 0, 0, time.FixedZone("far", 11*3600)))
	if !got.Equal(utc("2026-06-01T09:00:00Z")) {
		t.Errorf("Next = %v, want 09:00 UTC", got)
	}
	if d := mustParse(t, "@hourly").Next(utc("2026-06-01T10:20:00Z")); !d.Equal(utc("2026-06-01T11:00:00Z")) {
		t.Errorf("@hourly Next = %v", d)
	}
}

// TestEveryAlignedToEpoch: @every ticks are multiples of the period since the Unix
// epoch, so instances started at different times agree.
func TestEveryAlignedToEpoch(t *testing.T) {
	t.Parallel()
	s := mustParse(t, "@every 15m")
	for _, from := range []string{"2026-11-22T10:00:00Z", "2026-11-22T10:07:31Z", "2026-11-22T10:14:59Z"} {
		if got := s.Next(utc(from)); !got.Equal(utc("2026-11-22T10:15:00Z")) {
			t.Errorf("Next(%s) = %v", from, got)
		}
	}
	s7 := mustParse(t, "@every 7s")
	got := s7.Next(time.Unix(1_000_000_001, 0))
	if got.Unix()%7 != 0 || got.Unix() <= 1_000_000_001 || got.Unix() > 1_000_000_008 {
		t.Errorf("@every 7s Next = %d", got.Unix())
	}
	if p, ok := s7.Prev(got); !ok || !p.Equal(got) {
		t.Errorf("Prev(a tick) = %v, want the tick itself", p)
	}
	if mustParse(t, "TZ=Asia/Tokyo @every 1h").Next(utc("2026-01-01T00:30:00Z")) != utc("2026-01-01T01:00:00Z") {
		t.Errorf("@every with a zone prefix is not epoch-aligned")
	}
}

// TestMissedTickWindow: Prev finds the latest tick at or before a time and Period
// says how long it stays worth catching up (younger than one period).
func TestMissedTickWindow(t *testing.T) {
	t.Parallel()
	tests := []struct {
		spec, now, wantPrev string
		wantPeriod          time.Duration
	}{
		{"*/15 * * * *", "2026-11-22T10:07:00Z", "2026-11-22T10:00:00Z", 15 * time.Minute},
		{"*/15 * * * *", "2026-11-22T10:15:00Z", "2026-11-22T10:15:00Z", 15 * time.Minute},
		{"@every 1m", "2026-11-22T10:07:30Z", "2026-11-22T10:07:00Z", time.Minute},
		{"0 3 * * *", "2026-11-22T02:00:00Z", "2026-11-21T03:00:00Z", 24 * time.Hour},
		{"@yearly", "2026-11-22T02:00:00Z", "2026-01-01T00:00:00Z", 365 * 24 * time.Hour},
		{"* 3 * * *", "2026-11-22T12:00:00Z", "2026-11-22T03:59:00Z", 23*time.Hour + time.Minute},
	}
	for _, tc := range tests {
		s := mustParse(t, tc.spec)
		p, ok := s.Prev(utc(tc.now))
		if !ok || !p.Equal(utc(tc.wantPrev)) {
			t.Errorf("%s: Prev(%s) = %v %v, want %s", tc.spec, tc.now, p, ok, tc.wantPrev)
			continue
		}
		if got := s.Period(p); got != tc.wantPeriod {
			t.Errorf("%s: Period = %v, want %v", tc.spec, got, tc.wantPeriod)
		}
	}
	if _, ok := mustParse(t, "0 0 30 2 *").Prev(utc("2026-11-22T00:00:00Z")); ok {
		t.Errorf("a spec that never ticks has a Prev")
	}
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	for _, spec := range []string{"", "61 * * * *", "* * * *", "@every", "@every soon", "@every 500ms", "@every 1.5s",
		"@every 400d", "CRON_TZ=Mars/Olympus 0 * * * *", "TZ=UTC", "@fortnightly"} {
		if _, err := Parse(spec); err == nil {
			t.Errorf("Parse(%q) accepted a bad spec", spec)
		}
	}
	if s := mustParse(t, " CRON_TZ=Europe/Paris 0 9 * * 1-5 "); s.String() != "CRON_TZ=Europe/Paris 0 9 * * 1-5" {
		t.Errorf("String = %q", s.String())
	}
}
