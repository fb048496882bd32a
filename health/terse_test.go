package health

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// rawAnswer sends one request to srv over a connection of its own and returns the
// response as sent, less its Date line; hdr are header pairs.
func rawAnswer(tb testing.TB, srv *httptest.Server, method, target string, hdr []string) string {
	tb.Helper()
	conn, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	req := method + " " + target + " HTTP/1.1\r\nHost: t\r\nUser-Agent: pinger/1\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	if _, err := io.WriteString(conn, req+"Connection: close\r\n\r\n"); err != nil {
		tb.Fatal(err)
	}
	var out strings.Builder
	sc := bufio.NewScanner(conn)
	for sc.Scan() {
		if !strings.HasPrefix(sc.Text(), "Date: ") {
			out.WriteString(sc.Text() + "\n")
		}
	}
	if err := sc.Err(); err != nil {
		tb.Fatal(err)
	}
	return out.String()
}

// withoutBody drops what depends on the time in an answer with details: its body and
// length.
func withoutBody(raw string) string {
	head, _, _ := strings.Cut(raw, "\n\n")
	var kept []string
	for line := range strings.SplitSeq(head, "\n") {
		if !strings.HasPrefix(line, "Content-Length: ") {
			kept = append(kept, line)
		}
	}
	return strings.Join(kept, "\n")
}

// TestTerseAnswerIsTheEncodedOne: the answer written from the cache and pre-rendered
// bytes is, on the wire, the one the report and the JSON encoder give (a registry that
// caches nothing answers through them), for every route, status, method, Accept, key
// and CORS request.
func TestTerseAnswerIsTheEncodedOne(t *testing.T) {
	t.Parallel()
	newEndpoints := func(cache time.Duration, b Status, cors []string, state int32) *Endpoints {
		reg := NewRegistry(Options{Timeout: time.Second, Cache: cache})
		reg.Register(Check{Name: "a", Tags: []string{TagReady}, Checker: fixed(Healthy, "")})
		reg.Register(Check{Name: "b", Checker: fixed(b, "b is "+b.String())})
		st := &State{}
		st.Set(state)
		return &Endpoints{Registry: reg, State: st, Details: DetailsAuthorized, APIKey: "k", CacheMaxAge: 2 * time.Second,
			CORSOrigins: cors, Logger: slog.New(slog.DiscardHandler)}
	}
	routes := map[string]func(e *Endpoints) http.Handler{
		"all":   (*Endpoints).All,
		"one":   func(e *Endpoints) http.Handler { return e.One("b") },
		"ready": (*Endpoints).Ready,
	}
	requests := []struct {
		method  string
		hdr     []string
		details bool
	}{
		{method: "GET"},
		{method: "HEAD"},
		{method: "GET", hdr: []string{"X-Api-Key", "k"}, details: true},
		{method: "GET", hdr: []string{"X-Api-Key", "wrong"}},
		{method: "GET", hdr: []string{"Accept", "application/health+json"}},
		{method: "GET", hdr: []string{"Accept", "Application/Health+JSON; q=0.9"}},
		{method: "GET", hdr: []string{"Accept", "text/html,application/xhtml+xml,*/*;q=0.8"}},
		{method: "GET", hdr: []string{"Origin", "https://status.example.com"}},
		{method: "GET", hdr: []string{"Origin", "https://evil.example.com"}},
		{method: "OPTIONS", hdr: []string{"Origin", "https://status.example.com"}},
	}
	for _, status := range []Status{Healthy, Degraded, Unhealthy} {
		for _, cors := range [][]string{nil, {"https://status.example.com"}} {
			for _, state := range []int32{Ready, Busy} {
				for name, route := range routes {
					cached := newEndpoints(time.Hour, status, cors, state)
					encoded := newEndpoints(0, status, cors, state)
					fast, slow := httptest.NewServer(route(cached)), httptest.NewServer(route(encoded))
					for _, rq := range requests {
						got, want := rawAnswer(t, fast, rq.method, "/", rq.hdr), rawAnswer(t, slow, rq.method, "/", rq.hdr)
						if rq.details {
							got, want = withoutBody(got), withoutBody(want)
						}
						if diff := cmp.Diff(want, got); diff != "" {
							t.Errorf("%s, b %s, CORS %v, state %d: %s %v (-encoded +terse):\n%s", name, status, cors, state, rq.method, rq.hdr, diff)
						}
					}
					fast.Close()
					slow.Close()
				}
			}
		}
	}
}

// TestTerseLive: /live's terse answer is what write gives for a Healthy report that
// may not be cached.
func TestTerseLive(t *testing.T) {
	t.Parallel()
	for _, cors := range [][]string{nil, {"*"}} {
		e := endpoints(DetailsNever, "")
		e.CORSOrigins = cors
		encoded := e.wrap(func(w http.ResponseWriter, r *http.Request, now time.Time) {
			e.write(w, r, Report{Status: Healthy, CheckedAt: now.UTC()}, false)
		})
		fast, slow := httptest.NewServer(e.Live()), httptest.NewServer(encoded)
		for _, m := range []string{"GET", "HEAD"} {
			got, want := rawAnswer(t, fast, m, "/", []string{"Origin", "https://a.example.com"}), rawAnswer(t, slow, m, "/", []string{"Origin", "https://a.example.com"})
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("CORS %v, %s (-encoded +terse):\n%s", cors, m, diff)
			}
		}
		fast.Close()
		slow.Close()
	}
}

