package web

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/shoestring-go/shoestring/worker/task"
)

type queueStats struct {
	Name      string  `json:"name"`
	Size      int     `json:"size"`
	Pending   int     `json:"pending"`
	Active    int     `json:"active"`
	Scheduled int     `json:"scheduled"`
	Retry     int     `json:"retry"`
	Failed    int     `json:"failed"`
	Processed int     `json:"processed"`  // today (UTC), as asynq counts
	LatencyMS float64 `json:"latency_ms"` // age of the oldest pending task
	Paused    bool    `json:"paused"`
}

// handleQueues reports every configured queue: GET /api/v1/queues.
func handleQueues(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		names := make([]string, 0, len(d.Queues))
		for n := range d.Queues {
			names = append(names, n)
		}
		slices.Sort(names)
		known, err := d.Inspector.Queues()
		if err != nil {
			WriteError(w, r, fmt.Errorf("%w: list queues: %v", task.ErrUnavailable, err))
			return
		}
		out := make([]queueStats, 0, len(names))
		for _, n := range names {
			if !slices.Contains(known, n) { // nothing was ever enqueued to it
				out = append(out, queueStats{Name: n})
				continue
			}
			qi, err := d.Inspector.GetQueueInfo(n)
			if err != nil {
				WriteError(w, r, fmt.Errorf("%w: queue %s: %v", task.ErrUnavailable, n, err))
				return
			}
			out = append(out, queueStats{
				Name: n, Size: qi.Size, Pending: qi.Pending, Active: qi.Active, Scheduled: qi.Scheduled,
				Retry: qi.Retry, Failed: qi.Archived, Processed: qi.Processed,
				LatencyMS: float64(qi.Latency.Microseconds()) / 1000, Paused: qi.Paused,
			})
		}
		WriteJSON(w, http.StatusOK, map[string]any{"queues": out})
	})
}

// handleSchedules lists the periodic jobs: GET /api/v1/schedules.
func handleSchedules(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		views := []ScheduleView{}
		if d.Schedules != nil {
			var err error
			if views, err = d.Schedules(r.Context()); err != nil {
				WriteError(w, r, err)
				return
			}
		}
		WriteJSON(w, http.StatusOK, map[string]any{"schedules": views})
	})
}
