// Package config parses and validates every setting shoestring reads from the
// environment. Load is the only entry point; the README's configuration table is
// generated from the same list of settings (see MarkdownTable), so the two cannot drift.
package config

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Config is the validated configuration of one shoestring process. The zero value is
// not useful; build it with Load.
type Config struct {
	// Port is the TCP port the HTTP tier listens on, on all interfaces. 0 picks a free port.
	Port int
	// RedisURL is redis://, rediss://, unix://, redis-sentinel://, redis-cluster://,
	// rediss-cluster://, or empty for the embedded Redis. With REDIS_CLUSTER_ADDRS set,
	// it is the redis-cluster:// (or rediss-cluster://) URL Load builds from those nodes
	// and REDIS_URL's user and password. It may hold a password: log it only through
	// Redacted.
	RedisURL string
	// RedisClusterAddrs are REDIS_CLUSTER_ADDRS's seed nodes (host:port), already in
	// RedisURL; nil when unset.
	RedisClusterAddrs []string
	// RedisTLSSkipVerify accepts a rediss:// or rediss-cluster:// server certificate
	// that does not verify (Heroku Redis uses self-signed certificates).
	RedisTLSSkipVerify bool
	// BlobURL locates the blob store: file:///abs, file://./relative, mem://,
	// s3://bucket?region=... or azblob://container.
	BlobURL string
	// AWSAccessKeyID, AWSSecretAccessKey and AWSSessionToken sign s3:// requests.
	AWSAccessKeyID, AWSSecretAccessKey, AWSSessionToken string
	// AzureStorageAccount and AzureStorageKey (a shared key), or
	// AzureStorageConnectionString, authorize azblob:// requests.
	AzureStorageAccount, AzureStorageKey, AzureStorageConnectionString string
	// WorkerConcurrency is how many tasks one worker process runs at once.
	WorkerConcurrency int
	// WorkerFetchers is how many asynq fetch loops share WorkerConcurrency.
	WorkerFetchers int
	// Queues maps queue name to weight (asynq priority); the worker serves exactly these.
	Queues map[string]int
	// ShutdownTimeout bounds a graceful stop: both processes exit within it.
	ShutdownTimeout time.Duration
	// MaxUploadBytes is the largest request body accepted by the upload route, in bytes.
	MaxUploadBytes int64
	// MaxImagePixels is the largest width*height accepted, checked from the image header.
	MaxImagePixels int64
	// ThumbnailSizes are the widths in pixels made when an upload names none.
	ThumbnailSizes []int
	// LogLevel is the minimum level logged.
	LogLevel slog.Level
	// LogFormat is "text" (logfmt-like) or "json".
	LogFormat string
	// LogFlushInterval is how long a log line below warn may wait to be written with
	// others (0: each line is written at once).
	LogFlushInterval time.Duration
	// HealthDetails is never, authorized or always: when /health shows per-check details.
	HealthDetails string
	// HealthAPIKey unlocks details when HealthDetails is authorized.
	HealthAPIKey string
	// HealthTimeout bounds each health check.
	HealthTimeout time.Duration
	// JobRetention is how long a finished job's record stays readable.
	JobRetention time.Duration
	// HealthPath is the base path of the health routes, starting with "/".
	HealthPath string
	// HealthCache is how long check results are reused; 0 runs checks on every request.
	HealthCache time.Duration
	// HealthFailureThreshold is how many consecutive failures turn a check Unhealthy.
	HealthFailureThreshold int
	// HealthCORSOrigins are the origins allowed to read health routes ("*" for any);
	// empty means no CORS headers.
	HealthCORSOrigins []string
	// WorkerStaleAfter: with tasks waiting and none completed for this long, the worker
	// check is Degraded; for twice this long, Unhealthy.
	WorkerStaleAfter time.Duration
	// QueueLatencyWarn and QueueLatencyFail bound the age of the oldest pending task
	// before the queue check is Degraded and Unhealthy.
	QueueLatencyWarn time.Duration
	QueueLatencyFail time.Duration
	// AdminToken guards /admin/* and /dashboard; empty disables those routes (404).
	// It also unlocks /metrics.
	AdminToken string
	// MetricsToken unlocks /metrics (as does AdminToken); with neither, /metrics is 404.
	MetricsToken string
	// MetricsPort is where `shoestring worker` alone (split mode) serves /metrics and
	// /health/live; -1 when unset (no such server), 0 picks a free port.
	MetricsPort int
	// WorkerExitPolicy is "exit" (the parent exits when its child dies, for the platform
	// to restart the deployable) or "restart" (the parent restarts the child in place).
	WorkerExitPolicy string
	// WorkerMaxRestarts within WorkerRestartWindow: one more and the parent exits.
	WorkerMaxRestarts   int
	WorkerRestartWindow time.Duration
	// HangGrace: a task still running this long past its deadline has a handler that
	// ignores cancellation; the worker is Unhealthy and recycled.
	HangGrace time.Duration
	// DegradedRatio: completions per window below this fraction of the baseline, with
	// work waiting, is Degraded; DegradedFor later the worker is recycled.
	DegradedRatio float64
	DegradedFor   time.Duration
	// ThroughputWindow is the window over which completions are counted; the baseline is
	// the rate over the ten windows before it.
	ThroughputWindow time.Duration
	// WorkerMaxRSS, in bytes, recycles the worker between tasks; 0 turns it off.
	WorkerMaxRSS int64
	// APITokens guard POST /api/v1/jobs, GET /api/v1/queues and GET /api/v1/schedules;
	// several allow rotation. Empty: those routes are 404, except in trial mode.
	APITokens []string
	// DemoTasks is "true", "false", or "" (true only in trial mode, with the embedded
	// Redis): whether the demonstration kinds (echo, batch:count) are registered.
	DemoTasks string
	// UploadRate is how many uploads (and other rate-limited requests) one client may
	// make per minute, with a burst of the same size.
	UploadRate int
	// TrustProxy takes the client address from the last X-Forwarded-For hop, the one
	// the platform's router added; otherwise from the connection.
	TrustProxy bool
	// ImageMemoryBudget, in bytes, bounds the memory image decodes hold at once in one
	// worker process.
	ImageMemoryBudget int64
	// KeepOriginals keeps an upload after its thumbnails are made (until retention).
	KeepOriginals bool
	// Schedules are the periodic jobs of SCHEDULE, checked for shape here; their cron
	// specs, types and payloads are checked by the host, which knows the task kinds.
	Schedules []ScheduleEntry
	// ScheduleGrace is how long after its time a tick may have no started job before
	// the schedule check turns Degraded.
	ScheduleGrace time.Duration
}

