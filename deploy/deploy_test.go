// Package deploy holds the deployment files (Dockerfile, app.json, render.yaml,
// fly.toml, Kubernetes manifests, a systemd unit); its tests parse each one and check
// what the platforms rely on: probe paths, grace periods longer than SHUTDOWN_TIMEOUT,
// and variable names that shoestring reads.
package deploy

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"gopkg.in/yaml.v3"

	"github.com/shoestring-go/shoestring/config"
)

// shutdownTimeout is SHUTDOWN_TIMEOUT's default, which every grace period must exceed.
func shutdownTimeout(tb testing.TB) time.Duration {
	tb.Helper()
	for _, s := range config.Settings() {
		if s.Name == "SHUTDOWN_TIMEOUT" {
			d, err := time.ParseDuration(s.Default)
			if err != nil {
				tb.Fatal(err)
			}
			return d
		}
	}
	tb.Fatal("no SHUTDOWN_TIMEOUT setting")
	return 0
}

// checkGrace fails unless grace leaves the stop budget time to finish, by 1-10 s.
func checkGrace(tb testing.TB, what string, grace time.Duration) {
	tb.Helper()
	if st := shutdownTimeout(tb); grace <= st || grace > st+10*time.Second {
		tb.Errorf("%s = %v, want a little more than SHUTDOWN_TIMEOUT (%v)", what, grace, st)
	}
}

// checkVars fails for any variable name shoestring does not read (a typo would be
// silently ignored by the platform and by shoestring).
func checkVars(tb testing.TB, file string, names []string) {
	tb.Helper()
	known := map[string]bool{}
	for _, s := range config.Settings() {
		known[s.Name] = true
	}
	if len(names) == 0 {
		tb.Errorf("%s sets no variables", file)
	}
	for _, n := range names {
		if !known[n] {
			tb.Errorf("%s sets %s, which shoestring does not read", file, n)
		}
	}
}

