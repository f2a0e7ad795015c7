package storage

import (
	"bytes"
	"testing"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

func FuzzMVCCValue(f *testing.F) {
	f.Add([]byte{1, 0, 0, 0})
	f.Add(encodeMVCCValue(mvccValue{createRevision: 5, version: 2, lease: 7, value: []byte("v")}))
	f.Add(encodeMVCCValue(mvccValue{tombstone: true}))
	f.Add([]byte{2, 0x80})
	f.Add(encodeMVCCValue(mvccValue{createRevision: 1 << 62, version: 1<<7 - 1, lease: 1 << 7}))
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := decodeMVCCValue(b)
		if err != nil {
			return
		}
		re := encodeMVCCValue(v)
		if len(re) != mvccValueSize(v) {
			t.Fatalf("%+v encodes to %d bytes, mvccValueSize says %d", v, len(re), mvccValueSize(v))
		}
		v2, err := decodeMVCCValue(re)
		if err != nil || v2.tombstone != v.tombstone || v2.createRevision != v.createRevision ||
			v2.version != v.version || v2.lease != v.lease || !bytes.Equal(v2.value, v.value) {
			t.Fatalf("round trip of %x: %+v -> %x -> %+v, %v", b, v, re, v2, err)
		}
	})
}

func FuzzMVCCKey(f *testing.F) {
	f.Add([]byte("a"), []byte("a\x00"), int64(1), int64(2))
	f.Add([]byte{}, []byte{0}, int64(1<<40), int64(1))
	f.Add([]byte{0, 0xFF}, []byte{0, 1}, int64(3), int64(3))
	f.Fuzz(func(t *testing.T, a, b []byte, ra, rb int64) {
		checkEscapeOrder(t, a, b, ra, rb)
		// Decoding arbitrary bytes must not panic.
		_, _, _, _ = decodeMVCCKey(append([]byte{kindMVCC}, a...))
		_, _, _ = unescape(b)
	})
}

func FuzzAppliedState(f *testing.F) {
	for _, s := range []AppliedState{
		{},
		{Index: 1, Term: 1, MaxTS: -1, CompactedRev: 3},
		{Index: 10, Term: 2, ConfState: &raftpb.ConfState{Voters: []uint64{1, 2}, Learners: []uint64{3}}, MaxTS: 1 << 50},
		{Index: 12, Term: 3, MaxTS: 7, Frozen: true},
		{Index: 13, Term: 3, MaxTS: 7, TxnTS: 9},
		{Index: 14, Term: 4, MaxTS: 9, TxnTS: 3, Frozen: true},
	} {
		b, err := encodeAppliedState(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := decodeAppliedState(b)
		if err != nil {
			return
		}
		re, err := encodeAppliedState(s)
		if err != nil {
			t.Fatal(err)
		}
		s2, err := decodeAppliedState(re)
		if err != nil || s2.Index != s.Index || s2.Term != s.Term || s2.MaxTS != s.MaxTS || s2.TxnTS != s.TxnTS ||
			s2.CompactedRev != s.CompactedRev || s2.Frozen != s.Frozen || !proto.Equal(s2.ConfState, s.ConfState) {
			t.Fatalf("round trip of %x: %+v -> %+v, %v", b, s, s2, err)
		}
	})
}

// FuzzTxnState decodes arbitrary txn engine keys, locks and markers: no
// panic, and what decodes re-encodes to what decodes the same.
func FuzzTxnState(f *testing.F) {
	lock, _ := proto.Marshal(&kvpb.Lock{TxnId: 7, CommitTs: 9, Record: []byte("r"), Intent: &kvpb.Intent{Kv: &kvpb.KeyValue{Key: []byte("k"), ModRevision: 9}}})
	meta, _ := proto.Marshal(&kvpb.TxnMeta{Status: kvpb.TxnStatus_COMMITTED, CommitTs: 9, Participants: [][]byte{[]byte("a"), []byte("b")}, Keys: [][]byte{[]byte("a")}})
	f.Add(lockKey([]byte("k")), lock)
	f.Add(markerKey([]byte("a\x00b"), 1<<63), meta)
	f.Add([]byte{kindTxn, 0, 1, 'x'}, []byte{0xff})
	f.Fuzz(func(t *testing.T, k, v []byte) {
		if key, suffix, id, err := decodeTxnKey(k); err == nil {
			re := lockKey(key)
			if suffix == suffixMarker {
				re = markerKey(key, id)
			}
			if !bytes.Equal(re, k) {
				t.Fatalf("txn key %x decodes to %q %c %d, which encodes to %x", k, key, suffix, id, re)
			}
		}
		if l, err := DecodeLock(v); err == nil {
			b, _ := proto.Marshal(l)
			if l2, err := DecodeLock(b); err != nil || !proto.Equal(l, l2) {
				t.Fatalf("lock %v round trip: %v %v", l, l2, err)
			}
		}
		if m, err := DecodeTxnMeta(v); err == nil {
			b, _ := proto.Marshal(m)
			if m2, err := DecodeTxnMeta(b); err != nil || !proto.Equal(m, m2) {
				t.Fatalf("marker %v round trip: %v %v", m, m2, err)
			}
		}
	})
}

func FuzzFixedStates(f *testing.F) {
	f.Add(encodeIdent(Ident{ClusterID: 1, NodeID: 2, Name: "n1", Token: "tok"}))
	f.Add(make([]byte, 16))
	f.Add([]byte{1, 2, 3})
	f.Fuzz(func(t *testing.T, b []byte) {
		if id, err := decodeIdent(b); err == nil {
			if len(b) != 16 && !bytes.Equal(encodeIdent(id), b) {
				t.Fatalf("ident round trip of %x", b)
			}
			if id2, err := decodeIdent(encodeIdent(id)); err != nil || id2 != id {
				t.Fatalf("ident %+v re-encoded decodes to %+v, %v", id, id2, err)
			}
		}
		if ts, err := decodeTruncatedState(b); err == nil {
			if !bytes.Equal(encodeTruncatedState(ts), b) {
				t.Fatalf("truncated state round trip of %x", b)
			}
		}
	})
}

func FuzzSnapshotBlob(f *testing.F) {
	e, err := Open("db", Options{FS: memFS()})
	if err != nil {
		f.Fatal(err)
	}
	defer func() { _ = e.Close() }()
	span := keys.Span{Start: []byte("\x02a"), End: []byte("\x02z")}
	b := e.NewBatch()
	_ = put("\x02b", 1, 1, 1, "v")(b)
	_ = b.SysPut([]byte("\x02c"), []byte("s"))
	_ = b.PutAppliedState(1, AppliedState{Index: 3})
	_ = b.PutLocalDescriptor(&metapb.RangeDescriptor{RangeId: 1, StartKey: span.Start, EndKey: span.End})
	blob, err := ExportRange(b, 1)
	b.Close()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(blob)
	f.Add([]byte("CSNP"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, desc, kvs, err := decodeBlob(data, 1, span)
		if err != nil {
			return
		}
		s := span
		if desc != nil {
			s = keys.Span{Start: desc.GetStartKey(), End: desc.GetEndKey()}
		}
		for _, kv := range kvs {
			if err := checkBlobKey(kv.key, blobSpans(s)); err != nil {
				t.Fatalf("accepted blob with bad key: %v", err)
			}
		}
	})
}
