package web

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkLogRequests is the request log of an enqueue through POST /api/v1/jobs: the
// middleware around a handler that names its job (three attributes), logging in slog's
// text format to io.Discard. It measures what logRequests adds to each request.
func BenchmarkLogRequests(b *testing.B) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	h := logRequests(log, "/health", nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		AddRequestLogAttrs(r.Context(), "job_id", "76apiijgnsjlrpi62wtpgvn6g6", "task_type", "echo", "queue", "default")
		w.WriteHeader(http.StatusAccepted)
	}))
	r := httptest.NewRequest(http.MethodPost, "/api/v1/jobs", nil)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		h.ServeHTTP(w, r)
	}
	if w.Code != http.StatusAccepted {
		b.Fatalf("status %d", w.Code)
	}
}
