package crdt

import "bytes"

// Register is a last-writer-wins register. The zero Register was never
// written. A write with Live false is a tombstone (a delete).
type Register struct {
	// TS and Actor order writes: the greater (TS, Actor) wins. Two writes
	// never share both, because an actor's clock never repeats.
	TS    HLC
	Actor uint64
	Live  bool
	// Value is the register's bytes; empty for a tombstone.
	Value []byte
}

// Set writes v at ts by actor, if that write is newer than the current
// one. The register keeps v (the caller must not change it afterwards).
func (r *Register) Set(ts HLC, actor uint64, v []byte) {
	r.Merge(Register{TS: ts, Actor: actor, Live: true, Value: v})
}

// Clear writes a tombstone at ts by actor.
func (r *Register) Clear(ts HLC, actor uint64) {
	r.Merge(Register{TS: ts, Actor: actor})
}

// Get returns the value and whether the register holds one.
func (r *Register) Get() ([]byte, bool) { return r.Value, r.Live }

// newer reports whether o wins over r. Equal (TS, Actor) cannot come from
// two different writes; comparing the rest keeps Merge commutative even on
// corrupt input.
func (r *Register) newer(o Register) bool {
	if r.TS != o.TS {
		return r.TS.Less(o.TS)
	}
	if r.Actor != o.Actor {
		return r.Actor < o.Actor
	}
	if r.Live != o.Live {
		return o.Live
	}
	return bytes.Compare(r.Value, o.Value) < 0
}

// Merge keeps the newer of r and o.
func (r *Register) Merge(o Register) {
	if r.newer(o) {
		*r = o
	}
}

func (r *Register) encode(e *encoder) {
	e.hlc(r.TS)
	e.uvarint(r.Actor)
	e.bool(r.Live)
	e.bytes(r.Value)
}

func (r *Register) decode(d *decoder) {
	r.TS = d.hlc()
	r.Actor = d.uvarint()
	r.Live = d.bool()
	r.Value = d.bytes()
	if !r.Live && len(r.Value) != 0 {
		d.fail("tombstone with a value")
	}
}
