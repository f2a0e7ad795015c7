package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

// Snapshot blob format (ExportRange / ImportRange):
//
//	magic "CSNP" | version byte | uvarint rangeID
//	uvarint len | AppliedState encoding
//	uvarint len | RangeDescriptor (protobuf)       version 2 only
//	repeated:  uvarint len | engine key | uvarint len | value
//	crc32c (Castagnoli) of everything before it, 4 bytes BE
//
// Engine keys are the system (0x02), MVCC (0x03) and txn (0x05) keys of the
// span, in engine order. A version-2 blob carries the range's descriptor as of the
// applied state, so a replica that missed a split (or any change of its
// span) takes the span with the data; a version-1 blob (written before
// ranges split) covers the receiver's own span.
const (
	blobMagic   = "CSNP"
	blobVersion = 2
	// maxBlobFieldBytes bounds one key or value in a blob, so a corrupt length
	// cannot ask for an absurd allocation.
	maxBlobFieldBytes = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ExportRange encodes rangeID's applied state, its local descriptor and
// every system and MVCC version whose global key is in the descriptor's
// span into a self-contained, checksummed blob for a Raft snapshot. Read
// from a Snapshot so that the data, the descriptor and the applied state
// agree. The caller owns the blob.
func ExportRange(r Reader, rangeID uint64) ([]byte, error) {
	as, err := LoadAppliedState(r, rangeID)
	if err != nil {
		return nil, err
	}
	asb, err := encodeAppliedState(as)
	if err != nil {
		return nil, err
	}
	desc, ok, err := LoadLocalDescriptor(r, rangeID)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("storage: export range %d: no local descriptor", rangeID)
	}
	db, err := proto.MarshalOptions{Deterministic: true}.Marshal(desc)
	if err != nil {
		return nil, fmt.Errorf("storage: export range %d: encode descriptor: %w", rangeID, err)
	}
	out := append([]byte(blobMagic), blobVersion)
	out = binary.AppendUvarint(out, rangeID)
	out = appendField(out, asb)
	out = appendField(out, db)
	span := keys.Span{Start: desc.GetStartKey(), End: desc.GetEndKey()}
	for _, bounds := range blobSpans(span) {
		if out, err = appendKVs(out, r, bounds[0], bounds[1]); err != nil {
			return nil, err
		}
	}
	return binary.BigEndian.AppendUint32(out, crc32.Checksum(out, castagnoli)), nil
}

// blobSpans is the engine spans of span's data, in engine order: system
// keys, MVCC versions, cross-range txn state (locks and markers).
func blobSpans(span keys.Span) [3][2][]byte {
	sl, su := sysSpan(span)
	ml, mu := mvccSpan(span)
	tl, tu := txnSpan(span)
	return [3][2][]byte{{sl, su}, {ml, mu}, {tl, tu}}
}

func appendField(out, b []byte) []byte {
	out = binary.AppendUvarint(out, uint64(len(b)))
	return append(out, b...)
}

func appendKVs(out []byte, r Reader, lower, upper []byte) (_ []byte, err error) {
	it, err := newIter(r, lower, upper)
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, fmt.Errorf("storage: export: %w", err)
		}
		out = appendField(out, it.Key())
		out = appendField(out, v)
	}
	return out, it.Error()
}

// blobKV is one engine key and value of a decoded blob; both alias the blob.
type blobKV struct{ key, value []byte }

