package storage

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

func TestJobsLifecycle(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	jobs := NewJobs(r.Client(t), time.Hour, "default", "low")
	ctx := context.Background()
	created := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

	if _, err := jobs.Get(ctx, "j1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("Get of a missing job: %v, want ErrNotFound", err)
	}
	if err := jobs.Create(ctx, Job{ID: "j1", Type: "echo", Queue: "default", State: StatePending, CreatedAt: created}); err != nil {
		t.Fatal(err)
	}
	for want := 1; want <= 2; want++ {
		n, err := jobs.Start(ctx, "j1", "echo", "default", time.Now())
		if err != nil || n != want {
			t.Fatalf("Start #%d = %d, %v", want, n, err)
		}
	}
	if err := jobs.SetProgress(ctx, "default", "j1", Progress{Done: 2, Total: 5}); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Finish(ctx, "j1", "default", 2, StateRetry, nil, "boom", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Finish(ctx, "j1", "default", 1, StateFailed, nil, "late outcome of attempt 1", time.Now()); !errors.Is(err, ErrStaleAttempt) {
		t.Fatalf("outcome of a stale attempt: %v, want ErrStaleAttempt", err)
	}
	j, _ := jobs.Get(ctx, "j1")
	if j.State != StateRetry || j.Error != "boom" || j.Attempts != 2 || j.Progress != (Progress{2, 5}) || j.CompletedAt != nil || !j.CreatedAt.Equal(created) {
		t.Fatalf("after retry: %+v", j)
	}
	done := time.Now()
	if err := jobs.Finish(ctx, "j1", "default", 0, StateCompleted, []byte(`{"ok":true}`), "", done); err != nil {
		t.Fatal(err)
	}
	j, _ = jobs.Get(ctx, "j1")
	if j.State != StateCompleted || string(j.Result) != `{"ok":true}` || j.Error != "" || j.CompletedAt == nil || !j.CompletedAt.Equal(done) {
		t.Fatalf("after completion: %+v", j)
	}
	if _, err := jobs.Start(ctx, "j1", "echo", "default", time.Now()); !errors.Is(err, ErrCompleted) {
		t.Fatalf("Start of a completed job: %v, want ErrCompleted", err)
	}
	if j2, _ := jobs.Get(ctx, "j1"); j2.Attempts != 2 || j2.State != StateCompleted {
		t.Errorf("a refused Start changed the record: %+v", j2)
	}
	if p, err := jobs.List(ctx, Filter{}, "", 10); err != nil || len(p.Jobs) != 1 || p.Jobs[0].ID != "j1" {
		t.Errorf("List = %+v, %v", p, err)
	}
	if err := jobs.Delete(ctx, "default", "j1"); err != nil {
		t.Fatal(err)
	}
	if _, err := jobs.Get(ctx, "j1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("after Delete: %v", err)
	}
	if p, _ := jobs.List(ctx, Filter{}, "", 10); len(p.Jobs) != 0 {
		t.Errorf("List after Delete: %+v", p)
	}

	// A task enqueued without a record (by another producer) gets one on Start.
	if n, err := jobs.Start(ctx, "orphan", "echo", "low", created); err != nil || n != 1 {
		t.Fatalf("Start without record: %d %v", n, err)
	}
	if j, _ := jobs.Get(ctx, "orphan"); j.Type != "echo" || j.Queue != "low" || j.State != StateActive {
		t.Errorf("record made by Start: %+v", j)
	}
}

func TestHeartbeatsExpire(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	hb := NewHeartbeats(r.Client(t))
	ctx := context.Background()
	now := time.Now()
	if err := hb.Beat(ctx, WorkerBeat{ID: "h:1", PID: 1, BeatAt: now, Processed: 7}, 500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	live, err := hb.Live(ctx, now.Add(-time.Second))
	if err != nil || len(live) != 1 || live[0].Processed != 7 {
		t.Fatalf("Live = %+v, %v", live, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok, _ := hb.Get(ctx, "h:1"); !ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("heartbeat did not expire")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if live, _ := hb.Live(ctx, now.Add(-time.Second)); len(live) != 0 {
		t.Errorf("expired worker still listed live: %+v", live)
	}
}

func TestOpenBucket(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "new", "blobs")
	for _, u := range []string{"mem://", "file://" + dir} {
		b, err := OpenBucket(ctx, u, BlobCredentials{})
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if err := b.WriteAll(ctx, "a/b.txt", []byte("hi"), &blob.WriterOptions{ContentType: "text/plain"}); err != nil {
			t.Fatalf("%s write: %v", u, err)
		}
		attrs, err := b.Attributes(ctx, "a/b.txt")
		if err != nil || attrs.ContentType != "text/plain" {
			t.Errorf("%s attributes: %+v %v", u, attrs, err)
		}
		b.Close()
	}
	if _, err := os.Stat(filepath.Join(dir, "a", "b.txt")); err != nil {
		t.Errorf("file:// blob not on disk: %v", err)
	}
}

// redisServer starts redis-server with extra args for the URL-scheme tests and waits
// until ready(addr) holds.
func redisServer(tb testing.TB, ready func() bool, args ...string) {
	tb.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv(storagetest.EnvRequireRedisServer) == "1" {
			tb.Fatal("redis-server not found; install the Debian package redis-server")
		}
		tb.Skip("needs redis-server (apt-get install redis-server)")
	}
	dir := tb.TempDir()
	cmd := exec.Command(bin, append([]string{"--dir", dir, "--save", "", "--appendonly", "no", "--bind", "127.0.0.1"}, args...)...)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	deadline := time.Now().Add(10 * time.Second)
	for !ready() {
		if time.Now().After(deadline) {
			tb.Fatal("redis-server did not come up")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freePort(tb testing.TB) int {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func dials(network, addr string) func() bool {
	return func() bool {
		c, err := net.Dial(network, addr)
		if err == nil {
			c.Close()
		}
		return err == nil
	}
}

func ping(tb testing.TB, url string, skipVerify bool) error {
	tb.Helper()
	rdb, err := OpenRedis(url, skipVerify)
	if err != nil {
		tb.Fatalf("OpenRedis(%s): %v", url, err)
	}
	defer rdb.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	return rdb.Ping(ctx).Err()
}

// TestOpenRedisURLs connects through every URL form REDIS_URL takes: a password and a
// username from the URL, a unix socket, and TLS with a self-signed certificate (accepted
// only with REDIS_TLS_SKIP_VERIFY, as Heroku Redis needs).
func TestOpenRedisURLs(t *testing.T) {
	t.Parallel()
	t.Run("user and password", func(t *testing.T) {
		t.Parallel()
		port := strconv.Itoa(freePort(t))
		redisServer(t, dials("tcp", "127.0.0.1:"+port), "--port", port, "--requirepass", "pw1",
			"--user", "app", "on", ">pw2", "~*", "&*", "+@all")
		if err := ping(t, "redis://:pw1@127.0.0.1:"+port+"/0", false); err != nil {
			t.Errorf("password only: %v", err)
		}
		if err := ping(t, "redis://app:pw2@127.0.0.1:"+port+"/0", false); err != nil {
			t.Errorf("username and password: %v", err)
		}
		if err := ping(t, "redis://app:wrong@127.0.0.1:"+port+"/0", false); err == nil {
			t.Errorf("wrong password accepted")
		}
	})
	t.Run("unix socket", func(t *testing.T) {
		t.Parallel()
		sock := filepath.Join(t.TempDir(), "redis.sock")
		redisServer(t, dials("unix", sock), "--port", "0", "--unixsocket", sock)
		if err := ping(t, "unix://"+sock, false); err != nil {
			t.Errorf("unix: %v", err)
		}
	})
	t.Run("TLS with a self-signed certificate", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		cert, key := selfSigned(t, dir)
		port := strconv.Itoa(freePort(t))
		redisServer(t, dials("tcp", "127.0.0.1:"+port), "--port", "0", "--tls-port", port,
			"--tls-cert-file", cert, "--tls-key-file", key, "--tls-auth-clients", "no")
		url := "rediss://127.0.0.1:" + port + "/0"
		if err := ping(t, url, true); err != nil {
			t.Errorf("rediss with REDIS_TLS_SKIP_VERIFY=true: %v", err)
		}
		err := ping(t, url, false)
		if err == nil || !strings.Contains(err.Error(), "certificate") {
			t.Errorf("rediss without skip-verify = %v, want a certificate error", err)
		}
	})
	t.Run("password not in parse errors", func(t *testing.T) {
		t.Parallel()
		_, err := OpenRedis("redis://u:hunter2@host:notaport/0", false)
		if err == nil || strings.Contains(err.Error(), "hunter2") {
			t.Errorf("err = %v", err)
		}
	})
}

func selfSigned(tb testing.TB, dir string) (certFile, keyFile string) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redis.test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:    x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestRecoverPoisonTask: a task whose worker keeps dying is requeued at once
// RequeueLimit times, then scheduled with a delay, and archived past ArchiveLimit; a
// completed record is never overwritten.
func TestRecoverPoisonTask(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	ctx := context.Background()
	jobs := NewJobs(rdb, time.Hour, "default")
	inflight := NewInFlight(rdb, jobs)
	jobs.Create(ctx, Job{ID: "p", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()})
	die := func() string {
		t.Helper()
		// As asynq leaves a task whose worker died: on the active list, leased, state active.
		rdb.LPush(ctx, "asynq:{default}:active", "p")
		rdb.ZAdd(ctx, "asynq:{default}:lease", redis.Z{Score: float64(time.Now().Add(30 * time.Second).Unix()), Member: "p"})
		rdb.HSet(ctx, "asynq:{default}:t:p", "state", "active")
		inflight.Add(ctx, "w1", "p", "default")
		rec, err := inflight.Recover(ctx, "w1", "worker process died (killed by signal killed)")
		if err != nil || len(rec) != 1 {
			t.Fatalf("Recover = %v, %v", rec, err)
		}
		// Take it off wherever it went, as a worker fetching it would.
		rdb.LRem(ctx, "asynq:{default}:pending", 0, "p")
		rdb.ZRem(ctx, "asynq:{default}:scheduled", "p")
		return rec[0].State
	}
	var got []string
	for range ArchiveLimit + 1 {
		got = append(got, die())
	}
	for i, st := range got {
		want := "pending"
		if i >= RequeueLimit {
			want = "scheduled"
		}
		if i == ArchiveLimit {
			want = "archived"
		}
		if st != want {
			t.Fatalf("death %d: %s, want %s (all: %v)", i+1, st, want, got)
		}
	}
	j, _ := jobs.Get(ctx, "p")
	if j.State != StateFailed || j.Interrupted != ArchiveLimit+1 || !strings.Contains(j.Error, "presumed to kill its worker") {
		t.Errorf("record = %+v", j)
	}
	// The timeline shows each interruption with its reason.
	var interrupted int
	for _, e := range j.Events {
		if e.Kind == "interrupted" && strings.Contains(e.Detail, "killed by signal killed") {
			interrupted++
		}
	}
	if interrupted != ArchiveLimit+1 {
		t.Errorf("timeline has %d interruptions, want %d: %+v", interrupted, ArchiveLimit+1, j.Events)
	}

	// A completed record stays completed even when asynq still lists the task active.
	jobs.Create(ctx, Job{ID: "c", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()})
	jobs.Finish(ctx, "c", "default", 0, StateCompleted, []byte(`{}`), "", time.Now())
	rdb.LPush(ctx, "asynq:{default}:active", "c")
	rdb.HSet(ctx, "asynq:{default}:t:c", "state", "active")
	inflight.Add(ctx, "w2", "c", "default")
	if _, err := inflight.Recover(ctx, "w2", "died"); err != nil {
		t.Fatal(err)
	}
	if j, _ := jobs.Get(ctx, "c"); j.State != StateCompleted {
		t.Errorf("completed record overwritten: %+v", j)
	}
}

// TestCloudBuckets: s3:// (against an in-process S3 server over HTTP) and azblob://
// (against Azurite) store, list, serve and delete blobs with their content type, and
// IsAccessible, which the storage health check calls, follows the server going down and
// coming back.
func TestCloudBuckets(t *testing.T) {
	t.Parallel()
	type store struct {
		url         string
		env         map[string]string
		stop, start func()
	}
	stores := map[string]func(t *testing.T) store{
		"s3": func(t *testing.T) store {
			s := storagetest.StartS3(t)
			return store{s.URL(), s.Env(), s.Stop, func() { s.Start(t) }}
		},
		"azblob": func(t *testing.T) store {
			a := storagetest.StartAzurite(t)
			return store{a.URL(), a.Env(), func() { a.Stop(t) }, func() { a.Start(t) }}
		},
	}
	for name, startStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			st := startStore(t)
			creds := BlobCredentials{AWSAccessKeyID: st.env["AWS_ACCESS_KEY_ID"], AWSSecretAccessKey: st.env["AWS_SECRET_ACCESS_KEY"],
				AzureAccount: st.env["AZURE_STORAGE_ACCOUNT"], AzureKey: st.env["AZURE_STORAGE_KEY"]}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			b, err := OpenBucket(ctx, st.url, creds)
			if err != nil {
				t.Fatal(err)
			}
			defer b.Close()
			if err := b.WriteAll(ctx, "thumbnails/x/160.jpg", []byte("jpeg bytes"), &blob.WriterOptions{ContentType: "image/jpeg"}); err != nil {
				t.Fatal(err)
			}
			r, err := b.NewReader(ctx, "thumbnails/x/160.jpg", nil)
			if err != nil {
				t.Fatal(err)
			}
			got, _ := io.ReadAll(r)
			r.Close()
			if string(got) != "jpeg bytes" || r.ContentType() != "image/jpeg" || time.Since(r.ModTime()) > time.Minute {
				t.Errorf("read back %q, %s, modified %v", got, r.ContentType(), r.ModTime())
			}
			obj, err := b.List(nil).Next(ctx)
			if err != nil || obj.Key != "thumbnails/x/160.jpg" {
				t.Errorf("list: %+v %v", obj, err)
			}
			if _, err := b.NewReader(ctx, "thumbnails/nope.jpg", nil); gcerrors.Code(err) != gcerrors.NotFound {
				t.Errorf("missing blob: %v, want NotFound", err)
			}
			if ok, err := b.IsAccessible(ctx); !ok || err != nil {
				t.Fatalf("IsAccessible while up: %v %v", ok, err)
			}

			st.stop()
			actx, acancel := context.WithTimeout(ctx, 2*time.Second) // the health check's timeout
			ok, err := b.IsAccessible(actx)
			acancel()
			if ok && err == nil {
				t.Errorf("IsAccessible while down: true")
			}
			st.start()
			waitUntil(t, 20*time.Second, "accessible again", func() bool {
				actx, acancel := context.WithTimeout(ctx, 2*time.Second)
				defer acancel()
				ok, err := b.IsAccessible(actx)
				return ok && err == nil
			})
			if err := b.Delete(ctx, "thumbnails/x/160.jpg"); err != nil {
				t.Errorf("delete after the restart: %v", err)
			}
		})
	}
}

// TestOpenBucketRefuses: OpenBucket refuses a cloud URL without its credentials, and never
// echoes a key.
func TestOpenBucketRefuses(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	for _, tc := range []struct {
		url   string
		creds BlobCredentials
		want  string
	}{
		{"s3://b?region=us-east-1", BlobCredentials{}, "needs AWS_ACCESS_KEY_ID"},
		{"s3://b", BlobCredentials{AWSAccessKeyID: "a", AWSSecretAccessKey: "s3cret"}, "region"},
		{"azblob://c", BlobCredentials{}, "needs AZURE_STORAGE_CONNECTION_STRING"},
		{"azblob://c", BlobCredentials{AzureAccount: "a", AzureKey: "not base64!"}, "AZURE_STORAGE_KEY is not a base64"},
		{"azblob://c", BlobCredentials{AzureConnectionString: "AccountKey=s3cret"}, "malformed"},
		{"gs://b", BlobCredentials{}, "not one of"},
	} {
		_, err := OpenBucket(ctx, tc.url, tc.creds)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: %v, want an error with %q", tc.url, err, tc.want)
		}
	}
}

// waitUntil polls cond every 50 ms until it holds, or fails the test after d.
func waitUntil(tb testing.TB, d time.Duration, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestParseSentinelURL: the sentinels, master name, database and credentials of a
// redis-sentinel URL reach go-redis's failover options.
func TestParseSentinelURL(t *testing.T) {
	t.Parallel()
	got, err := ParseSentinelURL("redis-sentinel://app:pw@10.0.0.1:26379,10.0.0.2:26380/mymaster/3")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"app", "pw", "mymaster", "3", "10.0.0.1:26379 10.0.0.2:26380"}
	have := []string{got.Username, got.Password, got.MasterName, strconv.Itoa(got.DB), strings.Join(got.SentinelAddrs, " ")}
	if diff := cmp.Diff(want, have); diff != "" {
		t.Errorf("options (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"redis-sentinel://:pw@h:1", "redis-sentinel://:pw@h/m", "redis-sentinel://:pw@h:1/m/x", "redis-sentinel://:pw@h:1/m?x=1"} {
		if _, err := ParseSentinelURL(bad); err == nil || strings.Contains(err.Error(), "pw") {
			t.Errorf("ParseSentinelURL(%s) = %v, want an error without the password", bad, err)
		}
	}
}

// TestClaimDead: of many reapers racing, exactly one claims each worker whose pulse
// lapsed, none claims a pulsing worker or one of a version that does not pulse, and a released claim lets a worker that died
// again be claimed again.
func TestClaimDead(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	ctx := context.Background()
	inflight := NewInFlight(rdb, NewJobs(rdb, time.Hour, "default"))
	beats := NewHeartbeats(rdb)
	inflight.Add(ctx, "alive", "a", "default")
	inflight.Add(ctx, "dead", "d", "default")
	inflight.Add(ctx, "old", "o", "default")
	if err := beats.Pulse(ctx, "alive", time.Minute); err != nil {
		t.Fatal(err)
	}
	// A worker of a version that does not pulse, with a live heartbeat record; and a
	// dead one of this version, whose record has not expired yet.
	beats.Beat(ctx, WorkerBeat{ID: "old", BeatAt: time.Now()}, time.Minute)
	beats.Beat(ctx, WorkerBeat{ID: "dead", BeatAt: time.Now(), Pulse: true}, time.Minute)
	// A worker listed by its pulse alone (Begin does not list it), whose pulse lapsed.
	jobs := NewJobs(rdb, time.Hour, "default")
	if err := jobs.Create(ctx, Job{ID: "l", Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := beats.Pulse(ctx, "lapsed", 20*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if _, err := inflight.Begin(ctx, "lapsed", "l", "echo", "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	beats.Beat(ctx, WorkerBeat{ID: "lapsed", BeatAt: time.Now(), Pulse: true}, time.Minute)
	time.Sleep(50 * time.Millisecond)
	var mu sync.Mutex
	var claims []string
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			got, err := inflight.ClaimDead(ctx, "reaper"+strconv.Itoa(i), time.Minute)
			if err != nil {
				t.Error(err)
			}
			mu.Lock()
			claims = append(claims, got...)
			mu.Unlock()
		})
	}
	wg.Wait()
	slices.Sort(claims)
	if diff := cmp.Diff([]string{"dead", "lapsed"}, claims); diff != "" {
		t.Fatalf("claims (-want +got):\n%s", diff)
	}
	if err := inflight.Release(ctx, "dead"); err != nil {
		t.Fatal(err)
	}
	if got, _ := inflight.ClaimDead(ctx, "again", time.Minute); !slices.Equal(got, []string{"dead"}) {
		t.Errorf("after Release: claimed %v, want the dead worker again", got)
	}
}

// TestRequeueUnindexed: Unindexed finds the active tasks no worker has indexed, and
// RequeueUnindexed requeues one only if it is still unindexed at that moment.
func TestRequeueUnindexed(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	ctx := context.Background()
	jobs := NewJobs(rdb, time.Hour, "default")
	inflight := NewInFlight(rdb, jobs)
	for _, id := range []string{"orphan", "mine", "late"} {
		jobs.Create(ctx, Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()})
		rdb.LPush(ctx, "asynq:{default}:active", id)
		rdb.ZAdd(ctx, "asynq:{default}:lease", redis.Z{Score: float64(time.Now().Add(30 * time.Second).Unix()), Member: id})
		rdb.HSet(ctx, "asynq:{default}:t:"+id, "state", "active")
	}
	inflight.Add(ctx, "w1", "mine", "default")
	got, err := inflight.Unindexed(ctx, []string{"default", "low"})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(map[string]string{"orphan": "default", "late": "default"}, got); diff != "" {
		t.Fatalf("Unindexed (-want +got):\n%s", diff)
	}
	// A live worker indexes "late" between the sweep and the requeue: it is left alone.
	inflight.Add(ctx, "w2", "late", "default")
	rec, err := inflight.RequeueUnindexed(ctx, got, "its worker died before recording it")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Recovered{{ID: "orphan", Queue: "default", State: "pending"}}, rec); diff != "" {
		t.Errorf("requeued (-want +got):\n%s", diff)
	}
	pending, _ := rdb.LRange(ctx, "asynq:{default}:pending", 0, -1).Result()
	active, _ := rdb.LRange(ctx, "asynq:{default}:active", 0, -1).Result()
	slices.Sort(active)
	if diff := cmp.Diff([]string{"orphan"}, pending); diff != "" {
		t.Errorf("pending (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"late", "mine"}, active); diff != "" {
		t.Errorf("active (-want +got):\n%s", diff)
	}
	if j, _ := jobs.Get(ctx, "orphan"); j.State != StatePending || !strings.Contains(j.Error, "before recording it") {
		t.Errorf("orphan record = %+v", j)
	}
}

// TestRecoverLeavesOthersTasks: recovering a dead worker's index never requeues a task
// whose current attempt a live worker owns (a late replay of the index, or a task that
// moved on), and a task whose record is already completed is removed from asynq's
// active list, not run again.
func TestRecoverLeavesOthersTasks(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	rdb := r.Client(t)
	ctx := context.Background()
	jobs := NewJobs(rdb, time.Hour, "default")
	inflight := NewInFlight(rdb, jobs)
	active := func(id string) {
		rdb.LPush(ctx, "asynq:{default}:active", id)
		rdb.ZAdd(ctx, "asynq:{default}:lease", redis.Z{Score: float64(time.Now().Add(30 * time.Second).Unix()), Member: id})
		rdb.HSet(ctx, "asynq:{default}:t:"+id, "state", "active")
	}
	for _, id := range []string{"moved", "done"} {
		if err := jobs.Create(ctx, Job{ID: id, Type: "echo", Queue: "default", State: StatePending, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		active(id)
	}
	// "moved": dead worker A indexed it, then live worker B took the next attempt.
	if _, err := inflight.Begin(ctx, "A", "moved", "echo", "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := inflight.Begin(ctx, "B", "moved", "echo", "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := NewHeartbeats(rdb).Pulse(ctx, "B", 5*time.Second); err != nil {
		t.Fatal(err)
	}
	// "done": A finished it, but asynq had not yet taken it off its active list.
	if _, err := inflight.Begin(ctx, "A", "done", "echo", "default", time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := jobs.Finish(ctx, "done", "default", 0, StateCompleted, []byte(`{}`), "", time.Now()); err != nil {
		t.Fatal(err)
	}
	inflight.Add(ctx, "A", "done", "default") // as if End's removal were lost

	rec, err := inflight.Recover(ctx, "A", "worker A died")
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, r := range rec {
		states[r.ID] = r.State
	}
	if diff := cmp.Diff(map[string]string{"done": "done"}, states); diff != "" {
		t.Errorf("recovered (-want +got):\n%s", diff)
	}
	ids, _ := rdb.LRange(ctx, "asynq:{default}:active", 0, -1).Result()
	if diff := cmp.Diff([]string{"moved"}, ids); diff != "" {
		t.Errorf("active list (-want +got):\n%s", diff)
	}
	if n, _ := rdb.LLen(ctx, "asynq:{default}:pending").Result(); n != 0 {
		t.Errorf("%d tasks requeued, want none", n)
	}
	if j, _ := jobs.Get(ctx, "moved"); j.State != StateActive {
		t.Errorf("record of the moved task = %+v", j)
	}
}

// TestOpenRedisBuffers: every kind of client OpenRedis makes has shoestring's small
// connection and pipeline buffers, not go-redis's 32 KiB and 128 KiB.
func TestOpenRedisBuffers(t *testing.T) {
	t.Parallel()
	check := func(name string, read, write, pread, pwrite int) {
		t.Helper()
		if read != readBufferSize || write != writeBufferSize || pread != pipelineBufferSize || pwrite != pipelineBufferSize {
			t.Errorf("%s: buffers %d/%d, pipeline %d/%d; want %d/%d, pipeline %d/%d", name, read, write, pread, pwrite,
				readBufferSize, writeBufferSize, pipelineBufferSize, pipelineBufferSize)
		}
	}
	for _, url := range []string{"redis://127.0.0.1:1/0", "redis-sentinel://127.0.0.1:1/mymaster", "redis-cluster://127.0.0.1:1"} {
		rdb, err := OpenRedis(url, false)
		if err != nil {
			t.Fatal(err)
		}
		switch c := rdb.(type) {
		case *redis.Client:
			o := c.Options()
			check(url, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)
		case *redis.ClusterClient:
			o := c.Options()
			check(url, o.ReadBufferSize, o.WriteBufferSize, o.PipelineReadBufferSize, o.PipelineWriteBufferSize)
		default:
			t.Errorf("%s: a %T", url, rdb)
		}
		rdb.Close()
	}
}

// TestRedisLoggerNil: a RedisLogger without a logger drops go-redis's lines instead of
// panicking inside go-redis.
func TestRedisLoggerNil(t *testing.T) {
	t.Parallel()
	defer func() {
		if p := recover(); p != nil {
			t.Errorf("Printf panicked: %v", p)
		}
	}()
	RedisLogger{}.Printf(context.Background(), "redis: dial %s: %v", "127.0.0.1:6379", "connection refused")
}
