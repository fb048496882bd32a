package storage

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Group commit. A worker running many short tasks at once sends each one's start and
// outcome (InFlight.Begin, End) as a pipeline of its own: a round trip, two syscalls
// and a wakeup of Redis each. A batcher sends every write that waits while one
// pipeline is on the wire in the next pipeline together, as databases group-commit
// their log: alone, a write leaves at once (no timer, no added latency); under load,
// ten tasks' writes share one round trip. Each caller still waits for its own
// write's outcome, so nothing reports done before Redis has it.

// batchTimeout bounds one group's round trip (go-redis's own IO timeouts are shorter).
const batchTimeout = 10 * time.Second

// batchOp is one caller's commands: fill adds them to the pipeline and returns the
// script call among them (nil for none), which is retried alone on NOSCRIPT.
type batchOp struct {
	fill   func(ctx context.Context, p redis.Pipeliner) *redis.Cmd
	script *redis.Script
	cmds   []redis.Cmder
	err    error
	done   chan struct{}
}

// batcher group-commits batchOps on rdb. The zero value is not usable; safe for
// concurrent use. Its goroutine lives only while there are writes to send.
type batcher struct {
	rdb      redis.UniversalClient
	mu       sync.Mutex
	pending  []*batchOp
	flushing bool
}

// do sends fill's commands in the next group and waits for them, whatever ctx says:
// once queued they may be written, and the caller must know which. It returns the
// first error among them (redis.Nil aside); the commands hold their own results.
func (b *batcher) do(fill func(ctx context.Context, p redis.Pipeliner) *redis.Cmd, script *redis.Script) error {
	op := &batchOp{fill: fill, script: script, done: make(chan struct{})}
	b.mu.Lock()
	b.pending = append(b.pending, op)
	if !b.flushing {
		b.flushing = true
		go b.loop()
	}
	b.mu.Unlock()
	<-op.done
	return op.err
}

// loop sends the waiting writes, a group per round trip, until none wait.
func (b *batcher) loop() {
	for {
		b.mu.Lock()
		ops := b.pending
		b.pending = nil
		if len(ops) == 0 {
			b.flushing = false
			b.mu.Unlock()
			return
		}
		b.mu.Unlock()
		b.flush(ops)
	}
}

func (b *batcher) flush(ops []*batchOp) {
	ctx, cancel := context.WithTimeout(context.Background(), batchTimeout)
	defer cancel()
	scripts := b.send(ctx, ops)
	// A script missing from Redis's cache (after a restart or SCRIPT FLUSH) did not
	// run: load it and send those writes again, with their other commands
	// (idempotent, as pipelineScript requires).
	var again []*batchOp
	loaded := map[*redis.Script]bool{}
	for i, op := range ops {
		if c := scripts[i]; c != nil && isNoScript(c.Err()) {
			if !loaded[op.script] {
				loaded[op.script] = true
				if err := op.script.Load(ctx, b.rdb).Err(); err != nil {
					op.err = err
					continue
				}
			}
			again = append(again, op)
		}
	}
	if len(again) > 0 {
		b.send(ctx, again)
	}
	for _, op := range ops {
		if op.err == nil {
			for _, c := range op.cmds {
				if err := c.Err(); err != nil && err != redis.Nil {
					op.err = err
					break
				}
			}
		}
		close(op.done)
	}
}

// send writes ops in one pipeline, hands each op its own commands, and returns each
// op's script call.
func (b *batcher) send(ctx context.Context, ops []*batchOp) []*redis.Cmd {
	scripts := make([]*redis.Cmd, len(ops))
	bounds := make([]int, len(ops)+1)
	p := b.rdb.Pipeline()
	for i, op := range ops {
		scripts[i] = op.fill(ctx, p)
		bounds[i+1] = p.Len()
	}
	cmds, _ := p.Exec(ctx) // each command holds its own error
	for i, op := range ops {
		op.cmds = cmds[bounds[i]:bounds[i+1]]
	}
	return scripts
}
