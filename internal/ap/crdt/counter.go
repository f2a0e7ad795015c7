package crdt

import (
	"errors"
	"math"
	"slices"
)

// ErrOverflow is returned by an increment whose result does not fit.
var ErrOverflow = errors.New("crdt: increment or decrement would overflow")

// number is what a counter counts.
type number interface{ int64 | float64 }

// entry is one actor's contribution: its running total after its Seq-th
// update. Invariant: Seq > 0 for a stored entry.
type entry[T number] struct {
	Seq   uint64
	Total T
}

// wins reports whether o replaces e in a merge: the later update of the
// same actor (the greater Seq). Equal Seqs come from the same update;
// comparing totals keeps Merge commutative on corrupt input.
func (e entry[T]) wins(o entry[T]) bool {
	if e.Seq != o.Seq {
		return o.Seq > e.Seq
	}
	return o.Total > e.Total
}

// counter is a PN-counter with observed resets. Its value is the sum over
// actors of entries[a].Total - resets[a].Total.
//
// Invariant: resets[a].Seq <= entries[a].Seq (a reset is a copy of entries
// it observed).
type counter[T number] struct {
	entries map[uint64]entry[T]
	resets  map[uint64]entry[T]
}

// Counter is an integer PN-counter with observed resets.
type Counter struct{ c counter[int64] }

// FloatCounter is a float PN-counter with observed resets.
type FloatCounter struct{ c counter[float64] }

// sortedActors returns the keys of m in order, so that sums and encodings
// are deterministic.
func sortedActors[V any](m map[uint64]V) []uint64 {
	out := make([]uint64, 0, len(m))
	for a := range m {
		out = append(out, a)
	}
	slices.Sort(out)
	return out
}

// contribution is actor a's part of the value.
func (c *counter[T]) contribution(a uint64) T {
	return c.entries[a].Total - c.resets[a].Total
}

// live reports whether some update is not reset.
func (c *counter[T]) live() bool {
	for a, e := range c.entries {
		if e.Seq > c.resets[a].Seq {
			return true
		}
	}
	return false
}

func (c *counter[T]) add(actor uint64, delta T) {
	if c.entries == nil {
		c.entries = map[uint64]entry[T]{}
	}
	e := c.entries[actor]
	c.entries[actor] = entry[T]{Seq: e.Seq + 1, Total: e.Total + delta}
}

// reset records every entry as observed: the value drops to zero, and only
// updates this state has not seen count again after a merge.
func (c *counter[T]) reset() {
	if len(c.entries) == 0 {
		return
	}
	if c.resets == nil {
		c.resets = map[uint64]entry[T]{}
	}
	for a, e := range c.entries {
		c.resets[a] = e
	}
}

func mergeEntries[T number](dst *map[uint64]entry[T], src map[uint64]entry[T]) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = map[uint64]entry[T]{}
	}
	for a, o := range src {
		if e, ok := (*dst)[a]; !ok || e.wins(o) {
			(*dst)[a] = o
		}
	}
}

func (c *counter[T]) merge(o *counter[T]) {
	mergeEntries(&c.entries, o.entries)
	mergeEntries(&c.resets, o.resets)
}

func (c *counter[T]) clone() counter[T] {
	var out counter[T]
	mergeEntries(&out.entries, c.entries)
	mergeEntries(&out.resets, c.resets)
	return out
}

func encodeEntries[T number](e *encoder, m map[uint64]entry[T], put func(T)) {
	e.uvarint(uint64(len(m)))
	for _, a := range sortedActors(m) {
		e.uvarint(a)
		e.uvarint(m[a].Seq)
		put(m[a].Total)
	}
}

func decodeEntries[T number](d *decoder, get func() T) map[uint64]entry[T] {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[uint64]entry[T], n)
	var prev uint64
	for i := 0; i < n && d.err == nil; i++ {
		a := d.uvarint()
		en := entry[T]{Seq: d.uvarint(), Total: get()}
		if i > 0 && a <= prev {
			d.fail("actors out of order")
		}
		if en.Seq == 0 {
			d.fail("entry with sequence 0")
		}
		prev = a
		m[a] = en
	}
	return m
}

