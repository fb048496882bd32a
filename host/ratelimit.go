package host

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/shoestring-go/shoestring/web"
)

// RateLimit limits next to UPLOAD_RATE requests per minute per client (a burst of as
// many), counted in Redis with GCRA (github.com/go-redis/redis_rate), so the limit
// holds across every instance sharing the Redis. A client over it gets 429 with
// Retry-After (whole seconds). The client is the connection's address, or with
// TRUST_PROXY=true the last X-Forwarded-For hop: the one the platform's router added,
// which a client cannot forge. If Redis does not answer, the request goes through
// (and is logged): a limiter must not take the route down with it.
//
// Wrap an app's public write routes with it, as the upload route is:
//
//	h.Router().Handle("/comments", h.RateLimit(postComment)).Methods(http.MethodPost)
func (h *Host) RateLimit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := h.deps.Load()
		if d == nil {
			next.ServeHTTP(w, r)
			return
		}
		client := clientAddr(r, d.cfg.TrustProxy)
		res, err := redis_rate.NewLimiter(d.rdb).Allow(r.Context(), "shoestring:{"+client+"}", redis_rate.PerMinute(d.cfg.UploadRate))
		if err != nil {
			d.logger.WarnContext(r.Context(), "rate limit unavailable; letting the request through", "err", err)
			next.ServeHTTP(w, r)
			return
		}
		if res.Allowed == 0 {
			secs := int((res.RetryAfter + time.Second - 1) / time.Second)
			w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
			web.WriteError(w, r, &web.Error{Status: http.StatusTooManyRequests,
				Msg: "too many requests from this client; retry after " + strconv.Itoa(max(secs, 1)) + " s"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// clientAddr is the address a rate limit counts a request against: the connection's
// IP, or with trustProxy the last X-Forwarded-For entry.
func clientAddr(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			hops := strings.Split(xff[len(xff)-1], ",")
			if last := strings.TrimSpace(hops[len(hops)-1]); last != "" {
				return last
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
