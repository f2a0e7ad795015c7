package crdt

import (
	"bytes"
	"fmt"
	"math/big"
	"math/rand/v2"
	"slices"
	"testing"
)

// replica is one simulated node: its actor id, state, clock and the causal
// history the test model keeps beside the CRDT (which add events it has
// seen).
type replica struct {
	actor uint64
	obj   *Object
	wall  int64
	seen  map[int]bool
}

// shipped is a state in flight: a snapshot of a replica's object and of
// its model history.
type shipped struct {
	enc  []byte
	seen map[int]bool
}

func (r *replica) ts() HLC {
	r.wall++
	return HLC{Wall: r.wall}
}

func (r *replica) snapshot() shipped {
	return shipped{enc: r.obj.Encode(), seen: clone(r.seen)}
}

func clone(m map[int]bool) map[int]bool {
	out := make(map[int]bool, len(m))
	for k := range m {
		out[k] = true
	}
	return out
}

func (r *replica) receive(t *testing.T, s shipped) {
	t.Helper()
	o, err := Decode(s.enc)
	if err != nil {
		t.Fatalf("decode of a shipped state: %v", err)
	}
	r.obj.Merge(o)
	if m := o.MaxTS(); m.Wall > r.wall {
		r.wall = m.Wall
	}
	for k := range s.seen {
		r.seen[k] = true
	}
}

// model is what the history says the converged state must hold.
type model struct {
	sum     int64
	adds    map[int]string // add event -> member
	removed map[int]bool   // add events some remove observed
	nextAdd int
}

// history runs ops random operations over nReplicas replicas, shipping
// snapshots at random (with duplicates, in any order), then delivers every
// state ever shipped plus every final state to every replica in a random
// order, and returns the replicas and the model.
func history(t *testing.T, rng *rand.Rand, nReplicas, ops int, counterAndSetOnly bool) ([]*replica, *model) {
	t.Helper()
	rs := make([]*replica, nReplicas)
	for i := range rs {
		rs[i] = &replica{actor: uint64(i + 1), obj: &Object{}, seen: map[int]bool{}}
	}
	m := &model{adds: map[int]string{}, removed: map[int]bool{}}
	var inflight []shipped
	members := []string{"a", "b", "c", "d"}
	for range ops {
		r := rs[rng.IntN(nReplicas)]
		switch op := rng.IntN(12); {
		case op < 3:
			d := rng.Int64N(21) - 10
			if _, err := r.obj.Str.IncrBy(r.actor, d); err != nil {
				if counterAndSetOnly {
					t.Fatalf("incrby: %v", err)
				}
				continue // a float or text value from a mixed op
			}
			r.obj.Touch(KindString, r.ts(), r.actor)
			m.sum += d
		case op < 6:
			mem := members[rng.IntN(len(members))]
			r.obj.Set.Add(r.actor, mem)
			r.obj.Touch(KindSet, r.ts(), r.actor)
			id := m.nextAdd
			m.nextAdd++
			m.adds[id] = mem
			r.seen[id] = true
		case op < 8:
			mem := members[rng.IntN(len(members))]
			r.obj.Set.Remove(mem)
			for id := range r.seen {
				if m.adds[id] == mem {
					m.removed[id] = true
				}
			}
		case op < 10:
			inflight = append(inflight, r.snapshot())
		default:
			if len(inflight) > 0 {
				r.receive(t, inflight[rng.IntN(len(inflight))])
			}
			if !counterAndSetOnly {
				mixedOp(rng, r)
			}
		}
	}
	for _, r := range rs {
		inflight = append(inflight, r.snapshot())
	}
	for _, r := range rs {
		order := rng.Perm(len(inflight))
		// Duplicates: some states arrive twice.
		order = append(order, order[:len(order)/3]...)
		for _, i := range order {
			r.receive(t, inflight[i])
		}
	}
	return rs, m
}

// mixedOp is any other operation, for the convergence check.
func mixedOp(rng *rand.Rand, r *replica) {
	ts := r.ts()
	switch rng.IntN(6) {
	case 0:
		r.obj.Str.Set(ts, r.actor, []byte(fmt.Sprint(rng.IntN(100))))
		r.obj.Touch(KindString, ts, r.actor)
	case 1:
		r.obj.Delete(ts, r.actor)
	case 2:
		r.obj.Hash.Field("f").Set(ts, r.actor, []byte("v"))
		r.obj.Touch(KindHash, ts, r.actor)
	case 3:
		_, _ = r.obj.Hash.Field("n").IncrBy(r.actor, 3)
		r.obj.Touch(KindHash, ts, r.actor)
	case 4:
		r.obj.Hash.Delete(ts, r.actor, "f")
	case 5:
		_, _ = r.obj.Str.IncrByFloat(r.actor, dec("0.1"))
		r.obj.Touch(KindString, ts, r.actor)
	}
}