func (c *counter[T]) encode(e *encoder, put func(T)) {
	encodeEntries(e, c.entries, put)
	encodeEntries(e, c.resets, put)
}

func (c *counter[T]) decode(d *decoder, get func() T) {
	c.entries = decodeEntries(d, get)
	c.resets = decodeEntries(d, get)
	for a, r := range c.resets {
		if r.Seq > c.entries[a].Seq {
			d.fail("reset of actor %d ahead of its entry", a)
		}
	}
}

// Value is the counter's value. ok is false if the sum overflows int64
// (actors' totals that overflow together: only reachable by concurrent
// increments near the limit).
func (c *Counter) Value() (v int64, ok bool) {
	for _, a := range sortedActors(c.c.entries) {
		p := c.c.contribution(a)
		if (p > 0 && v > math.MaxInt64-p) || (p < 0 && v < math.MinInt64-p) {
			return 0, false
		}
		v += p
	}
	return v, true
}

// Live reports whether some increment was not reset.
func (c *Counter) Live() bool { return c.c.live() }

// Add adds delta as actor's update. base is added to the value for the
// overflow check only (the string a counter is added to); it returns
// ErrOverflow, and changes nothing, if base+value+delta or the actor's own
// total would overflow.
func (c *Counter) Add(actor uint64, base, delta int64) error {
	v, ok := c.Value()
	if !ok || !addFits(base, v) || !addFits(base+v, delta) || !addFits(c.c.entries[actor].Total, delta) {
		return ErrOverflow
	}
	c.c.add(actor, delta)
	return nil
}

func addFits(a, b int64) bool {
	return !((b > 0 && a > math.MaxInt64-b) || (b < 0 && a < math.MinInt64-b))
}

// Reset removes every increment this state holds; increments merged in
// later that it did not hold still count.
func (c *Counter) Reset() { c.c.reset() }

// Merge merges o into c.
func (c *Counter) Merge(o *Counter) { c.c.merge(&o.c) }

// Clone returns a deep copy.
func (c *Counter) Clone() Counter { return Counter{c: c.c.clone()} }

func (c *Counter) encode(e *encoder) { c.c.encode(e, e.varint) }
func (c *Counter) decode(d *decoder) { c.c.decode(d, d.varint) }

// Value is the counter's value: the contributions summed in actor order,
// so that every replica computes the same float.
func (c *FloatCounter) Value() float64 {
	var v float64
	for _, a := range sortedActors(c.c.entries) {
		v += c.c.contribution(a)
	}
	return v
}

// Live reports whether some increment was not reset.
func (c *FloatCounter) Live() bool { return c.c.live() }

// Add adds delta as actor's update. It returns ErrOverflow, and changes
// nothing, if base+value+delta or the actor's own total is not finite.
func (c *FloatCounter) Add(actor uint64, base, delta float64) error {
	t := c.c.entries[actor].Total + delta
	if r := base + c.Value() + delta; math.IsInf(r, 0) || math.IsNaN(r) || math.IsInf(t, 0) || math.IsNaN(t) {
		return ErrOverflow
	}
	c.c.add(actor, delta)
	return nil
}

// Reset removes every increment this state holds.
func (c *FloatCounter) Reset() { c.c.reset() }

// Merge merges o into c.
func (c *FloatCounter) Merge(o *FloatCounter) { c.c.merge(&o.c) }

// Clone returns a deep copy.
func (c *FloatCounter) Clone() FloatCounter { return FloatCounter{c: c.c.clone()} }

func (c *FloatCounter) encode(e *encoder) { c.c.encode(e, e.float) }
func (c *FloatCounter) decode(d *decoder) { c.c.decode(d, d.float) }
