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
	"sync"
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
	Registry *Registry // required
	State    *State    // required: readiness follows it
	// Details is DetailsNever, DetailsAuthorized (only with APIKey) or DetailsAlways.
	Details string
	APIKey  string
	// CacheMaxAge is advertised in Cache-Control; it should equal the registry's Cache.
	CacheMaxAge time.Duration
	// CORSOrigins may read the health routes from a browser ("*" for any); empty: no CORS.
	CORSOrigins []string
	// Logger gets a debug line for an answer that could not be written (the client
	// went away); nil: none.
	Logger *slog.Logger

	// The keep-alive record, written by every request: the count, the Unix time in ns
	// of the last ping (0 before the first), and its user agent, replaced only when it
	// differs from the last one's, so a steady pinger allocates nothing.
	pings    atomic.Int64
	lastAt   atomic.Int64
	lastUA   atomic.Pointer[string]
	headers  sync.Once
	prepared answerHeaders // set once, by the first request, from the fields above
}

// answerHeaders are the header values of the answers, built once and shared by every
// response: each slice has cap == len, so that a later Add to the response copies it
// rather than write into it.
type answerHeaders struct {
	contentType      []string // application/json
	noStore          []string
	maxAge           []string // max-age=<CacheMaxAge in s>, for the terse cacheable answer
	vary             []string // what write varies on
	varyOrigin       []string // Origin, what wrap varies on with CORS
	varyOriginAndAll []string // varyOrigin then vary, the Vary of a CORS answer
}

// terseBodies are the default-format answers without details, by status: byte for
// byte what json.Encoder writes for reportJSON{Status: s}.
var terseBodies = func() [Unhealthy + 1][]byte {
	var b [Unhealthy + 1][]byte
	for s := Healthy; s <= Unhealthy; s++ {
		b[s] = []byte(`{"status":"` + s.String() + `"}` + "\n")
	}
	return b
}()

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
	return e.wrap(func(w http.ResponseWriter, r *http.Request, now time.Time) {
		if e.terse(r) {
			e.writeTerse(w, r, Healthy, false)
			return
		}
		e.write(w, r, Report{Status: Healthy, CheckedAt: now.UTC()}, false)
	})
}

