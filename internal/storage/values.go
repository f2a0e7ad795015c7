package storage

import (
	"encoding/binary"
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// MVCC value kinds.
const (
	valueKindValue     byte = 1
	valueKindTombstone byte = 2
)

// mvccValue is one decoded MVCC version.
type mvccValue struct {
	tombstone      bool
	createRevision int64
	version        int64
	lease          int64
	value          []byte
}

// encodeMVCCValue encodes v: kind, uvarint create_revision, uvarint version,
// uvarint lease, raw value.
func encodeMVCCValue(v mvccValue) []byte {
	return appendMVCCValue(make([]byte, 0, mvccValueSize(v)), v)
}

// mvccValueSize is the length of v's encoding.
func mvccValueSize(v mvccValue) int {
	return 1 + uvarintLen(uint64(v.createRevision)) + uvarintLen(uint64(v.version)) + uvarintLen(uint64(v.lease)) + len(v.value)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// appendMVCCValue appends v's encoding (see encodeMVCCValue) to dst.
func appendMVCCValue(dst []byte, v mvccValue) []byte {
	kind := valueKindValue
	if v.tombstone {
		kind = valueKindTombstone
	}
	dst = append(dst, kind)
	dst = binary.AppendUvarint(dst, uint64(v.createRevision))
	dst = binary.AppendUvarint(dst, uint64(v.version))
	dst = binary.AppendUvarint(dst, uint64(v.lease))
	return append(dst, v.value...)
}

// decodeMVCCValue decodes b. The returned value aliases b.
func decodeMVCCValue(b []byte) (mvccValue, error) {
	var v mvccValue
	if len(b) == 0 {
		return v, fmt.Errorf("%w: empty mvcc value", ErrCorrupt)
	}
	switch b[0] {
	case valueKindValue:
	case valueKindTombstone:
		v.tombstone = true
	default:
		return v, fmt.Errorf("%w: bad mvcc value kind %d", ErrCorrupt, b[0])
	}
	b = b[1:]
	var fields [3]uint64
	for i := range fields {
		x, n := binary.Uvarint(b)
		if n <= 0 {
			return v, fmt.Errorf("%w: bad mvcc value varint", ErrCorrupt)
		}
		fields[i] = x
		b = b[n:]
	}
	v.createRevision, v.version, v.lease = int64(fields[0]), int64(fields[1]), int64(fields[2])
	if v.tombstone && len(b) != 0 {
		return v, fmt.Errorf("%w: tombstone with a value", ErrCorrupt)
	}
	v.value = b
	return v, nil
}

// TruncatedState is the last log entry removed by log truncation (or covered
// by an applied snapshot). Invariant: stored log entries all have
// index > Index.
type TruncatedState struct{ Index, Term uint64 }

func encodeTruncatedState(ts TruncatedState) []byte {
	out := binary.BigEndian.AppendUint64(nil, ts.Index)
	return binary.BigEndian.AppendUint64(out, ts.Term)
}

func decodeTruncatedState(b []byte) (TruncatedState, error) {
	if len(b) != 16 {
		return TruncatedState{}, fmt.Errorf("%w: truncated state of %d bytes", ErrCorrupt, len(b))
	}
	return TruncatedState{Index: binary.BigEndian.Uint64(b), Term: binary.BigEndian.Uint64(b[8:])}, nil
}

// Ident is a node's identity in its cluster, written once when the node
// joins (or bootstraps) a cluster.
type Ident struct {
	ClusterID, NodeID uint64
	// Name is the member's --name when the identity was written; empty in
	// data dirs written before names were recorded.
	Name string
	// Token is the --initial-cluster-token the node bootstrapped the
	// cluster with; empty when it joined a running cluster (or in data
	// dirs written before tokens were recorded).
	Token string
}

// identVersion1 marks an ident that records the name and token: 16 bytes
// of ids, the version byte, uvarint len(name), the name, then the token. An
// ident of exactly 16 bytes is the older form, ids only.
const identVersion1 byte = 1

func encodeIdent(id Ident) []byte {
	out := make([]byte, 0, 16+1+binary.MaxVarintLen64+len(id.Name)+len(id.Token))
	out = binary.BigEndian.AppendUint64(out, id.ClusterID)
	out = binary.BigEndian.AppendUint64(out, id.NodeID)
	out = append(out, identVersion1)
	out = binary.AppendUvarint(out, uint64(len(id.Name)))
	out = append(out, id.Name...)
	return append(out, id.Token...)
}

func decodeIdent(b []byte) (Ident, error) {
	if len(b) != 16 && len(b) < 18 {
		return Ident{}, fmt.Errorf("%w: ident of %d bytes", ErrCorrupt, len(b))
	}
	id := Ident{ClusterID: binary.BigEndian.Uint64(b), NodeID: binary.BigEndian.Uint64(b[8:])}
	if len(b) == 16 {
		return id, nil
	}
	if b[16] != identVersion1 {
		return Ident{}, fmt.Errorf("%w: ident version %d", ErrCorrupt, b[16])
	}
	rest := b[17:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || w != len(binary.AppendUvarint(nil, n)) || n > uint64(len(rest)-w) {
		return Ident{}, fmt.Errorf("%w: ident name length", ErrCorrupt)
	}
	rest = rest[w:]
	id.Name, id.Token = string(rest[:n]), string(rest[n:])
	return id, nil
}

// AppliedState is what a replica has applied. It is written in the same batch
// as the data the entries applied, so the two never disagree after a crash.
type AppliedState struct {
	// Index and Term of the last applied Raft entry.
	Index, Term uint64
	// ConfState as of Index; nil if none was ever recorded.
	ConfState *raftpb.ConfState
	// MaxTS is the newest revision the range's own writes applied (those
	// its proposer numbered). Invariant: the range applies such a command
	// only if its ts > MaxTS.
	MaxTS int64
	// TxnTS is the newest commit revision of a cross-range txn resolved
	// here; it may lie below MaxTS (each such write is judged per key).
	TxnTS int64
	// CompactedRev is the revision the range's history was compacted at.
	CompactedRev int64
	// Frozen is set once the range applied a freeze for a merge into its
	// left neighbour: it takes no more writes (its data is final) until it
	// is merged or thawed.
	Frozen bool
}

// Newest is the range's newest revision: what a read at revision 0 reads.
func (s AppliedState) Newest() int64 { return max(s.MaxTS, s.TxnTS) }

// appliedStateVersion is the first byte of an encoded AppliedState, so the
// format can grow. Version 2 adds a flags byte after it (appliedFrozen,
// appliedTxnTS: a varint TxnTS follows the compacted revision); a state
// without flags is written as version 1.
const (
	appliedStateVersion  byte = 1
	appliedStateVersion2 byte = 2
	appliedFrozen        byte = 1 << 0
	appliedTxnTS         byte = 1 << 1
)

// encodeAppliedState: version byte, (version 2: flags byte,) uvarint
// Index, uvarint Term, varint MaxTS, varint CompactedRev, then the
// ConfState protobuf (absent if nil: presence is a flag byte).
func encodeAppliedState(s AppliedState) ([]byte, error) {
	var flags byte
	if s.Frozen {
		flags |= appliedFrozen
	}
	if s.TxnTS != 0 {
		flags |= appliedTxnTS
	}
	out := []byte{appliedStateVersion}
	if flags != 0 {
		out = []byte{appliedStateVersion2, flags}
	}
	out = binary.AppendUvarint(out, s.Index)
	out = binary.AppendUvarint(out, s.Term)
	out = binary.AppendVarint(out, s.MaxTS)
	out = binary.AppendVarint(out, s.CompactedRev)
	if s.TxnTS != 0 {
		out = binary.AppendVarint(out, s.TxnTS)
	}
	if s.ConfState == nil {
		return append(out, 0), nil
	}
	out = append(out, 1)
	cs, err := proto.MarshalOptions{Deterministic: true}.Marshal(s.ConfState)
	if err != nil {
		return nil, fmt.Errorf("storage: encode conf state: %w", err)
	}
	return append(out, cs...), nil
}

func decodeAppliedState(b []byte) (AppliedState, error) {
	var s AppliedState
	var flags byte
	switch {
	case len(b) >= 2 && b[0] == appliedStateVersion2 && b[1] != 0 && b[1]&^(appliedFrozen|appliedTxnTS) == 0:
		flags = b[1]
		s.Frozen = flags&appliedFrozen != 0
		b = b[2:]
	case len(b) > 0 && b[0] == appliedStateVersion:
		b = b[1:]
	default:
		return s, fmt.Errorf("%w: bad applied state version or flags", ErrCorrupt)
	}
	var n int
	if s.Index, n = binary.Uvarint(b); n <= 0 {
		return s, fmt.Errorf("%w: bad applied index", ErrCorrupt)
	}
	b = b[n:]
	if s.Term, n = binary.Uvarint(b); n <= 0 {
		return s, fmt.Errorf("%w: bad applied term", ErrCorrupt)
	}
	b = b[n:]
	if s.MaxTS, n = binary.Varint(b); n <= 0 {
		return s, fmt.Errorf("%w: bad applied max ts", ErrCorrupt)
	}
	b = b[n:]
	if s.CompactedRev, n = binary.Varint(b); n <= 0 {
		return s, fmt.Errorf("%w: bad applied compacted rev", ErrCorrupt)
	}
	b = b[n:]
	if flags&appliedTxnTS != 0 {
		if s.TxnTS, n = binary.Varint(b); n <= 0 || s.TxnTS == 0 {
			return s, fmt.Errorf("%w: bad applied txn ts", ErrCorrupt)
		}
		b = b[n:]
	}
	if len(b) == 0 {
		return s, fmt.Errorf("%w: applied state without conf state flag", ErrCorrupt)
	}
	switch b[0] {
	case 0:
		if len(b) != 1 {
			return s, fmt.Errorf("%w: trailing bytes in applied state", ErrCorrupt)
		}
	case 1:
		cs := &raftpb.ConfState{}
		if err := proto.Unmarshal(b[1:], cs); err != nil {
			return s, fmt.Errorf("%w: conf state: %v", ErrCorrupt, err)
		}
		s.ConfState = cs
	default:
		return s, fmt.Errorf("%w: bad conf state flag %d", ErrCorrupt, b[0])
	}
	return s, nil
}
