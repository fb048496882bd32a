package web

import (
	"context"
	"log/slog"
	"net/http"
	"strings"
	"sync"
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

// answered is the status s recorded, 200 when the handler wrote none.
func (s *statusRecorder) answered() int {
	if s.status == 0 {
		return http.StatusOK
	}
	return s.status
}

type requestKey struct{}

// request is what logRequests keeps of one request, in one allocation, and puts in
// its context: the status it was answered with, the logger and the attributes handlers
// add to its log line (mu guards attrs), and the template of the route that matched,
// set by the router's goroutine before the handler runs.
type request struct {
	statusRecorder
	log      *slog.Logger
	mu       sync.Mutex
	attrs    []any
	template string
}

// requestFrom is the request logRequests put in ctx, or nil.
func requestFrom(ctx context.Context) *request {
	rq, _ := ctx.Value(requestKey{}).(*request)
	return rq
}

// logRequests logs each request once it is answered (health routes under healthPath,
// which pingers hit all day, at debug level), puts log in the request's context for
// WriteError, and, with obs, records the request under the template of the route that
// matched it (RouteUnmatched when none did): never the raw path, whose values (job ids,
// file keys, probes for /wp-admin) would make the label unbounded.
func logRequests(log *slog.Logger, healthPath string, obs RequestObserver, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rq := &request{statusRecorder: statusRecorder{ResponseWriter: w}, log: log}
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, rq))
		next.ServeHTTP(&rq.statusRecorder, r)
		status := rq.answered()
		end := time.Now()
		if obs != nil {
			tmpl := rq.template
			if tmpl == "" {
				tmpl = RouteUnmatched
			}
			obs.ObserveRequest(tmpl, status, end.Sub(start))
		}
		level := slog.LevelInfo
		if r.URL.Path == healthPath || strings.HasPrefix(r.URL.Path, healthPath+"/") {
			level = slog.LevelDebug
		}
		if !log.Enabled(r.Context(), level) {
			return
		}
		// The record is built here, not by log.Log: Log would look up its caller's pc
		// (runtime.Callers, for a source that names this function) and box each value
		// in an []any. Four attributes and a handler's one fit in the record itself.
		rec := slog.NewRecord(end, level, "http request", 0)
		rec.AddAttrs(slog.String("method", r.Method), slog.String("path", r.URL.Path),
			slog.Int("status", status), slog.Int64("duration_ms", end.Sub(start).Milliseconds()))
		rq.mu.Lock()
		rec.Add(rq.attrs...)
		rq.mu.Unlock()
		_ = log.Handler().Handle(r.Context(), rec)
	})
}

// healthRoute is a health route as serveHealth answers it: its handler and the path
// it is recorded under.
type healthRoute struct {
	template string
	handler  http.Handler
}

// recorders are the statusRecorders of serveHealth, reused: the health routes are
// what pingers hit all day, so answering them should cost no garbage.
var recorders = sync.Pool{New: func() any { return new(statusRecorder) }}

// serveHealth answers a GET, HEAD or OPTIONS request whose path is exactly one of
// routes' keys (all under healthPath) with that route's handler, as logRequests,
// recoverPanics and the router would, without their allocations: it records the
// request under the route's template with obs (when not nil) and logs it at debug
// level. The handler finds no request log in the context: the health handlers add
// nothing to it. Every other request goes to next, unchanged, so an unknown method
// still gets the router's 405 with Allow.
func serveHealth(log *slog.Logger, healthPath string, obs RequestObserver, routes map[string]healthRoute, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, healthPath) ||
			(r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions) {
			next.ServeHTTP(w, r)
			return
		}
		route, ok := routes[r.URL.Path]
		if !ok {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := recorders.Get().(*statusRecorder)
		*rec = statusRecorder{ResponseWriter: w}
		serveRecovering(log, route.handler, rec, r)
		status := rec.answered()
		*rec = statusRecorder{} // holds on to no connection while pooled
		recorders.Put(rec)
		if obs != nil {
			obs.ObserveRequest(route.template, status, time.Since(start))
		}
		if log.Enabled(r.Context(), slog.LevelDebug) {
			log.DebugContext(r.Context(), "http request",
				"method", r.Method, "path", r.URL.Path, "status", status, "duration_ms", time.Since(start).Milliseconds())
		}
	})
}

// recoverPanics answers 500 instead of dropping the connection when a handler panics.
// It sits inside logRequests, so the 500 is logged as a request too.
func recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		serveRecovering(loggerFrom(r.Context()), next, w, r)
	})
}

// serveRecovering serves r with next, answering 500 (and logging the panic with log)
// when next panics; http.ErrAbortHandler is left to net/http.
func serveRecovering(log *slog.Logger, next http.Handler, w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			log.ErrorContext(r.Context(), "handler panic", "path", r.URL.Path, "panic", p)
			WriteJSON(w, http.StatusInternalServerError, errorBody{Error: "internal error"})
		}
	}()
	next.ServeHTTP(w, r)
}
