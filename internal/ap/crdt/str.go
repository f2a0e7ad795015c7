package crdt

import (
	"errors"
	"math"
	"math/big"
	"sort"
	"strconv"
)

// ErrNotInteger and ErrNotFloat are returned by increments of a value that
// does not parse as a number.
var (
	ErrNotInteger = errors.New("crdt: value is not an integer or out of range")
	ErrNotFloat   = errors.New("crdt: value is not a valid float")
)

// Str is a string value: a register with an integer and a float counter
// added to it. SET writes the register and resets both counters (the
// increments it observed); INCR adds to the integer counter, so that
// increments made concurrently on several replicas all count.
type Str struct {
	Reg   Register
	Int   Counter
	Float FloatCounter
}

// Live reports whether the value exists.
func (s *Str) Live() bool { return s.Reg.Live || s.Int.Live() || s.Float.Live() }

// Set writes v at ts by actor and resets the observed increments.
func (s *Str) Set(ts HLC, actor uint64, v []byte) {
	s.Reg.Set(ts, actor, v)
	s.Int.Reset()
	s.Float.Reset()
}

// Delete removes the value as this state holds it.
func (s *Str) Delete(ts HLC, actor uint64) {
	s.Reg.Clear(ts, actor)
	s.Int.Reset()
	s.Float.Reset()
}

// Get returns the visible value. With no live counter it is the register's
// bytes; otherwise the register parsed as a number (absent: 0) plus the
// counters, formatted as an integer, or as a float once a float increment
// counts. A register that does not parse (a SET of text concurrent with an
// INCR) hides the counters: its bytes are the value.
func (s *Str) Get() ([]byte, bool) {
	intLive, floatLive := s.Int.Live(), s.Float.Live()
	if !intLive && !floatLive {
		return s.Reg.Get()
	}
	if !floatLive {
		base, err := parseInt(s.Reg.Value, s.Reg.Live)
		iv, ok := s.Int.Value()
		if err != nil || !ok || !addFits(base, iv) {
			return s.Reg.Value, true
		}
		return strconv.AppendInt(nil, base+iv, 10), true
	}
	v, err := s.exact()
	if err != nil {
		return s.Reg.Value, true
	}
	f, _ := v.Float64()
	return FormatFloat(f), true
}

// exact is the value as an exact rational: the register read as a
// decimal (absent: 0) plus both counters.
func (s *Str) exact() (*big.Rat, error) {
	v := new(big.Rat)
	if s.Reg.Live {
		b, err := ParseDecimal(string(s.Reg.Value))
		if err != nil {
			return nil, err
		}
		v.Set(b)
	}
	iv, ok := s.Int.Value()
	if !ok {
		return nil, ErrOverflow
	}
	v.Add(v, new(big.Rat).SetInt64(iv))
	return v.Add(v, s.Float.sum()), nil
}

// FormatFloat renders f as INCRBYFLOAT replies: the shortest decimal that
// reads back as f, without an exponent.
func FormatFloat(f float64) []byte { return strconv.AppendFloat(nil, f, 'f', -1, 64) }

func parseInt(b []byte, live bool) (int64, error) {
	if !live {
		return 0, nil
	}
	// strconv accepts "+1" and "01"; Redis does not: a number must read
	// back as itself.
	v, err := strconv.ParseInt(string(b), 10, 64)
	if err != nil || strconv.FormatInt(v, 10) != string(b) {
		return 0, ErrNotInteger
	}
	return v, nil
}

// ParseFloat parses a finite float as Redis accepts one: no spaces, no NaN
// or infinity.
func ParseFloat(s string) (float64, error) {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return 0, ErrNotFloat
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, ErrNotFloat
	}
	return v, nil
}

// IncrBy adds delta as actor's update and returns the new value. It
// returns ErrNotInteger if the visible value is not an integer and
// ErrOverflow if the result does not fit in int64; then it changes
// nothing.
func (s *Str) IncrBy(actor uint64, delta int64) (int64, error) {
	cur := int64(0)
	if v, ok := s.Get(); ok {
		var err error
		if cur, err = parseInt(v, true); err != nil {
			return 0, err
		}
	}
	if !addFits(cur, delta) {
		return 0, ErrOverflow
	}
	// The overflow check of Add sees the visible value as base+counter.
	iv, _ := s.Int.Value()
	if err := s.Int.Add(actor, cur-iv, delta); err != nil {
		return 0, err
	}
	return cur + delta, nil
}

