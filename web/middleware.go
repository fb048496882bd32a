package web

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// logRequests logs each request once it is answered (health routes under healthPath,
// which pingers hit all day, at debug level), puts log in the request's context for
// WriteError, and, with obs, records the request under the template of the route that
// matched it (RouteUnmatched when none did): never the raw path, whose values (job ids,
// file keys, probes for /wp-admin) would make the label unbounded.
func logRequests(log *slog.Logger, healthPath string, obs RequestObserver, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w}
		rl := &requestLog{log: log}
		r = r.WithContext(context.WithValue(r.Context(), loggerKey{}, rl))
		r, route := withRouteLabel(r)
		next.ServeHTTP(rec, r)
		if rec.status == 0 {
			rec.status = http.StatusOK
		}
		if obs != nil {
			tmpl := route.template
			if tmpl == "" {
				tmpl = RouteUnmatched
			}
			obs.ObserveRequest(tmpl, rec.status, time.Since(start))
		}
		level := slog.LevelInfo
		if r.URL.Path == healthPath || strings.HasPrefix(r.URL.Path, healthPath+"/") {
			level = slog.LevelDebug
		}
		args := []any{"method", r.Method, "path", r.URL.Path, "status", rec.status, "duration_ms", time.Since(start).Milliseconds()}
		rl.mu.Lock()
		args = append(args, rl.attrs...)
		rl.mu.Unlock()
		log.Log(r.Context(), level, "http request", args...)
	})
}

// recoverPanics answers 500 instead of dropping the connection when a handler panics.
// It sits inside logRequests, so the 500 is logged as a request too.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				loggerFrom(r.Context()).ErrorContext(r.Context(), "handler panic", "path", r.URL.Path, "panic", p)
				WriteJSON(w, http.StatusInternalServerError, errorBody{Error: "internal error"})
			}
		}()
		next.ServeHTTP(w, r)
	})
}
