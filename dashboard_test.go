package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

const (
	e2eAdminToken = "dashboard-admin-token-for-tests"
	e2eAPIToken   = "api-token-for-tests"
)

// getPage GETs path with the header pairs hdr, not following redirects.
func (in *instance) getPage(path string, hdr ...string) (*http.Response, string) {
	in.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, in.base+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		in.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// enqueue posts a job as an API client does, with the API token.
func (in *instance) enqueue(body string) string {
	in.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, in.base+"/api/v1/jobs", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+e2eAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		in.t.Fatalf("POST /api/v1/jobs: %v", err)
	}
	defer resp.Body.Close()
	var acc struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&acc); err != nil || resp.StatusCode != http.StatusAccepted {
		in.t.Fatalf("POST /api/v1/jobs %s: %d %v", body, resp.StatusCode, err)
	}
	return acc.ID
}

// otherHostRe finds absolute or protocol-relative URLs: a dashboard served offline
// must not load anything from another host.
var otherHostRe = regexp.MustCompile(`(?i)(https?:)?//[a-z0-9][a-z0-9.-]*`)

// TestDashboard checks the dashboard of the built binary in combined mode over HTTP,
// then in a real browser: it logs in through the form, watches a job go from pending or
// active to completed without a reload, retries a failed job from its page and pauses
// a queue. Screenshots go to $SHOESTRING_SCREENSHOTS (e.g. "docs") or a temp dir.
func TestDashboard(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	env := sharedEnv(r, t)
	env["ADMIN_TOKEN"], env["API_TOKEN"], env["DEMO_TASKS"] = e2eAdminToken, e2eAPIToken, "true"
	env["QUEUES"] = "critical=6,default=3,low=1"
	in := startInstance(t, env)
	in.waitReady()

	done := in.enqueue(`{"type":"echo","payload":{"message":"acceptance"}}`)
	if j := in.waitJob(done, 20*time.Second); j.State != "completed" {
		t.Fatalf("job %s: %+v", done, j)
	}

	// Over HTTP, as the acceptance checks say.
	if resp, _ := in.getPage("/dashboard"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET /dashboard without credentials: %d, want 401", resp.StatusCode)
	}
	if resp, _ := in.getPage("/dashboard", "Accept", "text/html"); resp.StatusCode != http.StatusSeeOther ||
		!strings.HasPrefix(resp.Header.Get("Location"), "/dashboard/login") {
		t.Errorf("GET /dashboard from a browser without credentials: %d %q, want a redirect to the login page", resp.StatusCode, resp.Header.Get("Location"))
	}
	bearer := []string{"Authorization", "Bearer " + e2eAdminToken}
	resp, overview := in.getPage("/dashboard", bearer...)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /dashboard with the admin token: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, want := range []string{">critical<", ">default<", ">low<", `href="/dashboard/jobs/` + done + `"`} {
		if !strings.Contains(overview, want) {
			t.Errorf("overview lacks %s", want)
		}
	}
	_, jobPage := in.getPage("/dashboard/jobs/"+done, bearer...)
	if !strings.Contains(jobPage, ">completed<") {
		t.Errorf("job page of %s does not say completed", done)
	}
	pages := map[string]string{"overview": overview, "job": jobPage}
	for _, p := range []string{"/dashboard/jobs", "/dashboard/login", "/dashboard/static/dash.css", "/dashboard/static/dash.js"} {
		_, pages[p] = in.getPage(p, bearer...)
	}
	for name, body := range pages {
		if m := otherHostRe.FindAllString(body, -1); len(m) > 0 {
			t.Errorf("%s refers to another host: %q", name, m)
		}
	}

	t.Run("browser", func(t *testing.T) { browseDashboard(t, in) })
}

// chromium finds a Chromium to drive, or skips (fails with SHOESTRING_REQUIRE_CHROMIUM=1).
func chromium(t *testing.T) string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "/usr/bin/chromium"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if os.Getenv("SHOESTRING_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("no chromium on PATH and SHOESTRING_REQUIRE_CHROMIUM=1: apt-get install -y chromium")
	}
	t.Skip("no chromium on PATH: the browser test of the dashboard needs Debian's chromium (apt-get install -y chromium)")
	return ""
}