// ScheduleEntry is one periodic job of SCHEDULE: {"name","cron","type","payload",
// "queue","skip_if_running","catch_up"}.
type ScheduleEntry struct {
	// Name identifies the schedule in job ids (<name>@<tick unix seconds>); it
	// defaults to Type.
	Name string `json:"name"`
	// Cron is a 5-field cron spec, a descriptor such as @hourly, or @every <duration>,
	// with an optional CRON_TZ= or TZ= prefix.
	Cron    string          `json:"cron"`
	Type    string          `json:"type"`
	Payload json.RawMessage `json:"payload"`
	// Queue overrides the task kind's default queue.
	Queue string `json:"queue"`
	// SkipIfRunning skips a tick while the previous tick's job is still pending or
	// running; by default the tick runs anyway.
	SkipIfRunning bool `json:"skip_if_running"`
	// CatchUp enqueues, at start, the latest tick no instance was up for, if it is
	// younger than one period; nil means true.
	CatchUp *bool `json:"catch_up"`
}

// Worker exit policies.
const (
	PolicyExit    = "exit"
	PolicyRestart = "restart"
)

// Health detail policies.
const (
	DetailsNever      = "never"
	DetailsAuthorized = "authorized"
	DetailsAlways     = "always"
)

// Setting describes one environment variable: its name, its default as written in the
// environment, and what it does. Secret settings never have their values echoed.
type Setting struct {
	Name        string
	Default     string
	Description string
	Secret      bool
	set         func(c *Config, v string) error
}

// Settings returns every setting Load reads, in the order of the README table.
func Settings() []Setting { return slices.Clone(settings) }

