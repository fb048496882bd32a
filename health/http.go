package health

import (
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Detail policies: when a response includes per-check details.
const (
	DetailsNever      = "never"
	DetailsAuthorized = "authorized"
	DetailsAlways     = "always"
)

// ContentTypeHealthJSON is the media type of the IETF draft "Health Check Response
// Format for HTTP APIs" (draft-inadarei-api-health-check-06), answered when a client
// asks for it in Accept.
const ContentTypeHealthJSON = "application/health+json"

// Endpoints serves the health routes from one registry and readiness state. Set the
// fields before serving; the handlers are safe for concurrent use.
type Endpoints struct {
	Registry *Registry
	State    *State
	// Details is DetailsNever, DetailsAuthorized (only with APIKey) or DetailsAlways.
	Details string
	APIKey  string
	// CacheMaxAge is advertised in Cache-Control; it should equal the registry's Cache.
	CacheMaxAge time.Duration
	// CORSOrigins may read the health routes from a browser ("*" for any); empty: no CORS.
	CORSOrigins []string
	Logger      *slog.Logger

	pings    atomic.Int64
	lastPing atomic.Pointer[ping]
}

type ping struct {
	At        time.Time
	UserAgent string
}

type checkJSON struct {
	Status      Status         `json:"status"`
	Description string         `json:"description,omitempty"`
	DurationMS  float64        `json:"duration_ms"`
	Data        map[string]any `json:"data,omitempty"`
}

type pingsJSON struct {
	Count         int64      `json:"count"`
	LastAt        *time.Time `json:"last_at,omitempty"`
	LastUserAgent string     `json:"last_user_agent,omitempty"`
}

type reportJSON struct {
	Status     Status               `json:"status"`
	CheckedAt  *time.Time           `json:"checked_at,omitempty"`
	DurationMS *float64             `json:"duration_ms,omitempty"`
	Checks     map[string]checkJSON `json:"checks,omitempty"`
	History    []Change             `json:"history,omitempty"`
	Pings      *pingsJSON           `json:"pings,omitempty"`
}

// Live answers 200 while the process can answer at all. It runs no check and touches
// nothing outside the process, so a Redis outage never gets an instance killed.
func (e *Endpoints) Live() http.Handler {
	return e.wrap(func(w http.ResponseWriter, r *http.Request) {
		e.write(w, r, Report{Status: Healthy, CheckedAt: time.Now().UTC()}, false)
	})
}

// Ready answers 200 only when the instance is Ready and no check tagged "ready" is
// Unhealthy; 503 while starting, Busy or draining.
func (e *Endpoints) Ready() http.Handler {
	return e.wrap(func(w http.ResponseWriter, r *http.Request) {
		rep := e.Registry.Run(r.Context(), func(c Check) bool { return c.HasTag(TagReady) })
		if e.State.Get() != Ready {
			rep.Checks["instance"] = Result{Status: Unhealthy, Description: "instance is " + e.State.String(), At: time.Now().UTC()}
			rep.checks = append(rep.checks, Check{Name: "instance", Measurement: "state", ComponentType: "system"})
			rep.Status = Unhealthy
		}
		e.write(w, r, rep, true)
	})
}

// All answers the aggregate of every registered check.
func (e *Endpoints) All() http.Handler {
	return e.wrap(func(w http.ResponseWriter, r *http.Request) {
		e.write(w, r, e.Registry.Run(r.Context(), nil), true)
	})
}

// One answers the check called name alone.
func (e *Endpoints) One(name string) http.Handler {
	return e.wrap(func(w http.ResponseWriter, r *http.Request) {
		e.write(w, r, e.Registry.Run(r.Context(), func(c Check) bool { return c.Name == name }), true)
	})
}

// wrap counts the request as a keep-alive ping and applies CORS, answering preflight
// requests itself.
func (e *Endpoints) wrap(h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(e.CORSOrigins) > 0 {
			w.Header().Add("Vary", "Origin")
		}
		if origin := r.Header.Get("Origin"); origin != "" && len(e.CORSOrigins) > 0 {
			allowed := slices.Contains(e.CORSOrigins, "*") || slices.Contains(e.CORSOrigins, origin)
			if allowed {
				w.Header().Set("Access-Control-Allow-Origin", origin)
				if r.Method == http.MethodOptions {
					w.Header().Set("Access-Control-Allow-Methods", "GET, HEAD")
					w.Header().Set("Access-Control-Allow-Headers", "Authorization, X-Api-Key")
					w.Header().Set("Access-Control-Max-Age", "600")
				}
			}
		}
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		e.pings.Add(1)
		e.lastPing.Store(&ping{At: time.Now().UTC(), UserAgent: r.UserAgent()})
		h(w, r)
	})
}

// Pings reports the keep-alive record: how many health requests were answered, and
// the time and user agent of the last (zero before the first). Safe for concurrent use.
func (e *Endpoints) Pings() (count int64, lastAt time.Time, userAgent string) {
	count = e.pings.Load()
	if p := e.lastPing.Load(); p != nil {
		lastAt, userAgent = p.At, p.UserAgent
	}
	return count, lastAt, userAgent
}

