package storage

import (
	"fmt"

	"github.com/alicebob/miniredis/v2"
)

// Embedded is an in-memory Redis (miniredis) for trying shoestring out without a Redis
// server. Nothing in it survives the process. Its TTL clock follows the wall clock
// (miniredis ClockTTL), so heartbeats and job records expire as they would in Redis.
type Embedded struct {
	m *miniredis.Miniredis
}

// StartEmbedded starts an embedded Redis on 127.0.0.1 at a free port. Stop it with Stop.
func StartEmbedded() (*Embedded, error) {
	m := miniredis.NewMiniRedis()
	m.ClockTTL(true)
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("start embedded redis: %w", err)
	}
	return &Embedded{m: m}, nil
}

// URL is the redis:// URL of the embedded server, for this process and its child.
func (e *Embedded) URL() string { return "redis://" + e.m.Addr() + "/0" }

// Stop closes the server. Safe to call twice.
func (e *Embedded) Stop() { e.m.Close() }