var settings = []Setting{
	{Name: "PORT", Default: "8080", Description: "HTTP port, on all interfaces (0 picks a free one).",
		set: func(c *Config, v string) (err error) { c.Port, err = parsePort(v); return err }},
	{Name: "REDIS_URL", Default: "", Secret: true, Description: "`redis://[user:pass@]host:port/db`, `rediss://` (TLS), `unix:///path.sock`, `redis-sentinel://[:pass@]host:port[,host:port...]/mastername[/db]` (Redis Sentinel: the password is the master's, the sentinels are reached without one), or `redis-cluster://[:pass@]host:port[,host:port...]` (Redis Cluster: the nodes are seeds, the client learns the rest; `rediss-cluster://` for TLS). Unset: an embedded in-memory Redis for trying shoestring out (nothing survives a restart), unless `REDIS_CLUSTER_ADDRS` is set.",
		set: func(c *Config, v string) error { c.RedisURL = v; return checkRedisURL(v) }},
	{Name: "REDIS_CLUSTER_ADDRS", Default: "", Description: "Comma-separated `host:port` seed nodes of a Redis Cluster (host names or IPv4 addresses), for platforms that give the nodes apart from the password. Set: shoestring uses a cluster at these nodes, with no password when `REDIS_URL` is unset, or with the user, password and TLS of a `REDIS_URL` that names no node, `redis-cluster://[user]:pass@` or `rediss-cluster://[user]:pass@`; any other `REDIS_URL` beside it is a problem.",
		set: func(c *Config, v string) (err error) { c.RedisClusterAddrs, err = parseClusterAddrs(v); return err }},
	{Name: "REDIS_TLS_SKIP_VERIFY", Default: "false", Description: "Accept a `rediss://` or `rediss-cluster://` certificate that does not verify (Heroku Redis is self-signed).",
		set: func(c *Config, v string) (err error) { c.RedisTLSSkipVerify, err = strconv.ParseBool(v); return err }},
	{Name: "BLOB_URL", Default: "file://./data/blobs", Description: "Where uploads and results are kept: `file:///abs/dir`, `file://./relative/dir`, `mem://`, `s3://bucket?region=R[&endpoint=https://host][&use_path_style=true]` (S3, R2, B2, MinIO; needs `AWS_ACCESS_KEY_ID`) or `azblob://container[?protocol=http&domain=host:port]` (Azure Blob, Azurite; needs `AZURE_STORAGE_*`). See Blob storage.",
		set: func(c *Config, v string) error { c.BlobURL = v; return checkBlobURL(v) }},
	{Name: "AWS_ACCESS_KEY_ID", Default: "", Secret: true, Description: "Access key id for an `s3://` `BLOB_URL` (with `AWS_SECRET_ACCESS_KEY`); ignored otherwise.",
		set: func(c *Config, v string) error { c.AWSAccessKeyID = v; return nil }},
	{Name: "AWS_SECRET_ACCESS_KEY", Default: "", Secret: true, Description: "Secret access key for an `s3://` `BLOB_URL`.",
		set: func(c *Config, v string) error { c.AWSSecretAccessKey = v; return nil }},
	{Name: "AWS_SESSION_TOKEN", Default: "", Secret: true, Description: "Session token of temporary `s3://` credentials; unset for long-lived keys.",
		set: func(c *Config, v string) error { c.AWSSessionToken = v; return nil }},
	{Name: "AZURE_STORAGE_ACCOUNT", Default: "", Description: "Storage account of an `azblob://` `BLOB_URL` (with `AZURE_STORAGE_KEY`).",
		set: func(c *Config, v string) error { c.AzureStorageAccount = v; return nil }},
	{Name: "AZURE_STORAGE_KEY", Default: "", Secret: true, Description: "Shared key (base64) of `AZURE_STORAGE_ACCOUNT`, for an `azblob://` `BLOB_URL`.",
		set: func(c *Config, v string) error { c.AzureStorageKey = v; return nil }},
	{Name: "AZURE_STORAGE_CONNECTION_STRING", Default: "", Secret: true, Description: "Connection string for an `azblob://` `BLOB_URL`, used instead of `AZURE_STORAGE_ACCOUNT`/`AZURE_STORAGE_KEY` and the URL's endpoint options.",
		set: func(c *Config, v string) error { c.AzureStorageConnectionString = v; return nil }},
	{Name: "WORKER_CONCURRENCY", Default: "10", Description: "Tasks one worker process runs at once (1-1000).",
		set: func(c *Config, v string) (err error) {
			c.WorkerConcurrency, err = parseIntRange(v, 1, 1000)
			return err
		}},
	{Name: "WORKER_FETCHERS", Default: "4", Description: "asynq servers (fetch loops) in one worker process, sharing `WORKER_CONCURRENCY` (at most one each); asynq fetches one task per Redis round trip, so more drain short tasks faster, the more so the farther Redis is. 4 drained fastest of 1, 2, 4 and 8 in `go run ./bench -only drain` (1-16).",
		set: func(c *Config, v string) (err error) { c.WorkerFetchers, err = parseIntRange(v, 1, 16); return err }},
	{Name: "QUEUES", Default: "critical=6,default=3,low=1", Description: "Queues the worker serves as `name=weight,...`; a queue with weight 6 is picked 6 times as often as one with weight 1.",
		set: func(c *Config, v string) (err error) { c.Queues, err = parseQueues(v); return err }},
	{Name: "SHUTDOWN_TIMEOUT", Default: "25s", Description: "Graceful stop budget, 3s-10m (Heroku allows 30 s): in-flight tasks get all but max(20%, 2 s) of it to finish, then go back to their queue; both processes exit within it.",
		set: func(c *Config, v string) (err error) {
			c.ShutdownTimeout, err = parseDurationRange(v, 3*time.Second, 10*time.Minute)
			return err
		}},
	{Name: "MAX_UPLOAD_BYTES", Default: "20MiB", Description: "Largest upload request body; bytes, or with a unit (`KiB`, `MiB`, `GiB`, `KB`, `MB`, `GB`).",
		set: func(c *Config, v string) (err error) { c.MaxUploadBytes, err = parseBytes(v); return err }},
	{Name: "MAX_IMAGE_PIXELS", Default: "50000000", Description: "Largest image accepted, as width x height, read from the header before decoding.",
		set: func(c *Config, v string) error {
			n, err := parseIntRange(v, 1, 1<<40)
			c.MaxImagePixels = int64(n)
			return err
		}},
	{Name: "THUMBNAIL_SIZES", Default: "160,320,640", Description: "Thumbnail widths in pixels made when an upload names none (1-10000 each, at most 16).",
		set: func(c *Config, v string) (err error) { c.ThumbnailSizes, err = ParseSizes(v); return err }},
	{Name: "LOG_LEVEL", Default: "info", Description: "`debug`, `info`, `warn` or `error`.",
		set: func(c *Config, v string) error { return c.LogLevel.UnmarshalText([]byte(v)) }},
	{Name: "LOG_FORMAT", Default: "text", Description: "`text` (key=value lines) or `json`.",
		set: func(c *Config, v string) error { c.LogFormat = v; return oneOf(v, "text", "json") }},
	{Name: "LOG_FLUSH_INTERVAL", Default: "100ms", Description: "How long a log line below `warn` may wait to be written together with the next ones, 0-1s: one write for many lines (a line per task or request costs as much CPU to write alone as to format). A warning or error is written at once, with every line before it. `0` writes each line at once; a process killed with SIGKILL loses at most this much of its log.",
		set: func(c *Config, v string) (err error) {
			c.LogFlushInterval, err = parseDurationRange(v, 0, time.Second)
			return err
		}},
	{Name: "HEALTH_DETAILS", Default: DetailsAuthorized, Description: "When `/health` shows per-check details: `never`, `authorized` (with `HEALTH_API_KEY`) or `always`.",
		set: func(c *Config, v string) error {
			c.HealthDetails = v
			return oneOf(v, DetailsNever, DetailsAuthorized, DetailsAlways)
		}},
	{Name: "HEALTH_API_KEY", Default: "", Secret: true, Description: "Key that unlocks health details, given as `?api-key=`, `X-Api-Key` or `Authorization: Bearer`.",
		set: func(c *Config, v string) error { c.HealthAPIKey = v; return nil }},
	{Name: "HEALTH_TIMEOUT", Default: "2s", Description: "Time limit of each health check; a check past it is Unhealthy.",
		set: func(c *Config, v string) (err error) {
			c.HealthTimeout, err = parseDurationRange(v, 10*time.Millisecond, time.Minute)
			return err
		}},
	{Name: "HEALTH_PATH", Default: "/health", Description: "Base path of the health routes (`/health`, `/health/live`, `/health/ready`, `/health/{check}`).",
		set: func(c *Config, v string) error { c.HealthPath = strings.TrimRight(v, "/"); return checkPath(v) }},
	{Name: "HEALTH_CACHE", Default: "2s", Description: "How long check results are reused, with one run at a time per check however many pingers ask (0 turns caching off).",
		set: func(c *Config, v string) (err error) {
			if v == "0" {
				c.HealthCache = 0
				return nil
			}
			c.HealthCache, err = parseDurationRange(v, 0, 10*time.Minute)
			return err
		}},
	{Name: "HEALTH_FAILURE_THRESHOLD", Default: "1", Description: "Consecutive failures before a check reports Unhealthy; until then it reports Degraded (1-100).",
		set: func(c *Config, v string) (err error) {
			c.HealthFailureThreshold, err = parseIntRange(v, 1, 100)
			return err
		}},
	{Name: "HEALTH_CORS_ORIGINS", Default: "", Description: "Comma-separated origins allowed to read the health routes from a browser, or `*`. Unset: no CORS headers.",
		set: func(c *Config, v string) (err error) { c.HealthCORSOrigins, err = parseOrigins(v); return err }},
	{Name: "WORKER_STALE_AFTER", Default: "5m", Description: "With tasks waiting and none completed for this long, `worker` is Degraded; for twice this long, Unhealthy. An idle worker is Healthy.",
		set: func(c *Config, v string) (err error) {
			c.WorkerStaleAfter, err = parseDurationRange(v, time.Second, 24*time.Hour)
			return err
		}},
	{Name: "QUEUE_LATENCY_WARN", Default: "1m", Description: "Age of the oldest pending task past which `queue` is Degraded.",
		set: func(c *Config, v string) (err error) {
			c.QueueLatencyWarn, err = parseDurationRange(v, time.Second, 24*time.Hour)
			return err
		}},
	{Name: "QUEUE_LATENCY_FAIL", Default: "5m", Description: "Age of the oldest pending task past which `queue` is Unhealthy (more than `QUEUE_LATENCY_WARN`).",
		set: func(c *Config, v string) (err error) {
			c.QueueLatencyFail, err = parseDurationRange(v, time.Second, 7*24*time.Hour)
			return err
		}},
	{Name: "ADMIN_TOKEN", Default: "", Secret: true, Description: "Bearer token for `/admin/busy`, `/admin/ready`, `/admin/recycle` and `/admin/status`, and the login of `/dashboard` (form or Bearer). Unset: those routes are 404.",
		set: func(c *Config, v string) error { c.AdminToken = v; return nil }},
	{Name: "METRICS_TOKEN", Default: "", Secret: true, Description: "Bearer token for `GET /metrics` (Prometheus); `ADMIN_TOKEN` works too. With neither set, `/metrics` is 404.",
		set: func(c *Config, v string) error { c.MetricsToken = v; return nil }},
	{Name: "METRICS_PORT", Default: "", Description: "Port on which `shoestring worker` run alone (split mode) serves `/metrics` and `/health/live` (0 picks a free one); unset: none. `serve` and `web` serve `/metrics` on `PORT` and ignore it; in `serve` that includes the child's task metrics.",
		set: func(c *Config, v string) (err error) {
			if v == "" {
				c.MetricsPort = -1
				return nil
			}
			c.MetricsPort, err = parsePort(v)
			return err
		}},
	{Name: "WORKER_EXIT_POLICY", Default: PolicyExit, Description: "When the worker child dies: `exit` (the parent exits non-zero, the platform restarts the deployable) or `restart` (restarted in place with jittered exponential backoff).",
		set: func(c *Config, v string) error { c.WorkerExitPolicy = v; return oneOf(v, PolicyExit, PolicyRestart) }},
	{Name: "WORKER_MAX_RESTARTS", Default: "5", Description: "With `restart`: restarts allowed within `WORKER_RESTART_WINDOW`; one more and the parent exits (0-1000).",
		set: func(c *Config, v string) (err error) {
			c.WorkerMaxRestarts, err = parseIntRange(v, 0, 1000)
			return err
		}},
	{Name: "WORKER_RESTART_WINDOW", Default: "5m", Description: "The window `WORKER_MAX_RESTARTS` counts in.",
		set: func(c *Config, v string) (err error) {
			c.WorkerRestartWindow, err = parseDurationRange(v, time.Second, 24*time.Hour)
			return err
		}},
	{Name: "HANG_GRACE", Default: "30s", Description: "A task still running this long past its deadline ignores cancellation: `worker` turns Unhealthy and the child is recycled.",
		set: func(c *Config, v string) (err error) {
			c.HangGrace, err = parseDurationRange(v, 100*time.Millisecond, time.Hour)
			return err
		}},
	{Name: "DEGRADED_RATIO", Default: "0.1", Description: "Completions per `THROUGHPUT_WINDOW` below this fraction of the baseline (the ten windows before), with work waiting, turn `worker` Degraded (0 turns it off).",
		set: func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 || f >= 1 {
				return errors.New("must be a fraction from 0 up to (not including) 1")
			}
			c.DegradedRatio = f
			return nil
		}},
	{Name: "DEGRADED_FOR", Default: "5m", Description: "How long `worker` may stay Degraded before the child is recycled.",
		set: func(c *Config, v string) (err error) {
			c.DegradedFor, err = parseDurationRange(v, time.Second, 24*time.Hour)
			return err
		}},
	{Name: "THROUGHPUT_WINDOW", Default: "1m", Description: "The window completions are counted over for `DEGRADED_RATIO`.",
		set: func(c *Config, v string) (err error) {
			c.ThroughputWindow, err = parseDurationRange(v, 100*time.Millisecond, time.Hour)
			return err
		}},
	{Name: "WORKER_MAX_RSS", Default: "0", Description: "Resident memory of the worker child past which it is recycled between tasks (a leak); a size such as `512MiB`, 0 for no limit.",
		set: func(c *Config, v string) (err error) {
			if v == "0" {
				c.WorkerMaxRSS = 0
				return nil
			}
			c.WorkerMaxRSS, err = parseBytes(v)
			return err
		}},
	{Name: "API_TOKEN", Default: "", Secret: true, Description: "Bearer token(s), comma-separated for rotation, for `POST /api/v1/jobs`, `GET /api/v1/queues` and `GET /api/v1/schedules`. Unset: those routes are 404, except in trial mode (no `REDIS_URL`), where they are open.",
		set: func(c *Config, v string) error { c.APITokens = splitTokens(v); return nil }},
	{Name: "DEMO_TASKS", Default: "", Description: "`true` registers the demonstration task kinds `echo` and `batch:count`; `false` does not. Unset: true only in trial mode.",
		set: func(c *Config, v string) error {
			c.DemoTasks = v
			if v == "" {
				return nil
			}
			return oneOf(v, "true", "false")
		}},
	{Name: "UPLOAD_RATE", Default: "30", Description: "Uploads per minute per client on `POST /api/v1/images` (and app routes behind `h.RateLimit`), with a burst of as many, counted in Redis across every instance (GCRA); past it, 429 with `Retry-After` (1-10000).",
		set: func(c *Config, v string) (err error) { c.UploadRate, err = parseIntRange(v, 1, 10000); return err }},
	{Name: "TRUST_PROXY", Default: "false", Description: "Take the client address for rate limits from the last `X-Forwarded-For` hop (the one the platform's router added), as behind Heroku, Render, Fly or Azure's front end. Leave false when clients reach the app directly.",
		set: func(c *Config, v string) (err error) { c.TrustProxy, err = strconv.ParseBool(v); return err }},
	{Name: "IMAGE_MEMORY_BUDGET", Default: "256MiB", Description: "Memory the image decodes of one worker process may hold at once; a task waits for its share, and an image needing more than all of it fails at once.",
		set: func(c *Config, v string) (err error) { c.ImageMemoryBudget, err = parseBytes(v); return err }},
	{Name: "KEEP_ORIGINALS", Default: "false", Description: "Keep an upload after its thumbnails are made (it is deleted then, or when its job fails for good, by default). Either way blobs expire with `JOB_RETENTION`.",
		set: func(c *Config, v string) (err error) { c.KeepOriginals, err = strconv.ParseBool(v); return err }},
	{Name: "SCHEDULE", Default: "", Description: "Periodic jobs, a JSON array of `{\"name\",\"cron\",\"type\",\"payload\",\"queue\",\"skip_if_running\",\"catch_up\"}`; `cron` is 5-field cron, `@hourly`-style, or `@every 15m`, with an optional `CRON_TZ=`/`TZ=` prefix (UTC without one). See Periodic work.",
		set: func(c *Config, v string) (err error) { c.Schedules, err = parseSchedules(v); return err }},
	{Name: "SCHEDULE_GRACE", Default: "1m", Description: "How long after its time a tick may have no started job before the `schedule` check turns Degraded.",
		set: func(c *Config, v string) (err error) {
			c.ScheduleGrace, err = parseDurationRange(v, time.Second, 24*time.Hour)
			return err
		}},
	{Name: "JOB_RETENTION", Default: "168h", Description: "How long a job's record stays readable at `/api/v1/jobs/{id}`.",
		set: func(c *Config, v string) (err error) {
			c.JobRetention, err = parseDurationRange(v, time.Minute, 365*24*time.Hour)
			return err
		}},
}