func TestConvergenceToExpectedValues(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		rs, m := history(t, rng, 2+rng.IntN(4), 10+rng.IntN(150), true /* counterAndSetOnly */)
		want := rs[0].obj.Encode()
		for _, r := range rs[1:] {
			if !bytes.Equal(r.obj.Encode(), want) {
				t.Fatalf("seed %d: replicas %d and %d differ", seed, rs[0].actor, r.actor)
			}
		}
		got, _ := rs[0].obj.Str.Int.Value()
		if got != m.sum {
			t.Fatalf("seed %d: counter %d, want the sum of increments %d", seed, got, m.sum)
		}
		var wantSet []string
		for id, mem := range m.adds {
			if !m.removed[id] && !slices.Contains(wantSet, mem) {
				wantSet = append(wantSet, mem)
			}
		}
		slices.Sort(wantSet)
		if gotSet := rs[0].obj.Set.Members(); !slices.Equal(gotSet, wantSet) {
			t.Fatalf("seed %d: set %v, want the adds not causally removed %v", seed, gotSet, wantSet)
		}
	}
}

func TestConvergenceMixed(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 11))
		rs, _ := history(t, rng, 2+rng.IntN(4), 10+rng.IntN(150), false /* counterAndSetOnly */)
		want := rs[0].obj.Encode()
		for _, r := range rs[1:] {
			if !bytes.Equal(r.obj.Encode(), want) {
				t.Fatalf("seed %d: replicas %d and %d differ", seed, rs[0].actor, r.actor)
			}
			a, b := rs[0].obj.Str.Get()
			c, d := r.obj.Str.Get()
			if !bytes.Equal(a, c) || b != d || rs[0].obj.Kind(0) != r.obj.Kind(0) {
				t.Fatalf("seed %d: equal states read differently", seed)
			}
		}
	}
}

// randomStates returns states reached by independent histories.
func randomStates(t *testing.T, rng *rand.Rand, n int) []*Object {
	rs, _ := history(t, rng, n, 40, false /* counterAndSetOnly */)
	out := make([]*Object, n)
	for i, r := range rs {
		// The replicas converged; private ops after that make their
		// states differ, with shared history underneath.
		for range 5 {
			mixedOp(rng, r)
			r.obj.Set.Add(r.actor, fmt.Sprint(rng.IntN(3)))
			_, _ = r.obj.Str.IncrBy(r.actor, 1)
		}
		out[i] = r.obj.Clone()
	}
	return out
}

func merged(a, b *Object) *Object {
	c := a.Clone()
	c.Merge(b)
	return c
}

func TestMergeLaws(t *testing.T) {
	for seed := range uint64(200) {
		rng := rand.New(rand.NewPCG(seed, 3))
		s := randomStates(t, rng, 3)
		a, b, c := s[0], s[1], s[2]
		if !bytes.Equal(merged(a, a).Encode(), a.Encode()) {
			t.Fatalf("seed %d: merge is not idempotent", seed)
		}
		if !bytes.Equal(merged(a, b).Encode(), merged(b, a).Encode()) {
			t.Fatalf("seed %d: merge is not commutative", seed)
		}
		if !bytes.Equal(merged(merged(a, b), c).Encode(), merged(a, merged(b, c)).Encode()) {
			t.Fatalf("seed %d: merge is not associative", seed)
		}
		// Merging must not change its argument.
		before := b.Encode()
		merged(a, b)
		if !bytes.Equal(before, b.Encode()) {
			t.Fatalf("seed %d: merge changed its argument", seed)
		}
	}
}

func TestAddWinsOverConcurrentRemove(t *testing.T) {
	a, b := &Object{}, &Object{}
	a.Set.Add(1, "x")
	b.Merge(a)
	b.Set.Remove("x") // observed the add
	a.Set.Add(1, "x") // concurrent re-add
	a.Merge(b)
	if !a.Set.Has("x") {
		t.Fatal("concurrent add lost to a remove")
	}
	c := &Object{}
	c.Set.Add(2, "y")
	d := c.Clone()
	d.Set.Remove("y")
	c.Merge(d)
	if c.Set.Has("y") {
		t.Fatal("an observed remove did not remove")
	}
}

func TestSetResetsObservedIncrementsOnly(t *testing.T) {
	a, b := &Str{}, &Str{}
	if _, err := a.IncrBy(1, 5); err != nil {
		t.Fatal(err)
	}
	b.Merge(a)
	b.Set(HLC{Wall: 10}, 2, []byte("100"))    // saw the 5
	if _, err := a.IncrBy(1, 2); err != nil { // concurrent with the SET
		t.Fatal(err)
	}
	a.Merge(b)
	v, _ := a.Get()
	if string(v) != "102" {
		t.Fatalf("got %q, want 102: SET resets what it saw, the concurrent +2 stays", v)
	}
}

