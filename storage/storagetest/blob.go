package storagetest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// BlobBucket is the bucket or container name StartS3 and StartAzurite create.
const BlobBucket = "shoestring"

// S3 is an in-process S3-compatible server (github.com/johannesboyne/gofakes3 with its
// memory backend) served over real HTTP on 127.0.0.1, with the bucket BlobBucket. It
// checks no signatures: any credentials do. Its methods are safe for concurrent use.
type S3 struct {
	handler http.Handler
	addr    string // 127.0.0.1:PORT, the same across Stop and Start

	mu  sync.Mutex
	srv *httptest.Server // nil while stopped
}

// StartS3 starts an S3 server and stops it in tb.Cleanup.
func StartS3(tb testing.TB) *S3 {
	tb.Helper()
	backend := s3mem.New()
	if err := backend.CreateBucket(BlobBucket); err != nil {
		tb.Fatalf("storagetest: create bucket: %v", err)
	}
	s := &S3{handler: gofakes3.New(backend).Server()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatalf("storagetest: listen: %v", err)
	}
	s.addr = ln.Addr().String()
	s.serve(ln)
	tb.Cleanup(s.Stop)
	return s
}

func (s *S3) serve(ln net.Listener) {
	srv := httptest.NewUnstartedServer(s.handler)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	s.srv = srv
}

// URL is the BLOB_URL of the bucket: s3://shoestring?endpoint=...&region=us-east-1&use_path_style=true.
func (s *S3) URL() string {
	q := url.Values{"region": {"us-east-1"}, "endpoint": {"http://" + s.addr}, "use_path_style": {"true"}}
	return "s3://" + BlobBucket + "?" + q.Encode()
}

// Env is the credentials the server accepts, as environment variables.
func (s *S3) Env() map[string]string {
	return map[string]string{"AWS_ACCESS_KEY_ID": "test-key-id", "AWS_SECRET_ACCESS_KEY": "test-secret"}
}

// Stop closes the server and its connections; the blobs stay for Start. It does nothing
// when stopped.
func (s *S3) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		s.srv.CloseClientConnections()
		s.srv.Close()
		s.srv = nil
	}
}

// Start serves again on the same port, with the same blobs, retrying for up to 10 s
// while the port is still taken; it calls tb.Fatalf after that, or if running.
func (s *S3) Start(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		tb.Fatalf("storagetest: S3 at %s is already running", s.addr)
	}
	deadline := time.Now().Add(restartTimeout)
	for {
		ln, err := net.Listen("tcp", s.addr)
		if err == nil {
			s.serve(ln)
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("storagetest: listen again on %s: %v", s.addr, err)
		}
		time.Sleep(retryBackoff)
	}
}

// EnvRequireAzurite is the variable (.ci/run sets it to 1) that turns "azurite-blob not
// found" from a skip into a failure.
const EnvRequireAzurite = "SHOESTRING_REQUIRE_AZURITE"

// Azurite's well-known development account, published by Microsoft
// (learn.microsoft.com, "Use the Azurite emulator": authorization with shared key).
const (
	AzuriteAccount = "devstoreaccount1"
	AzuriteKey     = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)

// Azurite is Microsoft's Azure Storage emulator (npm package azurite) running its blob
// service as a process of its own on 127.0.0.1, with its data in a temporary
// directory and the container BlobBucket. Its methods are safe for concurrent use.
type Azurite struct {
	bin, dir string
	port     int

	mu   sync.Mutex
	proc *process // nil while stopped
}