// Error lists every invalid setting found by one Load, one problem per line, each
// naming its variable.
type Error struct {
	Problems []string
}

func (e *Error) Error() string {
	return "invalid configuration:\n  " + strings.Join(e.Problems, "\n  ")
}

// Load reads every setting through getenv (an empty value means unset and takes the
// default), validates them all, and returns a *Error listing every problem at once.
// Secret values are never echoed in the error.
func Load(getenv func(string) string) (Config, error) {
	var c Config
	var problems []string
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.Name))
		if v == "" {
			v = s.Default
		}
		if err := s.set(&c, v); err != nil {
			shown := fmt.Sprintf(" (got %q)", v)
			if s.Secret {
				shown = ""
			}
			problems = append(problems, fmt.Sprintf("%s: %v%s", s.Name, unwrapParse(err), shown))
		}
	}
	if c.QueueLatencyWarn > 0 && c.QueueLatencyFail > 0 && c.QueueLatencyFail <= c.QueueLatencyWarn {
		problems = append(problems, fmt.Sprintf("QUEUE_LATENCY_FAIL: must be more than QUEUE_LATENCY_WARN (%v)", c.QueueLatencyWarn))
	}
	if p := c.blobCredentialsProblem(); p != "" {
		problems = append(problems, p)
	}
	if p := c.joinClusterAddrs(); p != "" {
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		return Config{}, &Error{Problems: problems}
	}
	return c, nil
}

