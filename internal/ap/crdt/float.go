package crdt

import (
	"math"
	"math/big"
)

// maxRatBits bounds the numerator and denominator of a float counter's
// totals: a decimal increment of up to ~600 significant digits and
// exponents within float64's range fit.
const maxRatBits = 4096

// ratEntry is one actor's float contribution: its exact running total
// after its Seq-th update. Invariant: Seq > 0 and Total != nil.
type ratEntry struct {
	Seq   uint64
	Total *big.Rat
}

func (e ratEntry) wins(o ratEntry) bool {
	if e.Seq != o.Seq {
		return o.Seq > e.Seq
	}
	return o.Total.Cmp(e.Total) > 0
}

// FloatCounter is a PN-counter of decimal increments (INCRBYFLOAT) with
// observed resets, like Counter. It adds exactly, in rationals, and rounds
// to float64 only when read: a reset then removes exactly what it saw, and
// 0.1 added three times reads 0.3.
//
// Invariant: resets[a].Seq <= entries[a].Seq.
type FloatCounter struct {
	entries map[uint64]ratEntry
	resets  map[uint64]ratEntry
}

// ParseDecimal parses an increment as INCRBYFLOAT takes one: a finite
// number with no spaces. It returns ErrNotFloat otherwise.
func ParseDecimal(s string) (*big.Rat, error) {
	if _, err := ParseFloat(s); err != nil {
		return nil, err
	}
	r, ok := new(big.Rat).SetString(s)
	if !ok || r.Num().BitLen() > maxRatBits || r.Denom().BitLen() > maxRatBits {
		return nil, ErrNotFloat
	}
	return r, nil
}

// sum is the exact value: the contributions of every actor.
func (c *FloatCounter) sum() *big.Rat {
	v := new(big.Rat)
	for a, e := range c.entries {
		v.Add(v, e.Total)
		if r, ok := c.resets[a]; ok {
			v.Sub(v, r.Total)
		}
	}
	return v
}

// Live reports whether some increment was not reset.
func (c *FloatCounter) Live() bool {
	for a, e := range c.entries {
		if e.Seq > c.resets[a].Seq {
			return true
		}
	}
	return false
}

// Add adds delta as actor's update. It returns ErrOverflow, and changes
// nothing, if base+value+delta is not a finite float64 or the actor's
// total grows past maxRatBits.
func (c *FloatCounter) Add(actor uint64, base, delta *big.Rat) error {
	r := new(big.Rat).Add(base, c.sum())
	r.Add(r, delta)
	if f, _ := r.Float64(); math.IsInf(f, 0) {
		return ErrOverflow
	}
	e := c.entries[actor]
	t := new(big.Rat).Add(delta, ratOrZero(e.Total))
	if t.Num().BitLen() > maxRatBits || t.Denom().BitLen() > maxRatBits {
		return ErrOverflow
	}
	if c.entries == nil {
		c.entries = map[uint64]ratEntry{}
	}
	c.entries[actor] = ratEntry{Seq: e.Seq + 1, Total: t}
	return nil
}

func ratOrZero(r *big.Rat) *big.Rat {
	if r == nil {
		return new(big.Rat)
	}
	return r
}

// Reset removes every increment this state holds.
func (c *FloatCounter) Reset() { observeAll(&c.resets, c.entries) }

// Merge merges o into c.
func (c *FloatCounter) Merge(o *FloatCounter) {
	mergeEntries(&c.entries, o.entries, ratEntry.wins)
	mergeEntries(&c.resets, o.resets, ratEntry.wins)
}

// Clone returns a copy (totals are shared: they are never changed in
// place).
func (c *FloatCounter) Clone() FloatCounter {
	var out FloatCounter
	mergeEntries(&out.entries, c.entries, ratEntry.wins)
	mergeEntries(&out.resets, c.resets, ratEntry.wins)
	return out
}

func encodeRats(e *encoder, m map[uint64]ratEntry) {
	e.uvarint(uint64(len(m)))
	for _, a := range sortedActors(m) {
		e.uvarint(a)
		e.uvarint(m[a].Seq)
		t := m[a].Total
		e.bool(t.Sign() < 0)
		e.bytes(t.Num().Bytes())
		e.bytes(t.Denom().Bytes())
	}
}

func decodeRats(d *decoder) map[uint64]ratEntry {
	n := d.count()
	if n == 0 {
		return nil
	}
	m := make(map[uint64]ratEntry, n)
	var prev uint64
	for i := 0; i < n && d.err == nil; i++ {
		a, seq := d.uvarint(), d.uvarint()
		neg := d.bool()
		num, den := d.bytes(), d.bytes()
		if (i > 0 && a <= prev) || seq == 0 {
			d.fail("bad float counter entry")
		}
		prev = a
		nb, db := new(big.Int).SetBytes(num), new(big.Int).SetBytes(den)
		if !canonicalRat(num, den, nb, db, neg) {
			d.fail("non-canonical float total")
			return m
		}
		if neg {
			nb.Neg(nb)
		}
		m[a] = ratEntry{Seq: seq, Total: new(big.Rat).SetFrac(nb, db)}
	}
	return m
}

// canonicalRat reports whether the decoded parts are the only encoding
// of their value: no leading zero bytes, a positive denominator, lowest
// terms, zero as 0/1 without a sign, within maxRatBits.
func canonicalRat(num, den []byte, nb, db *big.Int, neg bool) bool {
	switch {
	case len(num) > 0 && num[0] == 0, len(den) > 0 && den[0] == 0:
		return false
	case db.Sign() == 0, nb.BitLen() > maxRatBits, db.BitLen() > maxRatBits:
		return false
	case nb.Sign() == 0:
		return !neg && db.Cmp(big.NewInt(1)) == 0
	}
	return new(big.Int).GCD(nil, nil, nb, db).Cmp(big.NewInt(1)) == 0
}

func (c *FloatCounter) encode(e *encoder) {
	encodeRats(e, c.entries)
	encodeRats(e, c.resets)
}

func (c *FloatCounter) decode(d *decoder) {
	c.entries = decodeRats(d)
	c.resets = decodeRats(d)
	for a, r := range c.resets {
		if r.Seq > c.entries[a].Seq {
			d.fail("reset of actor %d ahead of its entry", a)
		}
	}
}
