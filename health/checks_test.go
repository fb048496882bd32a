package health

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

func backlogOf(pending int64, oldest time.Duration) BacklogFunc {
	return func(context.Context) (Backlog, error) {
		return Backlog{Pending: pending, Oldest: oldest, Queues: map[string]QueueBacklog{"default": {Pending: pending, Oldest: oldest}}}, nil
	}
}

func TestWorkerCheck(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	beats := storage.NewHeartbeats(r.Client(t))
	ctx := context.Background()

	if res := WorkerCheck(beats, 10*time.Second, backlogOf(0, 0), time.Minute).Check(ctx); res.Status != Unhealthy {
		t.Fatalf("no heartbeat: %+v", res)
	}
	now := time.Now()
	tenMinAgo := now.Add(-10 * time.Minute)
	if err := beats.Beat(ctx, storage.WorkerBeat{ID: "w:1", BeatAt: now, StartedAt: now.Add(-time.Hour),
		LastSuccess: tenMinAgo, Processed: 40, Failed: 2, Active: 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		backlog BacklogFunc
		stale   time.Duration
		want    Status
	}{
		{"idle for long is healthy", backlogOf(0, 0), time.Minute, Healthy},
		{"waiting, last success within stale", backlogOf(5, time.Second), 20 * time.Minute, Healthy},
		{"waiting, no success for stale", backlogOf(5, time.Second), 6 * time.Minute, Degraded},
		{"waiting, no success for twice stale", backlogOf(5, time.Second), 4 * time.Minute, Unhealthy},
		{"waiting, staleAfter 0 turns the judgement off", backlogOf(5, time.Second), 0, Healthy},
		{"queues unreadable", func(context.Context) (Backlog, error) { return Backlog{}, errors.New("redis down") }, time.Minute, Unhealthy},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			res := WorkerCheck(beats, 10*time.Second, tc.backlog, tc.stale).Check(ctx)
			if res.Status != tc.want {
				t.Errorf("status %v (%s), want %v", res.Status, res.Description, tc.want)
			}
			if res.Data["processed"] != int64(40) || res.Data["failed"] != int64(2) || res.Data["active"] != int64(1) ||
				res.Data["last_success"] == nil || res.Data["since_last_success_s"] == nil {
				t.Errorf("data = %v", res.Data)
			}
		})
	}
}

func TestQueueCheck(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		oldest time.Duration
		want   Status
	}{{0, Healthy}, {30 * time.Second, Healthy}, {2 * time.Minute, Degraded}, {10 * time.Minute, Unhealthy}} {
		res := QueueCheck(backlogOf(3, tc.oldest), time.Minute, 5*time.Minute).Check(context.Background())
		if res.Status != tc.want || res.Data["pending"] != int64(3) {
			t.Errorf("oldest %v: %v %v, want %v", tc.oldest, res.Status, res.Data, tc.want)
		}
	}
	// 0 turns a threshold off: an empty queue is not "past" a threshold of 0.
	for _, tc := range []struct {
		oldest, warn, fail time.Duration
		want               Status
	}{
		{0, 0, 0, Healthy},
		{time.Hour, 0, 0, Healthy},
		{2 * time.Minute, 0, 5 * time.Minute, Healthy},
		{10 * time.Minute, 0, 5 * time.Minute, Unhealthy},
		{2 * time.Minute, time.Minute, 0, Degraded},
	} {
		res := QueueCheck(backlogOf(3, tc.oldest), tc.warn, tc.fail).Check(context.Background())
		if res.Status != tc.want {
			t.Errorf("oldest %v, warn %v, fail %v: %v (%s), want %v", tc.oldest, tc.warn, tc.fail, res.Status, res.Description, tc.want)
		}
	}
}

// TestAdminZeroFields: an Admin without Recycle answers POST /admin/recycle 501 and
// leaves the instance as it was (it used to turn it Busy, then panic); one without
// Started reports no uptime rather than 292 years.
func TestAdminZeroFields(t *testing.T) {
	t.Parallel()
	st := &State{}
	st.Set(Ready)
	a := &Admin{State: st, Token: "t"}
	for _, tc := range []struct {
		method, path string
		h            http.Handler
		code         int
		body         string
	}{
		{http.MethodPost, "/admin/recycle", a.RecycleHandler(), http.StatusNotImplemented, `{"error":"this instance cannot recycle"}`},
		{http.MethodGet, "/admin/status", a.Status(), http.StatusOK, fmt.Sprintf(`{"state":"ready","pid":%d}`, os.Getpid())},
	} {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		req.Header.Set("Authorization", "Bearer t")
		rec := httptest.NewRecorder()
		tc.h.ServeHTTP(rec, req)
		if rec.Code != tc.code || strings.TrimSpace(rec.Body.String()) != tc.body {
			t.Errorf("%s %s: %d %s, want %d %s", tc.method, tc.path, rec.Code, rec.Body, tc.code, tc.body)
		}
	}
	if a.StartRecycle() || st.Get() != Ready {
		t.Errorf("StartRecycle without Recycle: state %s, want ready and false", st)
	}
}
