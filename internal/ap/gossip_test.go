package ap

import (
	"context"
	"sync"
	"testing"
	"time"
)

func TestGossipDetectsPartitionAndRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for failure detection (seconds)")
	}
	var (
		mu    sync.Mutex
		addrs = map[uint64]string{}
	)
	var gs []*Gossip
	for id := uint64(1); id <= 3; id++ {
		g, err := StartGossip(GossipConfig{ID: id, BindAddr: "127.0.0.1:0", Fast: true,
			Discover: func(_ context.Context, missing func(uint64) bool) []string {
				mu.Lock()
				defer mu.Unlock()
				var out []string
				for other, a := range addrs {
					if missing(other) {
						out = append(out, a)
					}
				}
				return out
			}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		mu.Lock()
		addrs[id] = g.Addr()
		mu.Unlock()
		gs = append(gs, g)
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s: %v %v %v", what, gs[0].Members(), gs[1].Members(), gs[2].Members())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	// all checks what node 3 and the others see of each other.
	all := func(want bool) func() bool {
		return func() bool {
			for i, g := range gs {
				for j := range gs {
					if i != j && memberAlive(g, uint64(j+1)) != want && (i == 2 || j == 2) {
						return false
					}
				}
			}
			return true
		}
	}
	waitFor("every node to see every other", all(true))
	cut := func(from, to uint64) bool { return from == 3 || to == 3 }
	for _, g := range gs {
		g.SetFault(cut)
	}
	waitFor("node 3 and the others to see each other dead", all(false))
	if !memberAlive(gs[0], 2) || !memberAlive(gs[1], 1) {
		t.Fatal("the majority side lost sight of itself")
	}
	if len(gs[0].Members()) != 3 {
		t.Fatalf("a dead node left the ring: %v", gs[0].Members())
	}
	for _, g := range gs {
		g.SetFault(nil)
	}
	waitFor("the partition to heal", all(true))
}

// TestGossipRestartOnNewAddress: a node that crashes (no leave) and comes
// back with the same id on another gossip port, as `concord start`
// without --listen-gossip-urls does after a kill, is seen alive again.
// memberlist refuses a known name at a new address unless the old entry
// is dead and DeadNodeReclaimTime allows reclaiming it.
func TestGossipRestartOnNewAddress(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for failure detection (seconds)")
	}
	var (
		mu    sync.Mutex
		addrs = map[uint64]string{}
	)
	start := func(id uint64) *Gossip {
		t.Helper()
		g, err := StartGossip(GossipConfig{ID: id, BindAddr: "127.0.0.1:0", Fast: true,
			Discover: func(_ context.Context, missing func(uint64) bool) []string {
				mu.Lock()
				defer mu.Unlock()
				var out []string
				for other, a := range addrs {
					if missing(other) {
						out = append(out, a)
					}
				}
				return out
			}})
		if err != nil {
			t.Fatal(err)
		}
		mu.Lock()
		addrs[id] = g.Addr()
		mu.Unlock()
		return g
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		// Without the reclaim, memberlist takes the detection plus
		// GossipToTheDeadTime (15 s in its local timings): over 20 s here.
		deadline := time.Now().Add(13 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	g1, g2 := start(1), start(2)
	t.Cleanup(g1.Close)
	t.Cleanup(g2.Close)
	g3 := start(3)
	waitFor("every node to see node 3", func() bool { return memberAlive(g1, 3) && memberAlive(g2, 3) && memberAlive(g3, 1) })
	// Crash: no leave message, the listener gone.
	close(g3.stop)
	g3.wg.Wait()
	if err := g3.ml.Shutdown(); err != nil {
		t.Fatal(err)
	}
	old := g3.Addr()
	g3 = start(3)
	t.Cleanup(g3.Close)
	if g3.Addr() == old {
		t.Fatalf("restarted on the same address %s", old)
	}
	// atNew reports whether g sees node 3 alive at its new address.
	atNew := func(g *Gossip) bool {
		for _, m := range g.ml.Members() {
			if m.Name == "3" {
				return m.Address() == g3.Addr() && memberAlive(g, 3)
			}
		}
		return false
	}
	waitFor("nodes 1 and 2 to see node 3 alive at its new address", func() bool { return atNew(g1) && atNew(g2) })
}

// memberAlive reports whether g sees member id alive.
func memberAlive(g *Gossip, id uint64) bool {
	for _, m := range g.Members() {
		if m.ID == id {
			return m.Alive
		}
	}
	return false
}
