package storage

import (
	"fmt"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Embedded is an in-memory Redis (miniredis) for trying shoestring out without a Redis
// server. Nothing in it survives the process. Its TTL clock runs in real time: miniredis
// only expires keys when told time has passed, so a goroutine advances it every 100 ms.
type Embedded struct {
	m    *miniredis.Miniredis
	stop chan struct{}
	wg   sync.WaitGroup // the clock goroutine
	once sync.Once
}

// StartEmbedded starts an embedded Redis on 127.0.0.1 at a free port. Stop it with Stop.
func StartEmbedded() (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	e := &Embedded{m: m, stop: make(chan struct{})}
	e.wg.Add(1)
	go e.tick()
	return e, nil
}

func (e *Embedded) tick() {
	defer e.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-e.stop:
			return
		case now := <-t.C:
			e.m.SetTime(now)
			e.m.FastForward(now.Sub(last))
			last = now
		}
	}
}

// URL is the redis:// URL of the embedded server, for this process and its child.
func (e *Embedded) URL() string { return "redis://" + e.m.Addr() + "/0" }

// Stop closes the server and its clock. Safe to call twice.
func (e *Embedded) Stop() {
	e.once.Do(func() {
		close(e.stop)
		e.wg.Wait()
		e.m.Close()
	})
}
