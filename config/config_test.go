package config

import (
	"encoding/json"
	"errors"
	"flag"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the configuration table in ../README.md")

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	t.Parallel()
	c, err := Load(env(nil))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Port: 8080, BlobURL: "file://./data/blobs", WorkerConcurrency: 10, WorkerFetchers: 4,
		Queues:          map[string]int{"critical": 6, "default": 3, "low": 1},
		ShutdownTimeout: 25 * time.Second, MaxUploadBytes: 20 << 20, MaxImagePixels: 50_000_000,
		ThumbnailSizes: []int{160, 320, 640}, LogLevel: slog.LevelInfo, LogFormat: "text", LogFlushInterval: 100 * time.Millisecond,
		HealthDetails: DetailsAuthorized, HealthTimeout: 2 * time.Second, JobRetention: 168 * time.Hour,
		HealthPath: "/health", HealthCache: 2 * time.Second, HealthFailureThreshold: 1,
		WorkerStaleAfter: 5 * time.Minute, QueueLatencyWarn: time.Minute, QueueLatencyFail: 5 * time.Minute,
		WorkerExitPolicy: PolicyExit, WorkerMaxRestarts: 5, WorkerRestartWindow: 5 * time.Minute,
		HangGrace: 30 * time.Second, DegradedRatio: 0.1, DegradedFor: 5 * time.Minute, ThroughputWindow: time.Minute,
		ScheduleGrace: time.Minute, UploadRate: 30, ImageMemoryBudget: 256 << 20, MetricsPort: -1,
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
}