// blobCredentialsProblem names the credentials a cloud BLOB_URL lacks, or is "".
func (c *Config) blobCredentialsProblem() string {
	switch {
	case strings.HasPrefix(c.BlobURL, "s3://") && (c.AWSAccessKeyID == "" || c.AWSSecretAccessKey == ""):
		return "BLOB_URL: s3:// needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
	case strings.HasPrefix(c.BlobURL, "azblob://") && c.AzureStorageConnectionString == "" &&
		(c.AzureStorageAccount == "" || c.AzureStorageKey == ""):
		return "BLOB_URL: azblob:// needs AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or AZURE_STORAGE_CONNECTION_STRING"
	}
	return ""
}

// joinClusterAddrs puts REDIS_CLUSTER_ADDRS's nodes into RedisURL, or names what is
// wrong with REDIS_URL and REDIS_CLUSTER_ADDRS together: the nodes are in exactly one
// of them. It is "" when there is nothing to join, or when REDIS_URL has a problem of
// its own, which Load has listed already.
func (c *Config) joinClusterAddrs() string {
	if checkRedisURL(c.RedisURL) != nil {
		return ""
	}
	u, _ := url.Parse(c.RedisURL) // checked just above
	cluster := u.Scheme == "redis-cluster" || u.Scheme == "rediss-cluster"
	switch {
	case c.RedisClusterAddrs == nil:
		if cluster && u.Host == "" {
			return "REDIS_URL: names no cluster node; give them in it, as in " + clusterForm + ", or in REDIS_CLUSTER_ADDRS"
		}
		return ""
	case c.RedisURL == "":
		u = &url.URL{Scheme: "redis-cluster"}
	case !cluster:
		return "REDIS_CLUSTER_ADDRS: REDIS_URL must then be unset, or a redis-cluster:// or rediss-cluster:// URL naming no node (for the password and TLS), not " + u.Scheme + "://"
	case u.Host != "":
		return "REDIS_CLUSTER_ADDRS: REDIS_URL names cluster nodes too; give them in one of the two"
	}
	u.Host, u.Path = strings.Join(c.RedisClusterAddrs, ","), ""
	c.RedisURL = u.String()
	return ""
}

