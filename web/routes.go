package web

import (
	"net/http"
	"path"
	"strings"

	"github.com/gorilla/mux"

	"github.com/shoestring-go/shoestring/health"
)

// HostPaths are the paths the host's own routes live under (the health base path
// comes first, as given): an app route whose path is one of them, or below one, would
// be shadowed, and the host refuses it at start.
func HostPaths(healthPath string) []string {
	return []string{healthPath, "/admin", "/api/v1/jobs", "/api/v1/files", "/api/v1/queues", "/api/v1/schedules",
		"/metrics", "/dashboard"}
}

// addRoutes is the one list of routes. The host's routes are matched first; what none
// of them matches goes to the app's handler.
func addRoutes(d Deps) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = NotFound
	if d.App != nil {
		r.NotFoundHandler = labelAppRoute(limitBody(d.MaxBodyBytes, d.App))
	}
	r.Use(labelRoute)
	r.MethodNotAllowedHandler = MethodNotAllowedFor(r)

	get := []string{http.MethodGet, http.MethodHead}
	hp := d.HealthPath
	if hp == "" {
		hp = "/health"
	}
	// OPTIONS: CORS preflight, answered by the health handlers themselves.
	hget := append(get, http.MethodOptions)
	direct := map[string]healthRoute{} // what serveHealth answers without the router
	handleHealth := func(p string, h http.Handler) {
		r.Handle(p, h).Methods(hget...)
		// The router matches the first route of a path, takes braces for a pattern, and
		// redirects to the clean path: those stay the router's.
		if _, dup := direct[p]; !dup && !strings.ContainsAny(p, "{}") && path.Clean(p) == p {
			direct[p] = healthRoute{template: p, handler: h}
		}
	}
	handleHealth(hp, d.Health.All())
	handleHealth(hp+"/live", d.Health.Live())
	handleHealth(hp+"/ready", d.Health.Ready())
	for _, name := range d.Health.Registry.Names() {
		handleHealth(hp+"/"+name, d.Health.One(name))
	}
	if d.Admin != nil {
		r.Handle("/admin/busy", d.Admin.Busy()).Methods(http.MethodPost)
		r.Handle("/admin/ready", d.Admin.Ready()).Methods(http.MethodPost)
		r.Handle("/admin/recycle", d.Admin.RecycleHandler()).Methods(http.MethodPost)
		r.Handle("/admin/status", d.Admin.Status()).Methods(get...)
		newDashboard(d).mount(r)
	}

	// The job id is a capability (130 random bits): GET /api/v1/jobs/{id} needs no token.
	r.Handle("/api/v1/jobs/{id}", handleJobGet(d)).Methods(get...)
	r.Handle("/api/v1/files/{key:.+}", handleFileGet(d)).Methods(get...)
	// The hot write path skips the router's walk over every route and its two request
	// copies: an exact method and path, matched before the router (see staticRoutes).
	static := map[staticRoute]http.Handler{}
	if len(d.APITokens) > 0 || d.APIOpen {
		create := requireToken(d.APITokens, handleJobCreate(d))
		r.Handle("/api/v1/jobs", create).Methods(http.MethodPost)
		static[staticRoute{http.MethodPost, "/api/v1/jobs"}] = create
		r.Handle("/api/v1/queues", requireToken(d.APITokens, handleQueues(d))).Methods(get...)
		r.Handle("/api/v1/schedules", requireToken(d.APITokens, handleSchedules(d))).Methods(get...)
	}
	if d.Metrics != nil {
		r.Handle("/metrics", MetricsHandler(d.Metrics, d.MetricsTokens...)).Methods(get...)
	}

	return serveHealth(d.Logger, hp, d.Requests, direct, logRequests(d.Logger, hp, d.Requests, recoverPanics(staticRoutes(static, r))))
}

// staticRoute is a method and an exact path.
type staticRoute struct{ method, path string }

// staticRoutes serves a request whose method and path are exactly a key of routes
// with that handler, labelled with its path as the router would
// label it, and every other request with next. Its routes must also be next's, first
// of their path, without variables, so that the answer is the router's.
func staticRoutes(routes map[staticRoute]http.Handler, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, ok := routes[staticRoute{r.Method, r.URL.Path}]; ok {
			if rq := requestFrom(r.Context()); rq != nil {
				rq.template = r.URL.Path
			}
			h.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// NotFound answers 404 with a JSON error; the host sets it on the app's router.
var NotFound = errorHandler(http.StatusNotFound, "no such route")

// MethodNotAllowedFor answers 405 with a JSON error and the Allow header RFC 9110
// §15.5.6 requires, listing the methods router has for the request's path.
func MethodNotAllowedFor(router *mux.Router) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
			http.MethodPatch, http.MethodDelete, http.MethodOptions} {
			probe := r.Clone(r.Context())
			probe.Method = m
			var match mux.RouteMatch
			if router.Match(probe, &match) && match.MatchErr == nil {
				allow = append(allow, m)
			}
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteJSON(w, http.StatusMethodNotAllowed, errorBody{Error: "method not allowed"})
	})
}

// requireToken answers 401 unless the request carries one of tokens as a Bearer
// token; with no tokens (trial mode) it lets every request through.
func requireToken(tokens []string, next http.Handler) http.Handler {
	if len(tokens) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !health.TokenMatches(health.BearerToken(r), tokens...) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoestring api"`)
			WriteError(w, r, &Error{Status: http.StatusUnauthorized, Msg: "API token required as Authorization: Bearer <API_TOKEN>"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// limitBody caps request bodies at n bytes (0: no cap); reading past it fails with
// *http.MaxBytesError, which WriteError answers 413.
func limitBody(n int64, next http.Handler) http.Handler {
	if n <= 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}
