package crdt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// ErrCorrupt is wrapped by every decoding error.
var ErrCorrupt = errors.New("crdt: corrupt encoding")

// EncodingVersion is the first byte of every encoded Object. A decoder
// refuses any other version: a node never guesses at bytes it cannot read.
const EncodingVersion byte = 1

// maxDecodeEntries bounds every count read from an encoding, so that a
// corrupt length cannot make the decoder allocate without limit.
const maxDecodeEntries = 1 << 24

// encoder appends to a buffer; its methods cannot fail.
type encoder struct{ b []byte }

func (e *encoder) uvarint(x uint64) { e.b = binary.AppendUvarint(e.b, x) }
func (e *encoder) varint(x int64)   { e.b = binary.AppendVarint(e.b, x) }
func (e *encoder) bytes(p []byte)   { e.uvarint(uint64(len(p))); e.b = append(e.b, p...) }
func (e *encoder) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}
func (e *encoder) hlc(h HLC) { e.varint(h.Wall); e.uvarint(uint64(h.Logical)) }

// decoder reads from a buffer; the first error sticks and every later read
// returns zero values.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("bad uvarint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	x, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("bad varint")
		return 0
	}
	d.b = d.b[n:]
	return x
}

func (d *decoder) count() int {
	n := d.uvarint()
	if n > maxDecodeEntries || n > uint64(len(d.b)) {
		// Every entry takes at least one byte.
		d.fail("count %d exceeds the %d bytes left", n, len(d.b))
		return 0
	}
	return int(n)
}

// bytes returns a copy: decoded states outlive the buffer.
func (d *decoder) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if n > uint64(len(d.b)) {
		d.fail("length %d exceeds the %d bytes left", n, len(d.b))
		return nil
	}
	out := append([]byte{}, d.b[:n]...)
	d.b = d.b[n:]
	return out
}

func (d *decoder) bool() bool {
	if d.err != nil {
		return false
	}
	if len(d.b) == 0 || d.b[0] > 1 {
		d.fail("bad bool")
		return false
	}
	v := d.b[0] == 1
	d.b = d.b[1:]
	return v
}

func (d *decoder) hlc() HLC {
	w := d.varint()
	l := d.uvarint()
	if l > math.MaxUint32 {
		d.fail("logical clock %d overflows", l)
	}
	// The zero Register must be the identity of Merge: no timestamp sorts
	// below zero.
	if w < 0 {
		d.fail("negative wall time %d", w)
	}
	return HLC{Wall: w, Logical: uint32(l)}
}

// finish reports the sticky error, or trailing bytes.
func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
	return d.err
}
