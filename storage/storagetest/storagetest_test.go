package storagetest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// The spawner that forks every redis-server lives as long as the binary, by design.
	goleak.VerifyTestMain(m, goleak.IgnoreTopFunction("github.com/shoestring-go/shoestring/storage/storagetest.startCmd.func1.1"))
}

// missingRedisServer is a redis-server path that does not exist, to take the fallback
// paths on a machine that has redis-server.
func missingRedisServer(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(tb.TempDir(), "no-such-redis-server")
}

func ctxFor(tb testing.TB) context.Context {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	tb.Cleanup(cancel)
	return ctx
}

func TestTwoServersAreIndependent(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	a, b := StartRedis(t), StartRedis(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers at %s", a.Addr())
	}
	ca, cb := a.Client(t), b.Client(t)
	if err := ca.Set(ctx, "k", "on a", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if err := cb.Set(ctx, "k", "on b", 0).Err(); err != nil {
		t.Fatalf("SET on b: %v", err)
	}
	if err := ca.Set(ctx, "only-a", "x", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	for _, tc := range []struct {
		name string
		c    *redis.Client
		want string
	}{{"a", ca, "on a"}, {"b", cb, "on b"}} {
		if got, err := tc.c.Get(ctx, "k").Result(); err != nil || got != tc.want {
			t.Errorf("GET k on %s = %q, %v; want %q", tc.name, got, err, tc.want)
		}
	}
	if err := cb.Get(ctx, "only-a").Err(); !errors.Is(err, redis.Nil) {
		t.Errorf("GET only-a on b: err %v, want redis.Nil", err)
	}
}

// TestManyParallelServers checks that parallel tests never share a server: each SETNXes
// one key into what must be an empty server of its own.
func TestManyParallelServers(t *testing.T) {
	t.Parallel()
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			c := StartRedis(t).Client(t)
			ok, err := c.SetNX(ctx, "owner", t.Name(), 0).Result()
			if err != nil || !ok {
				owner, _ := c.Get(ctx, "owner").Result()
				t.Fatalf("SETNX owner = %v, %v; server already owned by %q", ok, err, owner)
			}
			if n, err := c.DBSize(ctx).Result(); err != nil || n != 1 {
				t.Errorf("DBSIZE = %d, %v; want 1", n, err)
			}
		})
	}
}

func TestAddrAndURL(t *testing.T) {
	t.Parallel()
	r := StartRedis(t)
	if !regexp.MustCompile(`^127\.0\.0\.1:[0-9]+$`).MatchString(r.Addr()) {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", r.Addr())
	}
	if r.Addr() == "127.0.0.1:6379" {
		t.Fatal("Addr() is the shared Redis port 6379")
	}
	if want := "redis://" + r.Addr() + "/0"; r.URL() != want {
		t.Fatalf("URL() = %q, want %q", r.URL(), want)
	}
	opt, err := redis.ParseURL(r.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", r.URL(), err)
	}
	c := redis.NewClient(opt)
	defer c.Close()
	if err := c.Ping(ctxFor(t)).Err(); err != nil {
		t.Fatalf("PING via URL: %v", err)
	}
}

// TestRestartKeepsData stops or kills the server, checks it is gone, starts it again and
// checks that a key written before survived in the AOF.
func TestRestartKeepsData(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		end  func(*Redis, testing.TB)
	}{
		{"Stop", (*Redis).Stop},
		{"Kill", (*Redis).Kill},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			ctx := ctxFor(t)
			r := StartRealRedis(t)
			if !r.Real() {
				t.Fatal("StartRealRedis returned the miniredis fallback")
			}
			addr := r.Addr()
			c := r.Client(t)
			// A SIGKILL loses what appendfsync everysec has not yet written.
			if err := c.ConfigSet(ctx, "appendfsync", "always").Err(); err != nil {
				t.Fatalf("CONFIG SET appendfsync always: %v", err)
			}
			if err := c.Set(ctx, "k", "survives", 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}

			tc.end(r, t)
			tc.end(r, t) // a second call does nothing
			probe := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
			err := probe.Ping(ctx).Err()
			probe.Close()
			if err == nil {
				t.Fatalf("PING after %s succeeded", tc.name)
			}

			r.Start(t)
			if r.Addr() != addr {
				t.Errorf("Addr() after Start = %s, want %s", r.Addr(), addr)
			}
			if got, err := c.Get(ctx, "k").Result(); err != nil || got != "survives" {
				t.Fatalf("GET k after %s and Start = %q, %v; want %q", tc.name, got, err, "survives")
			}
		})
	}
}

