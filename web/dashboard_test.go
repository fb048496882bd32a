package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/gorilla/mux"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

const testAdminToken = "admin-secret-token"

type dashFixture struct {
	rdb     *redis.Client
	jobs    *storage.Jobs
	handler http.Handler
}

// newDashFixture serves the HTTP tier on its own redis-server, with the dashboard on
// (withAdmin) or off.
func newDashFixture(tb testing.TB, r *storagetest.Redis, withAdmin bool) *dashFixture {
	tb.Helper()
	rdb := r.Client(tb)
	jobs := storage.NewJobs(rdb, 24*time.Hour, "critical", "default", "low")
	ins := asynq.NewInspectorFromRedisClient(rdb)
	reg := health.NewRegistry(health.Options{Timeout: time.Second, Cache: 2 * time.Second})
	reg.Register(health.Check{Name: "self", Checker: health.SelfCheck(time.Now())})
	reg.Register(health.Check{Name: "redis", Checker: health.PingCheck(func(ctx context.Context) error { return rdb.Ping(ctx).Err() })})
	state := &health.State{}
	state.Set(health.Ready)
	endpoints := &health.Endpoints{Registry: reg, State: state, Details: health.DetailsAlways, Logger: slog.New(slog.DiscardHandler)}
	var admin *health.Admin
	if withAdmin {
		admin = &health.Admin{State: state, Token: testAdminToken, Started: time.Now(), Recycle: func() {}}
	}
	h := NewServer(Deps{
		Logger: slog.New(slog.DiscardHandler), Jobs: jobs, Inspector: ins, Health: endpoints, HealthPath: "/health",
		Admin: admin, Queues: map[string]int{"default": 3, "critical": 6}, Beats: storage.NewHeartbeats(rdb),
		HeartbeatTTL: 10 * time.Second, QueueAdmin: ins,
	})
	return &dashFixture{rdb: rdb, jobs: jobs, handler: h}
}

// do serves one request; hdr are header pairs.
func (f *dashFixture) do(tb testing.TB, method, target string, body url.Values, hdr ...string) *http.Response {
	tb.Helper()
	var rd io.Reader
	if body != nil {
		rd = strings.NewReader(body.Encode())
	}
	req := httptest.NewRequest(method, target, rd)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	f.handler.ServeHTTP(rec, req)
	return rec.Result()
}

func readBody(tb testing.TB, res *http.Response) string {
	tb.Helper()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return string(b)
}

// completedJob writes the record of a job that ran and completed, as the worker does.
func (f *dashFixture) completedJob(tb testing.TB, id, typ, queue string) {
	tb.Helper()
	ctx := context.Background()
	if err := f.jobs.Create(ctx, storage.Job{ID: id, Type: typ, Queue: queue, State: storage.StatePending, CreatedAt: time.Now(),
		Payload: []byte(`{"message":"hi"}`)}); err != nil {
		tb.Fatal(err)
	}
	// As a worker records it: started, completed, and counted with its next pulse.
	inflight := storage.NewInFlight(f.rdb, f.jobs)
	n, err := inflight.Begin(ctx, "w", id, typ, queue, time.Now())
	if err != nil {
		tb.Fatal(err)
	}
	if err := inflight.End(ctx, "w", id, queue, n, storage.StateCompleted, []byte(`{"echo":"hi"}`), "", time.Now()); err != nil {
		tb.Fatal(err)
	}
	if err := inflight.FlushCompletions(ctx); err != nil {
		tb.Fatal(err)
	}
}

func checkSecurityHeaders(t *testing.T, res *http.Response) {
	t.Helper()
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("%s: CSP %q", res.Request.URL, csp)
	}
	if res.Header.Get("X-Content-Type-Options") != "nosniff" || res.Header.Get("Referrer-Policy") != "no-referrer" {
		t.Errorf("%s: headers %v", res.Request.URL, res.Header)
	}
}

