package web

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/mux"
	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/health"
	"github.com/shoestring-go/shoestring/storage"
)

//go:embed dashboard
var dashboardFS embed.FS

// ChildStatus reports the combined-mode worker child (worker.Supervision is one): its
// pid (0 while none runs), when it started, and its restarts so far.
type ChildStatus interface {
	ChildStatus() (pid int, started time.Time, restarts int)
}

// WorkerLister lists live worker heartbeats; *storage.Heartbeats is one.
type WorkerLister interface {
	Live(ctx context.Context, since time.Time) ([]storage.WorkerBeat, error)
}

// QueueAdmin is what the dashboard's actions do to queues and tasks;
// *asynq.Inspector is one.
type QueueAdmin interface {
	PauseQueue(queue string) error
	UnpauseQueue(queue string) error
	RunTask(queue, id string) error
	DeleteTask(queue, id string) error
}

var (
	_ WorkerLister = (*storage.Heartbeats)(nil)
	_ QueueAdmin   = (*asynq.Inspector)(nil)
)

// jobsPageSize is how many jobs a page of the dashboard's list shows.
const jobsPageSize = 50

// chartMinutes is the span of the completions chart.
const chartMinutes = 60

// dashboard serves /dashboard. Its fields are set once by newDashboard.
type dashboard struct {
	d     Deps
	auth  *dashAuth
	pages map[string]*template.Template
}

func newDashboard(d Deps) *dashboard {
	funcs := template.FuncMap{
		"ago": ago,
		"utc": func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05 UTC") },
		"ms": func(d time.Duration) string {
			return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + " ms"
		},
		"lower": strings.ToLower,
		"short": func(id string) string { return shorten(id, 14) },
		"query": func(v url.Values) string { return v.Encode() },
	}
	base := template.Must(template.New("layout.html").Funcs(funcs).ParseFS(dashboardFS, "dashboard/layout.html"))
	pages := map[string]*template.Template{}
	for _, p := range []string{"overview", "jobs", "job", "login", "notfound"} {
		pages[p] = template.Must(template.Must(base.Clone()).ParseFS(dashboardFS, "dashboard/"+p+".html"))
	}
	return &dashboard{d: d, auth: newDashAuth(d.Admin.Token), pages: pages}
}

// mount adds the dashboard's routes to r, each behind the security headers.
func (db *dashboard) mount(r *mux.Router) {
	static, _ := fs.Sub(dashboardFS, "dashboard/static")
	files := http.StripPrefix("/dashboard/static/", http.FileServerFS(static))
	h := func(path string, hf http.Handler, methods ...string) {
		r.Handle(path, securityHeaders(hf)).Methods(methods...)
	}
	get, post := []string{http.MethodGet, http.MethodHead}, []string{http.MethodPost}
	h("/dashboard/static/{file}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		files.ServeHTTP(w, r)
	}), get...)
	h("/dashboard/login", http.HandlerFunc(db.loginForm), get...)
	h("/dashboard/login", http.HandlerFunc(db.login), post...)
	h("/dashboard/logout", db.action(func(w http.ResponseWriter, r *http.Request) (string, error) {
		clearSession(w)
		return "", nil
	}), post...)
	h("/dashboard", db.authed(db.overview), get...)
	h("/dashboard/jobs", db.authed(db.jobs), get...)
	h("/dashboard/jobs/{id}", db.authed(db.job), get...)
	h("/dashboard/jobs/{id}/retry", db.action(db.retry), post...)
	h("/dashboard/jobs/{id}/cancel", db.action(db.cancel), post...)
	h("/dashboard/queues/{queue}/pause", db.action(db.pause(true)), post...)
	h("/dashboard/queues/{queue}/resume", db.action(db.pause(false)), post...)
	h("/dashboard/instance/{op}", db.action(db.instance), post...)
	r.PathPrefix("/dashboard/").Handler(securityHeaders(db.authed(func(w http.ResponseWriter, r *http.Request, s session) {
		db.render(w, r, http.StatusNotFound, "notfound", s, "Not found", nil)
	})))
}

// view is what every page template gets.
type view struct {
	Title   string
	Nav     string
	CSRF    string
	Flash   string
	Error   string
	State   string
	Refresh string // the URL the script polls for the live part; "" for none
	Now     time.Time
	Data    any
}

