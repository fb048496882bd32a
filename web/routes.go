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
	r.Handle("/health", d.Health.All()).Methods(get...)
	r.Handle("/health/live", d.Health.Live()).Methods(get...)
	r.Handle("/health/ready", d.Health.Ready()).Methods(get...)
	for _, name := range d.Health.Registry.Names() {
		r.Handle("/health/"+name, d.Health.One(name)).Methods(get...)
	}

	r.Handle("/api/v1/images", handleImageCreate(d)).Methods(http.MethodPost)
	r.Handle("/api/v1/jobs", handleJobCreate(d)).Methods(http.MethodPost)
	r.Handle("/api/v1/jobs/{id}", handleJobGet(d)).Methods(get...)
	r.Handle("/api/v1/files/{key:.+}", handleFileGet(d)).Methods(get...)
	r.Handle("/api/v1/queues", handleQueues(d)).Methods(get...)

	return recoverPanics(d.Logger, logRequests(d.Logger, r))
}