// TestDashboardAuth: without ADMIN_TOKEN there is no dashboard; without credentials a
// browser is sent to the login page and anything else gets 401; a Bearer token or the
// session cookie from the login form opens it; every response has the security headers.
func TestDashboardAuth(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	off := newDashFixture(t, r, false)
	for _, p := range []string{"/dashboard", "/dashboard/login", "/dashboard/jobs", "/dashboard/static/dash.css"} {
		if res := off.do(t, "GET", p, nil, "Authorization", "Bearer "+testAdminToken); res.StatusCode != http.StatusNotFound {
			t.Errorf("no ADMIN_TOKEN: GET %s = %d, want 404", p, res.StatusCode)
		}
	}

	f := newDashFixture(t, r, true)
	tests := []struct {
		name     string
		hdr      []string
		want     int
		location string
	}{
		{"browser without credentials", []string{"Accept", "text/html,application/xhtml+xml"}, http.StatusSeeOther, "/dashboard/login?next=%2Fdashboard%2Fjobs"},
		{"client without credentials", nil, http.StatusUnauthorized, ""},
		{"wrong bearer", []string{"Authorization", "Bearer nope", "Accept", "text/html"}, http.StatusUnauthorized, ""},
		{"bearer", []string{"Authorization", "Bearer " + testAdminToken}, http.StatusOK, ""},
		{"lowercase bearer", []string{"Authorization", "bearer " + testAdminToken}, http.StatusOK, ""},
		{"forged cookie", []string{"Cookie", sessionCookie + "=abc.9999999999.forged"}, http.StatusUnauthorized, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := f.do(t, "GET", "/dashboard/jobs", nil, tc.hdr...)
			if res.StatusCode != tc.want || res.Header.Get("Location") != tc.location {
				t.Errorf("status %d location %q, want %d %q", res.StatusCode, res.Header.Get("Location"), tc.want, tc.location)
			}
			checkSecurityHeaders(t, res)
		})
	}

	// The login form: a wrong token is refused, the right one sets the session cookie.
	if res := f.do(t, "POST", "/dashboard/login", url.Values{"token": {"wrong"}}); res.StatusCode != http.StatusUnauthorized {
		t.Errorf("wrong token: %d", res.StatusCode)
	}
	res := f.do(t, "POST", "/dashboard/login", url.Values{"token": {testAdminToken}, "next": {"/dashboard/jobs"}})
	checkSecurityHeaders(t, res)
	if res.StatusCode != http.StatusSeeOther || res.Header.Get("Location") != "/dashboard/jobs" {
		t.Fatalf("login: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range res.Cookies() {
		if c.Name == sessionCookie {
			cookie = c
		}
	}
	if cookie == nil || !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.MaxAge <= 0 {
		t.Fatalf("session cookie %+v", cookie)
	}
	page := f.do(t, "GET", "/dashboard", nil, "Cookie", cookie.String())
	html := readBody(t, page)
	if page.StatusCode != http.StatusOK || !strings.Contains(page.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("with the cookie: %d %s", page.StatusCode, page.Header.Get("Content-Type"))
	}
	m := regexp.MustCompile(`name="csrf" value="([^"]+)"`).FindStringSubmatch(html)
	if m == nil {
		t.Fatal("no CSRF token in the page")
	}
	// Actions need the session's CSRF token.
	back := url.Values{"back": {"/dashboard"}}
	if res := f.do(t, "POST", "/dashboard/instance/busy", back, "Cookie", cookie.String()); res.StatusCode != http.StatusForbidden {
		t.Errorf("action without CSRF token: %d, want 403", res.StatusCode)
	}
	back.Set("csrf", m[1])
	if res := f.do(t, "POST", "/dashboard/instance/busy", back, "Cookie", cookie.String()); res.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(res.Header.Get("Location"), "/dashboard?flash=") {
		t.Errorf("busy: %d %q", res.StatusCode, res.Header.Get("Location"))
	}
	if res := f.do(t, "GET", "/health/ready", nil); res.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("readiness after Busy from the dashboard: %d, want 503", res.StatusCode)
	}
	// An open redirect through "back" or "next" stays on the dashboard.
	back.Set("back", "//evil.example/")
	if res := f.do(t, "POST", "/dashboard/instance/ready", back, "Cookie", cookie.String()); !strings.HasPrefix(res.Header.Get("Location"), "/dashboard?") {
		t.Errorf("back=//evil: Location %q", res.Header.Get("Location"))
	}

	// Failed logins are limited per client: past 5 a minute even the right token waits.
	for range 5 {
		f.do(t, "POST", "/dashboard/login", url.Values{"token": {"guess"}})
	}
	if res := f.do(t, "POST", "/dashboard/login", url.Values{"token": {testAdminToken}}); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("login after 6 failures: %d, want 429", res.StatusCode)
	}
}