func browseDashboard(t *testing.T, in *instance) {
	exe := chromium(t)
	shots := os.Getenv("SHOESTRING_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true), chromedp.NoFirstRun, chromedp.WindowSize(1360, 1000))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	bctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	// The first call starts the browser, which lives as long as its context: no timeout
	// on that one; the steps below each get the time that is left.
	if err := chromedp.Do(bctx); err != nil {
		t.Fatalf("start %s: %v", exe, err)
	}
	ctx, cancelT := context.WithTimeout(bctx, 2*time.Minute)
	defer cancelT()
	run := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	// js evaluates a script in the page and returns its string result.
	js := func(script string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](script))
		if err != nil {
			t.Fatalf("evaluate %s: %v", script, err)
		}
		return s
	}
	location := func() string {
		t.Helper()
		loc, err := chromedp.Run(ctx, chromedp.Location())
		if err != nil {
			t.Fatalf("location: %v", err)
		}
		return loc
	}
	cellText := func(sel string) string {
		return js(fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent.trim() : "" })()`, sel))
	}
	// Log in through the form.
	run("open the dashboard", chromedp.Navigate(in.base+"/dashboard"), chromedp.WaitVisible(chromedp.CSS(`#token`)))
	if loc := location(); !strings.Contains(loc, "/dashboard/login") {
		t.Fatalf("without a session the dashboard is at %s, want the login page", loc)
	}
	run("log in", chromedp.SendKeys(chromedp.CSS(`#token`), e2eAdminToken), chromedp.Submit(chromedp.CSS(`#token`)),
		chromedp.WaitVisible(chromedp.CSS(`table.queues`)))
	if loc := location(); !strings.HasSuffix(loc, "/dashboard") {
		t.Fatalf("after login at %s", loc)
	}

	// A job goes from pending or active to completed on the page, with no reload: the
	// marker set on window survives only if the page is never loaded again.
	js(`window.__noReload = "yes"; "ok"`)
	for i := range 8 {
		in.enqueue(fmt.Sprintf(`{"type":"echo","payload":{"message":"warm %d","sleep_ms":%d}}`, i, 50*i))
	}
	slow := in.enqueue(`{"type":"echo","payload":{"message":"watched from the dashboard","sleep_ms":3000}}`)
	row := `tr[data-job="` + slow + `"] td.state`
	var seen []string
	waitFor(t, 30*time.Second, "job "+slow+" completed on the page", func() bool {
		s := cellText(row)
		if s != "" && (len(seen) == 0 || seen[len(seen)-1] != s) {
			seen = append(seen, s)
		}
		return s == "completed"
	})
	if len(seen) < 2 || (seen[0] != "pending" && seen[0] != "active") {
		t.Errorf("states seen on the page: %v, want pending or active before completed", seen)
	}
	if js(`String(window.__noReload)`) != "yes" {
		t.Error("the page was reloaded: the live refresh must swap the fragment in")
	}
	t.Logf("job %s on the page, without reload: %v", slow, seen)
	screenshot(t, ctx, filepath.Join(shots, "dashboard.png"))

	// A failed job (an upload that is not decodable fails at once), retried from its page.
	data, err := os.ReadFile(filepath.Join(goroot(t), "src", "image", "testdata", "video-001.jpeg"))
	if err != nil {
		t.Fatal(err)
	}
	status, acc := in.upload(data[:len(data)/3], "")
	if status != http.StatusAccepted {
		t.Fatalf("upload: %d %v", status, acc)
	}
	failed := acc["id"].(string)
	if j := in.waitJob(failed, 20*time.Second); j.State != "failed" {
		t.Fatalf("truncated JPEG job: %+v, want failed", j)
	}
	run("open the failed job", chromedp.Navigate(in.base+"/dashboard/jobs/"+failed),
		chromedp.WaitVisible(chromedp.CSS(`pre.error`)))
	if s := cellText("h1 .badge"); s != "failed" {
		t.Errorf("job page badge %q, want failed", s)
	}
	run("retry it", chromedp.Click(chromedp.CSS(`form[action$="/retry"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`p.flash.ok`)))
	if s := cellText("p.flash.ok"); !strings.Contains(s, "Retry requested") {
		t.Errorf("after Retry the page says %q", s)
	}
	// It runs again (and fails again, the upload being what it is): attempt 2.
	waitFor(t, 20*time.Second, "the retried job's second attempt on its page", func() bool {
		return cellText("h1 .badge") == "failed" && strings.Contains(cellText("ol.timeline"), "retried")
	})
	if j := in.job(failed); j.Attempts != 2 {
		t.Errorf("retried job: %+v, want 2 attempts", j)
	}
	screenshot(t, ctx, filepath.Join(shots, "dashboard-job.png"))

	// The jobs list, filtered through its form to the failed jobs.
	run("filter the jobs list", chromedp.Navigate(in.base+"/dashboard/jobs"),
		chromedp.SetValue(chromedp.CSS(`select[name="state"]`), "failed"),
		chromedp.Submit(chromedp.CSS(`select[name="state"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-job="`+failed+`"]`)))
	if n := js(`String(document.querySelectorAll("tr[data-job]").length)`); n != "1" {
		t.Errorf("failed jobs listed: %s, want 1", n)
	}
	screenshot(t, ctx, filepath.Join(shots, "dashboard-jobs.png"))

	// Pause a queue from the overview.
	run("pause default", chromedp.Navigate(in.base+"/dashboard"),
		chromedp.Click(chromedp.CSS(`tr[data-queue="default"] form[action$="/pause"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-queue="default"] .s-paused`)))
	req, _ := http.NewRequest(http.MethodGet, in.base+"/api/v1/queues", nil)
	req.Header.Set("Authorization", "Bearer "+e2eAPIToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var qs struct {
		Queues []struct {
			Name   string
			Paused bool
		}
	}
	if err := json.NewDecoder(resp.Body).Decode(&qs); err != nil {
		t.Fatal(err)
	}
	for _, q := range qs.Queues {
		if q.Paused != (q.Name == "default") {
			t.Errorf("queue %s paused=%v after pausing default", q.Name, q.Paused)
		}
	}
}

func screenshot(t *testing.T, ctx context.Context, path string) {
	t.Helper()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshot %s", path)
}
