package host_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// send sends a request with the given Authorization and Content-Type headers ("" for
// none) and returns its status.
func send(tb testing.TB, method, url, auth, ct, body string) int {
	tb.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
		tb.Errorf("%s %s: 401 without WWW-Authenticate", method, url)
	}
	return resp.StatusCode
}

// TestAPIAccess: who may enqueue what. With API_TOKEN (two, for rotation) the job,
// queue and schedule routes want one of them as a Bearer token, whatever the case of
// "Bearer"; POST /api/v1/jobs wants JSON; a job's own URL needs no token; without
// DEMO_TASKS the demonstration kinds do not exist.
func TestAPIAccess(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	a := hosttest.Start(t, referenceApp, map[string]string{"REDIS_URL": r.URL(), "API_TOKEN": "new-token,old-token"},
		hosttest.Options{WebOnly: true})
	const job = `{"type":"echo","payload":{"message":"hi"}}`
	for _, tc := range []struct {
		name, method, path, auth, ct, body string
		want                               int
	}{
		{"no token", "POST", "/api/v1/jobs", "", "application/json", job, 401},
		{"wrong token", "POST", "/api/v1/jobs", "Bearer nope", "application/json", job, 401},
		{"token as Basic", "POST", "/api/v1/jobs", "Basic new-token", "application/json", job, 401},
		{"text/plain", "POST", "/api/v1/jobs", "Bearer new-token", "text/plain", job, 415},
		{"form", "POST", "/api/v1/jobs", "Bearer new-token", "application/x-www-form-urlencoded", "type=echo", 415},
		{"echo without DEMO_TASKS", "POST", "/api/v1/jobs", "Bearer new-token", "application/json", job, 422},
		{"lowercase bearer, old token", "POST", "/api/v1/jobs", "bearer old-token", "application/json; charset=utf-8",
			`{"type":"image:thumbnail","payload":{"key":"uploads/none.png","sizes":[10]}}`, 422},
		{"queues without token", "GET", "/api/v1/queues", "", "", "", 401},
		{"queues", "GET", "/api/v1/queues", "BEARER new-token", "", "", 200},
		{"schedules without token", "GET", "/api/v1/schedules", "", "", "", 401},
		{"schedules", "GET", "/api/v1/schedules", "Bearer new-token", "", "", 200},
		{"a job's URL is a capability", "GET", "/api/v1/jobs/nosuchjob", "", "", "", 404},
	} {
		if got := send(t, tc.method, a.URL+tc.path, tc.auth, tc.ct, tc.body); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}

	// Without API_TOKEN (and not in trial mode) the routes do not exist.
	b := hosttest.Start(t, referenceApp, map[string]string{"REDIS_URL": r.URL(), "DEMO_TASKS": "true"}, hosttest.Options{WebOnly: true})
	for _, path := range []string{"/api/v1/jobs", "/api/v1/queues", "/api/v1/schedules"} {
		method := "GET"
		if path == "/api/v1/jobs" {
			method = "POST"
		}
		if got := send(t, method, b.URL+path, "Bearer anything", "application/json", job); got != http.StatusNotFound {
			t.Errorf("%s %s without API_TOKEN: %d, want 404", method, path, got)
		}
	}
}
