package health

import (
	"encoding/json"
	"net/http"
	"os"
	"time"
)

// Admin serves the instance controls of Azure's role model: Busy (alive but not to be
// sent traffic), Ready again, and Recycle (a graceful stop for the platform to restart
// the deployable), each behind a Bearer token compared in constant time.
type Admin struct {
	State *State // required
	Token string // never empty: without a token every route answers 401
	// Recycle starts a graceful stop that ends the process for a restart; nil: the
	// instance cannot recycle, and POST /admin/recycle answers 501.
	Recycle func()
	// Started is when the process started, for the status's uptime_s; zero: no uptime.
	Started time.Time
}

type statusJSON struct {
	State   string `json:"state"`
	PID     int    `json:"pid"`
	UptimeS *int64 `json:"uptime_s,omitempty"`
}

// Busy turns readiness 503 and nothing else: POST /admin/busy. 409 while draining.
func (a *Admin) Busy() http.Handler { return a.setBusy(true) }

// Ready clears Busy: POST /admin/ready. The instance is then Ready, or still starting
// if its worker is not up yet (the body says which). 409 while draining.
func (a *Admin) Ready() http.Handler { return a.setBusy(false) }

// SetBusy sets (or clears) Busy as POST /admin/busy (/admin/ready) does; false while
// draining, changing nothing.
func (a *Admin) SetBusy(busy bool) bool { return a.State.SetBusy(busy) }

// StartRecycle turns the instance Busy and starts the graceful stop of a recycle, as
// POST /admin/recycle does; false while draining or without a Recycle, changing
// nothing.
func (a *Admin) StartRecycle() bool {
	if a.Recycle == nil || !a.State.SetBusy(true) {
		return false
	}
	a.Recycle()
	return true
}

func (a *Admin) setBusy(busy bool) http.Handler {
	return a.auth(func(w http.ResponseWriter, r *http.Request) {
		if !a.SetBusy(busy) {
			a.write(w, http.StatusConflict)
			return
		}
		a.write(w, http.StatusOK)
	})
}

// RecycleHandler turns the instance Busy and starts a graceful stop after which the
// process exits for the platform to restart it: POST /admin/recycle answers 202.
func (a *Admin) RecycleHandler() http.Handler {
	return a.auth(func(w http.ResponseWriter, r *http.Request) {
		if a.Recycle == nil {
			a.write(w, http.StatusNotImplemented)
			return
		}
		if !a.StartRecycle() {
			a.write(w, http.StatusConflict)
			return
		}
		a.write(w, http.StatusAccepted)
	})
}

// Status reports the instance state: GET /admin/status.
func (a *Admin) Status() http.Handler {
	return a.auth(func(w http.ResponseWriter, r *http.Request) { a.write(w, http.StatusOK) })
}

func (a *Admin) write(w http.ResponseWriter, code int) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	body := statusJSON{State: a.State.String(), PID: os.Getpid()}
	if !a.Started.IsZero() {
		up := int64(time.Since(a.Started).Seconds())
		body.UptimeS = &up
	}
	switch {
	case code == http.StatusNotImplemented:
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "this instance cannot recycle"})
		return
	case code >= 400:
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "instance is " + body.State})
		return
	}
	_ = json.NewEncoder(w).Encode(body)
}

func (a *Admin) auth(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.Token == "" || !keyMatches(r, a.Token, false) {
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("WWW-Authenticate", `Bearer realm="shoestring admin"`)
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error":"admin token required as Authorization: Bearer"}` + "\n"))
			return
		}
		h(w, r)
	})
}
