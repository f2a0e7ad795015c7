// Package keys owns the global keyspace: how user keys and system keys are
// laid out so that every key belongs to exactly one range.
//
// The global keyspace, in order:
//
//	[0x01, 0x02)  system keys, held by the meta range:
//	              0x01 "node/"  <node id, 8 bytes BE>  node records
//	              0x01 "nodeseq"                        last assigned node id
//	              0x01 "range/" <range id, 8 bytes BE> range descriptors
//	              0x01 "tso"                            TSO window upper bound
//	              0x01 "lease/" <lease id, 8 bytes BE> lease records
//	              0x01 "alarm/" <member id, 8 bytes BE> <alarm type, 4 bytes BE>
//	                                                    active alarms (etcd's)
//	              0x01 "apks/" <keyspace, 4 bytes BE>  AP keyspace records
//	                                                    (internal/ap)
//	[0x02, 0x03)  user keys: 0x02 followed by the etcd key, held by the user
//	              ranges (one at bootstrap; splits divide this span)
//
// Range spans are always expressed in global keys. Nothing outside this
// package should build a global key by hand.
package keys

import (
	"bytes"
	"encoding/binary"
	"fmt"
)

const (
	systemPrefix byte = 0x01
	userPrefix   byte = 0x02
)

// Span is a half-open interval [Start, End) of global keys. An empty End
// means the single key Start.
type Span struct {
	Start, End []byte
}

// Contains reports whether key lies in the span [s.Start, s.End).
func (s Span) Contains(key []byte) bool {
	return bytes.Compare(key, s.Start) >= 0 && bytes.Compare(key, s.End) < 0
}

// ContainsSpan reports whether o lies entirely inside s. o may be a single
// key (empty End).
func (s Span) ContainsSpan(o Span) bool {
	if !s.Contains(o.Start) {
		return false
	}
	if len(o.End) == 0 {
		return true
	}
	return bytes.Compare(o.End, s.End) <= 0
}

// Intersect returns the part of s inside o (both with a non-empty End); its
// End is not after its Start only when they do not overlap (see Empty).
func (s Span) Intersect(o Span) Span {
	out := s
	if bytes.Compare(o.Start, out.Start) > 0 {
		out.Start = o.Start
	}
	if bytes.Compare(o.End, out.End) < 0 {
		out.End = o.End
	}
	return out
}

// Within returns the part of s inside clip (a span with an End) and
// whether there is any: s is a single key when its End is empty, and then
// it is inside or not.
func (s Span) Within(clip Span) (Span, bool) {
	if len(s.End) == 0 {
		return s, clip.Contains(s.Start)
	}
	x := s.Intersect(clip)
	return x, !x.Empty()
}

// Empty reports whether a span with a non-empty End holds no key.
func (s Span) Empty() bool { return bytes.Compare(s.Start, s.End) >= 0 }

// String renders the span for logs.
func (s Span) String() string { return fmt.Sprintf("[%q, %q)", s.Start, s.End) }

var (
	// MetaSpan is the span of the meta range: every system key.
	MetaSpan = Span{Start: []byte{systemPrefix}, End: []byte{systemPrefix + 1}}
	// UserSpan is the span of all user keys.
	UserSpan = Span{Start: []byte{userPrefix}, End: []byte{userPrefix + 1}}

	nodePrefix  = []byte("\x01node/")
	rangePrefix = []byte("\x01range/")
	// NodeSeq holds the last node id assigned, as 8 bytes big-endian.
	NodeSeq = []byte("\x01nodeseq")
	// TSOWindow holds the TSO's persisted upper bound, as 8 bytes big-endian.
	TSOWindow = []byte("\x01tso")
	// RangeSeq holds the last range id assigned, as 8 bytes big-endian.
	RangeSeq = []byte("\x01rangeseq")

	leasePrefix = []byte("\x01lease/")
	alarmPrefix = []byte("\x01alarm/")
	// Auth is the key of the auth state (metapb.AuthState).
	Auth = []byte("\x01auth")
)