// TestStartWaitsForBusyPort holds the server's port, while it is stopped, with an impostor
// that answers PING like a Redis, then releases it: Start must retry until it can bind, and
// must not mistake the impostor for its own server.
func TestStartWaitsForBusyPort(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	r := StartRealRedis(t)
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	r.Stop(t)

	ln, err := net.Listen("tcp", r.Addr())
	if err != nil {
		t.Fatalf("hold the stopped server's port: %v", err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	info := "# Server\r\nprocess_id:1\r\n"
	reply := fmt.Sprintf("+PONG\r\n$%d\r\n%s\r\n", len(info), info)
	var probed sync.Once
	probedCh := make(chan struct{})
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer conn.Close()
				buf := make([]byte, 512)
				if _, err := conn.Read(buf); err != nil {
					return
				}
				_, _ = io.WriteString(conn, reply)
				probed.Do(func() { close(probedCh) })
			})
		}
	})
	// Release the port a while after Start first probed the impostor, so that the
	// redis-server started by that attempt has surely failed to bind.
	wg.Go(func() {
		select {
		case <-probedCh:
			<-time.After(300 * time.Millisecond)
		case <-time.After(2 * time.Second):
		}
		ln.Close()
	})

	r.Start(t)
	select {
	case <-probedCh:
	default:
		t.Error("Start never probed the impostor holding its port")
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k after Start = %q, %v; want %q (talking to the impostor?)", got, err, "v")
	}
}

// TestCleanupReapsServer checks that a finished test leaves no redis-server behind.
func TestCleanupReapsServer(t *testing.T) {
	t.Parallel()
	var p *process
	t.Run("inner", func(t *testing.T) {
		r := StartRealRedis(t)
		p = r.proc
	})
	if p == nil {
		t.Fatal("inner test started no process")
	}
	select {
	case <-p.done:
	default:
		t.Fatal("redis-server not reaped after the test's cleanup")
	}
	if st := p.cmd.ProcessState; st == nil || !st.Exited() || st.ExitCode() != 0 {
		t.Errorf("redis-server ended with %v, want a clean exit after SIGTERM", st)
	}
}

func TestFallbackMiniredis(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	r := start(t, missingRedisServer(t), false, false)
	if r.Real() {
		t.Fatal("Real() = true for the fallback")
	}
	if want := "redis://" + r.Addr() + "/0"; r.URL() != want {
		t.Errorf("URL() = %q, want %q", r.URL(), want)
	}
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want %q", got, err, "v")
	}

	const ttl = 300 * time.Millisecond
	set := time.Now()
	if err := c.Set(ctx, "short", "v", ttl).Err(); err != nil {
		t.Fatalf("SET short PX 300: %v", err)
	}
	deadline := set.Add(3 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for ; ; <-tick.C {
		before := time.Now()
		n, err := c.Exists(ctx, "short").Result()
		if err != nil {
			t.Fatalf("EXISTS short: %v", err)
		}
		if n == 0 {
			if early := before.Sub(set); early < ttl {
				t.Fatalf("key with a %v TTL gone after %v", ttl, early)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("key with a %v TTL still there after %v", ttl, time.Since(set))
		}
	}
}

// recordingTB records Fatal and Skip calls and ends the calling goroutine as testing.T
// does; everything else goes to the real test.
type recordingTB struct {
	testing.TB
	mu     sync.Mutex
	fatal  string
	skip   string
	errors []string
}

func (f *recordingTB) Helper() {}

func (f *recordingTB) Fatal(args ...any) { f.end(&f.fatal, fmt.Sprint(args...)) }
func (f *recordingTB) Fatalf(format string, args ...any) {
	f.end(&f.fatal, fmt.Sprintf(format, args...))
}
func (f *recordingTB) Skip(args ...any) { f.end(&f.skip, fmt.Sprint(args...)) }
func (f *recordingTB) Skipf(format string, args ...any) {
	f.end(&f.skip, fmt.Sprintf(format, args...))
}
func (f *recordingTB) Errorf(format string, args ...any) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.errors = append(f.errors, fmt.Sprintf(format, args...))
}