var urlRe = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9.-]+`)

// TestDashboardPages: the overview names the queues and links to a finished job, whose
// page says completed with its payload, result and timeline; nothing on any page, nor
// in the CSS or script, comes from another host.
func TestDashboardPages(t *testing.T) {
	t.Parallel()
	f := newDashFixture(t, storagetest.StartRedis(t), true)
	f.completedJob(t, "job-done-1", "echo", "critical")
	auth := []string{"Authorization", "Bearer " + testAdminToken}
	ctx := context.Background()
	if err := f.jobs.Create(ctx, storage.Job{ID: "job-running", Type: "batch:count", Queue: "default", State: storage.StatePending, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := f.jobs.SetProgress(ctx, "default", "job-running", storage.Progress{Done: 3, Total: 12}); err != nil {
		t.Fatal(err)
	}
	running := readBody(t, f.do(t, "GET", "/dashboard/jobs/job-running", nil, auth...))
	for _, want := range []string{`<progress class="big" value="3" max="12">25%</progress>`, "3 of 12 units checkpointed (25%)",
		`action="/dashboard/jobs/job-running/cancel"`} {
		if !strings.Contains(running, want) {
			t.Errorf("page of a job in progress lacks %q", want)
		}
	}

	overview := readBody(t, f.do(t, "GET", "/dashboard", nil, auth...))
	for _, want := range []string{`data-queue="critical"`, `data-queue="default"`, `href="/dashboard/jobs/job-done-1"`,
		"1 in 1 h", "no child (web mode)", "keep-alive pings"} {
		if !strings.Contains(overview, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	job := readBody(t, f.do(t, "GET", "/dashboard/jobs/job-done-1", nil, auth...))
	for _, want := range []string{`s-completed">completed<`, "&#34;message&#34;: &#34;hi&#34;", "&#34;echo&#34;: &#34;hi&#34;",
		"<b>created</b>", "<b>started</b>", "<b>completed</b>"} {
		if !strings.Contains(job, want) {
			t.Errorf("job page lacks %q", want)
		}
	}
	if res := f.do(t, "GET", "/dashboard/jobs/nope", nil, auth...); res.StatusCode != http.StatusNotFound {
		t.Errorf("unknown job: %d", res.StatusCode)
	}
	frag := readBody(t, f.do(t, "GET", "/dashboard?fragment=1", nil, auth...))
	if strings.Contains(frag, "<html") || !strings.Contains(frag, `data-queue="critical"`) {
		t.Errorf("fragment is not the live part alone: %.200s", frag)
	}
	assets := map[string]string{"overview": overview, "job": job}
	for _, p := range []string{"/dashboard/static/dash.css", "/dashboard/static/dash.js"} {
		res := f.do(t, "GET", p, nil)
		checkSecurityHeaders(t, res)
		assets[p] = readBody(t, res)
		if res.StatusCode != http.StatusOK || len(assets[p]) < 100 {
			t.Errorf("%s: %d", p, res.StatusCode)
		}
	}
	for name, body := range assets {
		if m := urlRe.FindAllString(body, -1); len(m) > 0 {
			t.Errorf("%s refers to another host: %q", name, m)
		}
		if strings.Contains(body, "<script>") || strings.Contains(body, " style=") || strings.Contains(body, "<style") {
			t.Errorf("%s has inline script or style", name)
		}
	}
}

