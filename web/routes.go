package web

import (
	"net/http"

	"github.com/gorilla/mux"
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
	r.MethodNotAllowedHandler = MethodNotAllowed

	get := []string{http.MethodGet, http.MethodHead}
	hp := d.HealthPath
	if hp == "" {
		hp = "/health"
	}
	// OPTIONS: CORS preflight, answered by the health handlers themselves.
	hget := append(get, http.MethodOptions)
	r.Handle(hp, d.Health.All()).Methods(hget...)
	r.Handle(hp+"/live", d.Health.Live()).Methods(hget...)
	r.Handle(hp+"/ready", d.Health.Ready()).Methods(hget...)
	for _, name := range d.Health.Registry.Names() {
		r.Handle(hp+"/"+name, d.Health.One(name)).Methods(hget...)
	}
	if d.Admin != nil {
		r.Handle("/admin/busy", d.Admin.Busy()).Methods(http.MethodPost)
		r.Handle("/admin/ready", d.Admin.Ready()).Methods(http.MethodPost)
		r.Handle("/admin/recycle", d.Admin.RecycleHandler()).Methods(http.MethodPost)
		r.Handle("/admin/status", d.Admin.Status()).Methods(get...)
	}

	r.Handle("/api/v1/jobs", handleJobCreate(d)).Methods(http.MethodPost)
	r.Handle("/api/v1/jobs/{id}", handleJobGet(d)).Methods(get...)
	r.Handle("/api/v1/files/{key:.+}", handleFileGet(d)).Methods(get...)
	r.Handle("/api/v1/queues", handleQueues(d)).Methods(get...)
	r.Handle("/api/v1/schedules", handleSchedules(d)).Methods(get...)
	if d.Metrics != nil {
		r.Handle("/metrics", MetricsHandler(d.Metrics, d.MetricsTokens...)).Methods(get...)
	}

	return logRequests(d.Logger, hp, d.Requests, recoverPanics(r))
}

// NotFound and MethodNotAllowed answer 404 and 405 with a JSON error; the host sets
// them on the app's router.
var (
	NotFound         = errorHandler(http.StatusNotFound, "no such route")
	MethodNotAllowed = errorHandler(http.StatusMethodNotAllowed, "method not allowed")
)

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
