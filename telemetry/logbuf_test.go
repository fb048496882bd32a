package telemetry

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// writes records each Write to it as one string, as a file descriptor sees write(2)s.
type writes struct {
	mu sync.Mutex
	w  []string
}

func (w *writes) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.w = append(w.w, string(p))
	return len(p), nil
}

func (w *writes) get() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.w...)
}

// TestLogBufferGroupsLines: lines written within the interval reach the writer in one
// write, in order, once the interval has passed, and not before.
func TestLogBufferGroupsLines(t *testing.T) {
	var out writes
	b := NewLogBuffer(&out, 4<<10, 50*time.Millisecond)
	defer b.Close()
	for i := range 3 {
		fmt.Fprintf(b, "line %d\n", i)
	}
	if got := out.get(); len(got) != 0 {
		t.Fatalf("written before the interval: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(out.get()) == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.get(); len(got) != 1 || got[0] != "line 0\nline 1\nline 2\n" {
		t.Fatalf("writes = %q, want the three lines in one", got)
	}
	// The timer is armed again by the next line.
	fmt.Fprintf(b, "line 3\n")
	for len(out.get()) == 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := out.get(); len(got) != 2 || got[1] != "line 3\n" {
		t.Fatalf("writes = %q, want line 3 written after the interval", got)
	}
}

// TestLogBufferSize: a full buffer is written before the line that would overflow it,
// and a line larger than the buffer goes straight through after the lines before it.
func TestLogBufferSize(t *testing.T) {
	var out writes
	b := NewLogBuffer(&out, 4<<10, time.Hour)
	line := strings.Repeat("x", 1023) + "\n" // 1 KiB
	for range 4 {
		b.Write([]byte(line))
	}
	if got := out.get(); len(got) != 0 {
		t.Fatalf("a buffer with room left was written: %d writes", len(got))
	}
	b.Write([]byte("fifth\n"))
	if got := out.get(); len(got) != 1 || got[0] != strings.Repeat(line, 4) {
		t.Fatalf("want the four full lines in one write, got %d writes", len(got))
	}
	big := strings.Repeat("y", 5<<10) + "\n"
	b.Write([]byte(big))
	if got := out.get(); len(got) != 3 || got[1] != "fifth\n" || got[2] != big {
		t.Fatalf("want fifth then the big line, got %d writes", len(got))
	}
	b.Close()
	if got := out.get(); len(got) != 3 {
		t.Fatalf("Close wrote %d more times with nothing buffered", len(got)-3)
	}
}

// TestLogHandlerFlushesWarnings: a warning is written at once, with the info lines
// before it; Close writes what is left, and later lines go straight through.
func TestLogHandlerFlushesWarnings(t *testing.T) {
	var out writes
	b := NewLogBuffer(&out, 32<<10, time.Hour)
	l := slog.New(LogHandler(slog.NewTextHandler(b, &slog.HandlerOptions{ReplaceAttr: dropTime}), b)).With("proc", "worker")
	l.Info("task completed", "task_id", "a")
	l.Info("task completed", "task_id", "b")
	if got := out.get(); len(got) != 0 {
		t.Fatalf("info lines written at once: %q", got)
	}
	l.Warn("task retry", "task_id", "c")
	want := "level=INFO msg=\"task completed\" proc=worker task_id=a\n" +
		"level=INFO msg=\"task completed\" proc=worker task_id=b\n" +
		"level=WARN msg=\"task retry\" proc=worker task_id=c\n"
	if got := out.get(); len(got) != 1 || got[0] != want {
		t.Fatalf("writes = %q, want %q", got, want)
	}
	l.WithGroup("g").Info("last", "k", 1)
	b.Close()
	l.Info("after close")
	got := out.get()
	if len(got) != 3 || got[1] != "level=INFO msg=last proc=worker g.k=1\n" || got[2] != "level=INFO msg=\"after close\" proc=worker\n" {
		t.Fatalf("writes = %q", got)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// BenchmarkLogLine is one task-outcome line written to a file, each line alone
// (direct) and through a LogBuffer (buffered): compare ns/op in the same run.
func BenchmarkLogLine(b *testing.B) {
	line := func(b *testing.B, l *slog.Logger) {
		for b.Loop() {
			l.Info("task completed", "task_id", "01KBQXYZABCDEFGHJKMNPQRSTV", "task_type", "echo", "queue", "default",
				"attempt", 1, "duration_ms", 0, "err", "")
		}
	}
	b.Run("direct", func(b *testing.B) {
		f := tempFile(b)
		line(b, slog.New(slog.NewTextHandler(f, nil)))
	})
	b.Run("buffered", func(b *testing.B) {
		f := tempFile(b)
		lb := NewLogBuffer(f, 32<<10, 100*time.Millisecond)
		defer lb.Close()
		line(b, slog.New(LogHandler(slog.NewTextHandler(lb, nil), lb)))
	})
}

func tempFile(b *testing.B) *os.File {
	f, err := os.CreateTemp(b.TempDir(), "log")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	return f
}

func ExampleLogBuffer() {
	var out bytes.Buffer // a process's stdout, say
	b := NewLogBuffer(&out, 32<<10, 100*time.Millisecond)
	opts := &slog.HandlerOptions{ReplaceAttr: dropTime}
	logger := slog.New(LogHandler(slog.NewTextHandler(b, opts), b))

	logger.Info("task completed", "task_id", "a") // held for up to 100 ms
	fmt.Printf("%q\n", out.String())
	logger.Warn("queue latency high") // written at once, with the line before it
	fmt.Print(out.String())
	b.Close() // at exit: writes whatever is held
	// Output:
	// ""
	// level=INFO msg="task completed" task_id=a
	// level=WARN msg="queue latency high"
}