// IncrByFloat adds delta as actor's float update and returns the new
// visible value; ErrNotFloat (the value is not a number) or ErrOverflow
// (the result is not a finite float64) change nothing.
func (s *Str) IncrByFloat(actor uint64, delta *big.Rat) ([]byte, error) {
	cur := new(big.Rat)
	if v, ok := s.Get(); ok {
		if _, err := ParseDecimal(string(v)); err != nil {
			return nil, err
		}
		var err error
		if cur, err = s.exact(); err != nil {
			return nil, ErrNotFloat
		}
	}
	base := new(big.Rat).Sub(cur, s.Float.sum())
	if err := s.Float.Add(actor, base, delta); err != nil {
		return nil, err
	}
	v, _ := s.Get()
	return v, nil
}

// Merge merges o into s.
func (s *Str) Merge(o *Str) {
	s.Reg.Merge(o.Reg)
	s.Int.Merge(&o.Int)
	s.Float.Merge(&o.Float)
}

// Clone returns a deep copy (the register's bytes are shared: they are
// never changed in place).
func (s *Str) Clone() Str { return Str{Reg: s.Reg, Int: s.Int.Clone(), Float: s.Float.Clone()} }

func (s *Str) encode(e *encoder) {
	s.Reg.encode(e)
	s.Int.encode(e)
	s.Float.encode(e)
}

func (s *Str) decode(d *decoder) {
	s.Reg.decode(d)
	s.Int.decode(d)
	s.Float.decode(d)
}

// Hash maps fields to Str values. A deleted field stays as a tombstone so
// that its deletion merges.
type Hash struct {
	fields map[string]*Str
}

// Field returns field's value for update, creating it.
func (h *Hash) Field(name string) *Str {
	if h.fields == nil {
		h.fields = map[string]*Str{}
	}
	f, ok := h.fields[name]
	if !ok {
		f = &Str{}
		h.fields[name] = f
	}
	return f
}

// Get returns field's visible value.
func (h *Hash) Get(name string) ([]byte, bool) {
	f, ok := h.fields[name]
	if !ok {
		return nil, false
	}
	return f.Get()
}

// Live reports whether some field exists.
func (h *Hash) Live() bool {
	for _, f := range h.fields {
		if f.Live() {
			return true
		}
	}
	return false
}

// Fields returns the existing fields in byte order.
func (h *Hash) Fields() []string {
	var out []string
	for name, f := range h.fields {
		if f.Live() {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Delete deletes field; it reports whether the field existed.
func (h *Hash) Delete(ts HLC, actor uint64, name string) bool {
	f, ok := h.fields[name]
	if !ok {
		return false
	}
	had := f.Live()
	f.Delete(ts, actor)
	return had
}

// Clear deletes every field this state holds.
func (h *Hash) Clear(ts HLC, actor uint64) {
	for _, f := range h.fields {
		f.Delete(ts, actor)
	}
}

// Merge merges o into h.
func (h *Hash) Merge(o *Hash) {
	for name, of := range o.fields {
		h.Field(name).Merge(of)
	}
}

// Clone returns a deep copy.
func (h *Hash) Clone() Hash {
	var out Hash
	for name, f := range h.fields {
		c := f.Clone()
		out.Field(name).Merge(&c)
	}
	return out
}

func (h *Hash) encode(e *encoder) {
	names := make([]string, 0, len(h.fields))
	for name := range h.fields {
		names = append(names, name)
	}
	sort.Strings(names)
	e.uvarint(uint64(len(names)))
	for _, name := range names {
		e.bytes([]byte(name))
		h.fields[name].encode(e)
	}
}

func (h *Hash) decode(d *decoder) {
	n := d.count()
	var prev string
	for i := 0; i < n && d.err == nil; i++ {
		name := string(d.bytes())
		if i > 0 && name <= prev {
			d.fail("hash fields out of order")
		}
		prev = name
		h.Field(name).decode(d)
	}
}
