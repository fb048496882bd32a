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

	api := r.PathPrefix("/api/v1").Subrouter()
	api.Handle("/images", handleImageCreate(d)).Methods(http.MethodPost)
	api.Handle("/jobs", handleJobCreate(d)).Methods(http.MethodPost)
	api.Handle("/jobs/{id}", handleJobGet(d)).Methods(get...)
	api.Handle("/files/{key:.+}", handleFileGet(d)).Methods(get...)
	api.Handle("/queues", handleQueues(d)).Methods(get...)

	return recoverPanics(d.Logger, logRequests(d.Logger, r))
}
