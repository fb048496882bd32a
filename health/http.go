package health

import (
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// Detail policies: when a response includes per-check details.
const (
	DetailsNever      = "never"
	DetailsAuthorized = "authorized"
	DetailsAlways     = "always"
)

// Endpoints serves the health routes from one registry and readiness state.
type Endpoints struct {
	Registry *Registry
	State    *State
	// Details is DetailsNever, DetailsAuthorized (only with APIKey) or DetailsAlways.
	Details string
	APIKey  string
	Logger  *slog.Logger
}

type checkJSON struct {
	Status      Status         `json:"status"`
	Description string         `json:"description,omitempty"`
	DurationMS  float64        `json:"duration_ms"`
	Data        map[string]any `json:"data,omitempty"`
}

type reportJSON struct {
	Status     Status               `json:"status"`
	CheckedAt  *time.Time           `json:"checked_at,omitempty"`
	DurationMS *float64             `json:"duration_ms,omitempty"`
	Checks     map[string]checkJSON `json:"checks,omitempty"`
}

// Live answers 200 while the process can answer at all. It runs no check and touches
// nothing outside the process, so a Redis outage never gets an instance killed.
func (e *Endpoints) Live() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.write(w, r, Report{Status: Healthy, CheckedAt: time.Now().UTC()})
	})
}

// Ready answers 200 only when the instance is Ready and every check tagged "ready" is
// not Unhealthy; 503 while starting, Busy or draining.
func (e *Endpoints) Ready() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rep := e.Registry.Run(r.Context(), func(c Check) bool { return c.HasTag(TagReady) })
		if st := e.State.Get(); st != Ready {
			rep.Checks["instance"] = Result{Status: Unhealthy, Description: "instance is " + e.State.String()}
			rep.Status = Unhealthy
		}
		e.write(w, r, rep)
	})
}

// All answers the aggregate of every registered check.
func (e *Endpoints) All() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.write(w, r, e.Registry.Run(r.Context(), nil))
	})
}

// One answers the check called name alone.
func (e *Endpoints) One(name string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.write(w, r, e.Registry.Run(r.Context(), func(c Check) bool { return c.Name == name }))
	})
}

func (e *Endpoints) write(w http.ResponseWriter, r *http.Request, rep Report) {
	body := reportJSON{Status: rep.Status}
	if e.showDetails(r) {
		ms := durationMS(rep.Duration)
		body.CheckedAt, body.DurationMS = &rep.CheckedAt, &ms
		body.Checks = make(map[string]checkJSON, len(rep.Checks))
		for name, res := range rep.Checks {
			body.Checks[name] = checkJSON{Status: res.Status, Description: res.Description, DurationMS: durationMS(res.Duration), Data: res.Data}
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(rep.Status.HTTPStatus())
	if r.Method == http.MethodHead {
		return
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		e.Logger.DebugContext(r.Context(), "write health response", "err", err)
	}
}

func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// showDetails applies the detail policy; the key is compared in constant time.
func (e *Endpoints) showDetails(r *http.Request) bool {
	switch e.Details {
	case DetailsAlways:
		return true
	case DetailsAuthorized:
		if e.APIKey == "" {
			return false
		}
		given := r.URL.Query().Get("api-key")
		if given == "" {
			given = r.Header.Get("X-Api-Key")
		}
		if given == "" {
			if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
				given = strings.TrimSpace(token)
			}
		}
		return subtle.ConstantTimeCompare([]byte(given), []byte(e.APIKey)) == 1
	default:
		return false
	}
}