func TestIncrErrors(t *testing.T) {
	s := &Str{}
	s.Set(HLC{Wall: 1}, 1, []byte("9223372036854775806"))
	if v, err := s.IncrBy(1, 1); err != nil || v != 1<<63-1 {
		t.Fatalf("got %d %v", v, err)
	}
	if _, err := s.IncrBy(1, 1); err != ErrOverflow {
		t.Fatalf("got %v, want overflow", err)
	}
	s.Set(HLC{Wall: 2}, 1, []byte("abc"))
	if _, err := s.IncrBy(1, 1); err != ErrNotInteger {
		t.Fatalf("got %v, want not an integer", err)
	}
	if _, err := s.IncrByFloat(1, dec("1")); err != ErrNotFloat {
		t.Fatalf("got %v, want not a float", err)
	}
	s.Set(HLC{Wall: 3}, 1, []byte("10.5"))
	if v, err := s.IncrByFloat(1, dec("0.1")); err != nil || string(v) != "10.6" {
		t.Fatalf("got %s %v", v, err)
	}
	if got, _ := s.Get(); string(got) != "10.6" {
		t.Fatalf("got %q", got)
	}
	if _, err := s.IncrBy(1, 1); err != ErrNotInteger {
		t.Fatalf("INCR of a float: %v", err)
	}
}

func dec(s string) *big.Rat {
	r, err := ParseDecimal(s)
	if err != nil {
		panic(err)
	}
	return r
}

func TestFloatCounterIsExact(t *testing.T) {
	a, b := &Str{}, &Str{}
	for range 3 {
		if _, err := a.IncrByFloat(1, dec("0.1")); err != nil {
			t.Fatal(err)
		}
	}
	if v, _ := a.Get(); string(v) != "0.3" {
		t.Fatalf("0.1 three times reads %s", v)
	}
	b.Merge(a)
	b.Delete(HLC{Wall: 1}, 2)                               // observed all three
	if _, err := a.IncrByFloat(1, dec("0.1")); err != nil { // concurrent
		t.Fatal(err)
	}
	a.Merge(b)
	if v, _ := a.Get(); string(v) != "0.1" {
		t.Fatalf("after a reset that saw 0.3 and a concurrent +0.1: %s", v)
	}
	if _, err := a.IncrByFloat(1, dec("1e308")); err != nil {
		t.Fatal(err)
	}
	if _, err := a.IncrByFloat(1, dec("1e308")); err != ErrOverflow {
		t.Fatalf("past float64's range: %v", err)
	}
	for _, bad := range []string{"", " 1", "inf", "nan", "1/2", "abc"} {
		if _, err := ParseDecimal(bad); err == nil {
			t.Errorf("ParseDecimal(%q) accepted", bad)
		}
	}
}

func TestKindAndExpiry(t *testing.T) {
	o := &Object{}
	if o.Kind(0) != KindNone {
		t.Fatal("empty object has a kind")
	}
	o.Set.Add(1, "m")
	o.Touch(KindSet, HLC{Wall: 1}, 1)
	p := &Object{}
	p.Str.Set(HLC{Wall: 2}, 2, []byte("v"))
	p.Touch(KindString, HLC{Wall: 2}, 2)
	o.Merge(p)
	if k := o.Kind(0); k != KindString {
		t.Fatalf("kind %v, want the newer string", k)
	}
	o.SetExpiry(HLC{Wall: 3}, 1, 1000)
	if o.Kind(999) != KindString || o.Kind(1000) != KindNone {
		t.Fatal("expiry not applied")
	}
	o.Persist(HLC{Wall: 4}, 1)
	if _, ok := o.ExpireAt(); ok {
		t.Fatal("persist kept the expiry")
	}
}

func TestHLC(t *testing.T) {
	now := int64(100)
	c := NewClock(func() int64 { return now })
	a := c.Now()
	b := c.Now()
	if !a.Less(b) {
		t.Fatal("clock did not advance within a tick")
	}
	c.Observe(HLC{Wall: 500, Logical: 3})
	if d := c.Now(); !(HLC{Wall: 500, Logical: 3}).Less(d) {
		t.Fatalf("clock %v is not past an observed timestamp", d)
	}
	now = 1000
	if d := c.Now(); d != (HLC{Wall: 1000}) {
		t.Fatalf("clock %v did not follow physical time", d)
	}
}

func TestDecodeRejects(t *testing.T) {
	o := &Object{}
	o.Set.Add(1, "x")
	b := o.Encode()
	for _, bad := range [][]byte{nil, {2}, b[:len(b)-1], append(slices.Clone(b), 0)} {
		if _, err := Decode(bad); err == nil {
			t.Fatalf("decoded %x", bad)
		}
	}
}

func FuzzDecode(f *testing.F) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 4 {
		r := &replica{actor: uint64(i + 1), obj: &Object{}, seen: map[int]bool{}}
		for range 10 {
			mixedOp(rng, r)
			r.obj.Set.Add(r.actor, fmt.Sprint(rng.IntN(3)))
			r.obj.SetExpiry(r.ts(), r.actor, 5)
		}
		f.Add(r.obj.Encode())
	}
	f.Add([]byte{EncodingVersion})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, err := Decode(b)
		if err != nil {
			return
		}
		enc := o.Encode()
		p, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoding does not decode: %v", err)
		}
		if !bytes.Equal(p.Encode(), enc) {
			t.Fatal("encoding is not stable")
		}
		// A decoded state merges with itself to itself.
		if !bytes.Equal(merged(o, p).Encode(), enc) {
			t.Fatal("decoded state is not idempotent under merge")
		}
		o.Kind(0)
		o.Str.Get()
	})
}