// TestDashboardJobsList: filters read the records; pages follow each other with no job
// twice and none left out.
func TestDashboardJobsList(t *testing.T) {
	t.Parallel()
	f := newDashFixture(t, storagetest.StartRedis(t), true)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	var wantEcho []string
	for i := range 130 {
		typ := "echo"
		if i%3 == 0 {
			typ = "batch:count"
		}
		id := fmt.Sprintf("j%03d", i)
		// Every pair shares a millisecond, so the cursor must break ties.
		if err := f.jobs.Create(ctx, storage.Job{ID: id, Type: typ, Queue: "default", State: storage.StatePending,
			CreatedAt: base.Add(time.Duration(i/2) * time.Millisecond)}); err != nil {
			t.Fatal(err)
		}
		if typ == "echo" {
			wantEcho = append([]string{id}, wantEcho...)
		}
	}
	var got []string
	cursor := ""
	for range 10 {
		page, err := f.jobs.List(ctx, storage.Filter{Type: "echo"}, cursor, 25)
		if err != nil {
			t.Fatal(err)
		}
		for _, j := range page.Jobs {
			got = append(got, j.ID)
		}
		if cursor = page.Next; cursor == "" {
			break
		}
	}
	// Within one millisecond ids come in reverse order: newest first overall.
	if diff := cmp.Diff(len(wantEcho), len(got)); diff != "" {
		t.Fatalf("echo jobs over all pages (-want +got):\n%s\n%v", diff, got)
	}
	seen := map[string]bool{}
	for _, id := range got {
		if seen[id] {
			t.Errorf("%s twice", id)
		}
		seen[id] = true
	}
	html := readBody(t, f.do(t, "GET", "/dashboard/jobs?type=batch:count&state=pending", nil, "Authorization", "Bearer "+testAdminToken))
	if n := strings.Count(html, `data-job="`); n != 44 {
		t.Errorf("batch:count jobs on the page: %d, want 44", n)
	}
	if strings.Contains(html, `data-job="j001"`) {
		t.Error("an echo job is listed under type=batch:count")
	}
}

// BenchmarkDashboard renders the overview and a jobs page with 10,000 job records in a
// real redis-server (the README quotes its figures).
func BenchmarkDashboard(b *testing.B) {
	r := storagetest.StartRedis(b)
	f := newDashFixture(b, r, true)
	ctx := context.Background()
	now := time.Now()
	for i := range 10_000 {
		id := fmt.Sprintf("bench-%05d", i)
		if err := f.jobs.Create(ctx, storage.Job{ID: id, Type: "echo", Queue: "default", State: storage.StatePending,
			CreatedAt: now.Add(time.Duration(i-10_000) * time.Second), Payload: []byte(`{"message":"hello","sleep_ms":10}`)}); err != nil {
			b.Fatal(err)
		}
		if i%2 == 0 {
			if err := f.jobs.Finish(ctx, id, "default", 0, storage.StateCompleted, []byte(`{"echo":"hello"}`), "", now); err != nil {
				b.Fatal(err)
			}
		}
	}
	for _, bc := range []struct{ name, path string }{
		{"overview", "/dashboard"},
		{"jobs", "/dashboard/jobs"},
		{"jobs_filtered", "/dashboard/jobs?state=failed"}, // matches none: scans the 500-entry maximum
	} {
		p := bc.path
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				res := f.do(b, "GET", p, nil, "Authorization", "Bearer "+testAdminToken)
				if res.StatusCode != http.StatusOK {
					b.Fatal(res.StatusCode)
				}
			}
		})
	}
}