// decodeBlob verifies and decodes a blob for rangeID, checking that every key
// is a system or MVCC key of a global key in its span: the blob's
// descriptor's (version 2, returned) or span (version 1, desc nil).
func decodeBlob(data []byte, rangeID uint64, span keys.Span) (AppliedState, *metapb.RangeDescriptor, []blobKV, error) {
	if len(data) < len(blobMagic)+1+4 || string(data[:len(blobMagic)]) != blobMagic {
		return AppliedState{}, nil, nil, fmt.Errorf("%w: not a snapshot blob", ErrCorrupt)
	}
	body, sum := data[:len(data)-4], binary.BigEndian.Uint32(data[len(data)-4:])
	if crc32.Checksum(body, castagnoli) != sum {
		return AppliedState{}, nil, nil, fmt.Errorf("%w: snapshot blob checksum mismatch", ErrCorrupt)
	}
	b := body[len(blobMagic):]
	version := b[0]
	if version != 1 && version != blobVersion {
		return AppliedState{}, nil, nil, fmt.Errorf("%w: snapshot blob version %d", ErrCorrupt, b[0])
	}
	b = b[1:]
	id, n := binary.Uvarint(b)
	if n <= 0 {
		return AppliedState{}, nil, nil, fmt.Errorf("%w: snapshot blob range id", ErrCorrupt)
	}
	if id != rangeID {
		return AppliedState{}, nil, nil, fmt.Errorf("storage: snapshot blob of range %d imported into range %d", id, rangeID)
	}
	b = b[n:]
	asb, b, err := readField(b)
	if err != nil {
		return AppliedState{}, nil, nil, err
	}
	as, err := decodeAppliedState(asb)
	if err != nil {
		return AppliedState{}, nil, nil, err
	}
	var desc *metapb.RangeDescriptor
	if version >= 2 {
		var db []byte
		if db, b, err = readField(b); err != nil {
			return AppliedState{}, nil, nil, err
		}
		desc = &metapb.RangeDescriptor{}
		if err := proto.Unmarshal(db, desc); err != nil {
			return AppliedState{}, nil, nil, fmt.Errorf("%w: snapshot blob descriptor: %v", ErrCorrupt, err)
		}
		if desc.GetRangeId() != rangeID || bytes.Compare(desc.GetStartKey(), desc.GetEndKey()) >= 0 {
			return AppliedState{}, nil, nil, fmt.Errorf("%w: snapshot blob of range %d holds descriptor %v", ErrCorrupt, rangeID, desc)
		}
		span = keys.Span{Start: desc.GetStartKey(), End: desc.GetEndKey()}
	}
	spans := blobSpans(span)
	var kvs []blobKV
	for len(b) > 0 {
		var kv blobKV
		if kv.key, b, err = readField(b); err != nil {
			return AppliedState{}, nil, nil, err
		}
		if kv.value, b, err = readField(b); err != nil {
			return AppliedState{}, nil, nil, err
		}
		if err := checkBlobKey(kv.key, spans); err != nil {
			return AppliedState{}, nil, nil, err
		}
		if err := checkBlobValue(kv); err != nil {
			return AppliedState{}, nil, nil, err
		}
		kvs = append(kvs, kv)
	}
	return as, desc, kvs, nil
}

// checkBlobKey verifies that k is a well-formed system or MVCC engine key
// inside spans.
func checkBlobKey(k []byte, spans [3][2][]byte) error {
	if len(k) == 0 {
		return fmt.Errorf("%w: empty key in snapshot blob", ErrCorrupt)
	}
	switch k[0] {
	case kindSys:
	case kindMVCC:
		if _, _, _, err := decodeMVCCKey(k); err != nil {
			return err
		}
	case kindTxn:
		if _, _, _, err := decodeTxnKey(k); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: key %x of kind %d in snapshot blob", ErrCorrupt, k, k[0])
	}
	for _, s := range spans {
		if bytes.Compare(k, s[0]) >= 0 && bytes.Compare(k, s[1]) < 0 {
			return nil
		}
	}
	return fmt.Errorf("storage: snapshot blob key %x outside the range's span", k)
}

// checkBlobValue verifies that an MVCC version, lock or marker of a blob
// decodes.
func checkBlobValue(kv blobKV) error {
	switch kv.key[0] {
	case kindMVCC:
		_, err := decodeMVCCValue(kv.value)
		return err
	case kindTxn:
		_, suffix, _, err := decodeTxnKey(kv.key)
		if err != nil {
			return err
		}
		if suffix == suffixLock {
			_, err = DecodeLock(kv.value)
		} else {
			_, err = DecodeTxnMeta(kv.value)
		}
		return err
	}
	return nil
}

func readField(b []byte) (field, rest []byte, err error) {
	l, n := binary.Uvarint(b)
	if n <= 0 || l > maxBlobFieldBytes || l > uint64(len(b)-n) {
		return nil, nil, fmt.Errorf("%w: bad field length in snapshot blob", ErrCorrupt)
	}
	return b[n : n+int(l)], b[n+int(l):], nil
}

// ImportRange replaces a range's data with a blob made by ExportRange for
// rangeID: it verifies the checksum and that every key lies in the blob's
// span (the descriptor it carries; span, the receiver's own, for a
// version-1 blob) and on any failure returns an error and writes nothing.
// Then it clears that span's system and MVCC data, writes the blob's data,
// applied state and descriptor, and returns the applied state and the
// descriptor (nil for a version-1 blob). The Raft log and hard state are
// the caller's.
func (b *Batch) ImportRange(rangeID uint64, span keys.Span, data []byte) (AppliedState, *metapb.RangeDescriptor, error) {
	as, desc, kvs, err := decodeBlob(data, rangeID, span)
	if err != nil {
		return AppliedState{}, nil, err
	}
	if desc != nil {
		span = keys.Span{Start: desc.GetStartKey(), End: desc.GetEndKey()}
	}
	if err := b.clearSpan(span); err != nil {
		return AppliedState{}, nil, err
	}
	for _, kv := range kvs {
		if err := b.b.Set(kv.key, kv.value, nil); err != nil {
			return AppliedState{}, nil, fmt.Errorf("storage: import: %w", err)
		}
	}
	if err := b.PutAppliedState(rangeID, as); err != nil {
		return AppliedState{}, nil, err
	}
	if desc != nil {
		if err := b.PutLocalDescriptor(desc); err != nil {
			return AppliedState{}, nil, err
		}
	}
	return as, desc, nil
}