func (e *Endpoints) write(w http.ResponseWriter, r *http.Request, rep Report, cacheable bool) {
	details := e.showDetails(r)
	var body any
	contentType := "application/json"
	if wantsHealthJSON(r) {
		contentType = ContentTypeHealthJSON
		body = ietfReport(rep, details)
	} else {
		body = e.jsonReport(rep, details)
	}
	w.Header().Set("Content-Type", contentType)
	switch {
	case !cacheable || e.CacheMaxAge < time.Second:
		w.Header().Set("Cache-Control", "no-store")
	case details:
		// Details depend on the key: only the client may keep them.
		w.Header().Set("Cache-Control", "private, max-age="+strconv.Itoa(int(e.CacheMaxAge/time.Second)))
	default:
		w.Header().Set("Cache-Control", "max-age="+strconv.Itoa(int(e.CacheMaxAge/time.Second)))
	}
	w.Header().Add("Vary", "Accept, Authorization, X-Api-Key")
	w.WriteHeader(rep.Status.HTTPStatus())
	if r.Method == http.MethodHead {
		return
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		e.Logger.DebugContext(r.Context(), "write health response", "err", err)
	}
}

func (e *Endpoints) jsonReport(rep Report, details bool) reportJSON {
	body := reportJSON{Status: rep.Status}
	if !details {
		return body
	}
	ms := durationMS(rep.Duration)
	body.CheckedAt, body.DurationMS = &rep.CheckedAt, &ms
	body.Checks = make(map[string]checkJSON, len(rep.Checks))
	for name, res := range rep.Checks {
		body.Checks[name] = checkJSON{Status: res.Status, Description: res.Description, DurationMS: durationMS(res.Duration), Data: res.Data}
	}
	body.History = e.Registry.History()
	body.Pings = &pingsJSON{Count: e.pings.Load()}
	if p := e.lastPing.Load(); p != nil {
		body.Pings.LastAt, body.Pings.LastUserAgent = &p.At, p.UserAgent
	}
	return body
}

func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// wantsHealthJSON reports whether Accept names application/health+json.
func wantsHealthJSON(r *http.Request) bool {
	for part := range strings.SplitSeq(r.Header.Get("Accept"), ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == ContentTypeHealthJSON {
			return true
		}
	}
	return false
}

// showDetails applies the detail policy; the key is compared in constant time.
func (e *Endpoints) showDetails(r *http.Request) bool {
	switch e.Details {
	case DetailsAlways:
		return true
	case DetailsAuthorized:
		return e.APIKey != "" && keyMatches(r, e.APIKey, true)
	default:
		return false
	}
}

// keyMatches reports whether r carries want as a Bearer token, or (withAPIKey) as
// X-Api-Key or ?api-key=, comparing in constant time.
func keyMatches(r *http.Request, want string, withAPIKey bool) bool {
	given := BearerToken(r)
	if withAPIKey && given == "" {
		given = r.Header.Get("X-Api-Key")
		if given == "" {
			given = r.URL.Query().Get("api-key")
		}
	}
	return TokenMatches(given, want)
}

// BearerToken returns the token of r's "Authorization: Bearer <token>" header, or "".
// The scheme is case-insensitive (RFC 7235 §2.1: "bearer" and "BEARER" are Bearer).
func BearerToken(r *http.Request) string {
	scheme, token, ok := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(token)
}

// TokenMatches reports whether given is one of tokens (several allow rotation). Every
// token is compared, each in constant time, so the time taken says nothing of which
// matched or how much of one did; an empty given or token never matches.
func TokenMatches(given string, tokens ...string) bool {
	match := 0
	for _, t := range tokens {
		if t != "" && given != "" {
			match |= subtle.ConstantTimeCompare([]byte(given), []byte(t))
		}
	}
	return match == 1
}

// ietfStatus maps a Status to the draft's pass, warn and fail.
func ietfStatus(s Status) string {
	switch s {
	case Healthy:
		return "pass"
	case Degraded:
		return "warn"
	default:
		return "fail"
	}
}

type ietfCheck struct {
	ComponentID   string  `json:"componentId"`
	ComponentType string  `json:"componentType"`
	Status        string  `json:"status"`
	Time          string  `json:"time"`
	ObservedValue float64 `json:"observedValue"`
	ObservedUnit  string  `json:"observedUnit"`
	Output        string  `json:"output,omitempty"`
}

type ietfBody struct {
	Status string                 `json:"status"`
	Checks map[string][]ietfCheck `json:"checks,omitempty"`
}

// ietfReport renders rep in the draft format: checks keyed "component:measurement",
// each with the check's own observation (round trip, queue latency, uptime) or else how
// long the check took, in ms. Outputs are given only for checks that do not pass, as
// the draft suggests.
func ietfReport(rep Report, details bool) ietfBody {
	body := ietfBody{Status: ietfStatus(rep.Status)}
	if !details {
		return body
	}
	body.Checks = make(map[string][]ietfCheck, len(rep.checks))
	for _, c := range rep.checks {
		res := rep.Checks[c.Name]
		ic := ietfCheck{
			ComponentID: c.Name, ComponentType: c.ComponentType, Status: ietfStatus(res.Status),
			Time: res.At.Format(time.RFC3339), ObservedValue: durationMS(res.Duration), ObservedUnit: "ms",
		}
		if o := res.Observed; o != nil {
			ic.ObservedValue, ic.ObservedUnit = o.Value, o.Unit
		}
		if res.Status != Healthy {
			ic.Output = res.Description
		}
		key := c.Name + ":" + c.Measurement
		body.Checks[key] = append(body.Checks[key], ic)
	}
	return body
}