// TestDashboardActions: cancel deletes a pending job's task and marks its record failed
// "cancelled"; retry of a failed job runs its archived task again; pause and resume
// reach asynq. Each answers a redirect back to the page that posted it.
func TestDashboardActions(t *testing.T) {
	t.Parallel()
	f := newDashFixture(t, storagetest.StartRedis(t), true)
	ctx := context.Background()
	client := asynq.NewClientFromRedisClient(f.rdb)
	ins := asynq.NewInspectorFromRedisClient(f.rdb)
	auth := []string{"Authorization", "Bearer " + testAdminToken}
	enqueue := func(id string) {
		t.Helper()
		if err := f.jobs.Create(ctx, storage.Job{ID: id, Type: "echo", Queue: "default", State: storage.StatePending, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(asynq.NewTask("echo", nil), asynq.TaskID(id), asynq.Queue("default")); err != nil {
			t.Fatal(err)
		}
	}
	post := func(path, back string) string {
		t.Helper()
		res := f.do(t, "POST", path, url.Values{"back": {back}}, auth...)
		if res.StatusCode != http.StatusSeeOther || !strings.HasPrefix(res.Header.Get("Location"), back+"?") {
			t.Fatalf("POST %s: %d %q", path, res.StatusCode, res.Header.Get("Location"))
		}
		loc, _ := url.Parse(res.Header.Get("Location"))
		if e := loc.Query().Get("error"); e != "" {
			t.Fatalf("POST %s: error %q", path, e)
		}
		return loc.Query().Get("flash")
	}

	enqueue("to-cancel")
	post("/dashboard/jobs/to-cancel/cancel", "/dashboard/jobs/to-cancel")
	if _, err := ins.GetTaskInfo("default", "to-cancel"); err == nil {
		t.Error("the cancelled job's task still exists")
	}
	if j, _ := f.jobs.Get(ctx, "to-cancel"); j.State != storage.StateFailed || j.Error != "cancelled" || j.Events[len(j.Events)-1].Kind != "cancelled" {
		t.Errorf("cancelled job record: %+v", j)
	}

	enqueue("to-retry")
	if err := ins.ArchiveTask("default", "to-retry"); err != nil {
		t.Fatal(err)
	}
	if err := f.jobs.Finish(ctx, "to-retry", "default", 0, storage.StateFailed, nil, "boom", time.Now()); err != nil {
		t.Fatal(err)
	}
	post("/dashboard/jobs/to-retry/retry", "/dashboard/jobs/to-retry")
	if ti, err := ins.GetTaskInfo("default", "to-retry"); err != nil || ti.State != asynq.TaskStatePending {
		t.Errorf("retried task: %+v %v, want pending", ti, err)
	}
	if j, _ := f.jobs.Get(ctx, "to-retry"); j.State != storage.StatePending || j.Error != "" || j.CompletedAt != nil {
		t.Errorf("retried job record: %+v", j)
	}
	// Retrying it again is refused: it is not failed any more.
	res := f.do(t, "POST", "/dashboard/jobs/to-retry/retry", url.Values{"back": {"/dashboard"}}, auth...)
	if loc, _ := url.Parse(res.Header.Get("Location")); loc == nil || !strings.Contains(loc.Query().Get("error"), "only a failed job") {
		t.Errorf("retry of a pending job: %q", res.Header.Get("Location"))
	}

	post("/dashboard/queues/default/pause", "/dashboard")
	if qi, err := ins.GetQueueInfo("default"); err != nil || !qi.Paused {
		t.Errorf("after pause: %+v %v", qi, err)
	}
	post("/dashboard/queues/default/resume", "/dashboard")
	if qi, err := ins.GetQueueInfo("default"); err != nil || qi.Paused {
		t.Errorf("after resume: %+v %v", qi, err)
	}
}

// TestDashboardRecycleUnavailable: the dashboard's Recycle on an instance that cannot
// recycle (an Admin without Recycle) says so, and leaves the instance Ready; it used
// to say "the instance is draining".
func TestDashboardRecycleUnavailable(t *testing.T) {
	t.Parallel()
	state := &health.State{}
	state.Set(health.Ready)
	db := &dashboard{d: Deps{Admin: &health.Admin{State: state, Token: testAdminToken}}}
	r := mux.SetURLVars(httptest.NewRequest(http.MethodPost, "/dashboard/instance/recycle", nil), map[string]string{"op": "recycle"})
	msg, err := db.instance(httptest.NewRecorder(), r)
	if err == nil || err.Error() != "this instance cannot recycle" || msg != "" || state.Get() != health.Ready {
		t.Errorf("recycle: %q, %v; state %s", msg, err, state)
	}
}