func (db *dashboard) render(w http.ResponseWriter, r *http.Request, status int, page string, s session, title string, data any) {
	v := view{Title: title, Nav: page, CSRF: db.auth.csrf(s), Flash: r.URL.Query().Get("flash"),
		Error: r.URL.Query().Get("error"), Now: time.Now().UTC(), Data: data}
	if db.d.Health != nil && db.d.Health.State != nil {
		v.State = db.d.Health.State.String()
	}
	if page != "login" && page != "notfound" {
		q := r.URL.Query()
		q.Del("flash")
		q.Del("error")
		q.Set("fragment", "1")
		v.Refresh = r.URL.Path + "?" + q.Encode()
	}
	name := "layout.html"
	if r.URL.Query().Get("fragment") == "1" {
		name = "live"
	}
	var buf bytes.Buffer
	if err := db.pages[page].ExecuteTemplate(&buf, name, v); err != nil {
		loggerFrom(r.Context()).ErrorContext(r.Context(), "render dashboard", "page", page, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// authed serves h to authenticated requests. Others get a redirect to the login page
// when they look like a browser's page load, else 401.
func (db *dashboard) authed(h func(http.ResponseWriter, *http.Request, session)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s, ok := db.auth.authenticate(r)
		if ok {
			h(w, r, s)
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		if r.Header.Get("Authorization") == "" && strings.Contains(r.Header.Get("Accept"), "text/html") {
			http.Redirect(w, r, "/dashboard/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="shoestring dashboard"`)
		http.Error(w, "admin token required: log in at /dashboard/login or send Authorization: Bearer", http.StatusUnauthorized)
	})
}

// action serves a POST form: authenticated, CSRF-checked, then a 303 back to the
// page the form names (or the overview) with a flash message or an error.
func (db *dashboard) action(do func(http.ResponseWriter, *http.Request) (string, error)) http.Handler {
	return db.authed(func(w http.ResponseWriter, r *http.Request, s session) {
		r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
		if !db.auth.csrfOK(s, r) {
			http.Error(w, "bad or missing CSRF token: reload the page and try again", http.StatusForbidden)
			return
		}
		back := safeBack(r.PostFormValue("back"))
		flash, err := do(w, r)
		q := url.Values{}
		if err != nil {
			q.Set("error", err.Error())
		} else if flash != "" {
			q.Set("flash", flash)
		}
		if strings.HasSuffix(r.URL.Path, "/logout") {
			back = "/dashboard/login"
		}
		if len(q) > 0 {
			if strings.Contains(back, "?") {
				back += "&" + q.Encode()
			} else {
				back += "?" + q.Encode()
			}
		}
		http.Redirect(w, r, back, http.StatusSeeOther)
	})
}

// safeBack keeps a redirect target on the dashboard: a path under /dashboard, never
// another host ("//evil", "/\evil").
func safeBack(p string) string {
	if p == "/dashboard" || (strings.HasPrefix(p, "/dashboard/") && !strings.ContainsAny(p, "\\\r\n") && !strings.HasPrefix(p, "/dashboard/login")) {
		if u, err := url.Parse(p); err == nil && u.Host == "" && u.Scheme == "" {
			q := u.Query()
			q.Del("flash")
			q.Del("error")
			q.Del("fragment")
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return "/dashboard"
}

func (db *dashboard) loginForm(w http.ResponseWriter, r *http.Request) {
	if _, ok := db.auth.authenticate(r); ok {
		http.Redirect(w, r, safeBack(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	db.render(w, r, http.StatusOK, "login", session{}, "Log in", map[string]string{"Next": r.URL.Query().Get("next")})
}

func (db *dashboard) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	addr, now := clientAddr(r), time.Now()
	next := r.PostFormValue("next")
	fail := func(status int, msg string) {
		q := r.URL.Query()
		q.Set("error", msg)
		r.URL.RawQuery = q.Encode()
		db.render(w, r, status, "login", session{}, "Log in", map[string]string{"Next": next})
	}
	if !db.auth.limiter.allowed(addr, now) {
		w.Header().Set("Retry-After", "60")
		fail(http.StatusTooManyRequests, "Too many failed attempts: wait a minute.")
		return
	}
	if !db.auth.tokenMatches(r.PostFormValue("token")) {
		db.auth.limiter.failed(addr, now)
		fail(http.StatusUnauthorized, "That is not the admin token.")
		return
	}
	db.auth.newSession(w, r)
	http.Redirect(w, r, safeBack(next), http.StatusSeeOther)
}

// queueView is one queue on the overview.
type queueView struct {
	queueStats
	Chart     chart
	LatencyMS string
}

// chart is a bar chart of per-minute completions as inline SVG geometry.
type chart struct {
	Bars  []bar
	Total int64
	Max   int64
	Width int
}

type bar struct {
	X, Y, H int
	Title   string
}

const chartHeight = 40

func newChart(counts []int64, now time.Time) chart {
	c := chart{Width: len(counts) * 4}
	for _, n := range counts {
		c.Total += n
		c.Max = max(c.Max, n)
	}
	start := now.Truncate(time.Minute).Add(-time.Duration(len(counts)-1) * time.Minute)
	for i, n := range counts {
		h := 0
		if c.Max > 0 {
			h = int((n*chartHeight + c.Max - 1) / c.Max)
		}
		c.Bars = append(c.Bars, bar{X: i * 4, Y: chartHeight - h, H: h,
			Title: start.Add(time.Duration(i)*time.Minute).UTC().Format("15:04") + " UTC: " + strconv.FormatInt(n, 10) + " completed"})
	}
	return c
}

// childView is the worker child on the overview.
type childView struct {
	WebMode  bool
	PID      int
	Uptime   string
	Restarts int
}

type healthView struct {
	Status  string
	Checks  []checkView
	History []health.Change
	Pings   int64
	LastAt  time.Time
	LastUA  string
}

type checkView struct {
	Name        string
	Status      string
	Description string
	Duration    time.Duration
}

type overviewData struct {
	Child     childView
	Workers   []storage.WorkerBeat
	Queues    []queueView
	Health    healthView
	Schedules []ScheduleView
	Jobs      []storage.Job
	Problems  []string
}

func (db *dashboard) overview(w http.ResponseWriter, r *http.Request, s session) {
	ctx := r.Context()
	now := time.Now()
	var data overviewData
	var mu sync.Mutex
	problem := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		data.Problems = append(data.Problems, what+": "+err.Error())
	}
	// The parts are independent round trips to Redis: run them side by side.
	var wg sync.WaitGroup
	wg.Go(func() {
		qs, err := db.queueViews(ctx, now)
		if err != nil {
			problem("queues", err)
		}
		data.Queues = qs
	})
	wg.Go(func() {
		if db.d.Beats == nil {
			return
		}
		beats, err := db.d.Beats.Live(ctx, now.Add(-db.d.HeartbeatTTL))
		if err != nil {
			problem("workers", err)
		}
		slices.SortFunc(beats, func(a, b storage.WorkerBeat) int { return strings.Compare(a.ID, b.ID) })
		data.Workers = beats
	})
	wg.Go(func() { data.Health = db.healthView(ctx) })
	wg.Go(func() {
		if db.d.Schedules == nil {
			return
		}
		v, err := db.d.Schedules(ctx)
		if err != nil {
			problem("schedules", err)
		}
		data.Schedules = v
	})
	wg.Go(func() {
		p, err := db.d.Jobs.List(ctx, storage.Filter{}, "", 10)
		if err != nil {
			problem("jobs", err)
		}
		data.Jobs = p.Jobs
	})
	if db.d.Child == nil {
		data.Child.WebMode = true
	} else {
		pid, started, restarts := db.d.Child.ChildStatus()
		data.Child = childView{PID: pid, Restarts: restarts}
		if pid > 0 {
			data.Child.Uptime = since(now, started)
		}
	}
	wg.Wait()
	db.render(w, r, http.StatusOK, "overview", s, "Overview", data)
}

func (db *dashboard) queueViews(ctx context.Context, now time.Time) ([]queueView, error) {
	names := make([]string, 0, len(db.d.Queues))
	for n := range db.d.Queues {
		names = append(names, n)
	}
	slices.Sort(names)
	known, err := db.d.Inspector.Queues()
	if err != nil {
		return nil, err
	}
	out := make([]queueView, len(names))
	var firstErr error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, n := range names {
		wg.Go(func() {
			qv := queueView{queueStats: queueStats{Name: n}}
			if slices.Contains(known, n) {
				qi, err := db.d.Inspector.GetQueueInfo(n)
				if err != nil {
					mu.Lock()
					firstErr = cmpErr(firstErr, fmt.Errorf("queue %s: %w", n, err))
					mu.Unlock()
				} else {
					qv.queueStats = queueStats{Name: n, Size: qi.Size, Pending: qi.Pending, Active: qi.Active,
						Scheduled: qi.Scheduled, Retry: qi.Retry, Failed: qi.Archived, Processed: qi.Processed, Paused: qi.Paused}
					qv.LatencyMS = qi.Latency.Round(time.Millisecond).String()
				}
			}
			if qv.LatencyMS == "" {
				qv.LatencyMS = "0s"
			}
			counts, err := db.d.Jobs.Completions(ctx, n, chartMinutes, now)
			if err != nil {
				mu.Lock()
				firstErr = cmpErr(firstErr, err)
				mu.Unlock()
			}
			if counts == nil {
				counts = make([]int64, chartMinutes)
			}
			qv.Chart = newChart(counts, now)
			out[i] = qv
		})
	}
	wg.Wait()
	return out, firstErr
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

func (db *dashboard) healthView(ctx context.Context) healthView {
	if db.d.Health == nil || db.d.Health.Registry == nil {
		return healthView{}
	}
	rep := db.d.Health.Registry.Run(ctx, nil)
	hv := healthView{Status: rep.Status.String()}
	for _, name := range db.d.Health.Registry.Names() {
		if res, ok := rep.Checks[name]; ok {
			hv.Checks = append(hv.Checks, checkView{Name: name, Status: res.Status.String(), Description: res.Description, Duration: res.Duration})
		}
	}
	hist := db.d.Health.Registry.History()
	slices.Reverse(hist)
	hv.History = hist[:min(len(hist), 12)]
	hv.Pings, hv.LastAt, hv.LastUA = db.d.Health.Pings()
	return hv
}

// jobStates are the states the jobs list filters on.
var jobStates = []string{storage.StatePending, storage.StateScheduled, storage.StateActive, storage.StateRetry,
	storage.StateCompleted, storage.StateFailed}

type jobsData struct {
	Filter   storage.Filter
	States   []string
	Queues   []string
	Jobs     []storage.Job
	Next     url.Values // nil on the last page
	First    bool
	Scanned  int
	ScanMax  int
	Filtered bool
}

func (db *dashboard) jobs(w http.ResponseWriter, r *http.Request, s session) {
	q := r.URL.Query()
	f := storage.Filter{State: q.Get("state"), Type: strings.TrimSpace(q.Get("type")), Queue: q.Get("queue")}
	cursor := q.Get("cursor")
	page, err := db.d.Jobs.List(r.Context(), f, cursor, jobsPageSize)
	if err != nil && cursor != "" {
		cursor = "" // a bad or stale cursor: start over
		page, err = db.d.Jobs.List(r.Context(), f, "", jobsPageSize)
	}
	if err != nil {
		q.Set("error", err.Error())
		r.URL.RawQuery = q.Encode()
	}
	data := jobsData{Filter: f, States: jobStates, Jobs: page.Jobs, First: cursor == "", Scanned: page.Scanned,
		ScanMax: storage.ListScanMax, Filtered: f != storage.Filter{}}
	for n := range db.d.Queues {
		data.Queues = append(data.Queues, n)
	}
	slices.Sort(data.Queues)
	if page.Next != "" {
		data.Next = url.Values{}
		for k, v := range map[string]string{"state": f.State, "type": f.Type, "queue": f.Queue, "cursor": page.Next} {
			if v != "" {
				data.Next.Set(k, v)
			}
		}
	}
	db.render(w, r, http.StatusOK, "jobs", s, "Jobs", data)
}

type jobData struct {
	Job       storage.Job
	Payload   string
	Result    string
	Percent   int
	CanRetry  bool
	CanCancel bool
}

func (db *dashboard) job(w http.ResponseWriter, r *http.Request, s session) {
	id := mux.Vars(r)["id"]
	job, err := db.getJob(r.Context(), id)
	if errors.Is(err, storage.ErrNotFound) {
		db.render(w, r, http.StatusNotFound, "notfound", s, "No such job", "No job "+id+": never created, or past its retention.")
		return
	}
	if err != nil {
		db.render(w, r, http.StatusServiceUnavailable, "notfound", s, "Unavailable", "Reading job "+id+": "+err.Error())
		return
	}
	d := jobData{Job: job, Payload: prettyJSON(job.Payload), Result: prettyJSON(job.Result),
		CanRetry: job.State == storage.StateFailed, CanCancel: job.State == storage.StatePending || job.State == storage.StateScheduled}
	if job.Progress.Total > 0 {
		d.Percent = int(min(100, job.Progress.Done*100/job.Progress.Total))
	}
	db.render(w, r, http.StatusOK, "job", s, "Job "+shorten(id, 14), d)
}

func (db *dashboard) getJob(ctx context.Context, id string) (storage.Job, error) {
	if !storage.ValidJobID(id) {
		return storage.Job{}, storage.ErrNotFound
	}
	return db.d.Jobs.Get(ctx, id)
}

// retry runs a failed job's task again: asynq keeps it archived, RunTask makes it
// pending, and the record goes back to pending.
func (db *dashboard) retry(w http.ResponseWriter, r *http.Request) (string, error) {
	job, err := db.getJob(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return "", err
	}
	if job.State != storage.StateFailed {
		return "", fmt.Errorf("job is %s: only a failed job can be retried", job.State)
	}
	if err := db.d.QueueAdmin.RunTask(job.Queue, job.ID); err != nil {
		return "", fmt.Errorf("run the task again: %w", err)
	}
	if err := db.d.Jobs.MarkRetried(r.Context(), job.Queue, job.ID, time.Now()); err != nil {
		return "", err
	}
	return "Retry requested: the task is back in its queue (the live part below shows how it goes).", nil
}

// cancel deletes a pending or scheduled job's task; the record stays, failed with the
// error "cancelled".
func (db *dashboard) cancel(w http.ResponseWriter, r *http.Request) (string, error) {
	job, err := db.getJob(r.Context(), mux.Vars(r)["id"])
	if err != nil {
		return "", err
	}
	if job.State != storage.StatePending && job.State != storage.StateScheduled {
		return "", fmt.Errorf("job is %s: only a pending or scheduled job can be cancelled", job.State)
	}
	if err := db.d.QueueAdmin.DeleteTask(job.Queue, job.ID); err != nil {
		return "", fmt.Errorf("delete the task: %w", err)
	}
	if err := db.d.Jobs.MarkCancelled(r.Context(), job.Queue, job.ID, time.Now()); err != nil {
		return "", err
	}
	return "Job cancelled: its task is deleted; the record says failed, \"cancelled\".", nil
}

func (db *dashboard) pause(pause bool) func(http.ResponseWriter, *http.Request) (string, error) {
	return func(w http.ResponseWriter, r *http.Request) (string, error) {
		q := mux.Vars(r)["queue"]
		if _, ok := db.d.Queues[q]; !ok {
			return "", fmt.Errorf("no queue %q is served", q)
		}
		if pause {
			if err := db.d.QueueAdmin.PauseQueue(q); err != nil {
				return "", fmt.Errorf("pause %s: %w", q, err)
			}
			return "Queue " + q + " paused: workers take nothing from it until it is resumed.", nil
		}
		if err := db.d.QueueAdmin.UnpauseQueue(q); err != nil {
			return "", fmt.Errorf("resume %s: %w", q, err)
		}
		return "Queue " + q + " resumed.", nil
	}
}

func (db *dashboard) instance(w http.ResponseWriter, r *http.Request) (string, error) {
	a := db.d.Admin
	switch mux.Vars(r)["op"] {
	case "busy":
		if a.SetBusy(true) {
			return "Instance is Busy: readiness answers 503.", nil
		}
	case "ready":
		if a.SetBusy(false) {
			return "Busy cleared: the instance is " + a.State.String() + ".", nil
		}
	case "recycle":
		if a.Recycle == nil {
			return "", errors.New("this instance cannot recycle")
		}
		if a.StartRecycle() {
			return "Recycling: the instance drains and exits for the platform to restart it.", nil
		}
	default:
		return "", errors.New("no such action")
	}
	return "", errors.New("the instance is draining")
}

// ago says how long before now t was, roughly ("3s ago", "5m ago").
func ago(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return since(time.Now(), t) + " ago"
}

func since(now, t time.Time) string {
	d := now.Sub(t)
	switch {
	case d < 0:
		return "in " + since(t, now)
	case d < time.Minute:
		return strconv.Itoa(int(d/time.Second)) + "s"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m" + strconv.Itoa(int(d%time.Minute/time.Second)) + "s"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h" + strconv.Itoa(int(d%time.Hour/time.Minute)) + "m"
	default:
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
}

// prettyJSON indents JSON for reading; anything else comes back as it is.
func prettyJSON(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	var out bytes.Buffer
	if json.Indent(&out, b, "", "  ") != nil {
		return string(b)
	}
	return out.String()
}

func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