// Env renders the settings that getenv sets as NAME=value pairs, for handing the same
// configuration to a child process.
func Env(getenv func(string) string) []string {
	var env []string
	for _, s := range settings {
		if v := getenv(s.Name); v != "" {
			env = append(env, s.Name+"="+v)
		}
	}
	return env
}

// MarkdownTable renders the settings as the README's configuration table.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| variable | default | what it does |\n|---|---|---|\n")
	for _, s := range settings {
		def := "(unset)"
		if s.Default != "" {
			def = "`" + s.Default + "`"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s |\n", s.Name, def, s.Description)
	}
	return b.String()
}

// Redacted returns a Redis or blob URL with its secret replaced by "xxxxx", for logs:
// the password, or a lone user name, which some providers use as the password
// (redis://SECRET@host).
func Redacted(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(unparseable URL)"
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); !hasPassword && u.User.Username() != "" {
			u.User = url.User("xxxxx")
		}
	}
	return u.Redacted()
}

// unwrapParse turns strconv's "strconv.ParseBool: parsing "x": invalid syntax" into
// the part a user needs.
func unwrapParse(err error) error {
	var ne *strconv.NumError
	if errors.As(err, &ne) {
		return fmt.Errorf("%w", ne.Err)
	}
	return err
}

func oneOf(v string, allowed ...string) error {
	if slices.Contains(allowed, v) {
		return nil
	}
	return fmt.Errorf("must be one of %s", strings.Join(allowed, ", "))
}

func parsePort(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 || n > 65535 {
		return 0, errors.New("must be a port number 0-65535")
	}
	return n, nil
}

func parseIntRange(v string, lo, hi int) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, errors.New("must be a whole number")
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("must be between %d and %d", lo, hi)
	}
	return n, nil
}

// parseDurationRange accepts a Go duration ("25s", "1m30s") or a bare number of seconds.
func parseDurationRange(v string, lo, hi time.Duration) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil {
		secs, nerr := strconv.ParseFloat(v, 64)
		if nerr != nil {
			return 0, errors.New(`must be a duration such as "25s", "2m" or a number of seconds`)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d < lo || d > hi {
		return 0, fmt.Errorf("must be between %v and %v", lo, hi)
	}
	return d, nil
}

var byteUnits = map[string]int64{
	"": 1, "b": 1,
	"kb": 1000, "mb": 1000 * 1000, "gb": 1000 * 1000 * 1000,
	"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30,
}

var bytesRe = regexp.MustCompile(`^([0-9]+)\s*([a-zA-Z]*)$`)

func parseBytes(v string) (int64, error) {
	m := bytesRe.FindStringSubmatch(v)
	if m == nil {
		return 0, errors.New(`must be a size such as "20MiB" or a number of bytes`)
	}
	unit, ok := byteUnits[strings.ToLower(m[2])]
	if !ok {
		return 0, fmt.Errorf("unknown unit %q (use KiB, MiB, GiB, KB, MB, GB)", m[2])
	}
	n, err := strconv.ParseInt(m[1], 10, 64)
	if err != nil || n <= 0 || n > (1<<40)/unit {
		return 0, errors.New("must be between 1 byte and 1TiB")
	}
	return n * unit, nil
}

// Length checked apart: a bounded repetition such as {1,64} compiles to one copy of
// the class per count, heap held for the life of the process.
var queueNameRe = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func parseQueues(v string) (map[string]int, error) {
	queues := make(map[string]int)
	for part := range strings.SplitSeq(v, ",") {
		name, weight, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			weight = "1"
		}
		name = strings.TrimSpace(name)
		if len(name) > 64 || !queueNameRe.MatchString(name) {
			return nil, fmt.Errorf("queue name %q must be 1-64 letters, digits, '_', '.' or '-'", name)
		}
		w, err := strconv.Atoi(strings.TrimSpace(weight))
		if err != nil || w < 1 || w > 1000 {
			return nil, fmt.Errorf("queue %q: weight must be a whole number 1-1000", name)
		}
		if _, dup := queues[name]; dup {
			return nil, fmt.Errorf("queue %q is listed twice", name)
		}
		queues[name] = w
	}
	return queues, nil
}