func TestValues(t *testing.T) {
	t.Parallel()
	c, err := Load(env(map[string]string{
		"PORT": "5000", "REDIS_URL": "rediss://u:p@redis.example:6380/2", "REDIS_TLS_SKIP_VERIFY": "true",
		"BLOB_URL": "mem://", "WORKER_CONCURRENCY": "3", "QUEUES": " images=5, default ",
		"SHUTDOWN_TIMEOUT": "9", "MAX_UPLOAD_BYTES": "5MB", "MAX_IMAGE_PIXELS": "1000000",
		"THUMBNAIL_SIZES": "640, 100,100", "LOG_LEVEL": "debug", "LOG_FORMAT": "json",
		"HEALTH_DETAILS": "always", "HEALTH_TIMEOUT": "500ms", "JOB_RETENTION": "24h",
		"HEALTH_PATH": "/status/", "HEALTH_CACHE": "0", "HEALTH_FAILURE_THRESHOLD": "3",
		"HEALTH_CORS_ORIGINS": "https://status.example.com, http://localhost:3000", "WORKER_STALE_AFTER": "90s",
		"QUEUE_LATENCY_WARN": "10s", "QUEUE_LATENCY_FAIL": "20s", "ADMIN_TOKEN": "t0k",
		"METRICS_TOKEN": "m3t", "METRICS_PORT": "9090",
		"WORKER_EXIT_POLICY": "restart", "WORKER_MAX_RESTARTS": "20", "WORKER_RESTART_WINDOW": "1m",
		"HANG_GRACE": "2s", "LOG_FLUSH_INTERVAL": "0", "DEGRADED_RATIO": "0.25", "DEGRADED_FOR": "10s", "THROUGHPUT_WINDOW": "1s",
		"WORKER_MAX_RSS": "256MiB", "SCHEDULE_GRACE": "5s", "API_TOKEN": " new-token, old-token,",
		"DEMO_TASKS": "true", "TRUST_PROXY": "true", "KEEP_ORIGINALS": "true",
		"SCHEDULE": `[{"name":"refresh","cron":"*/15 * * * *","type":"feeds:refresh","payload":{"all":true},"queue":"low"},
			{"cron":"@every 1s","type":"echo","skip_if_running":true,"catch_up":false}]`,
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := Config{
		Port: 5000, RedisURL: "rediss://u:p@redis.example:6380/2", RedisTLSSkipVerify: true, BlobURL: "mem://",
		WorkerConcurrency: 3, WorkerFetchers: 4, Queues: map[string]int{"images": 5, "default": 1}, ShutdownTimeout: 9 * time.Second,
		MaxUploadBytes: 5_000_000, MaxImagePixels: 1_000_000, ThumbnailSizes: []int{100, 640},
		LogLevel: slog.LevelDebug, LogFormat: "json", HealthDetails: DetailsAlways,
		HealthTimeout: 500 * time.Millisecond, JobRetention: 24 * time.Hour,
		HealthPath: "/status", HealthCache: 0, HealthFailureThreshold: 3,
		HealthCORSOrigins: []string{"https://status.example.com", "http://localhost:3000"},
		WorkerStaleAfter:  90 * time.Second, QueueLatencyWarn: 10 * time.Second, QueueLatencyFail: 20 * time.Second,
		AdminToken: "t0k", MetricsToken: "m3t", MetricsPort: 9090, WorkerExitPolicy: PolicyRestart, WorkerMaxRestarts: 20, WorkerRestartWindow: time.Minute,
		HangGrace: 2 * time.Second, DegradedRatio: 0.25, DegradedFor: 10 * time.Second, ThroughputWindow: time.Second,
		WorkerMaxRSS: 256 << 20, ScheduleGrace: 5 * time.Second, UploadRate: 30, ImageMemoryBudget: 256 << 20,
		APITokens: []string{"new-token", "old-token"}, DemoTasks: "true", TrustProxy: true, KeepOriginals: true,
		Schedules: []ScheduleEntry{
			{Name: "refresh", Cron: "*/15 * * * *", Type: "feeds:refresh", Payload: json.RawMessage(`{"all":true}`), Queue: "low"},
			{Name: "echo", Cron: "@every 1s", Type: "echo", SkipIfRunning: true, CatchUp: new(false)},
		},
	}
	if diff := cmp.Diff(want, c); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestBadSchedules: SCHEDULE's shape problems are listed, each naming its entry.
func TestBadSchedules(t *testing.T) {
	t.Parallel()
	tests := []struct{ value, want string }{
		{`{"cron":"@hourly"}`, "must be a JSON array"},
		{`[{"cron":"@hourly","type":"echo","color":"red"}]`, `unknown field "color"`},
		{`[{"cron":"@hourly"}]`, "entry 0: type is required"},
		{`[{"type":"echo"}]`, "echo: cron is required"},
		{`[{"name":"a b","cron":"@hourly","type":"echo"}]`, `name "a b" must be`},
		{`[{"cron":"@hourly","type":"echo"},{"cron":"@daily","type":"echo"}]`, "echo: name used twice"},
		{`[{"cron":5,"type":"echo"}]`, "cron has the wrong type"},
		{`[{"name":"` + strings.Repeat("n", 101) + `","cron":"@hourly","type":"echo"}]`, "must be 1-100"},
	}
	for _, tc := range tests {
		_, err := Load(env(map[string]string{"SCHEDULE": tc.value}))
		if err == nil || !strings.Contains(err.Error(), "SCHEDULE: ") || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SCHEDULE=%s: %v, want %q", tc.value, err, tc.want)
		}
	}
}

// TestEveryProblemAtOnce: one Load names every bad variable, and never a secret value.
func TestEveryProblemAtOnce(t *testing.T) {
	t.Parallel()
	bad := map[string]string{
		"PORT": "70000", "REDIS_URL": "http://user:topsecret@host", "REDIS_TLS_SKIP_VERIFY": "maybe",
		"BLOB_URL": "s4://bucket", "WORKER_CONCURRENCY": "-1", "QUEUES": "a=1,a=2",
		"SHUTDOWN_TIMEOUT": "1h", "MAX_UPLOAD_BYTES": "12 furlongs", "MAX_IMAGE_PIXELS": "many",
		"THUMBNAIL_SIZES": "0", "LOG_LEVEL": "loud", "LOG_FORMAT": "xml", "LOG_FLUSH_INTERVAL": "2s", "HEALTH_DETAILS": "sometimes",
		"HEALTH_TIMEOUT": "1ns", "JOB_RETENTION": "forever", "HEALTH_PATH": "health",
		"HEALTH_CACHE": "soon", "HEALTH_FAILURE_THRESHOLD": "0", "HEALTH_CORS_ORIGINS": "ftp://x",
		"WORKER_STALE_AFTER": "0s", "QUEUE_LATENCY_WARN": "never", "QUEUE_LATENCY_FAIL": "-1s",
		"WORKER_EXIT_POLICY": "ignore", "WORKER_MAX_RESTARTS": "-2", "WORKER_RESTART_WINDOW": "0",
		"HANG_GRACE": "x", "DEGRADED_RATIO": "1.5", "DEGRADED_FOR": "y", "THROUGHPUT_WINDOW": "z", "WORKER_MAX_RSS": "lots",
		"REDIS_CLUSTER_ADDRS": "node-1",
	}
	_, err := Load(env(bad))
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("err = %v, want *Error", err)
	}
	if len(ce.Problems) != len(bad) {
		t.Errorf("%d problems for %d bad settings:\n%v", len(ce.Problems), len(bad), err)
	}
	for name := range bad {
		if !strings.Contains(err.Error(), name+":") {
			t.Errorf("no problem names %s", name)
		}
	}
	if strings.Contains(err.Error(), "topsecret") {
		t.Errorf("secret echoed: %v", err)
	}
}

func TestParseQueuesAndSizes(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in      string
		wantErr bool
	}{
		{"default", false}, {"a=1,b=1000", false}, {"a=0", true}, {"a b=1", true}, {"=3", true}, {"a=1,", true},
		{strings.Repeat("q", 64), false}, {strings.Repeat("q", 65), true},
	} {
		if _, err := parseQueues(tc.in); (err != nil) != tc.wantErr {
			t.Errorf("parseQueues(%q) err = %v", tc.in, err)
		}
	}
	if _, err := ParseSizes("1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17"); err == nil {
		t.Errorf("17 sizes accepted")
	}
	if got, err := ParseSizes("10,10,10"); err != nil || !cmp.Equal(got, []int{10}) {
		t.Errorf("ParseSizes dedupe: %v %v", got, err)
	}
}

func TestEnvRoundTrip(t *testing.T) {
	t.Parallel()
	in := map[string]string{"PORT": "1234", "QUEUES": "x=2", "NOT_A_SETTING": "y"}
	got := Env(env(in))
	if diff := cmp.Diff([]string{"PORT=1234", "QUEUES=x=2"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestRedacted: a URL's secret never reaches a log, in the password slot or, alone,
// in the user slot.
func TestRedacted(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{
		"redis://user:pw@host:6379/0":                "redis://user:xxxxx@host:6379/0",
		"redis://SECRET@host:6379":                   "redis://xxxxx@host:6379",
		"rediss://:s3cr3t@host:6380":                 "rediss://:xxxxx@host:6380",
		"redis://host:6379/1":                        "redis://host:6379/1",
		"unix:///run/redis.sock?db=2":                "unix:///run/redis.sock?db=2",
		"redis-cluster://:pw@n1:7000,n2:7001":        "redis-cluster://:xxxxx@n1:7000,n2:7001",
		"rediss-cluster://app:pw@n1:7000,n2:7001/":   "rediss-cluster://app:xxxxx@n1:7000,n2:7001/",
		"redis-cluster://SECRET@n1:7000,n2:7001":     "redis-cluster://xxxxx@n1:7000,n2:7001",
		"redis-sentinel://:pw@s1:26379,s2:26379/m/0": "redis-sentinel://:xxxxx@s1:26379,s2:26379/m/0",
	} {
		if got := Redacted(raw); got != want {
			t.Errorf("Redacted(%q) = %q, want %q", raw, got, want)
		}
	}
}

// TestREADMETable keeps README.md's configuration table equal to the settings list.
// `go test ./config -update` rewrites it.
func TestREADMETable(t *testing.T) {
	const path = "../README.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?s)(<!-- config:start[^\n]*-->\n).*?(<!-- config:end -->)`)
	if !re.Match(raw) {
		t.Fatal("README.md lacks the config:start/config:end markers")
	}
	want := []byte(re.ReplaceAllString(string(raw), "${1}"+strings.ReplaceAll(MarkdownTable(), "$", "$$")+"${2}"))
	if *update {
		if err := os.WriteFile(path, want, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(string(want), string(raw)); diff != "" {
		t.Errorf("README.md table is stale; run go test ./config -update (-want +got):\n%s", diff)
	}
}

// TestBlobURL: the cloud blob URLs are accepted with their credentials, and every
// mistake is named (a missing bucket or container, region, credentials, a bad option)
// without echoing a secret.
func TestBlobURL(t *testing.T) {
	t.Parallel()
	s3Creds := map[string]string{"AWS_ACCESS_KEY_ID": "AKID", "AWS_SECRET_ACCESS_KEY": "s3cret"}
	azCreds := map[string]string{"AZURE_STORAGE_ACCOUNT": "acct", "AZURE_STORAGE_KEY": "azkey=="}
	azConn := map[string]string{"AZURE_STORAGE_CONNECTION_STRING": "AccountName=a;AccountKey=k"}
	tests := []struct {
		url   string
		creds map[string]string
		want  string // "" for valid
	}{
		{"s3://shots?region=us-east-1", s3Creds, ""},
		{"s3://shots?region=auto&endpoint=https://acct.r2.cloudflarestorage.com", s3Creds, ""},
		{"s3://shots?region=us-east-1&endpoint=http://127.0.0.1:9000&use_path_style=true", s3Creds, ""},
		{"azblob://shots", azCreds, ""},
		{"azblob://shots?protocol=http&domain=127.0.0.1:10000", azCreds, ""},
		{"azblob://shots", azConn, ""},
		{"s3://?region=us-east-1", s3Creds, "needs a bucket name"},
		{"s3:///shots?region=us-east-1", s3Creds, "needs a bucket name"},
		{"s3://shots/sub?region=us-east-1", s3Creds, "takes no path"},
		{"s3://shots", s3Creds, "needs ?region="},
		{"s3://shots?region=us-east-1&endpoint=127.0.0.1:9000", s3Creds, "endpoint must be an http:// or https:// URL"},
		{"s3://shots?region=us-east-1&use_path_style=yes please", s3Creds, `"use_path_style" must be true or false`},
		{"s3://shots?region=us-east-1&profile=dev", s3Creds, `unknown parameter "profile"`},
		{"s3://shots?region=us-east-1", nil, "s3:// needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{"s3://shots?region=us-east-1", map[string]string{"AWS_ACCESS_KEY_ID": "AKID"}, "needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"},
		{"azblob://", azCreds, "needs a container name"},
		{"azblob://shots?protocol=ftp", azCreds, "protocol must be http or https"},
		{"azblob://shots?cdn=true", azCreds, `unknown parameter "cdn"`},
		{"azblob://shots", nil, "azblob:// needs AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY, or AZURE_STORAGE_CONNECTION_STRING"},
		{"azblob://shots", map[string]string{"AZURE_STORAGE_ACCOUNT": "acct"}, "azblob:// needs"},
		{"gs://shots", nil, `scheme "gs" is not one of file, mem, s3, azblob`},
	}
	for _, tc := range tests {
		t.Run(tc.url, func(t *testing.T) {
			vars := map[string]string{"BLOB_URL": tc.url}
			for k, v := range tc.creds {
				vars[k] = v
			}
			c, err := Load(env(vars))
			if tc.want == "" {
				if err != nil || c.BlobURL != tc.url {
					t.Fatalf("Load: %v (BlobURL %q)", err, c.BlobURL)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "BLOB_URL: ") || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load: %v, want a BLOB_URL problem with %q", err, tc.want)
			}
			for _, secret := range []string{"s3cret", "azkey==", "AccountKey=k"} {
				if strings.Contains(err.Error(), secret) {
					t.Errorf("secret %q echoed: %v", secret, err)
				}
			}
		})
	}
}

// TestSentinelURL: REDIS_URL takes redis-sentinel://[:pass@]host:port[,...]/master[/db],
// and a malformed one is a clear problem that never echoes the password.
func TestSentinelURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, problem string
	}{
		{url: "redis-sentinel://10.0.0.1:26379/mymaster"},
		{url: "redis-sentinel://:s3cret@10.0.0.1:26379,10.0.0.2:26379,sentinel-3:26379/mymaster/2"},
		{url: "redis-sentinel://:s3cret@/mymaster", problem: "at least one sentinel"},
		{url: "redis-sentinel://:s3cret@10.0.0.1/mymaster", problem: "is not host:port"},
		{url: "redis-sentinel://:s3cret@10.0.0.1:26379,:1/mymaster", problem: "is not host:port"},
		{url: "redis-sentinel://:s3cret@10.0.0.1:26379", problem: "master name"},
		{url: "redis-sentinel://:s3cret@10.0.0.1:26379/m/x", problem: "not a number"},
		{url: "redis-sentinel://:s3cret@10.0.0.1:26379/m/1/2", problem: "master name"},
		{url: "redis-sentinel://:s3cret@10.0.0.1:26379/m?db=1", problem: "no query"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			_, err := Load(env(map[string]string{"REDIS_URL": tc.url}))
			switch {
			case tc.problem == "" && err != nil:
				t.Errorf("Load: %v", err)
			case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), "REDIS_URL:") || !strings.Contains(err.Error(), tc.problem)):
				t.Errorf("Load = %v, want a REDIS_URL problem saying %q", err, tc.problem)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Errorf("password echoed: %v", err)
			}
		})
	}
}

// TestClusterURL: REDIS_URL takes redis-cluster://[[user]:pass@]host:port[,...] and
// rediss-cluster://, and a malformed one is a clear problem that never echoes the
// password.
func TestClusterURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url, problem string
	}{
		{url: "redis-cluster://10.0.0.1:7000"},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7001,node-3.internal:7002"},
		{url: "rediss-cluster://app:s3cret@10.0.0.1:7000,10.0.0.2:7001/"},
		{url: "redis-cluster://:s3cret@", problem: "names no cluster node"},
		{url: "redis-cluster://:s3cret@/", problem: "names no cluster node"},
		{url: "redis-cluster://:s3cret@10.0.0.1/", problem: `"10.0.0.1" is not host:port`},
		{url: "redis-cluster://:s3cret@10.0.0.1:0", problem: "is not host:port with a port 1-65535"},
		{url: "redis-cluster://:s3cret@10.0.0.1:65536", problem: "is not host:port"},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000,:7001", problem: `":7001" is not host:port`},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000,", problem: "is not a URL"},
		{url: "redis-cluster://:s3cret@10.0.0.1:x", problem: "is not a URL"},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000/0", problem: "takes no path"},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000?read_only=true", problem: "takes no query"},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000?", problem: "takes no query"},
		{url: "redis-cluster://:s3cret@10.0.0.1:7000#x", problem: "takes no query parameters or fragment"},
		{url: "redis-clusters://:s3cret@10.0.0.1:7000", problem: `scheme "redis-clusters" is not one of`},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(map[string]string{"REDIS_URL": tc.url}))
			switch {
			case tc.problem == "" && (err != nil || c.RedisURL != tc.url):
				t.Errorf("Load: %v (RedisURL %q)", err, c.RedisURL)
			case tc.problem != "" && (err == nil || !strings.Contains(err.Error(), "REDIS_URL: ") || !strings.Contains(err.Error(), tc.problem)):
				t.Errorf("Load = %v, want a REDIS_URL problem saying %q", err, tc.problem)
			case err != nil && strings.Contains(err.Error(), "s3cret"):
				t.Errorf("password echoed: %v", err)
			}
		})
	}
}

