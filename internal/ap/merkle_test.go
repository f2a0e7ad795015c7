package ap

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/ap/crdt"
)

// TestAntiEntropy: replicas that missed writes, with no hint left and no
// read to repair them, converge by Merkle exchange alone, both ways.
func TestAntiEntropy(t *testing.T) {
	_, nodes := testCluster(t, 3, DefaultKeyspace(), time.Hour /* no handoff */)
	ctx := context.Background()
	// Node 3 misses 50 keys written through node 1; node 1 misses one
	// written through node 3 alone.
	cut := func(from, to uint64) bool { return from == 3 || to == 3 }
	nodes[0].SetFault(cut)
	nodes[2].SetFault(cut)
	for i := range 50 {
		if err := nodes[0].Update(ctx, 0, []byte(fmt.Sprint("k", i)), incr(int64(i))); err != nil {
			t.Fatal(err)
		}
	}
	if err := nodes[2].Update(ctx, 5, []byte("lonely"), sadd("m")); err != nil {
		t.Fatal(err)
	}
	// The slots that failed on the cut end as hints (in the background,
	// after the quorum): 50 for node 3, and 2 on node 3 for nodes 1 and 2.
	// Only then may the cut go, or a late slot call would cross it.
	eventually(t, "hints for the cut slots", func() error {
		total := 0
		for _, n := range nodes {
			hs, err := n.cfg.Local.Hints(1000)
			if err != nil {
				return err
			}
			total += len(hs)
		}
		if total != 52 {
			return fmt.Errorf("%d hints", total)
		}
		return nil
	})
	nodes[0].SetFault(nil)
	nodes[2].SetFault(nil)
	for _, n := range nodes {
		hs, err := n.cfg.Local.Hints(1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, h := range hs {
			if err := n.cfg.Local.DropHint(h); err != nil {
				t.Fatal(err)
			}
		}
	}
	eventually(t, "nodes 1 and 2 to hold the same replicas (the last slots land after the quorum)", func() error {
		r1, _, err1 := nodes[0].HandleTree(0, 2, false)
		r2, _, err2 := nodes[1].HandleTree(0, 1, false)
		if err1 != nil || err2 != nil || r1 != r2 {
			return fmt.Errorf("roots %x and %x (%v %v)", r1, r2, err1, err2)
		}
		return nil
	})
	if d, err := nodes[1].syncWith(ctx, 1, 0); err != nil || d != 0 {
		t.Fatalf("nodes 1 and 2 hold the same replicas, yet %d leaves differ (%v)", d, err)
	}
	d, err := nodes[0].AntiEntropy(ctx)
	if err != nil || d == 0 {
		t.Fatalf("anti-entropy found %d differing leaves (%v)", d, err)
	}
	for i := range 50 {
		o, err := nodes[2].cfg.Local.Get(0, []byte(fmt.Sprint("k", i)))
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := o.Str.Get(); string(v) != fmt.Sprint(i) {
			t.Fatalf("node 3 holds k%d = %q after anti-entropy", i, v)
		}
	}
	o, err := nodes[0].cfg.Local.Get(5, []byte("lonely"))
	if err != nil || !o.Set.Has("m") || o.Kind(0) != crdt.KindSet {
		t.Fatalf("node 1 did not get node 3's key: %v", err)
	}
	// A second round finds nothing between 1 and 3; 2 catches up with
	// the rest from either.
	if d, err := nodes[0].syncWith(ctx, 3, 0); err != nil || d != 0 {
		t.Fatalf("second round: %d leaves differ (%v)", d, err)
	}
	if _, err := nodes[1].AntiEntropy(ctx); err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		for _, m := range nodes {
			if n == m {
				continue
			}
			for ks := uint32(0); ks < NumKeyspaces; ks++ {
				r1, _, err1 := n.HandleTree(ks, m.ID(), false)
				r2, _, err2 := m.HandleTree(ks, n.ID(), false)
				if err1 != nil || err2 != nil || r1 != r2 {
					t.Fatalf("nodes %d and %d differ in keyspace %d", n.ID(), m.ID(), ks)
				}
			}
		}
	}
}