func (f *recordingTB) end(field *string, msg string) {
	f.mu.Lock()
	*field = msg
	f.mu.Unlock()
	runtime.Goexit()
}

// runRecording runs fn with a recordingTB on its own goroutine, so that Fatal and Skip end
// only that goroutine, and returns what was recorded.
func runRecording(t *testing.T, fn func(tb testing.TB)) *recordingTB {
	t.Helper()
	f := &recordingTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	f.mu.Lock()
	defer f.mu.Unlock()
	return f
}

func TestMissingRedisServer(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name                    string
		requireReal, mustBeReal bool
		wantFatal, wantSkip     string
	}{
		{name: "required", requireReal: true, wantFatal: "redis-server not found; install the Debian package redis-server"},
		{name: "required real", requireReal: true, mustBeReal: true, wantFatal: "redis-server not found; install the Debian package redis-server"},
		{name: "real", mustBeReal: true, wantSkip: "needs redis-server (apt-get install redis-server)"},
		{name: "fallback"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var r *Redis
			f := runRecording(t, func(tb testing.TB) {
				r = start(tb, missingRedisServer(t), tc.requireReal, tc.mustBeReal)
			})
			if !strings.Contains(f.fatal, tc.wantFatal) || (tc.wantFatal == "") != (f.fatal == "") {
				t.Errorf("Fatal message %q, want one containing %q", f.fatal, tc.wantFatal)
			}
			if !strings.Contains(f.skip, tc.wantSkip) || (tc.wantSkip == "") != (f.skip == "") {
				t.Errorf("Skip message %q, want one containing %q", f.skip, tc.wantSkip)
			}
			if wantServer := tc.wantFatal == "" && tc.wantSkip == ""; (r != nil) != wantServer {
				t.Errorf("got server %v, want one: %v", r, wantServer)
			}
		})
	}
}

func TestFallbackRefusesFaultInjection(t *testing.T) {
	t.Parallel()
	r := start(t, missingRedisServer(t), false, false)
	for _, tc := range []struct {
		name string
		op   func(*Redis, testing.TB)
	}{
		{"Stop", (*Redis).Stop},
		{"Kill", (*Redis).Kill},
		{"Start", (*Redis).Start},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := runRecording(t, func(tb testing.TB) { tc.op(r, tb) })
			if want := tc.name + " needs a real redis-server"; !strings.Contains(f.fatal, want) {
				t.Errorf("Fatal message %q, want one containing %q", f.fatal, want)
			}
		})
	}
	if err := r.Client(t).Ping(ctxFor(t)).Err(); err != nil {
		t.Errorf("PING after refused fault injection: %v", err)
	}
}

func TestStartWhileRunningFails(t *testing.T) {
	t.Parallel()
	r := StartRealRedis(t)
	f := runRecording(t, func(tb testing.TB) { r.Start(tb) })
	if want := "already running"; !strings.Contains(f.fatal, want) {
		t.Errorf("Fatal message %q, want one containing %q", f.fatal, want)
	}
}