func TestDockerfile(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(data)
	froms := regexp.MustCompile(`(?m)^FROM (\S+)`).FindAllStringSubmatch(df, -1)
	if len(froms) < 2 {
		t.Fatalf("not a multi-stage build: %v", froms)
	}
	// The builder's Go is the one go.mod asks for.
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if goVer == nil || !strings.HasPrefix(froms[0][1], "golang:"+string(goVer[1])) {
		t.Errorf("build stage %s, want golang:%s", froms[0][1], goVer[1])
	}
	for _, want := range []string{
		"CGO_ENABLED=0 go build",
		`HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["/shoestring","healthcheck"]`,
		`ENTRYPOINT ["/shoestring"]`,
		"\nUSER 65532:65532\n",
	} {
		if !strings.Contains(df, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	for _, line := range strings.Split(df, "\n") {
		if f := strings.Fields(line); len(f) == 2 && f[0] == "USER" && (f[1] == "root" || strings.HasPrefix(f[1], "0")) {
			t.Errorf("runs as root: %s", line)
		}
	}
	if _, err := os.Stat("Dockerfile.dockerignore"); err != nil {
		t.Error(err)
	}
}

func TestAppJSON(t *testing.T) {
	t.Parallel()
	var app struct {
		Formation map[string]struct{ Quantity int } `json:"formation"`
		Addons    []struct{ Plan string }           `json:"addons"`
		Env       map[string]struct {
			Generator string `json:"generator"`
			Value     string `json:"value"`
		} `json:"env"`
	}
	data, err := os.ReadFile("app.json")
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&app); err != nil {
		t.Fatal(err)
	}
	if app.Formation["web"].Quantity != 1 {
		t.Errorf("formation = %+v, want one web dyno", app.Formation)
	}
	if len(app.Addons) != 1 || !strings.HasPrefix(app.Addons[0].Plan, "heroku-redis:") {
		t.Errorf("addons = %+v, want Heroku Redis", app.Addons)
	}
	for _, k := range []string{"API_TOKEN", "ADMIN_TOKEN"} {
		if app.Env[k].Generator != "secret" {
			t.Errorf("%s is not generated: %+v", k, app.Env[k])
		}
	}
	if app.Env["REDIS_TLS_SKIP_VERIFY"].Value != "true" {
		t.Errorf("REDIS_TLS_SKIP_VERIFY = %+v; Heroku Redis certificates are self-signed", app.Env["REDIS_TLS_SKIP_VERIFY"])
	}
	var names []string
	for k := range app.Env {
		names = append(names, k)
	}
	checkVars(t, "app.json", names)
}

func TestRenderYAML(t *testing.T) {
	t.Parallel()
	var bp struct {
		Services []struct {
			Type, Name, Runtime string
			DockerfilePath      string `yaml:"dockerfilePath"`
			HealthCheckPath     string `yaml:"healthCheckPath"`
			MaxmemoryPolicy     string `yaml:"maxmemoryPolicy"`
			EnvVars             []struct {
				Key         string
				FromService *struct{ Type, Name, Property string } `yaml:"fromService"`
			} `yaml:"envVars"`
		}
	}
	decodeYAML(t, "render.yaml", &bp)
	if len(bp.Services) != 2 {
		t.Fatalf("services = %+v, want web and keyvalue", bp.Services)
	}
	web, kv := bp.Services[0], bp.Services[1]
	if web.Type != "web" || web.HealthCheckPath != "/health/ready" || web.Runtime != "docker" {
		t.Errorf("web service = %+v", web)
	}
	if _, err := os.Stat(filepath.Join("..", web.DockerfilePath)); err != nil {
		t.Errorf("dockerfilePath: %v", err)
	}
	if kv.Type != "keyvalue" || kv.MaxmemoryPolicy != "noeviction" {
		t.Errorf("redis = %+v, want a keyvalue that never evicts queued jobs", kv)
	}
	var names []string
	for _, e := range web.EnvVars {
		names = append(names, e.Key)
		if e.Key == "REDIS_URL" && (e.FromService == nil || e.FromService.Name != kv.Name) {
			t.Errorf("REDIS_URL is not wired to %s: %+v", kv.Name, e)
		}
	}
	checkVars(t, "render.yaml", names)
}

func TestFlyTOML(t *testing.T) {
	t.Parallel()
	var fly struct {
		KillSignal  string            `toml:"kill_signal"`
		KillTimeout string            `toml:"kill_timeout"`
		Env         map[string]string `toml:"env"`
		HTTPService struct {
			InternalPort     int    `toml:"internal_port"`
			AutoStopMachines string `toml:"auto_stop_machines"`
			Checks           []struct{ Path, Method string }
		} `toml:"http_service"`
	}
	md, err := toml.DecodeFile("fly.toml", &fly)
	if err != nil {
		t.Fatal(err)
	}
	if keys := md.Undecoded(); len(keys) > 0 {
		t.Logf("keys not checked here: %v", keys)
	}
	grace, err := time.ParseDuration(fly.KillTimeout)
	if err != nil {
		t.Fatalf("kill_timeout: %v", err)
	}
	checkGrace(t, "kill_timeout", grace)
	if fly.KillSignal != "SIGTERM" {
		t.Errorf("kill_signal = %q", fly.KillSignal)
	}
	if port, _ := strconv.Atoi(fly.Env["PORT"]); fly.HTTPService.InternalPort != port || port == 0 {
		t.Errorf("internal_port %d, PORT %q", fly.HTTPService.InternalPort, fly.Env["PORT"])
	}
	if fly.HTTPService.AutoStopMachines != "off" {
		t.Errorf("auto_stop_machines = %q: a stopped machine runs no background work", fly.HTTPService.AutoStopMachines)
	}
	if len(fly.HTTPService.Checks) != 1 || fly.HTTPService.Checks[0].Path != "/health/ready" {
		t.Errorf("checks = %+v", fly.HTTPService.Checks)
	}
	checkVars(t, "fly.toml", slices.Collect(maps.Keys(fly.Env)))
}

// probe is the part of a Kubernetes probe checked here.
type probe struct {
	HTTPGet *struct {
		Path string
		Port any
	} `yaml:"httpGet"`
}

type k8sDoc struct {
	Kind     string
	Metadata struct{ Name string }
	Data     map[string]string `yaml:"data"`
	String   map[string]string `yaml:"stringData"`
	Spec     struct {
		Template struct {
			Spec struct {
				Grace      *int `yaml:"terminationGracePeriodSeconds"`
				Containers []struct {
					Args  []string
					Ports []struct {
						Name          string
						ContainerPort int `yaml:"containerPort"`
					}
					Env     []struct{ Name, Value string }
					EnvFrom []struct {
						SecretRef    *struct{ Name string } `yaml:"secretRef"`
						ConfigMapRef *struct{ Name string } `yaml:"configMapRef"`
					} `yaml:"envFrom"`
					Startup   *probe `yaml:"startupProbe"`
					Liveness  *probe `yaml:"livenessProbe"`
					Readiness *probe `yaml:"readinessProbe"`
				}
			}
		}
	}
}

func TestKubernetes(t *testing.T) {
	t.Parallel()
	files, err := filepath.Glob("kubernetes/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	byKind := map[string]map[string]k8sDoc{}
	for _, f := range files {
		for _, d := range decodeYAMLDocs(t, f) {
			if byKind[d.Kind] == nil {
				byKind[d.Kind] = map[string]k8sDoc{}
			}
			byKind[d.Kind][d.Metadata.Name] = d
		}
	}
	secret, cm := byKind["Secret"]["shoestring"], byKind["ConfigMap"]["shoestring"]
	for _, k := range []string{"API_TOKEN", "ADMIN_TOKEN", "REDIS_URL"} {
		if _, ok := secret.String[k]; !ok {
			t.Errorf("Secret shoestring lacks %s", k)
		}
	}
	checkVars(t, "Secret", slices.Collect(maps.Keys(secret.String)))
	checkVars(t, "ConfigMap", slices.Collect(maps.Keys(cm.Data)))
	if st, err := time.ParseDuration(cm.Data["SHUTDOWN_TIMEOUT"]); err != nil || st != shutdownTimeout(t) {
		t.Errorf("ConfigMap SHUTDOWN_TIMEOUT = %q; the grace periods are matched to %v", cm.Data["SHUTDOWN_TIMEOUT"], shutdownTimeout(t))
	}

	for _, tc := range []struct{ name, mode, ready string }{
		{"shoestring-web", "web", "/health/ready"},
		{"shoestring-worker", "worker", "/health/live"}, // serves no traffic, and no /health/ready
	} {
		d, ok := byKind["Deployment"][tc.name]
		if !ok {
			t.Errorf("no Deployment %s", tc.name)
			continue
		}
		spec := d.Spec.Template.Spec
		if spec.Grace == nil {
			t.Errorf("%s: no terminationGracePeriodSeconds", tc.name)
		} else {
			checkGrace(t, tc.name+" terminationGracePeriodSeconds", time.Duration(*spec.Grace)*time.Second)
		}
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: %d containers", tc.name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if !slices.Equal(c.Args, []string{tc.mode}) {
			t.Errorf("%s: args %v, want [%s]", tc.name, c.Args, tc.mode)
		}
		ports := map[string]int{}
		for _, p := range c.Ports {
			ports[p.Name] = p.ContainerPort
		}
		var names []string
		env := map[string]string{}
		for _, e := range c.Env {
			names = append(names, e.Name)
			env[e.Name] = e.Value
		}
		checkVars(t, tc.name, names)
		// The probed port is the one shoestring listens on.
		listen := env["PORT"]
		if tc.mode == "worker" {
			listen = env["METRICS_PORT"]
		}
		for _, p := range []struct {
			kind, path string
			pr         *probe
		}{{"startupProbe", "/health/live", c.Startup}, {"livenessProbe", "/health/live", c.Liveness}, {"readinessProbe", tc.ready, c.Readiness}} {
			if p.pr == nil || p.pr.HTTPGet == nil {
				t.Errorf("%s: no HTTP %s", tc.name, p.kind)
				continue
			}
			port, _ := p.pr.HTTPGet.Port.(string)
			if p.pr.HTTPGet.Path != p.path || strconv.Itoa(ports[port]) != listen {
				t.Errorf("%s %s: GET %s on port %v (%d), want %s on %s", tc.name, p.kind, p.pr.HTTPGet.Path, p.pr.HTTPGet.Port, ports[port], p.path, listen)
			}
		}
		var fromSecret, fromCM bool
		for _, ef := range c.EnvFrom {
			fromSecret = fromSecret || (ef.SecretRef != nil && ef.SecretRef.Name == "shoestring")
			fromCM = fromCM || (ef.ConfigMapRef != nil && ef.ConfigMapRef.Name == "shoestring")
		}
		if !fromSecret || !fromCM {
			t.Errorf("%s: env not from the Secret and ConfigMap shoestring: %+v", tc.name, c.EnvFrom)
		}
	}
}

func TestSystemdUnit(t *testing.T) {
	t.Parallel()
	data, err := os.ReadFile("shoestring.service")
	if err != nil {
		t.Fatal(err)
	}
	unit := map[string]string{}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok && !strings.HasPrefix(line, "#") {
			unit[k] = v
		}
	}
	for k, want := range map[string]string{"Restart": "on-failure", "KillMode": "mixed", "KillSignal": "SIGTERM"} {
		if unit[k] != want {
			t.Errorf("%s=%s, want %s", k, unit[k], want)
		}
	}
	stop, err := strconv.Atoi(unit["TimeoutStopSec"])
	if err != nil {
		t.Fatalf("TimeoutStopSec: %v", err)
	}
	checkGrace(t, "TimeoutStopSec", time.Duration(stop)*time.Second)

	// systemd's own check, where systemd-analyze exists, with ExecStart pointed at a
	// binary that exists here.
	bin, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Log("systemd-analyze not found; the unit was not verified by systemd")
		return
	}
	copyPath := filepath.Join(t.TempDir(), "shoestring.service")
	patched := strings.ReplaceAll(string(data), "/usr/local/bin/shoestring", "/bin/true")
	if err := os.WriteFile(copyPath, []byte(patched), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "verify", copyPath).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

func decodeYAML(tb testing.TB, path string, v any) {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	if err := yaml.NewDecoder(f).Decode(v); err != nil {
		tb.Fatalf("%s: %v", path, err)
	}
}

func decodeYAMLDocs(tb testing.TB, path string) []k8sDoc {
	tb.Helper()
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	var docs []k8sDoc
	for {
		var d k8sDoc
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return docs
		}
		if err != nil {
			tb.Fatalf("%s: %v", path, err)
		}
		if d.Kind == "" {
			tb.Fatalf("%s: a document without kind", path)
		}
		docs = append(docs, d)
	}
}
