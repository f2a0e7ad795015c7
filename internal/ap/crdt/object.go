package crdt

import (
	"encoding/binary"
	"fmt"
)

// Kind is what a key holds, as TYPE reports it.
type Kind uint8

// The kinds. KindNone: the key does not exist (never written, deleted or
// expired).
const (
	KindNone Kind = iota
	KindString
	KindSet
	KindHash
	numKinds = 3
)

// String returns TYPE's name of the kind.
func (k Kind) String() string {
	switch k {
	case KindString:
		return "string"
	case KindSet:
		return "set"
	case KindHash:
		return "hash"
	}
	return "none"
}

// Object is the whole replicated state of one key: a slot per kind (Redis
// keeps one kind per key; concurrent writes of different kinds on two
// replicas may fill two slots, and the key then shows the one written
// last), the key's expiry, and the stamp of each kind's last write.
type Object struct {
	Str  Str
	Set  Set
	Hash Hash
	// Expiry holds the expiry time as 8 bytes big-endian Unix milliseconds;
	// not Live: the key does not expire.
	Expiry Register
	// stamps[k-1] is the (timestamp, actor) of the last write to kind k,
	// which decides the visible kind when several slots are live.
	stamps [numKinds]Register
}

// Touch records a write to kind k at ts by actor: call it with every
// update of that kind.
func (o *Object) Touch(k Kind, ts HLC, actor uint64) {
	if k == KindNone {
		panic("crdt: Touch of KindNone")
	}
	o.stamps[k-1].Merge(Register{TS: ts, Actor: actor, Live: true})
}

// ExpireAt returns the expiry in Unix milliseconds, and whether there is
// one.
func (o *Object) ExpireAt() (int64, bool) {
	if !o.Expiry.Live || len(o.Expiry.Value) != 8 {
		return 0, false
	}
	return int64(binary.BigEndian.Uint64(o.Expiry.Value)), true
}

// SetExpiry makes the key expire at atMs (Unix milliseconds), a write at ts
// by actor.
func (o *Object) SetExpiry(ts HLC, actor uint64, atMs int64) {
	o.Expiry.Set(ts, actor, binary.BigEndian.AppendUint64(nil, uint64(atMs)))
}

// Persist removes the expiry, a write at ts by actor.
func (o *Object) Persist(ts HLC, actor uint64) { o.Expiry.Clear(ts, actor) }

// Expired reports whether the key's expiry is at or before nowMs.
func (o *Object) Expired(nowMs int64) bool {
	at, ok := o.ExpireAt()
	return ok && at <= nowMs
}

func (o *Object) liveKind(k Kind) bool {
	switch k {
	case KindString:
		return o.Str.Live()
	case KindSet:
		return o.Set.Len() > 0
	case KindHash:
		return o.Hash.Live()
	}
	return false
}

// Kind is the key's visible kind at nowMs: KindNone if it expired or holds
// nothing, else the live kind written last.
func (o *Object) Kind(nowMs int64) Kind {
	if o.Expired(nowMs) {
		return KindNone
	}
	best := KindNone
	for k := KindString; k <= KindHash; k++ {
		if !o.liveKind(k) {
			continue
		}
		if best == KindNone || o.stamps[best-1].newer(o.stamps[k-1]) {
			best = k
		}
	}
	return best
}

// Delete removes everything this state holds (DEL, and what an expired key
// becomes before a write): concurrent updates it did not see survive.
func (o *Object) Delete(ts HLC, actor uint64) {
	o.Str.Delete(ts, actor)
	o.Set.Clear()
	o.Hash.Clear(ts, actor)
	o.Expiry.Clear(ts, actor)
}

// ClearOthers removes the slots of every kind but k, as a write of kind k
// that replaces the key (SET) does.
func (o *Object) ClearOthers(k Kind, ts HLC, actor uint64) {
	if k != KindString {
		o.Str.Delete(ts, actor)
	}
	if k != KindSet {
		o.Set.Clear()
	}
	if k != KindHash {
		o.Hash.Clear(ts, actor)
	}
}

// MaxTS is the newest timestamp in the object's registers and stamps: a
// node's clock observes it before writing, so that its write orders after
// what it read.
func (o *Object) MaxTS() HLC {
	m := o.Expiry.TS
	for _, r := range append(o.stamps[:], o.Str.Reg) {
		if m.Less(r.TS) {
			m = r.TS
		}
	}
	for _, f := range o.Hash.fields {
		if m.Less(f.Reg.TS) {
			m = f.Reg.TS
		}
	}
	return m
}

// Merge merges p into o.
func (o *Object) Merge(p *Object) {
	o.Str.Merge(&p.Str)
	o.Set.Merge(&p.Set)
	o.Hash.Merge(&p.Hash)
	o.Expiry.Merge(p.Expiry)
	for i := range o.stamps {
		o.stamps[i].Merge(p.stamps[i])
	}
}

// Clone returns a deep copy.
func (o *Object) Clone() *Object {
	return &Object{Str: o.Str.Clone(), Set: o.Set.Clone(), Hash: o.Hash.Clone(), Expiry: o.Expiry, stamps: o.stamps}
}

// Encode returns the object's deterministic encoding: equal states encode
// to equal bytes. The caller owns the result.
func (o *Object) Encode() []byte {
	e := &encoder{b: []byte{EncodingVersion}}
	o.Str.encode(e)
	o.Set.encode(e)
	o.Hash.encode(e)
	o.Expiry.encode(e)
	for i := range o.stamps {
		o.stamps[i].encode(e)
	}
	return e.b
}

// Decode decodes an Encode'd object. It copies what it keeps from b.
// Errors wrap ErrCorrupt.
func Decode(b []byte) (*Object, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty object", ErrCorrupt)
	}
	if b[0] != EncodingVersion {
		return nil, fmt.Errorf("%w: encoding version %d, want %d", ErrCorrupt, b[0], EncodingVersion)
	}
	d := &decoder{b: b[1:]}
	o := &Object{}
	o.Str.decode(d)
	o.Set.decode(d)
	o.Hash.decode(d)
	o.Expiry.decode(d)
	if o.Expiry.Live && len(o.Expiry.Value) != 8 {
		d.fail("expiry of %d bytes", len(o.Expiry.Value))
	}
	for i := range o.stamps {
		o.stamps[i].decode(d)
		if len(o.stamps[i].Value) != 0 {
			d.fail("stamp with a value")
		}
	}
	if err := d.finish(); err != nil {
		return nil, err
	}
	return o, nil
}