// User maps an etcd key to its global key. The caller owns the result.
func User(key []byte) []byte {
	out := make([]byte, 0, len(key)+1)
	out = append(out, userPrefix)
	return append(out, key...)
}

// UserEnd maps an etcd range_end to the end of the global span: "\x00" (read
// from key on) becomes the end of the user span; empty stays empty (a single
// key).
func UserEnd(end []byte) []byte {
	switch {
	case len(end) == 0:
		return nil
	case len(end) == 1 && end[0] == 0:
		return append([]byte(nil), UserSpan.End...)
	default:
		return User(end)
	}
}

// UserSpanOf maps an etcd (key, range_end) pair to a global span.
func UserSpanOf(key, end []byte) Span {
	return Span{Start: User(key), End: UserEnd(end)}
}

// StripUser returns the etcd key of a global user key. It panics if key is
// not a user key: callers only strip keys they read from a user range.
func StripUser(key []byte) []byte {
	if len(key) == 0 || key[0] != userPrefix {
		panic(fmt.Sprintf("keys: %q is not a user key", key))
	}
	return key[1:]
}

// IsUser reports whether a global key is a user key.
func IsUser(key []byte) bool { return len(key) > 0 && key[0] == userPrefix }

var apKeyspacePrefix = []byte("\x01apks/")

// APKeyspace is the key of an AP keyspace's record (its N, R and W).
func APKeyspace(id uint32) []byte {
	return binary.BigEndian.AppendUint32(append([]byte(nil), apKeyspacePrefix...), id)
}

// APKeyspaceSpan covers every AP keyspace record.
func APKeyspaceSpan() Span {
	return Span{Start: apKeyspacePrefix, End: prefixEnd(apKeyspacePrefix)}
}

// APKeyspaceID returns the keyspace of an APKeyspace key.
func APKeyspaceID(key []byte) (uint32, bool) {
	if len(key) != len(apKeyspacePrefix)+4 || !bytes.HasPrefix(key, apKeyspacePrefix) {
		return 0, false
	}
	return binary.BigEndian.Uint32(key[len(apKeyspacePrefix):]), true
}

// Node is the key of a node's record.
func Node(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), nodePrefix...), id)
}

// NodeSpan covers every node record.
func NodeSpan() Span { return Span{Start: nodePrefix, End: prefixEnd(nodePrefix)} }

// Range is the key of a range descriptor.
func Range(id uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), rangePrefix...), id)
}

// RangeSpan covers every range descriptor.
func RangeSpan() Span { return Span{Start: rangePrefix, End: prefixEnd(rangePrefix)} }

// prefixEnd returns the smallest key greater than every key with prefix p.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Lease is the key of a lease's record (the id as its 64 bits, so negative
// ids sort after positive ones).
func Lease(id int64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), leasePrefix...), uint64(id))
}

// LeaseSpan covers every lease record.
func LeaseSpan() Span { return Span{Start: leasePrefix, End: prefixEnd(leasePrefix)} }

// Alarm is the key of member's active alarm of type typ (etcd's AlarmType
// numbers).
func Alarm(member uint64, typ int32) []byte {
	k := binary.BigEndian.AppendUint64(append([]byte(nil), alarmPrefix...), member)
	return binary.BigEndian.AppendUint32(k, uint32(typ))
}

// AlarmSpan covers every alarm key.
func AlarmSpan() Span { return Span{Start: alarmPrefix, End: prefixEnd(alarmPrefix)} }

// DecodeAlarm parses an Alarm key; ok is false for any other key.
func DecodeAlarm(key []byte) (member uint64, typ int32, ok bool) {
	rest, found := bytes.CutPrefix(key, alarmPrefix)
	if !found || len(rest) != 12 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(rest[:8]), int32(binary.BigEndian.Uint32(rest[8:])), true
}
