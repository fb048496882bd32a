package telemetry

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// LogBuffer holds log lines for at most an interval and writes them together: one
// write(2) for many lines instead of one each. A worker draining short tasks logs a
// line per task, and that line's own write costs it about as much CPU as the rest of
// the line; so does a web tier's line per request. The lines reach the platform's log
// stream at most the interval later, in order. It is zap's BufferedWriteSyncer's
// idea, bounded in time as well as in size: a buffer is written when the next line
// would not fit, when the interval has passed since its first line, on Flush and on
// Close. A line larger than the buffer is written through at once, after the lines
// before it.
//
// A process killed with SIGKILL loses what is buffered (at most the interval's
// lines): LogHandler therefore flushes after every line at warn or above, so
// warnings and errors are never held back, and neither are the lines before them.
//
// Safe for concurrent use. Write errors are dropped, as slog's handlers drop them.
type LogBuffer struct {
	w        io.Writer
	interval time.Duration
	mu       sync.Mutex
	buf      []byte
	timer    *time.Timer // armed while buf holds lines; nil when never armed
	closed   bool
}

// NewLogBuffer returns a buffer of size bytes (at least 4 KiB) in front of w, whose
// lines wait at most interval (greater than 0) before they are written.
func NewLogBuffer(w io.Writer, size int, interval time.Duration) *LogBuffer {
	return &LogBuffer{w: w, interval: interval, buf: make([]byte, 0, max(size, 4<<10))}
}

// Write holds p (one or more whole lines, as slog's handlers write them) for at most
// the interval. It always reports len(p), nil.
func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		_, _ = b.w.Write(p)
		return len(p), nil
	}
	if len(b.buf)+len(p) > cap(b.buf) {
		b.flushLocked()
		if len(p) > cap(b.buf) {
			_, _ = b.w.Write(p)
			return len(p), nil
		}
	}
	if len(b.buf) == 0 {
		if b.timer == nil {
			b.timer = time.AfterFunc(b.interval, b.Flush)
		} else {
			b.timer.Reset(b.interval)
		}
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

// Flush writes the buffered lines now.
func (b *LogBuffer) Flush() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
}

func (b *LogBuffer) flushLocked() {
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf)
	b.buf = b.buf[:0]
	if b.timer != nil {
		b.timer.Stop()
	}
}

// Close writes the buffered lines; later writes go straight through. Call it before
// the process exits.
func (b *LogBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.flushLocked()
	b.closed = true
	return nil
}

// LogHandler wraps h, which writes to b, so that a record at warn or above is written
// out at once, with every line before it.
func LogHandler(h slog.Handler, b *LogBuffer) slog.Handler { return flushingHandler{h, b} }

type flushingHandler struct {
	slog.Handler
	b *LogBuffer
}

func (h flushingHandler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		h.b.Flush()
	}
	return err
}

func (h flushingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return flushingHandler{h.Handler.WithAttrs(as), h.b}
}

func (h flushingHandler) WithGroup(name string) slog.Handler {
	return flushingHandler{h.Handler.WithGroup(name), h.b}
}