// MaxSizes is the most thumbnail widths one job may ask for.
const MaxSizes = 16

// MaxWidth is the largest thumbnail width in pixels.
const MaxWidth = 10000

// ParseSizes parses comma-separated thumbnail widths in pixels ("160,320"): each
// 1..MaxWidth, at most MaxSizes, duplicates removed, returned in ascending order. The
// upload route uses it for its `sizes` field too.
func ParseSizes(v string) ([]int, error) {
	var sizes []int
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		n, err := strconv.Atoi(part)
		if err != nil || n < 1 || n > MaxWidth {
			return nil, fmt.Errorf("width %q must be a whole number of pixels 1-%d", part, MaxWidth)
		}
		sizes = append(sizes, n)
	}
	slices.Sort(sizes)
	sizes = slices.Compact(sizes)
	if len(sizes) > MaxSizes {
		return nil, fmt.Errorf("at most %d widths", MaxSizes)
	}
	return sizes, nil
}

var pathRe = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)+/?$`)

func checkPath(v string) error {
	if !pathRe.MatchString(v) {
		return errors.New(`must be a path such as "/health"`)
	}
	return nil
}

func parseOrigins(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	var origins []string
	for o := range strings.SplitSeq(v, ",") {
		o = strings.TrimRight(strings.TrimSpace(o), "/")
		if o != "*" {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Path != "" {
				return nil, fmt.Errorf("origin %q must be * or scheme://host[:port]", o)
			}
		}
		origins = append(origins, o)
	}
	return origins, nil
}

func checkRedisURL(v string) error {
	if v == "" {
		return nil
	}
	u, err := url.Parse(v)
	if err != nil {
		return errors.New("is not a URL")
	}
	switch u.Scheme {
	case "redis", "rediss":
		if u.Host == "" {
			return errors.New("needs a host, as in redis://host:6379")
		}
	case "unix":
		if u.Path == "" {
			return errors.New("needs a socket path, as in unix:///run/redis.sock")
		}
	case "redis-sentinel":
		return checkSentinelURL(u)
	case "redis-cluster", "rediss-cluster":
		return checkClusterURL(u)
	default:
		return fmt.Errorf("scheme %q is not one of redis, rediss, unix, redis-sentinel, redis-cluster, rediss-cluster", u.Scheme)
	}
	return nil
}

// clusterForm is the shape of a redis-cluster URL, for messages.
const clusterForm = "redis-cluster://[:password@]host:port[,host:port...]"

// checkClusterURL checks redis-cluster://[[user]:pass@][host:port[,host:port...]][/]
// (storage.ParseClusterURL reads it). A URL naming no node is left to joinClusterAddrs,
// which knows whether REDIS_CLUSTER_ADDRS names them.
func checkClusterURL(u *url.URL) error {
	if u.Host != "" {
		for addr := range strings.SplitSeq(u.Host, ",") {
			if err := checkNodeAddr(addr); err != nil {
				return fmt.Errorf("%w (%s)", err, clusterForm)
			}
		}
	}
	if u.Path != "" && u.Path != "/" {
		return errors.New("takes no path: a cluster has database 0 only (" + clusterForm + ")")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return errors.New("takes no query parameters or fragment (" + clusterForm + ")")
	}
	return nil
}

// checkNodeAddr checks one cluster node's host:port.
func checkNodeAddr(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	n, perr := strconv.Atoi(port)
	switch {
	case err == nil && strings.Contains(host, ":") && net.ParseIP(host) != nil:
		// A list of them is no valid URL, which RedisURL must be.
		return fmt.Errorf("node address %q is an IPv6 literal; give a host name", addr)
	case err != nil || host == "" || strings.ContainsAny(host, ":/@") || perr != nil || n < 1 || n > 65535:
		return fmt.Errorf("node address %q is not host:port with a port 1-65535", addr)
	}
	return nil
}

// parseClusterAddrs parses REDIS_CLUSTER_ADDRS: comma-separated host:port nodes, each
// once; "" is nil.
func parseClusterAddrs(v string) ([]string, error) {
	if v == "" {
		return nil, nil
	}
	addrs := splitTokens(v)
	if len(addrs) == 0 {
		return nil, errors.New("lists no node; give host:port[,host:port...]")
	}
	for i, a := range addrs {
		if err := checkNodeAddr(a); err != nil {
			return nil, err
		}
		if slices.Contains(addrs[:i], a) {
			return nil, fmt.Errorf("node address %q is listed twice", a)
		}
	}
	return addrs, nil
}

// checkSentinelURL checks redis-sentinel://[[user]:pass@]host:port[,host:port...]/master[/db]
// (storage.ParseSentinelURL reads it).
func checkSentinelURL(u *url.URL) error {
	const form = "redis-sentinel://[:password@]host:port[,host:port...]/mastername[/db]"
	if u.Host == "" {
		return errors.New("needs at least one sentinel host:port, as in " + form)
	}
	for addr := range strings.SplitSeq(u.Host, ",") {
		host, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return fmt.Errorf("sentinel address %q is not host:port (%s)", addr, form)
		}
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return errors.New("needs the master name, as in " + form)
	}
	if len(parts) == 2 {
		if n, err := strconv.Atoi(parts[1]); err != nil || n < 0 {
			return fmt.Errorf("database %q is not a number (%s)", parts[1], form)
		}
	}
	if u.RawQuery != "" {
		return errors.New("takes no query parameters (" + form + ")")
	}
	return nil
}

// splitTokens splits comma-separated tokens, dropping empty ones.
func splitTokens(v string) []string {
	var out []string
	for t := range strings.SplitSeq(v, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// DemoTasksOn reports whether the demonstration task kinds are on: DEMO_TASKS, or,
// when unset, trial mode (no REDIS_URL).
func (c Config) DemoTasksOn(trial bool) bool {
	return c.DemoTasks == "true" || (c.DemoTasks == "" && trial)
}

// maxSchedules bounds SCHEDULE's entries.
const maxSchedules = 100

var scheduleNameRe = regexp.MustCompile(`^[A-Za-z0-9:._-]+$`) // length apart, as queueNameRe

// parseSchedules decodes SCHEDULE strictly: a JSON array of entries, each with cron and
// type, unique names of letters, digits and ":._-".
func parseSchedules(v string) ([]ScheduleEntry, error) {
	if v == "" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(v))
	dec.DisallowUnknownFields()
	var entries []ScheduleEntry
	if err := dec.Decode(&entries); err != nil {
		return nil, fmt.Errorf("must be a JSON array of {\"name\",\"cron\",\"type\",\"payload\",\"queue\"}: %s", jsonProblem(err))
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON array")
	}
	if len(entries) > maxSchedules {
		return nil, fmt.Errorf("at most %d schedules", maxSchedules)
	}
	var problems []string
	seen := make(map[string]bool)
	for i := range entries {
		e := &entries[i]
		if e.Name == "" {
			e.Name = e.Type
		}
		switch {
		case e.Type == "":
			problems = append(problems, fmt.Sprintf("entry %d: type is required", i))
		case e.Cron == "":
			problems = append(problems, fmt.Sprintf("%s: cron is required", e.Name))
		case len(e.Name) > 100 || !scheduleNameRe.MatchString(e.Name):
			problems = append(problems, fmt.Sprintf("entry %d: name %q must be 1-100 letters, digits or \":._-\"", i, e.Name))
		case seen[e.Name]:
			problems = append(problems, fmt.Sprintf("%s: name used twice (give each entry its own name)", e.Name))
		}
		seen[e.Name] = true
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	return entries, nil
}

// jsonProblem is encoding/json's message without the Go type names it mentions.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field != "" {
			return fmt.Sprintf("%s has the wrong type", te.Field)
		}
		return "wrong JSON type"
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func checkBlobURL(v string) error {
	u, err := url.Parse(v)
	if err != nil {
		return errors.New("is not a URL")
	}
	q := u.Query()
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "." && u.Host != ".." {
			return errors.New(`needs a path: file:///abs/dir or file://./relative/dir`)
		}
		if u.Host == "" && u.Path == "" {
			return errors.New("needs a directory")
		}
	case "mem":
	case "s3":
		if u.Host == "" {
			return errors.New("needs a bucket name: s3://bucket?region=...")
		}
		if u.Path != "" && u.Path != "/" {
			return errors.New("takes no path after the bucket name: s3://bucket?region=...")
		}
		if q.Get("region") == "" {
			return errors.New("needs ?region= (us-east-1 for MinIO, auto for R2)")
		}
		if ep := q.Get("endpoint"); ep != "" {
			if e, err := url.Parse(ep); err != nil || (e.Scheme != "http" && e.Scheme != "https") || e.Host == "" {
				return errors.New("endpoint must be an http:// or https:// URL")
			}
		}
		if err := checkQuery(q, map[string]bool{"region": false, "endpoint": false, "use_path_style": true}); err != nil {
			return err
		}
	case "azblob":
		if u.Host == "" {
			return errors.New("needs a container name: azblob://container")
		}
		if u.Path != "" && u.Path != "/" {
			return errors.New("takes no path after the container name: azblob://container")
		}
		if p := q.Get("protocol"); p != "" && p != "http" && p != "https" {
			return errors.New("protocol must be http or https")
		}
		if err := checkQuery(q, map[string]bool{"protocol": false, "domain": false, "localemu": true}); err != nil {
			return err
		}
	default:
		return fmt.Errorf("scheme %q is not one of file, mem, s3, azblob", u.Scheme)
	}
	return nil
}

// checkQuery refuses URL parameters not in known, given twice, or (when known says so)
// not a boolean.
func checkQuery(q url.Values, known map[string]bool) error {
	for k, vs := range q {
		isBool, ok := known[k]
		switch {
		case !ok:
			names := slices.Sorted(maps.Keys(known))
			return fmt.Errorf("unknown parameter %q (known: %s)", k, strings.Join(names, ", "))
		case len(vs) > 1:
			return fmt.Errorf("parameter %q given twice", k)
		case isBool:
			if _, err := strconv.ParseBool(vs[0]); err != nil {
				return fmt.Errorf("parameter %q must be true or false", k)
			}
		}
	}
	return nil
}
