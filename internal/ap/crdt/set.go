package crdt

import (
	"slices"
	"sort"
)

// Dot names one update: the Seq-th dot minted by Actor.
type Dot struct {
	Actor, Seq uint64
}

// VV is a version vector: for each actor, the highest sequence seen. It is
// a causal context: the dots (a, 1..VV[a]) have all been seen. States ship
// whole and every actor mints from a state holding all its earlier dots
// (package rule 1), so a context never has gaps and needs no dot cloud.
type VV map[uint64]uint64

// Has reports whether the context has seen d.
func (v VV) Has(d Dot) bool { return v[d.Actor] >= d.Seq }

func (v *VV) merge(o VV) {
	if len(o) == 0 {
		return
	}
	if *v == nil {
		*v = VV{}
	}
	for a, s := range o {
		if s > (*v)[a] {
			(*v)[a] = s
		}
	}
}

// Set is an add-wins observed-remove set of byte strings.
//
// Invariants: every element has at least one dot; an element's dots are
// sorted, distinct and all in ctx.
type Set struct {
	ctx   VV
	elems map[string][]Dot
}

// Add adds member as actor's update: it mints a new dot and replaces the
// member's observed dots with it. It reports whether member was absent.
func (s *Set) Add(actor uint64, member string) bool {
	if s.ctx == nil {
		s.ctx = VV{}
	}
	if s.elems == nil {
		s.elems = map[string][]Dot{}
	}
	_, had := s.elems[member]
	s.ctx[actor]++
	s.elems[member] = []Dot{{Actor: actor, Seq: s.ctx[actor]}}
	return !had
}

// Remove removes member's observed dots. It reports whether member was
// present.
func (s *Set) Remove(member string) bool {
	_, had := s.elems[member]
	delete(s.elems, member)
	return had
}

// Clear removes every member this state holds (concurrent adds survive).
func (s *Set) Clear() { s.elems = nil }

// Has reports whether member is in the set.
func (s *Set) Has(member string) bool { _, ok := s.elems[member]; return ok }

// Len is the number of members.
func (s *Set) Len() int { return len(s.elems) }

// Members returns the members in byte order.
func (s *Set) Members() []string {
	out := make([]string, 0, len(s.elems))
	for m := range s.elems {
		out = append(out, m)
	}
	sort.Strings(out)
	return out
}

// Merge merges o into s: a dot survives if both sides hold it, or one side
// holds it and the other has not seen it (so a remove beats only the adds
// it observed, and an add concurrent with a remove wins).
func (s *Set) Merge(o *Set) {
	out := map[string][]Dot{}
	keep := func(m string, mine, theirs []Dot, theirCtx VV) {
		for _, d := range mine {
			if slices.Contains(theirs, d) || !theirCtx.Has(d) {
				out[m] = append(out[m], d)
			}
		}
	}
	for m, ds := range s.elems {
		keep(m, ds, o.elems[m], o.ctx)
	}
	for m, ds := range o.elems {
		mine := s.elems[m]
		for _, d := range ds {
			if !slices.Contains(mine, d) && !s.ctx.Has(d) {
				out[m] = append(out[m], d)
			}
		}
	}
	for m, ds := range out {
		slices.SortFunc(ds, compareDots)
		out[m] = slices.Compact(ds)
	}
	if len(out) == 0 {
		out = nil
	}
	s.elems = out
	s.ctx.merge(o.ctx)
}

func compareDots(a, b Dot) int {
	if a.Actor != b.Actor {
		if a.Actor < b.Actor {
			return -1
		}
		return 1
	}
	switch {
	case a.Seq < b.Seq:
		return -1
	case a.Seq > b.Seq:
		return 1
	}
	return 0
}

// Clone returns a deep copy.
func (s *Set) Clone() Set {
	var out Set
	out.ctx.merge(s.ctx)
	if len(s.elems) > 0 {
		out.elems = make(map[string][]Dot, len(s.elems))
		for m, ds := range s.elems {
			out.elems[m] = slices.Clone(ds)
		}
	}
	return out
}

func (s *Set) encode(e *encoder) {
	e.uvarint(uint64(len(s.ctx)))
	for _, a := range sortedActors(s.ctx) {
		e.uvarint(a)
		e.uvarint(s.ctx[a])
	}
	members := s.Members()
	e.uvarint(uint64(len(members)))
	for _, m := range members {
		e.bytes([]byte(m))
		ds := s.elems[m]
		e.uvarint(uint64(len(ds)))
		for _, d := range ds {
			e.uvarint(d.Actor)
			e.uvarint(d.Seq)
		}
	}
}

func (s *Set) decode(d *decoder) {
	n := d.count()
	if n > 0 {
		s.ctx = make(VV, n)
	}
	var prev uint64
	for i := 0; i < n && d.err == nil; i++ {
		a, seq := d.uvarint(), d.uvarint()
		if (i > 0 && a <= prev) || seq == 0 {
			d.fail("bad set context")
		}
		prev = a
		s.ctx[a] = seq
	}
	n = d.count()
	if n > 0 {
		s.elems = make(map[string][]Dot, n)
	}
	var prevM string
	for i := 0; i < n && d.err == nil; i++ {
		m := string(d.bytes())
		if i > 0 && m <= prevM {
			d.fail("set members out of order")
		}
		prevM = m
		k := d.count()
		if k == 0 {
			d.fail("set member without a dot")
		}
		ds := make([]Dot, 0, k)
		for j := 0; j < k && d.err == nil; j++ {
			dot := Dot{Actor: d.uvarint(), Seq: d.uvarint()}
			if (j > 0 && compareDots(ds[j-1], dot) >= 0) || dot.Seq == 0 || !s.ctx.Has(dot) {
				d.fail("bad dot %v", dot)
			}
			ds = append(ds, dot)
		}
		s.elems[m] = ds
	}
}
