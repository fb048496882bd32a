package web

import (
	"net/http"

	"github.com/gorilla/mux"
)

// addRoutes is the one list of routes.
func addRoutes(d Deps) http.Handler {
	r := mux.NewRouter()
	r.NotFoundHandler = errorHandler(http.StatusNotFound, "no such route")
	r.MethodNotAllowedHandler = errorHandler(http.StatusMethodNotAllowed, "method not allowed")

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

	r.Handle("/api/v1/images", handleImageCreate(d)).Methods(http.MethodPost)
	r.Handle("/api/v1/jobs", handleJobCreate(d)).Methods(http.MethodPost)
	r.Handle("/api/v1/jobs/{id}", handleJobGet(d)).Methods(get...)
	r.Handle("/api/v1/files/{key:.+}", handleFileGet(d)).Methods(get...)
	r.Handle("/api/v1/queues", handleQueues(d)).Methods(get...)

	return recoverPanics(d.Logger, logRequests(d.Logger, r))
}
