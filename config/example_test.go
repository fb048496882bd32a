package config_test

import (
	"errors"
	"fmt"
	"strings"

	"github.com/shoestring-go/shoestring/config"
)

// mapEnv is a getenv over a map, as a test or a child process would pass it.
func mapEnv(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// Load reads every setting through getenv; what is unset takes its default.
func ExampleLoad() {
	cfg, err := config.Load(mapEnv(map[string]string{
		"PORT":               "9000",
		"REDIS_URL":          "redis://localhost:6379/0",
		"QUEUES":             "critical=6,default=3,low=1",
		"WORKER_CONCURRENCY": "20",
	}))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("port:", cfg.Port)
	fmt.Println("queues:", cfg.Queues)
	fmt.Println("concurrency:", cfg.WorkerConcurrency, "fetch loops:", cfg.WorkerFetchers)
	fmt.Println("shutdown within:", cfg.ShutdownTimeout)
	// Output:
	// port: 9000
	// queues: map[critical:6 default:3 low:1]
	// concurrency: 20 fetch loops: 4
	// shutdown within: 25s
}

// Invalid configuration fails at start with every problem at once, each naming its
// variable; a secret's value is never echoed.
func ExampleError() {
	_, err := config.Load(mapEnv(map[string]string{
		"PORT":               "http",
		"WORKER_CONCURRENCY": "0",
		"REDIS_URL":          "mysql://root:hunter2@db:3306",
	}))
	var ce *config.Error
	if errors.As(err, &ce) {
		for _, p := range ce.Problems {
			fmt.Println(p)
		}
	}
	fmt.Println("secret echoed:", strings.Contains(err.Error(), "hunter2"))
	// Output:
	// PORT: must be a port number 0-65535 (got "http")
	// REDIS_URL: scheme "mysql" is not one of redis, rediss, unix, redis-sentinel, redis-cluster, rediss-cluster
	// WORKER_CONCURRENCY: must be between 1 and 1000 (got "0")
	// secret echoed: false
}

// Redacted hides a URL's password (or a lone user name, which some providers use as
// the password) before it reaches a log.
func ExampleRedacted() {
	fmt.Println(config.Redacted("rediss://default:s3cr3t@redis.example.com:6380/0"))
	fmt.Println(config.Redacted("redis://s3cr3t@redis.example.com:6379"))
	// Output:
	// rediss://default:xxxxx@redis.example.com:6380/0
	// redis://xxxxx@redis.example.com:6379
}

// ParseSizes reads thumbnail widths: sorted, without duplicates.
func ExampleParseSizes() {
	sizes, err := config.ParseSizes("640, 160,320,160")
	fmt.Println(sizes, err)
	_, err = config.ParseSizes("160,0")
	fmt.Println(err)
	// Output:
	// [160 320 640] <nil>
	// width "0" must be a whole number of pixels 1-10000
}

// Env passes the settings a process was given on to its child, as NAME=value pairs:
// only those that are set.
func ExampleEnv() {
	env := config.Env(mapEnv(map[string]string{
		"PORT":      "9000",
		"QUEUES":    "default=1",
		"UNRELATED": "not a setting",
	}))
	fmt.Println(env)
	// Output:
	// [PORT=9000 QUEUES=default=1]
}

// Settings lists every variable with its default, as README's configuration table
// (MarkdownTable) does.
func ExampleSettings() {
	for _, s := range config.Settings() {
		switch s.Name {
		case "PORT", "SHUTDOWN_TIMEOUT", "API_TOKEN":
			fmt.Printf("%s default %q secret %v\n", s.Name, s.Default, s.Secret)
		}
	}
	// Output:
	// PORT default "8080" secret false
	// SHUTDOWN_TIMEOUT default "25s" secret false
	// API_TOKEN default "" secret true
}

// MarkdownTable renders the settings as README's table: a header, then a row per
// setting.
func ExampleMarkdownTable() {
	lines := strings.Split(config.MarkdownTable(), "\n")
	fmt.Println(lines[0])
	fmt.Println(strings.HasPrefix(lines[2], "| `PORT` |"))
	// Output:
	// | variable | default | what it does |
	// true
}