// TestClusterAddrs: REDIS_CLUSTER_ADDRS names a cluster's nodes, which Load puts in
// RedisURL with REDIS_URL's credentials and TLS; REDIS_URL beside it must name no
// node and be a cluster URL, and a bad node list is named without echoing REDIS_URL.
func TestClusterAddrs(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, url, addrs string
		want             string // RedisURL, when there is no problem
		problem          string // "VARIABLE: words"
	}{
		{name: "alone", addrs: "10.0.0.1:7000, 10.0.0.2:7001,node-3:7002",
			want: "redis-cluster://10.0.0.1:7000,10.0.0.2:7001,node-3:7002"},
		{name: "trailing comma", addrs: "10.0.0.1:7000,", want: "redis-cluster://10.0.0.1:7000"},
		{name: "password from REDIS_URL", url: "redis-cluster://:s3cret@", addrs: "n1:7000,n2:7001",
			want: "redis-cluster://:s3cret@n1:7000,n2:7001"},
		{name: "user, password and TLS from REDIS_URL", url: "rediss-cluster://app:s3%2Fcret@/", addrs: "n1:7000",
			want: "rediss-cluster://app:s3%2Fcret@n1:7000"},
		{name: "nodes in both", url: "redis-cluster://:s3cret@n1:7000", addrs: "n2:7000",
			problem: "REDIS_CLUSTER_ADDRS: REDIS_URL names cluster nodes too"},
		{name: "not a cluster URL", url: "redis://:s3cret@n1:6379/0", addrs: "n2:7000",
			problem: "REDIS_CLUSTER_ADDRS: REDIS_URL must then be unset, or a redis-cluster:// or rediss-cluster:// URL naming no node"},
		{name: "sentinel URL", url: "redis-sentinel://:s3cret@s1:26379/m", addrs: "n2:7000",
			problem: "not redis-sentinel://"},
		{name: "no port", addrs: "n1:7000,n2", problem: `REDIS_CLUSTER_ADDRS: node address "n2" is not host:port`},
		{name: "bad port", addrs: "n1:seven", problem: `REDIS_CLUSTER_ADDRS: node address "n1:seven" is not host:port`},
		{name: "port 0", addrs: "n1:0", problem: "REDIS_CLUSTER_ADDRS: node address \"n1:0\" is not host:port with a port 1-65535"},
		{name: "no host", addrs: ":7000", problem: `REDIS_CLUSTER_ADDRS: node address ":7000" is not host:port`},
		{name: "empty list", addrs: " , ,", problem: "REDIS_CLUSTER_ADDRS: lists no node"},
		{name: "IPv6", addrs: "[::1]:7000,[::1]:7001", problem: "is an IPv6 literal"},
		{name: "twice", addrs: "n1:7000,n1:7000", problem: `node address "n1:7000" is listed twice`},
		{name: "URL", addrs: "redis://n1:7000", problem: `REDIS_CLUSTER_ADDRS: node address "redis://n1:7000" is not host:port`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(env(map[string]string{"REDIS_URL": tc.url, "REDIS_CLUSTER_ADDRS": tc.addrs}))
			if tc.problem == "" {
				if err != nil || c.RedisURL != tc.want {
					t.Fatalf("Load: %v; RedisURL = %q, want %q", err, c.RedisURL, tc.want)
				}
				return
			}
			var ce *Error
			if !errors.As(err, &ce) || len(ce.Problems) != 1 || !strings.Contains(ce.Problems[0], tc.problem) {
				t.Fatalf("Load = %v, want one problem saying %q", err, tc.problem)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("password echoed: %v", err)
			}
		})
	}
}
