package ap

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/ap/crdt"
	"github.com/concorddb/concord/internal/storage"
)

// fastHandoff makes handoff rounds frequent, so tests see them quickly.
const fastHandoff = 20 * time.Millisecond

func incr(by int64) Op {
	return func(o *crdt.Object, w Write) (bool, error) {
		if _, err := o.Str.IncrBy(w.Actor, by); err != nil {
			return false, err
		}
		o.Touch(crdt.KindString, w.TS, w.Actor)
		return true, nil
	}
}

func sadd(m string) Op {
	return func(o *crdt.Object, w Write) (bool, error) {
		o.Set.Add(w.Actor, m)
		o.Touch(crdt.KindSet, w.TS, w.Actor)
		return true, nil
	}
}

func counterOf(t *testing.T, o *crdt.Object) string {
	t.Helper()
	v, _ := o.Str.Get()
	return string(v)
}

// eventually retries f for up to 5 s.
func eventually(t *testing.T, what string, f func() error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// replicasAgree checks that every node's own replica of key reads want.
func replicasAgree(t *testing.T, nodes []*Node, key string, want func(*crdt.Object) error) {
	t.Helper()
	eventually(t, "replicas of "+key, func() error {
		for _, n := range nodes {
			o, err := n.cfg.Local.Get(0, []byte(key))
			if err != nil {
				return err
			}
			if err := want(o); err != nil {
				return fmt.Errorf("node %d: %w", n.ID(), err)
			}
		}
		return nil
	})
}

func TestSingleNodeDurableAndExpiry(t *testing.T) {
	_, nodes := testCluster(t, 1, DefaultKeyspace(), fastHandoff)
	n := nodes[0]
	ctx := context.Background()
	for range 3 {
		if err := n.Update(ctx, 0, []byte("c"), incr(2)); err != nil {
			t.Fatal(err)
		}
	}
	// Acknowledged means in the engine, before any read of it.
	b, ok, err := storage.APGet(n.cfg.Local.eng, 0, []byte("c"))
	if err != nil || !ok {
		t.Fatalf("not stored: %v %v", ok, err)
	}
	o, err := crdt.Decode(b)
	if err != nil || counterOf(t, o) != "6" {
		t.Fatalf("stored %v %v", o, err)
	}
	expire := func(o *crdt.Object, w Write) (bool, error) {
		o.SetExpiry(w.TS, w.Actor, w.NowMs-1)
		return true, nil
	}
	if err := n.Update(ctx, 0, []byte("c"), expire); err != nil {
		t.Fatal(err)
	}
	o, err = n.Read(ctx, 0, []byte("c"))
	if err != nil || o.Kind(n.NowMs()) != crdt.KindNone {
		t.Fatalf("expired key reads as %v (%v)", o.Kind(n.NowMs()), err)
	}
	// A write to an expired key starts from nothing.
	if err := n.Update(ctx, 0, []byte("c"), incr(1)); err != nil {
		t.Fatal(err)
	}
	if o, _ = n.Read(ctx, 0, []byte("c")); counterOf(t, o) != "1" {
		t.Fatalf("INCR after expiry gives %s, want 1", counterOf(t, o))
	}
}

func TestReplicatesToPreferenceList(t *testing.T) {
	_, nodes := testCluster(t, 5, DefaultKeyspace(), fastHandoff)
	ctx := context.Background()
	for i := range 20 {
		if err := nodes[i%5].Update(ctx, 0, []byte("k"), incr(1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range nodes {
		o, err := n.Read(ctx, 0, []byte("k"))
		if err != nil || counterOf(t, o) != "20" {
			t.Fatalf("node %d reads %s (%v)", n.ID(), counterOf(t, o), err)
		}
	}
	// The three preferred nodes hold the key as replicas.
	slots, _ := nodes[0].plan(0, []byte("k"))
	var pref []*Node
	for _, s := range slots {
		pref = append(pref, nodes[s.pref-1])
	}
	replicasAgree(t, pref, "k", func(o *crdt.Object) error {
		if v := counterOf(t, o); v != "20" {
			return fmt.Errorf("holds %q", v)
		}
		return nil
	})
}

func TestHintedHandoff(t *testing.T) {
	f, nodes := testCluster(t, 3, DefaultKeyspace(), fastHandoff)
	ctx := context.Background()
	f.setDown(3, true)
	for i := range 10 {
		if err := nodes[i%2].Update(ctx, 0, []byte("k"), incr(1)); err != nil {
			t.Fatal(err)
		}
	}
	// The down node's slot goes to a fallback after the quorum, in the
	// background.
	eventually(t, "hints for the down node", func() error {
		hints := 0
		for _, n := range nodes[:2] {
			hs, err := n.cfg.Local.Hints(10)
			if err != nil {
				return err
			}
			for _, h := range hs {
				if h.Target != 3 {
					return fmt.Errorf("hint for node %d", h.Target)
				}
			}
			hints += len(hs)
		}
		if hints == 0 {
			return fmt.Errorf("no hint held for the down node")
		}
		return nil
	})
	if o, _ := nodes[2].cfg.Local.Get(0, []byte("k")); o.Str.Live() {
		t.Fatal("down node got the write")
	}
	f.setDown(3, false)
	replicasAgree(t, nodes, "k", func(o *crdt.Object) error {
		if v := counterOf(t, o); v != "10" {
			return fmt.Errorf("holds %q", v)
		}
		return nil
	})
	eventually(t, "hints dropped after handoff", func() error {
		for _, n := range nodes {
			if hs, _ := n.cfg.Local.Hints(10); len(hs) > 0 {
				return fmt.Errorf("node %d holds %d hints", n.ID(), len(hs))
			}
		}
		return nil
	})
}

func TestPartitionBothSidesWriteAndConverge(t *testing.T) {
	_, nodes := testCluster(t, 3, DefaultKeyspace(), fastHandoff)
	ctx := context.Background()
	cut := func(from, to uint64) bool { return from == 3 || to == 3 }
	for _, n := range nodes {
		n.SetFault(cut)
	}
	want := 0
	for i := range 30 {
		n := nodes[i%3]
		if err := n.Update(ctx, 0, []byte("c"), incr(1)); err != nil {
			t.Fatalf("INCR on node %d during the partition: %v", n.ID(), err)
		}
		want++
		if err := n.Update(ctx, 0, []byte("s"), sadd(fmt.Sprint("m", i))); err != nil {
			t.Fatalf("SADD on node %d during the partition: %v", n.ID(), err)
		}
	}
	// The isolated node sees only its own increments meanwhile.
	if o, _ := nodes[2].Read(ctx, 0, []byte("c")); counterOf(t, o) != "10" {
		t.Fatalf("isolated node reads %s, want its own 10", counterOf(t, o))
	}
	for _, n := range nodes {
		n.SetFault(nil)
	}
	replicasAgree(t, nodes, "c", func(o *crdt.Object) error {
		if v := counterOf(t, o); v != fmt.Sprint(want) {
			return fmt.Errorf("counter %q, want %d", v, want)
		}
		return nil
	})
	replicasAgree(t, nodes, "s", func(o *crdt.Object) error {
		if o.Set.Len() != 30 {
			return fmt.Errorf("set of %d, want 30", o.Set.Len())
		}
		return nil
	})
}

func TestReadRepair(t *testing.T) {
	_, nodes := testCluster(t, 3, Keyspace{N: 3, R: 3, W: 1}, time.Hour /* no handoff */)
	ctx := context.Background()
	// W=1: node 1 acknowledges alone; cut node 3 so it stays stale and
	// no hint is made for it (its slot is just failing, and W is met).
	nodes[0].SetFault(func(_, to uint64) bool { return to == 3 })
	if err := nodes[0].Update(ctx, 0, []byte("k"), incr(5)); err != nil {
		t.Fatal(err)
	}
	// The failed slot ends as a hint, after the quorum: lift the cut only
	// then, or the late call could cross it.
	eventually(t, "a hint for node 3", func() error {
		for _, n := range nodes {
			if hs, _ := n.cfg.Local.Hints(10); len(hs) > 0 {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	nodes[0].SetFault(nil)
	// Drop whatever hint the failing slot left, to see repair alone.
	for _, n := range nodes {
		hs, _ := n.cfg.Local.Hints(10)
		for _, h := range hs {
			if err := n.cfg.Local.DropHint(h); err != nil {
				t.Fatal(err)
			}
		}
	}
	if o, _ := nodes[2].cfg.Local.Get(0, []byte("k")); o.Str.Live() {
		t.Fatal("node 3 got the write through the cut")
	}
	if o, err := nodes[1].Read(ctx, 0, []byte("k")); err != nil || counterOf(t, o) != "5" {
		t.Fatalf("read %v %v", counterOf(t, o), err)
	}
	replicasAgree(t, nodes, "k", func(o *crdt.Object) error {
		if v := counterOf(t, o); v != "5" {
			return fmt.Errorf("holds %q", v)
		}
		return nil
	})
}

func TestScanAcrossNodes(t *testing.T) {
	_, nodes := testCluster(t, 5, DefaultKeyspace(), fastHandoff)
	ctx := context.Background()
	var want []string
	for i := range 40 {
		k := fmt.Sprintf("key%02d", i)
		want = append(want, k)
		if err := nodes[i%5].Update(ctx, 0, []byte(k), sadd("x")); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	var start []byte
	for pages := 0; ; pages++ {
		if pages > 100 {
			t.Fatal("scan does not end")
		}
		keys, next, err := nodes[0].Scan(ctx, 0, start, 7)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			got = append(got, string(k))
		}
		if next == nil {
			break
		}
		start = next
	}
	if !slices.Equal(got, want) {
		t.Fatalf("scan found %v", got)
	}
}

// TestHintsCarryWritesOfFallbacks: a write taken while every preferred
// node of its key is down lives only on fallbacks (as hints, and as the
// coordinator's own copy, which no anti-entropy exchange covers: the
// coordinator is not preferred). Handoff brings it to the preferred
// nodes; with UnsafeDropHints nothing does, which is what the chaos
// harness's AP check must catch.
func TestHintsCarryWritesOfFallbacks(t *testing.T) {
	for _, drop := range []bool{false, true} {
		t.Run(fmt.Sprintf("drop=%v", drop), func(t *testing.T) {
			f, nodes := testCluster(t, 5, DefaultKeyspace(), fastHandoff, func(c *Config) { c.UnsafeDropHints = drop })
			ctx := context.Background()
			key := []byte("k")
			slots, _ := nodes[0].plan(0, key)
			var pref, others []*Node
			for _, n := range nodes {
				if slices.ContainsFunc(slots, func(s slot) bool { return s.pref == n.ID() }) {
					pref = append(pref, n)
				} else {
					others = append(others, n)
				}
			}
			for _, n := range pref {
				f.setDown(n.ID(), true)
			}
			for i := range 4 {
				if err := others[i%2].Update(ctx, 0, key, incr(1)); err != nil {
					t.Fatal(err)
				}
			}
			for _, n := range pref {
				f.setDown(n.ID(), false)
			}
			for _, n := range nodes {
				if _, err := n.AntiEntropy(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if !drop {
				replicasAgree(t, pref, "k", func(o *crdt.Object) error {
					if v := counterOf(t, o); v != "4" {
						return fmt.Errorf("holds %q", v)
					}
					return nil
				})
				for _, n := range pref {
					r, err := n.Replica(0, key)
					if err != nil || !r.Preferred || counterOf(t, r.Object) != "4" {
						t.Fatalf("node %d: Replica = %+v, %v", n.ID(), r, err)
					}
				}
				eventually(t, "hints handed off", func() error {
					for _, n := range others {
						if r, err := n.Replica(0, key); err != nil || r.Hints > 0 || r.Preferred {
							return fmt.Errorf("node %d: Replica = %+v, %v", n.ID(), r, err)
						}
					}
					return nil
				})
				return
			}
			time.Sleep(10 * fastHandoff)
			for _, n := range pref {
				if r, err := n.Replica(0, key); err != nil || r.Object.Str.Live() {
					t.Fatalf("node %d holds %q with hints dropped (%v)", n.ID(), counterOf(t, r.Object), err)
				}
			}
			// The coordinators kept their own copies.
			for _, n := range others {
				if r, _ := n.Replica(0, key); r.Hints != 0 || counterOf(t, r.Object) == "" {
					t.Fatalf("node %d: Replica = %+v", n.ID(), r)
				}
			}
		})
	}
}

// TestSuspectsPassedOver: a node cut off from the others before its
// membership notices (the others show alive but never answer) pays the
// RPC timeout once per unreachable node, not on every write: the nodes
// whose call failed are passed over, their slots filled by fallbacks, and
// the writes handed off once they answer again.
func TestSuspectsPassedOver(t *testing.T) {
	const rpcTimeout = 200 * time.Millisecond
	f, nodes := testCluster(t, 5, DefaultKeyspace(), fastHandoff, func(c *Config) { c.RPCTimeout = rpcTimeout })
	ctx := context.Background()
	cutoff := nodes[0]
	for _, n := range nodes[1:] {
		f.setHung(n.ID(), true)
	}
	const writes = 20
	start := time.Now()
	for i := range writes {
		if err := cutoff.Update(ctx, 0, []byte(fmt.Sprint("k", i%4)), incr(1)); err != nil {
			t.Fatal(err)
		}
	}
	// The first write waits for the timeouts of its read (a preferred
	// node, then a spare), then of its slots; the others find every node
	// suspected. Without the suspects every write would take as long.
	if d := time.Since(start); d > 8*rpcTimeout {
		t.Fatalf("%d writes on a cut-off node took %v, want under %v", writes, d, 8*rpcTimeout)
	}
	for _, n := range nodes[1:] {
		f.setHung(n.ID(), false)
	}
	for k := range 4 {
		key := fmt.Sprint("k", k)
		slots, _ := cutoff.plan(0, []byte(key))
		var pref []*Node
		for _, s := range slots {
			pref = append(pref, nodes[s.pref-1])
		}
		replicasAgree(t, pref, key, func(o *crdt.Object) error {
			if v := counterOf(t, o); v != fmt.Sprint(writes/4) {
				return fmt.Errorf("holds %q", v)
			}
			return nil
		})
	}
}
