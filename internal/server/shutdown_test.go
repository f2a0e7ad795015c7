package server

import (
	"context"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/store"
)

// With a 10 s election timeout, only a leadership transfer can produce a
// new leader within a few seconds of the old one stopping.
func TestShutdownHandsOverLeadership(t *testing.T) {
	c := startCluster(t, 3, func(_ int, cfg *Config) {
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.ElectionTimeout = 10 * time.Second
	})
	for _, id := range []uint64{store.MetaRangeID, store.UserRangeID} {
		c.Node(0).Store().Campaign(id)
	}
	cli := client(t, c, 2)
	putRetry(t, cli, "before", "1")
	li := leaderOf(t, c, store.UserRangeID)
	oldTerm := c.Node(li).Store().Replica(store.UserRangeID).Status().Term

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	start := time.Now()
	n := c.Node(li)
	n.Shutdown(ctx)
	cancel()
	c.mu.Lock()
	c.nodes[li] = nil
	c.mu.Unlock()

	other := (li + 1) % 3
	st := c.Node(other).Store().Replica(store.UserRangeID).Status()
	if st.Leader == 0 || st.Leader == n.ID() {
		t.Fatalf("after shutdown node %d sees leader %d", other+1, st.Leader)
	}
	if st.Term != oldTerm+1 {
		t.Fatalf("term went from %d to %d: not a single hand-over", oldTerm, st.Term)
	}
	wctx, wcancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer wcancel()
	if _, err := client(t, c, other).Put(wctx, "after", "2"); err != nil {
		t.Fatalf("write after hand-over: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("hand-over and a write took %v, close to an election timeout", took)
	}
}