// Ready answers 200 only when the instance is Ready and no check tagged "ready" is
// Unhealthy; 503 while starting, Busy or draining.
func (e *Endpoints) Ready() http.Handler {
	ready := func(c Check) bool { return c.HasTag(TagReady) }
	return e.wrap(func(w http.ResponseWriter, r *http.Request, now time.Time) {
		if e.terse(r) {
			if status, ok := e.Registry.cachedStatus(ready, now); ok {
				if e.State.Get() != Ready {
					status = Unhealthy
				}
				e.writeTerse(w, r, status, true)
				return
			}
		}
		rep := e.Registry.Run(r.Context(), ready)
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
	return e.checked(nil)
}

// One answers the check called name alone.
func (e *Endpoints) One(name string) http.Handler {
	return e.checked(func(c Check) bool { return c.Name == name })
}

// checked answers the aggregate of the checks keep selects (all when nil): from the
// cache alone when the answer is terse and every one is cached, else through Run.
func (e *Endpoints) checked(keep func(Check) bool) http.Handler {
	return e.wrap(func(w http.ResponseWriter, r *http.Request, now time.Time) {
		if e.terse(r) {
			if status, ok := e.Registry.cachedStatus(keep, now); ok {
				e.writeTerse(w, r, status, true)
				return
			}
		}
		e.write(w, r, e.Registry.Run(r.Context(), keep), true)
	})
}

// wrap counts the request as a keep-alive ping and applies CORS, answering preflight
// requests itself; h gets the time of the ping.
func (e *Endpoints) wrap(h func(w http.ResponseWriter, r *http.Request, now time.Time)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.headers.Do(e.prepare)
		if len(e.CORSOrigins) > 0 {
			addShared(w.Header(), "Vary", e.prepared.varyOrigin)
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
		now := time.Now()
		e.pings.Add(1)
		e.lastAt.Store(now.UnixNano())
		if ua, last := r.UserAgent(), e.lastUA.Load(); last == nil || *last != ua {
			p := new(string)
			*p = ua
			e.lastUA.Store(p)
		}
		h(w, r, now)
	})
}

// prepare builds the shared header values from the fields.
func (e *Endpoints) prepare() {
	vary := "Accept, Authorization, X-Api-Key"
	e.prepared = answerHeaders{
		contentType:      []string{"application/json"},
		noStore:          []string{"no-store"},
		maxAge:           []string{"max-age=" + strconv.Itoa(int(e.CacheMaxAge/time.Second))},
		vary:             []string{vary},
		varyOrigin:       []string{"Origin"},
		varyOriginAndAll: []string{"Origin", vary},
	}
}

// addShared adds vs to h[key] as Header.Add would, sharing vs when h has no value
// yet: vs must have cap == len and never be written to.
func addShared(h http.Header, key string, vs []string) {
	if old := h[key]; len(old) > 0 {
		h[key] = append(old, vs...)
		return
	}
	h[key] = vs
}

// Pings reports the keep-alive record: how many health requests were answered, and
// the time (UTC) and user agent of the last (zero before the first). Of requests
// answered at the same moment, the time may be one's and the user agent another's.
// Safe for concurrent use.
func (e *Endpoints) Pings() (count int64, lastAt time.Time, userAgent string) {
	count = e.pings.Load()
	if ns := e.lastAt.Load(); ns != 0 {
		lastAt = time.Unix(0, ns).UTC()
	}
	if ua := e.lastUA.Load(); ua != nil {
		userAgent = *ua
	}
	return count, lastAt, userAgent
}

// terse reports whether r is answered with the status alone in the default format:
// no details and no application/health+json.
func (e *Endpoints) terse(r *http.Request) bool {
	return !e.showDetails(r) && !wantsHealthJSON(r)
}

// writeTerse writes what write writes for a report of status when terse(r), from the
// shared header values and bodies; for a status without its own body, it calls write.
func (e *Endpoints) writeTerse(w http.ResponseWriter, r *http.Request, status Status, cacheable bool) {
	if status < Healthy || status > Unhealthy {
		e.write(w, r, Report{Status: status}, cacheable)
		return
	}
	p := &e.prepared
	h := w.Header()
	h["Content-Type"] = p.contentType
	if !cacheable || e.CacheMaxAge < time.Second {
		h["Cache-Control"] = p.noStore
	} else {
		h["Cache-Control"] = p.maxAge
	}
	if v := h["Vary"]; len(v) == 1 && &v[0] == &p.varyOrigin[0] {
		h["Vary"] = p.varyOriginAndAll // what wrap added, and ours
	} else {
		addShared(h, "Vary", p.vary)
	}
	w.WriteHeader(status.HTTPStatus())
	if r.Method == http.MethodHead {
		return
	}
	if _, err := w.Write(terseBodies[status]); err != nil {
		e.logWriteError(r, err)
	}
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
	addShared(w.Header(), "Vary", e.prepared.vary)
	w.WriteHeader(rep.Status.HTTPStatus())
	if r.Method == http.MethodHead {
		return
	}
	if err := json.NewEncoder(w).Encode(body); err != nil {
		e.logWriteError(r, err)
	}
}

// logWriteError logs an answer that could not be written, at debug level: the client
// went away, which is not the server's failure.
func (e *Endpoints) logWriteError(r *http.Request, err error) {
	if e.Logger != nil {
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
	count, lastAt, ua := e.Pings()
	body.Pings = &pingsJSON{Count: count, LastUserAgent: ua}
	if !lastAt.IsZero() {
		body.Pings.LastAt = &lastAt
	}
	return body
}

func durationMS(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// wantsHealthJSON reports whether Accept names application/health+json.
func wantsHealthJSON(r *http.Request) bool {
	accept := r.Header.Get("Accept")
	if !containsFold(accept, "+json") {
		return false // what browsers and pingers send: no media type to parse
	}
	for part := range strings.SplitSeq(accept, ",") {
		if mt, _, err := mime.ParseMediaType(strings.TrimSpace(part)); err == nil && mt == ContentTypeHealthJSON {
			return true
		}
	}
	return false
}

// containsFold reports whether sub (ASCII) is in s, in any case.
func containsFold(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
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
		if given == "" && r.URL.RawQuery != "" {
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
