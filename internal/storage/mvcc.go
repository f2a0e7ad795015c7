package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/cockroachdb/pebble/v2"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// nextsBeforeSeek is how many Next calls a scan tries to step over a key's
// older versions before it seeks past them: a Next is far cheaper than a seek
// when a key has few versions, a seek far cheaper when it has many.
const nextsBeforeSeek = 4

// readRev maps a read revision to the revision to seek: 0 means newest.
func readRev(rev int64) int64 {
	if rev <= 0 {
		return math.MaxInt64
	}
	return rev
}

// MVCCGet returns the newest version of the global key with
// mod_revision <= rev (rev 0: the newest version), or nil with no error if
// there is none or it is a tombstone. The result's Key is the global key;
// the caller owns it.
func MVCCGet(r Reader, key []byte, rev int64) (kv *kvpb.KeyValue, err error) {
	p := mvccPrefix(key)
	it, err := newIter(r, p, mvccPrefixEnd(p))
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	// A prefix seek consults the tables' bloom filters (see comparer).
	if !it.SeekPrefixGE(mvccKey(key, readRev(rev))) {
		return nil, it.Error()
	}
	return decodeVersion(it, false)
}

// decodeVersion decodes the version under it; nil for a tombstone. The
// returned KeyValue owns its bytes.
func decodeVersion(it *pebble.Iterator, keysOnly bool) (*kvpb.KeyValue, error) {
	key, rev, _, err := decodeMVCCKey(it.Key())
	if err != nil {
		return nil, err
	}
	raw, err := it.ValueAndErr()
	if err != nil {
		return nil, fmt.Errorf("storage: mvcc read: %w", err)
	}
	v, err := decodeMVCCValue(raw)
	if err != nil {
		return nil, fmt.Errorf("key %q rev %d: %w", key, rev, err)
	}
	if v.tombstone {
		return nil, nil
	}
	kv := &kvpb.KeyValue{
		Key:            key,
		CreateRevision: v.createRevision,
		ModRevision:    rev,
		Version:        v.version,
		Lease:          v.lease,
	}
	if !keysOnly {
		kv.Value = append([]byte(nil), v.value...)
	}
	return kv, nil
}

// MVCCScan calls fn, in ascending key order, with the version visible at rev
// (0: newest) of every live key in span; keys whose visible version is a
// tombstone, and older versions, are skipped (seeking past long histories).
// fn owns its argument. An error from fn stops the scan and is returned
// unchanged, so callers can stop early with a sentinel of their own.
func MVCCScan(r Reader, span keys.Span, rev int64, fn func(kv *kvpb.KeyValue) error) error {
	_, err := MVCCScanCount(r, span, rev, 0, fn)
	return err
}

// MVCCScanCount is MVCCScan that hands fn only the first fetch live keys
// (fetch 0: all of them; fetch < 0: none) and returns how many live keys
// span holds at rev, counted without decoding the values of those fn does
// not get: etcd's Range counts every key of its span whatever its limit,
// and a paginated list (Kubernetes', `etcdctl get --prefix --limit`) or a
// count_only read pays for that count on every page.
func MVCCScanCount(r Reader, span keys.Span, rev int64, fetch int64, fn func(kv *kvpb.KeyValue) error) (count int64, err error) {
	rev = readRev(rev)
	lower, upper := mvccSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return 0, err
	}
	defer closeIter(it, &err)
	var prefix, seek []byte // scratch, reused for every key
	valid := it.First()
	for valid {
		k := it.Key()
		if len(k) < 1+2+8 || k[0] != kindMVCC {
			return count, fmt.Errorf("%w: bad mvcc key %x", ErrCorrupt, k)
		}
		plen := len(k) - 8
		if vrev := int64(^binary.BigEndian.Uint64(k[plen:])); vrev > rev {
			// Newer than the read: jump to the newest version <= rev (or to
			// the next key if there is none).
			seek = binary.BigEndian.AppendUint64(append(seek[:0], k[:plen]...), ^uint64(rev))
			valid = it.SeekGE(seek)
			continue
		}
		if fetch == 0 || count < fetch {
			kv, err := decodeVersion(it, false)
			if err != nil {
				return count, err
			}
			if kv != nil {
				count++
				if err := fn(kv); err != nil {
					return count, err
				}
			}
		} else {
			live, err := liveVersion(it)
			if err != nil {
				return count, err
			}
			if live {
				count++
			}
		}
		prefix = append(prefix[:0], k[:plen]...)
		valid = skipVersions(it, prefix)
	}
	return count, it.Error()
}

// liveVersion reports whether the version under it is a value rather than
// a tombstone, reading only its kind byte.
func liveVersion(it *pebble.Iterator) (bool, error) {
	raw, err := it.ValueAndErr()
	if err != nil {
		return false, fmt.Errorf("storage: mvcc read: %w", err)
	}
	if len(raw) == 0 {
		return false, fmt.Errorf("%w: empty mvcc value", ErrCorrupt)
	}
	switch raw[0] {
	case valueKindValue:
		return true, nil
	case valueKindTombstone:
		return false, nil
	}
	return false, fmt.Errorf("%w: bad mvcc value kind %d", ErrCorrupt, raw[0])
}