// StartAzurite starts azurite-blob, found on PATH or in .ci/tools/node_modules/.bin
// of this repository (where .ci/run installs it with npm), creates the container, and
// stops it in tb.Cleanup. Without azurite-blob it calls tb.Skip, or tb.Fatalf when
// EnvRequireAzurite is "1".
func StartAzurite(tb testing.TB) *Azurite {
	tb.Helper()
	bin := findAzurite()
	if bin == "" {
		if os.Getenv(EnvRequireAzurite) == "1" {
			tb.Fatalf("storagetest: azurite-blob not found; install it with: npm install --prefix .ci/tools azurite (%s=1)", EnvRequireAzurite)
		}
		tb.Skipf("storagetest: needs azurite-blob (npm install --prefix .ci/tools azurite); set %s=1 to fail instead", EnvRequireAzurite)
	}
	a := &Azurite{bin: bin, dir: tb.TempDir()}
	tb.Cleanup(func() { a.Stop(tb) })
	for attempt := 0; ; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		a.port = port
		err = a.launch(time.Now().Add(30 * time.Second))
		if err == nil {
			break
		}
		if !errors.Is(err, errExitedEarly) || attempt == 3 {
			tb.Fatalf("storagetest: start azurite-blob: %v\nlast lines of its log:\n%s", err, logTail(a.logPath(), logTailLines))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cred, err := azblob.NewSharedKeyCredential(AzuriteAccount, AzuriteKey)
	if err != nil {
		tb.Fatal(err)
	}
	c, err := container.NewClientWithSharedKeyCredential(a.serviceURL()+"/"+BlobBucket, cred, nil)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := c.Create(ctx, nil); err != nil {
		tb.Fatalf("storagetest: create container in azurite: %v", err)
	}
	return a
}

// findAzurite returns azurite-blob's path on PATH or in .ci/tools/node_modules/.bin of
// the working directory or one of its parents, or "".
func findAzurite() string {
	if p, err := exec.LookPath("azurite-blob"); err == nil {
		return p
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		p := filepath.Join(dir, ".ci", "tools", "node_modules", ".bin", "azurite-blob")
		if _, err := os.Stat(p); err == nil {
			return p
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func (a *Azurite) serviceURL() string {
	return "http://127.0.0.1:" + strconv.Itoa(a.port) + "/" + AzuriteAccount
}

func (a *Azurite) logPath() string { return filepath.Join(a.dir, "azurite.log") }

// URL is the BLOB_URL of the container: azblob://shoestring?domain=127.0.0.1:PORT&protocol=http.
func (a *Azurite) URL() string {
	q := url.Values{"protocol": {"http"}, "domain": {"127.0.0.1:" + strconv.Itoa(a.port)}}
	return "azblob://" + BlobBucket + "?" + q.Encode()
}

// Env is the development account's credentials, as environment variables.
func (a *Azurite) Env() map[string]string {
	return map[string]string{"AZURE_STORAGE_ACCOUNT": AzuriteAccount, "AZURE_STORAGE_KEY": AzuriteKey}
}

// Stop stops azurite-blob with SIGTERM, so that it saves its metadata (LokiJS keeps it
// in memory between saves) and its blobs stay for Start, and waits for it to exit,
// sending SIGKILL after 5 s. It does nothing when stopped; a failure is reported with
// tb.Errorf.
func (a *Azurite) Stop(tb testing.TB) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc == nil {
		return
	}
	if err := a.proc.cmd.Process.Signal(sigterm); err == nil {
		select {
		case <-a.proc.done:
		case <-time.After(stopGrace):
			tb.Logf("storagetest: azurite-blob still running %v after SIGTERM; sending SIGKILL", stopGrace)
		}
	}
	if err := a.proc.kill(); err != nil {
		tb.Errorf("storagetest: stop azurite-blob: %v", err)
	}
	a.proc = nil
}

// Start starts a stopped azurite-blob again on the same port and directory and waits
// until it answers; it calls tb.Fatalf if that takes more than 30 s, or if running.
func (a *Azurite) Start(tb testing.TB) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := a.launch(deadline)
		if err == nil {
			return
		}
		if !errors.Is(err, errExitedEarly) || time.Now().After(deadline) {
			tb.Fatalf("storagetest: restart azurite-blob: %v\nlast lines of its log:\n%s", err, logTail(a.logPath(), logTailLines))
		}
		time.Sleep(retryBackoff)
	}
}

// launch starts azurite-blob on a.port and waits until it answers HTTP or deadline
// passes. An error wrapping errExitedEarly means it exited (the port was taken, say).
func (a *Azurite) launch(deadline time.Time) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.proc != nil {
		return errors.New("already running")
	}
	logf, err := os.OpenFile(a.logPath(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(a.bin, "--blobHost", "127.0.0.1", "--blobPort", strconv.Itoa(a.port),
		"--location", a.dir, "--skipApiVersionCheck", "--loose", "--silent")
	cmd.Dir = a.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	setProcAttr(cmd)
	err = startCmd(cmd)
	logf.Close()
	if err != nil {
		return fmt.Errorf("start %s: %w", a.bin, err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	client := &http.Client{Timeout: probeTimeout}
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w (%v)", errExitedEarly, p.err)
		default:
		}
		// Any HTTP answer (400 for this bare URL) means the blob service is up.
		resp, err := client.Get(a.serviceURL() + "?comp=properties&restype=service")
		if err == nil {
			resp.Body.Close()
			a.proc = p
			return nil
		}
		if time.Now().After(deadline) {
			_ = p.kill()
			return fmt.Errorf("azurite-blob (pid %d) not answering on port %d by the deadline: %w", cmd.Process.Pid, a.port, err)
		}
		time.Sleep(pollInterval)
	}
}
