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
	alive := func(g *Gossip, id uint64) bool {
		for _, m := range g.Members() {
			if m.ID == id {
				return m.Alive
			}
		}
		return false
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
					if i != j && alive(g, uint64(j+1)) != want && (i == 2 || j == 2) {
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
	if !alive(gs[0], 2) || !alive(gs[1], 1) {
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
