package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/shoestring-go/shoestring/health"
)

// Dashboard sessions are stateless: the cookie holds a random session id and an expiry,
// signed with HMAC-SHA256 under a key derived from ADMIN_TOKEN, so changing the token
// ends every session. The CSRF token of a session is an HMAC of its id under a second
// derived key (the "HMAC-based token" pattern of the OWASP CSRF Prevention Cheat Sheet).
const (
	sessionCookie = "shoestring_dashboard"
	sessionTTL    = 12 * time.Hour
	csrfField     = "csrf"
)

// dashAuth authenticates dashboard requests. Safe for concurrent use.
type dashAuth struct {
	token      string
	sessionKey []byte
	csrfKey    []byte
	limiter    *loginLimiter
}

func newDashAuth(token string) *dashAuth {
	derive := func(label string) []byte {
		m := hmac.New(sha256.New, []byte(token))
		m.Write([]byte(label))
		return m.Sum(nil)
	}
	return &dashAuth{token: token, sessionKey: derive("shoestring dashboard session v1"),
		csrfKey: derive("shoestring dashboard csrf v1"), limiter: &loginLimiter{max: 5, window: time.Minute}}
}

// session is an authenticated dashboard request: sid is "" under Bearer auth, which
// a browser never sends by itself and so needs no CSRF token.
type session struct {
	sid string
}

func (a *dashAuth) sign(payload string) string {
	m := hmac.New(sha256.New, a.sessionKey)
	m.Write([]byte(payload))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// tokenMatches compares a given admin token with the configured one in constant time.
func (a *dashAuth) tokenMatches(given string) bool {
	return subtle.ConstantTimeCompare([]byte(given), []byte(a.token)) == 1
}

// authenticate returns the request's session, from a Bearer token or a valid cookie.
func (a *dashAuth) authenticate(r *http.Request) (session, bool) {
	if tok := health.BearerToken(r); tok != "" {
		return session{}, a.tokenMatches(tok)
	}
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return session{}, false
	}
	parts := strings.Split(c.Value, ".")
	if len(parts) != 3 {
		return session{}, false
	}
	want := a.sign(parts[0] + "." + parts[1])
	if !hmac.Equal([]byte(parts[2]), []byte(want)) {
		return session{}, false
	}
	exp, err := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || time.Now().Unix() >= exp {
		return session{}, false
	}
	return session{sid: parts[0]}, true
}

// newSession sets a fresh session cookie on w.
func (a *dashAuth) newSession(w http.ResponseWriter, r *http.Request) {
	sid := base64.RawURLEncoding.EncodeToString([]byte(rand.Text()))[:22]
	exp := time.Now().Add(sessionTTL)
	payload := sid + "." + strconv.FormatInt(exp.Unix(), 10)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: payload + "." + a.sign(payload), Path: "/dashboard",
		Expires: exp, MaxAge: int(sessionTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteStrictMode,
		Secure: r.TLS != nil || r.Header.Get("X-Forwarded-Proto") == "https"})
}

func clearSession(w http.ResponseWriter) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/dashboard", MaxAge: -1,
		HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

// csrf returns the CSRF token of s ("" under Bearer auth).
func (a *dashAuth) csrf(s session) string {
	if s.sid == "" {
		return ""
	}
	m := hmac.New(sha256.New, a.csrfKey)
	m.Write([]byte(s.sid))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfOK checks the form's CSRF token against the session's, in constant time.
func (a *dashAuth) csrfOK(s session, r *http.Request) bool {
	if s.sid == "" {
		return true // Bearer: not sent by a browser on its own
	}
	return hmac.Equal([]byte(r.PostFormValue(csrfField)), []byte(a.csrf(s)))
}

// loginLimiter allows max failed logins per client address in a fixed window. It keeps
// at most a few thousand addresses: past that it forgets them all, which only ever
// lets an attacker try more, never locks a user out for longer.
type loginLimiter struct {
	max    int
	window time.Duration

	mu    sync.Mutex
	fails map[string]*failCount
}

type failCount struct {
	n     int
	since time.Time
}

// clientAddr is the remote IP (the PaaS router's, behind one: still per connection
// source, which is what a fixed-window limiter can trust).
func clientAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// allowed reports whether addr may try to log in now.
func (l *loginLimiter) allowed(addr string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	f := l.fails[addr]
	return f == nil || now.Sub(f.since) >= l.window || f.n < l.max
}

// failed counts a failed login of addr.
func (l *loginLimiter) failed(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.fails == nil || len(l.fails) > 4096 {
		l.fails = make(map[string]*failCount)
	}
	f := l.fails[addr]
	if f == nil || now.Sub(f.since) >= l.window {
		f = &failCount{since: now}
		l.fails[addr] = f
	}
	f.n++
}

// securityHeaders sets the headers of every dashboard response: a CSP without
// 'unsafe-inline' (the pages have no inline script or style), no framing, no sniffing,
// no referrer.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
			"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		next.ServeHTTP(w, r)
	})
}