// TestTerseGolden pins the terse answers as pingers and browsers get them.
func TestTerseGolden(t *testing.T) {
	t.Parallel()
	e := endpoints(DetailsNever, "", Check{Name: "x", Checker: fixed(Degraded, "slow")})
	e.Registry.opts.Cache = time.Hour
	e.CacheMaxAge = 2 * time.Second
	e.CORSOrigins = []string{"https://status.example.com"}
	srv := httptest.NewServer(e.All())
	defer srv.Close()
	rawAnswer(t, srv, "GET", "/", nil) // fills the cache
	tests := []struct {
		method string
		hdr    []string
		want   string
	}{
		{"GET", []string{"Origin", "https://status.example.com"}, "HTTP/1.1 200 OK\n" +
			"Access-Control-Allow-Origin: https://status.example.com\n" +
			"Cache-Control: max-age=2\n" +
			"Content-Type: application/json\n" +
			"Vary: Origin\n" +
			"Vary: Accept, Authorization, X-Api-Key\n" +
			"Content-Length: 22\n" +
			"Connection: close\n" +
			"\n" +
			`{"status":"Degraded"}` + "\n"},
		{"HEAD", nil, "HTTP/1.1 200 OK\n" +
			"Cache-Control: max-age=2\n" +
			"Content-Type: application/json\n" +
			"Vary: Origin\n" +
			"Vary: Accept, Authorization, X-Api-Key\n" +
			"Connection: close\n" +
			"\n"},
	}
	for _, tc := range tests {
		if diff := cmp.Diff(tc.want, rawAnswer(t, srv, tc.method, "/", tc.hdr)); diff != "" {
			t.Errorf("%s %v (-want +got):\n%s", tc.method, tc.hdr, diff)
		}
	}
	if n := e.Registry.Runs("x"); n != 1 {
		t.Errorf("the check ran %d times, want 1 (then cached)", n)
	}
}

// TestTerseRerunsExpiredChecks: the terse answer follows the cache: a result younger
// than Cache is answered without running the check; once it is older, the check runs
// again and its new status is the answer.
func TestTerseRerunsExpiredChecks(t *testing.T) {
	t.Parallel()
	var status atomic.Int64
	reg := NewRegistry(Options{Timeout: time.Second, Cache: 50 * time.Millisecond})
	reg.Register(Check{Name: "x", Checker: CheckFunc(func(context.Context) Result { return Result{Status: Status(status.Load())} })})
	e := &Endpoints{Registry: reg, State: &State{}, Details: DetailsNever, CacheMaxAge: time.Second, Logger: slog.New(slog.DiscardHandler)}
	h := e.All()
	code := func() int {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/health", nil))
		return rec.Code
	}
	start := time.Now()
	if c := code(); c != 200 {
		t.Fatalf("first answer %d, want 200", c)
	}
	status.Store(int64(Unhealthy))
	if c := code(); c != 200 && time.Since(start) < 50*time.Millisecond {
		t.Fatalf("answer within the cache time %d, want the cached 200", c)
	}
	deadline := time.Now().Add(5 * time.Second)
	for code() != 503 {
		if time.Now().After(deadline) {
			t.Fatalf("still 200 %v after the check turned Unhealthy; cache is 50ms", time.Since(start))
		}
	}
	if n := reg.Runs("x"); n < 2 {
		t.Errorf("the check ran %d times, want at least 2", n)
	}
}

// TestPingsFollowTheUserAgent: the keep-alive record names the last pinger, back and
// forth, and the time of the last ping.
func TestPingsFollowTheUserAgent(t *testing.T) {
	t.Parallel()
	e := endpoints(DetailsNever, "")
	before := time.Now().UTC()
	for _, ua := range []string{"UptimeRobot/2.0", "Pingdom.com_bot", "Pingdom.com_bot", "UptimeRobot/2.0"} {
		req := httptest.NewRequest("GET", "/health/live", nil)
		req.Header.Set("User-Agent", ua)
		e.Live().ServeHTTP(httptest.NewRecorder(), req)
	}
	count, at, ua := e.Pings()
	if count != 4 || ua != "UptimeRobot/2.0" || at.Before(before) || at.After(time.Now().UTC()) || at.Location() != time.UTC {
		t.Errorf("Pings() = %d, %v, %q; want 4, a time since %v in UTC, UptimeRobot/2.0", count, at, ua, before)
	}
}

// TestCachedStatusAllocatesNothing: the terse answer from the cache allocates nothing
// of its own (the writer is the test's; not parallel: AllocsPerRun measures the whole
// process).
func TestCachedStatusAllocatesNothing(t *testing.T) {
	reg := NewRegistry(Options{Timeout: time.Second, Cache: time.Hour})
	reg.Register(Check{Name: "x", Checker: fixed(Healthy, "")})
	reg.Register(Check{Name: "y", Tags: []string{TagReady}, Checker: fixed(Degraded, "")})
	st := &State{}
	st.Set(Ready)
	e := &Endpoints{Registry: reg, State: st, Details: DetailsAuthorized, APIKey: "k", CacheMaxAge: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("Accept", "*/*")
	w := &discardWriter{h: http.Header{}}
	for name, h := range map[string]http.Handler{"all": e.All(), "one": e.One("x"), "ready": e.Ready(), "live": e.Live()} {
		h.ServeHTTP(w, req) // fills the cache
		if n := testing.AllocsPerRun(100, func() {
			clear(w.h)
			h.ServeHTTP(w, req)
		}); n != 0 {
			t.Errorf("%s: %v allocations per request, want 0", name, n)
		}
	}
}

// discardWriter is a ResponseWriter that keeps headers and discards the rest.
type discardWriter struct{ h http.Header }

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (d *discardWriter) WriteHeader(int)             {}
