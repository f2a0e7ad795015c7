package crdt

import (
	"errors"
	"math"
	"slices"
)

// ErrOverflow is returned by an increment whose result does not fit.
var ErrOverflow = errors.New("crdt: increment or decrement would overflow")

// entry is one actor's contribution: its running total after its Seq-th
// update. Invariant: Seq > 0 for a stored entry.
type entry struct {
	Seq   uint64
	Total int64
}

// wins reports whether o replaces e in a merge: the later update of the
// same actor (the greater Seq). Equal Seqs come from the same update;
// comparing totals keeps Merge commutative on corrupt input.
func (e entry) wins(o entry) bool {
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
type counter struct {
	entries map[uint64]entry
	resets  map[uint64]entry
}

// Counter is an integer PN-counter with observed resets.
type Counter struct{ c counter }

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
func (c *counter) contribution(a uint64) int64 {
	return c.entries[a].Total - c.resets[a].Total
}

// live reports whether some update is not reset.
func (c *counter) live() bool {
	for a, e := range c.entries {
		if e.Seq > c.resets[a].Seq {
			return true
		}
	}
	return false
}

func (c *counter) add(actor uint64, delta int64) {
	if c.entries == nil {
		c.entries = map[uint64]entry{}
	}
	e := c.entries[actor]
	c.entries[actor] = entry{Seq: e.Seq + 1, Total: e.Total + delta}
}

// reset records every entry as observed: the value drops to zero, and only
// updates this state has not seen count again after a merge.
func (c *counter) reset() { observeAll(&c.resets, c.entries) }

// observeAll copies every entry into resets: what a counter's reset
// records (an entry is never changed in place, so sharing is safe).
func observeAll[E any](resets *map[uint64]E, entries map[uint64]E) {
	if len(entries) == 0 {
		return
	}
	if *resets == nil {
		*resets = map[uint64]E{}
	}
	for a, e := range entries {
		(*resets)[a] = e
	}
}

// mergeEntries keeps, actor by actor, the entry of dst or src that wins
// (wins(e, o): o replaces e). Entries are never changed in place: sharing
// src's is safe.
func mergeEntries[E any](dst *map[uint64]E, src map[uint64]E, wins func(e, o E) bool) {
	if len(src) == 0 {
		return
	}
	if *dst == nil {
		*dst = map[uint64]E{}
	}
	for a, o := range src {
		if e, ok := (*dst)[a]; !ok || wins(e, o) {
			(*dst)[a] = o
		}
	}
}

func (c *counter) merge(o *counter) {
	mergeEntries(&c.entries, o.entries, entry.wins)
	mergeEntries(&c.resets, o.resets, entry.wins)
}

func (c *counter) clone() counter {
	var out counter
	mergeEntries(&out.entries, c.entries, entry.wins)
	mergeEntries(&out.resets, c.resets, entry.wins)
	return out
}

func encodeEntries(e *encoder, m map[uint64]entry, put func(int64)) {
	e.uvarint(uint64(len(m)))
	for _, a := range sortedActors(m) {
		e.uvarint(a)
		e.uvarint(m[a].Seq)
		put(m[a].Total)
	}
}

func decodeEntries(d *decoder, get func() int64) map[uint64]entry {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[uint64]entry, n)
	var prev uint64
	for i := 0; i < n && d.err == nil; i++ {
		a := d.uvarint()
		en := entry{Seq: d.uvarint(), Total: get()}
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

func (c *counter) encode(e *encoder, put func(int64)) {
	encodeEntries(e, c.entries, put)
	encodeEntries(e, c.resets, put)
}

func (c *counter) decode(d *decoder, get func() int64) {
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
