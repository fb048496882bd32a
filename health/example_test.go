package health_test

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/shoestring-go/shoestring/health"
)

// A CheckFunc is a Checker from a function: here, an app's check of how stale its
// feeds are. Degraded still answers 200, so a monitor shows it while the platform
// keeps routing traffic; Unhealthy answers 503.
func ExampleCheckFunc() {
	lastFetch := time.Now().Add(-20 * time.Minute)
	feeds := health.CheckFunc(func(ctx context.Context) health.Result {
		age := time.Since(lastFetch)
		switch {
		case age > time.Hour:
			return health.Result{Status: health.Unhealthy, Description: "feeds not fetched for an hour"}
		case age > 15*time.Minute:
			return health.Result{Status: health.Degraded, Description: "feeds fetched over 15 minutes ago"}
		}
		return health.Result{Status: health.Healthy}
	})
	r := feeds.Check(context.Background())
	fmt.Println(r.Status, r.Status.HTTPStatus(), r.Description)
	// Output:
	// Degraded 200 feeds fetched over 15 minutes ago
}

// PingCheck turns a ping function (a database's PingContext, Redis's PING) into a
// check, with the round trip as data.
func ExamplePingCheck() {
	db := func(ctx context.Context) error { return errors.New("dial tcp 10.0.0.5:5432: connection refused") }
	r := health.PingCheck(db).Check(context.Background())
	fmt.Println(r.Status, r.Description)
	// Output:
	// Unhealthy ping: dial tcp 10.0.0.5:5432: connection refused
}

// StorageCheck reports whether a store is reachable: the blob store's (Bucket's
// IsAccessible), or any of the app's.
func ExampleStorageCheck() {
	accessible := func(ctx context.Context) (bool, error) { return true, nil }
	fmt.Println(health.StorageCheck(accessible).Check(context.Background()).Status)
	// Output:
	// Healthy
}

// QueueCheck grades the age of the oldest waiting task: here Degraded from 1 minute,
// Unhealthy from 5.
func ExampleQueueCheck() {
	backlog := func(ctx context.Context) (health.Backlog, error) {
		return health.Backlog{Pending: 120, Oldest: 90 * time.Second}, nil
	}
	r := health.QueueCheck(backlog, time.Minute, 5*time.Minute).Check(context.Background())
	fmt.Println(r.Status, r.Data["pending"])
	// Output:
	// Degraded 120
}

// A Check names a Checker for the registry; TagReady makes it gate readiness, so
// that the platform stops routing to an instance whose database is down.
func ExampleCheck() {
	reg := health.NewRegistry(health.Options{Timeout: time.Second})
	reg.Register(health.Check{Name: "db", Tags: []string{health.TagReady}, ComponentType: "datastore",
		Checker: health.PingCheck(func(ctx context.Context) error { return nil })})
	reg.Register(health.Check{Name: "feeds", Timeout: 5 * time.Second,
		Checker: health.CheckFunc(func(ctx context.Context) health.Result {
			return health.Result{Status: health.Degraded, Description: "slow source"}
		})})

	ready := reg.Run(context.Background(), func(c health.Check) bool { return c.HasTag(health.TagReady) })
	all := reg.Run(context.Background(), nil)
	fmt.Println("ready:", ready.Status, len(ready.Checks))
	fmt.Println("all:", all.Status, len(all.Checks))
	// Output:
	// ready: Healthy 1
	// all: Degraded 2
}

// A Registry runs checks with caching and single flight, and reports a check
// Unhealthy only after FailureThreshold failures in a row (the ones before are
// Degraded), keeping each status change in its History.
func ExampleRegistry() {
	reg := health.NewRegistry(health.Options{Timeout: time.Second, FailureThreshold: 3})
	reg.Register(health.Check{Name: "db", Checker: health.PingCheck(func(ctx context.Context) error {
		return errors.New("connection refused")
	})})

	for range 3 {
		fmt.Println(reg.Run(context.Background(), nil).Status)
	}
	for _, c := range reg.History() {
		fmt.Println(c.Check, c.From, "->", c.To)
	}
	// Output:
	// Degraded
	// Degraded
	// Unhealthy
	// db Healthy -> Degraded
	// db Degraded -> Unhealthy
}

// Status is Healthy, Degraded or Unhealthy, as ASP.NET Core's health checks name
// them; the aggregate is the worst of the checks.
func ExampleStatus() {
	for _, s := range []health.Status{health.Healthy, health.Degraded, health.Unhealthy} {
		text, _ := s.MarshalText()
		fmt.Println(s, s.HTTPStatus(), string(text))
	}
	// Output:
	// Healthy 200 Healthy
	// Degraded 200 Degraded
	// Unhealthy 503 Unhealthy
}

// TokenMatches compares a presented token with the configured ones (several, to
// rotate) in constant time; BearerToken reads it from the Authorization header.
func ExampleTokenMatches() {
	req := httptest.NewRequest("GET", "/health", nil)
	req.Header.Set("Authorization", "Bearer s3cret-new")
	given := health.BearerToken(req)
	fmt.Println(given, health.TokenMatches(given, "s3cret-old", "s3cret-new"), health.TokenMatches("", ""))
	// Output:
	// s3cret-new true false
}

// BearerToken is the token of an "Authorization: Bearer" header, or "".
func ExampleBearerToken() {
	req := httptest.NewRequest("GET", "/health", nil)
	fmt.Printf("%q\n", health.BearerToken(req))
	req.Header.Set("Authorization", "Bearer abc123")
	fmt.Printf("%q\n", health.BearerToken(req))
	// Output:
	// ""
	// "abc123"
}
