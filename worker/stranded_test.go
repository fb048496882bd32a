package worker

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// shortenStranded sets strandedInterval and strandedAfter for one test, which must not
// be parallel, and restores them after the worker it starts next has stopped (cleanups
// run last first).
func shortenStranded(t *testing.T, interval, after time.Duration) {
	was, wasAfter := strandedInterval, strandedAfter
	strandedInterval, strandedAfter = interval, after
	t.Cleanup(func() { strandedInterval, strandedAfter = was, wasAfter })
}

// cutter is a TCP proxy to Redis that, once armed, forwards the next command carrying
// marker and then closes that connection before Redis's reply comes back: the reply of
// a command Redis ran is lost, as in a network stall.
type cutter struct {
	ln     net.Listener
	target string
	marker []byte
	armed  atomic.Bool
	cutAt  atomic.Int64 // unix ns of the cut
	wg     sync.WaitGroup
}

func newCutter(tb testing.TB, target string, marker string) *cutter {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	c := &cutter{ln: ln, target: target, marker: []byte(marker)}
	c.wg.Add(1)
	go c.accept()
	tb.Cleanup(func() { ln.Close(); c.wg.Wait() })
	return c
}

func (c *cutter) accept() {
	defer c.wg.Done()
	for {
		client, err := c.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", c.target)
		if err != nil {
			client.Close()
			continue
		}
		c.wg.Add(2)
		go func() { // replies: copied as they come
			defer c.wg.Done()
			_, _ = io.Copy(client, server)
			client.Close()
		}()
		go func() { // commands: the armed marker cuts the connection after it is sent
			defer c.wg.Done()
			defer server.Close()
			defer client.Close()
			buf := make([]byte, 64<<10)
			for {
				n, err := client.Read(buf)
				if n > 0 {
					cut := bytes.Contains(buf[:n], c.marker) && c.armed.CompareAndSwap(true, false)
					if cut {
						// Close the reply side first, so nothing Redis answers gets back.
						_ = client.(*net.TCPConn).SetLinger(0)
						client.Close()
					}
					if _, werr := server.Write(buf[:n]); werr != nil || cut {
						if cut {
							c.cutAt.Store(time.Now().UnixNano())
							time.Sleep(50 * time.Millisecond) // let Redis run it
						}
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// TestLostFetchReply: the real failure. A proxy between the worker and Redis cuts the
// connection just after a fetch reaches Redis, so the fetch runs (it takes a task,
// starts its job and indexes it) but its reply is lost; go-redis sends it again, which
// takes the next task. The first task, stranded in the worker's own index, is requeued
// by the worker once it has not held it for strandedAfter (shortened here), and every
// job completes, the stranded one on its second attempt after one interruption. Not
// parallel: it shortens the package's intervals.
func TestLostFetchReply(t *testing.T) {
	shortenStranded(t, 100*time.Millisecond, time.Second)
	r := storagetest.StartRedis(t)
	direct := r.Client(t)
	ctx := context.Background()
	jobs := storage.NewJobs(direct, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(direct)
	ids := []string{"j1", "j2", "j3", "j4"}
	for _, id := range ids {
		if err := jobs.Create(ctx, storage.Job{ID: id, Type: kindEcho, Queue: "default", State: storage.StatePending, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := client.Enqueue(asynq.NewTask(kindEcho, []byte(`{"message":"hi"}`)), asynq.TaskID(id)); err != nil {
			t.Fatal(err)
		}
	}
	// Only a fetch sends the bare job key prefix, as an argument of its own; every other
	// command names whole job keys.
	cut := newCutter(t, r.Addr(), "shoestring:{default}:job:\r\n")
	cut.armed.Store(true)
	rdb, err := storage.OpenRedis("redis://"+cut.ln.Addr().String()+"/0", false) // shoestring's own settings
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	w := New(Config{Concurrency: 2, Queues: map[string]int{"default": 1}, ShutdownTimeout: 2 * time.Second, Retention: time.Hour},
		rdb, slog.New(slog.NewTextHandler(io.Discard, nil)))
	w.Handle(kindEcho, handleEcho)
	if err := w.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(w.Stop)

	deadline := time.Now().Add(15 * time.Second)
	var stranded []storage.Job
	for _, id := range ids {
		for {
			j, err := jobs.Get(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			if j.State == storage.StateCompleted {
				if j.Interrupted > 0 {
					stranded = append(stranded, j)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("job %s still %s 15 s after the start (cut: %v)", id, j.State, cut.cutAt.Load() != 0)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if cut.cutAt.Load() == 0 {
		t.Fatal("no fetch was cut: the test did not test anything")
	}
	if len(stranded) != 1 || stranded[0].Attempts != 2 || stranded[0].Interrupted != 1 {
		t.Fatalf("jobs interrupted: %+v; want one, completed on attempt 2", stranded)
	}
	if ev := stranded[0].Events; !slices.ContainsFunc(ev, func(e storage.Event) bool {
		return e.Kind == "interrupted" && strings.Contains(e.Detail, "taken by a fetch whose reply was lost")
	}) {
		t.Errorf("job %s's timeline %+v: want an interruption by the stranded-task sweep", stranded[0].ID, ev)
	}
	done := *stranded[0].CompletedAt
	t.Logf("job %s stranded by the lost reply: completed %v after the cut (strandedAfter %v)",
		stranded[0].ID, done.Sub(time.Unix(0, cut.cutAt.Load())).Round(time.Millisecond), strandedAfter)
}