// skipVersions moves it past every remaining version of the key whose MVCC
// prefix is p and reports whether it is still valid. p must not alias the
// iterator's key buffer (the caller copies it) and is overwritten.
func skipVersions(it *pebble.Iterator, p []byte) bool {
	for range nextsBeforeSeek {
		if !it.Next() {
			return false
		}
		if !bytes.HasPrefix(it.Key(), p) {
			return true
		}
	}
	// The prefix end, in place: the terminator 0x00 0x01 becomes 0x00 0x02
	// (Pebble copies the seek key).
	p[len(p)-1]++
	return it.SeekGE(p)
}

// MVCCPut writes the version kv.ModRevision of the global key kv.Key, with
// kv's create revision, version, lease and value. It replaces a version
// written at the same revision.
func (b *Batch) MVCCPut(kv *kvpb.KeyValue) error {
	if kv.GetModRevision() <= 0 {
		return fmt.Errorf("storage: mvcc put of %q at revision %d", kv.GetKey(), kv.GetModRevision())
	}
	v := mvccValue{
		createRevision: kv.GetCreateRevision(),
		version:        kv.GetVersion(),
		lease:          kv.GetLease(),
		value:          kv.GetValue(),
	}
	// Encoded straight into the batch: no value buffer per write.
	key := mvccKey(kv.GetKey(), kv.GetModRevision())
	op := b.b.SetDeferred(len(key), mvccValueSize(v))
	copy(op.Key, key)
	appendMVCCValue(op.Value[:0], v)
	if err := op.Finish(); err != nil {
		return fmt.Errorf("storage: mvcc put: %w", err)
	}
	if b.recording {
		b.events = append(b.events, &kvpb.Event{Type: kvpb.Event_PUT, Kv: kv})
	}
	return nil
}

// MVCCDelete writes a tombstone for the global key at rev. It does not check
// that the key is live.
func (b *Batch) MVCCDelete(key []byte, rev int64) error {
	if rev <= 0 {
		return fmt.Errorf("storage: mvcc delete of %q at revision %d", key, rev)
	}
	if err := b.b.Set(mvccKey(key, rev), encodeMVCCValue(mvccValue{tombstone: true}), nil); err != nil {
		return fmt.Errorf("storage: mvcc delete: %w", err)
	}
	if b.recording {
		b.events = append(b.events, &kvpb.Event{Type: kvpb.Event_DELETE, Kv: &kvpb.KeyValue{Key: append([]byte(nil), key...), ModRevision: rev}})
	}
	return nil
}

// MVCCCompact drops history at or below rev in span, with etcd's semantics:
// for each key it keeps every version newer than rev and the newest version
// <= rev (so reads at rev and later are unchanged), unless that version is a
// tombstone, which is dropped too; all older versions are dropped. It reads
// through b, so it sees b's earlier writes.
func MVCCCompact(b *Batch, span keys.Span, rev int64) (err error) {
	if rev <= 0 {
		return nil
	}
	lower, upper := mvccSpan(span)
	it, err := newIter(b, lower, upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	var cur []byte // MVCC prefix of the key being compacted
	var kept bool  // whether the newest version <= rev of cur was seen
	for valid := it.First(); valid; valid = it.Next() {
		k := it.Key()
		_, vrev, plen, err := decodeMVCCKey(k)
		if err != nil {
			return err
		}
		if !bytes.Equal(k[:plen], cur) {
			cur = append(cur[:0], k[:plen]...)
			kept = false
		}
		if vrev > rev {
			continue
		}
		if kept {
			if err := b.b.Delete(k, nil); err != nil {
				return fmt.Errorf("storage: compact: %w", err)
			}
			continue
		}
		kept = true
		raw, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("storage: compact: %w", err)
		}
		v, err := decodeMVCCValue(raw)
		if err != nil {
			return err
		}
		if v.tombstone {
			if err := b.b.Delete(k, nil); err != nil {
				return fmt.Errorf("storage: compact: %w", err)
			}
		}
	}
	return it.Error()
}

// MVCCMidKey returns the global key that halves the MVCC data of span by
// bytes (every version of every key counted): the first key at which the
// versions before it hold at least half, so that a split there leaves
// about as much on each side. It returns nil if span holds fewer than two
// keys (no key strictly inside splits it), and reads all of span's
// versions once.
func MVCCMidKey(r Reader, span keys.Span) (mid []byte, err error) {
	lower, upper := mvccSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	var total int64
	for valid := it.First(); valid; valid = it.Next() {
		total += int64(len(it.Key()) + len(it.Value()))
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	var seen int64
	var prev []byte
	for valid := it.First(); valid; valid = it.Next() {
		key, _, _, err := decodeMVCCKey(it.Key())
		if err != nil {
			return nil, err
		}
		if prev != nil && !bytes.Equal(key, prev) && seen*2 >= total {
			return append([]byte(nil), key...), nil
		}
		if prev == nil || !bytes.Equal(key, prev) {
			prev = append(prev[:0], key...)
		}
		seen += int64(len(it.Key()) + len(it.Value()))
	}
	return nil, it.Error()
}

// MVCCBytes counts the bytes of span's MVCC data (keys and values of every
// version), reading all of it.
func MVCCBytes(r Reader, span keys.Span) (total int64, err error) {
	lower, upper := mvccSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return 0, err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		total += int64(len(it.Key()) + len(it.Value()))
	}
	return total, it.Error()
}
