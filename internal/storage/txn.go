package storage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// Cross-range txn state (internal/txn) lives beside the MVCC versions, in
// its own kind of engine key, so that a span of global keys maps to one
// span of it and it moves with its keys through splits, merges and
// snapshots:
//
//	0x05 <escaped global key> 'l'                  the lock on the key
//	0x05 <escaped anchor key> 'm' <txn id, 8 BE>    a txn's marker (or record)
//
// Values are protobuf (kvpb.Lock, kvpb.TxnMeta). The state is small and
// short-lived: a lock lives from a txn's staging to its resolution.
const (
	kindTxn      byte = 0x05
	suffixLock   byte = 'l'
	suffixMarker byte = 'm'
)

func txnPrefix(key []byte) []byte {
	k := make([]byte, 0, 1+len(key)+2+1+8)
	k = append(k, kindTxn)
	return appendEscaped(k, key)
}

func lockKey(key []byte) []byte { return append(txnPrefix(key), suffixLock) }

func markerKey(anchor []byte, txnID uint64) []byte {
	return binary.BigEndian.AppendUint64(append(txnPrefix(anchor), suffixMarker), txnID)
}

// txnSpan maps a span of global keys to its span of txn engine keys.
func txnSpan(span keys.Span) (lower, upper []byte) {
	lower = txnPrefix(span.Start)
	if len(span.End) == 0 {
		return lower, mvccPrefixEnd(lower)
	}
	return lower, txnPrefix(span.End)
}

// decodeTxnKey splits a txn engine key into its global key, its suffix
// and, for a marker, the txn id.
func decodeTxnKey(k []byte) (key []byte, suffix byte, txnID uint64, err error) {
	if len(k) < 1+2+1 || k[0] != kindTxn {
		return nil, 0, 0, fmt.Errorf("%w: bad txn key %x", ErrCorrupt, k)
	}
	key, n, err := unescape(k[1:])
	if err != nil {
		return nil, 0, 0, err
	}
	rest := k[1+n:]
	switch {
	case len(rest) == 1 && rest[0] == suffixLock:
		return key, suffixLock, 0, nil
	case len(rest) == 9 && rest[0] == suffixMarker:
		return key, suffixMarker, binary.BigEndian.Uint64(rest[1:]), nil
	}
	return nil, 0, 0, fmt.Errorf("%w: bad txn key suffix %x", ErrCorrupt, rest)
}

// PutLock stores l as the lock on the global key.
func (b *Batch) PutLock(key []byte, l *kvpb.Lock) error {
	v, err := proto.Marshal(l)
	if err != nil {
		return fmt.Errorf("storage: encode lock: %w", err)
	}
	if err := b.b.Set(lockKey(key), v, nil); err != nil {
		return fmt.Errorf("storage: put lock: %w", err)
	}
	return nil
}

// DeleteLock removes the lock on the global key.
func (b *Batch) DeleteLock(key []byte) error {
	if err := b.b.Delete(lockKey(key), nil); err != nil {
		return fmt.Errorf("storage: delete lock: %w", err)
	}
	return nil
}

// GetLock returns the lock on the global key, or nil if there is none.
func GetLock(r Reader, key []byte) (*kvpb.Lock, error) {
	v, ok, err := getRaw(r, lockKey(key))
	if err != nil || !ok {
		return nil, err
	}
	return DecodeLock(v)
}

// DecodeLock decodes a stored lock.
func DecodeLock(v []byte) (*kvpb.Lock, error) {
	l := &kvpb.Lock{}
	if err := proto.Unmarshal(v, l); err != nil {
		return nil, fmt.Errorf("%w: lock: %v", ErrCorrupt, err)
	}
	if l.GetTxnId() == 0 || l.GetCommitTs() <= 0 || l.GetIntent().GetKv() == nil {
		return nil, fmt.Errorf("%w: lock without txn, revision or intent", ErrCorrupt)
	}
	return l, nil
}

// ScanLocks calls fn, in key order, with every lock on a global key of
// span. fn owns its arguments; its error stops the scan and is returned.
func ScanLocks(r Reader, span keys.Span, fn func(key []byte, l *kvpb.Lock) error) error {
	return scanTxnKeys(r, span, suffixLock, func(key []byte, _ uint64, v []byte) error {
		l, err := DecodeLock(v)
		if err != nil {
			return err
		}
		return fn(key, l)
	})
}

