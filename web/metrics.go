package web

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"

	"github.com/gorilla/mux"
)

// RequestObserver records each answered request under its route template;
// *telemetry.HTTP is one.
type RequestObserver interface {
	ObserveRequest(route string, code int, took time.Duration)
}

// RouteUnmatched is the route of a request that no route matched.
const RouteUnmatched = "unmatched"

// MetricsHandler guards metrics (a Prometheus handler) with a Bearer token: a request
// whose "Authorization: Bearer <token>" (scheme in any case) equals one of tokens,
// compared in constant time, is served; any other gets 401. Empty tokens are ignored;
// with none left it answers 404, as if there were no such route.
func MetricsHandler(metrics http.Handler, tokens ...string) http.Handler {
	var keys [][]byte
	for _, t := range tokens {
		if t != "" {
			keys = append(keys, []byte(t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(keys) == 0 {
			NotFound.ServeHTTP(w, r)
			return
		}
		given := bearer(r)
		ok := 0
		for _, k := range keys {
			ok |= subtle.ConstantTimeCompare(given, k) // every key compared: no early exit
		}
		if ok != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoestring metrics"`)
			w.Header().Set("Cache-Control", "no-store")
			WriteJSON(w, http.StatusUnauthorized, errorBody{Error: "metrics token required as Authorization: Bearer (METRICS_TOKEN or ADMIN_TOKEN)"})
			return
		}
		w.Header().Set("Cache-Control", "no-store")
		metrics.ServeHTTP(w, r)
	})
}

// bearer returns the token of an Authorization header with the Bearer scheme, which
// RFC 9110 section 11.1 makes case-insensitive; nil when there is none.
func bearer(r *http.Request) []byte {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil
	}
	return []byte(strings.TrimSpace(token))
}

// labelRoute is router middleware that records the matched route's path template.
func labelRoute(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setRouteLabel(r, mux.CurrentRoute(r))
		next.ServeHTTP(w, r)
	})
}

// setRouteLabel tells the request logger, which sits outside the router (the router
// hands the matched route only to the handler), the template of route.
func setRouteLabel(r *http.Request, route *mux.Route) {
	rq := requestFrom(r.Context())
	if rq == nil || route == nil {
		return
	}
	if tmpl, err := route.GetPathTemplate(); err == nil {
		rq.template = tmpl
	}
}

// matcher is what an app router can do: find the route a request would take.
type matcher interface {
	Match(r *http.Request, m *mux.RouteMatch) bool
}

// labelAppRoute labels the request with the app route that app (when it is a
// gorilla/mux router) will serve it with. The app's router is the app's: the host adds
// no middleware to it, so this matches once more, for app routes only.
func labelAppRoute(app http.Handler) http.Handler {
	m, ok := app.(matcher)
	if !ok {
		return app
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rm mux.RouteMatch
		if m.Match(r, &rm) && rm.MatchErr == nil {
			setRouteLabel(r, rm.Route)
		}
		app.ServeHTTP(w, r)
	})
}