// scanTxnKeys calls fn, in key order, with every txn engine key of span
// with the given suffix (a lock or a marker): its global key, its txn id
// (markers only) and its value, which fn must not keep.
func scanTxnKeys(r Reader, span keys.Span, want byte, fn func(key []byte, txnID uint64, v []byte) error) (err error) {
	lower, upper := txnSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		key, suffix, id, err := decodeTxnKey(it.Key())
		if err != nil {
			return err
		}
		if suffix != want {
			continue
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("storage: scan txn state: %w", err)
		}
		if err := fn(key, id, v); err != nil {
			return err
		}
	}
	return it.Error()
}

// PutTxnMeta stores m as txnID's marker at the global key anchor.
func (b *Batch) PutTxnMeta(anchor []byte, txnID uint64, m *kvpb.TxnMeta) error {
	v, err := proto.Marshal(m)
	if err != nil {
		return fmt.Errorf("storage: encode txn marker: %w", err)
	}
	if err := b.b.Set(markerKey(anchor, txnID), v, nil); err != nil {
		return fmt.Errorf("storage: put txn marker: %w", err)
	}
	return nil
}

// DeleteTxnMeta removes txnID's marker at anchor.
func (b *Batch) DeleteTxnMeta(anchor []byte, txnID uint64) error {
	if err := b.b.Delete(markerKey(anchor, txnID), nil); err != nil {
		return fmt.Errorf("storage: delete txn marker: %w", err)
	}
	return nil
}

// GetTxnMeta returns txnID's marker at anchor, or nil if there is none.
func GetTxnMeta(r Reader, anchor []byte, txnID uint64) (*kvpb.TxnMeta, error) {
	v, ok, err := getRaw(r, markerKey(anchor, txnID))
	if err != nil || !ok {
		return nil, err
	}
	return DecodeTxnMeta(v)
}

// DecodeTxnMeta decodes a stored marker.
func DecodeTxnMeta(v []byte) (*kvpb.TxnMeta, error) {
	m := &kvpb.TxnMeta{}
	if err := proto.Unmarshal(v, m); err != nil {
		return nil, fmt.Errorf("%w: txn marker: %v", ErrCorrupt, err)
	}
	if m.GetStatus() < kvpb.TxnStatus_STAGING || m.GetStatus() > kvpb.TxnStatus_ABORTED {
		return nil, fmt.Errorf("%w: txn marker status %d", ErrCorrupt, m.GetStatus())
	}
	return m, nil
}

// MVCCLatest returns the revision of the global key's newest version,
// tombstones included, or 0 if it has none: a write below it would land
// under a newer version.
func MVCCLatest(r Reader, key []byte) (rev int64, err error) {
	p := mvccPrefix(key)
	it, err := newIter(r, p, mvccPrefixEnd(p))
	if err != nil {
		return 0, err
	}
	defer closeIter(it, &err)
	if !it.SeekPrefixGE(mvccKey(key, math.MaxInt64)) {
		return 0, it.Error()
	}
	if !bytes.HasPrefix(it.Key(), p) {
		return 0, nil
	}
	_, rev, _, err = decodeMVCCKey(it.Key())
	return rev, err
}

// getRaw reads one engine key (a point lookup: no iterator, which costs
// far more to set up than a lock or marker read is worth).
func getRaw(r Reader, k []byte) (_ []byte, ok bool, err error) {
	v, closer, err := r.pebbleReader().Get(k)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: read: %w", err)
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("storage: read: %w", err)
	}
	return out, true, nil
}

// ScanTxnMetas calls fn, in key order, with every txn marker anchored in
// span. fn owns its arguments; its error stops the scan and is returned.
func ScanTxnMetas(r Reader, span keys.Span, fn func(anchor []byte, txnID uint64, m *kvpb.TxnMeta) error) error {
	return scanTxnKeys(r, span, suffixMarker, func(key []byte, id uint64, v []byte) error {
		m, err := DecodeTxnMeta(v)
		if err != nil {
			return err
		}
		return fn(key, id, m)
	})
}
