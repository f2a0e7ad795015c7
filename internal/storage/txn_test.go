package storage

import (
	"fmt"
	"testing"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Locks and markers live beside the versions: a span's scan finds exactly
// its own, in key order, and they travel in a range's snapshot and go with
// its data when the span is cleared.
func TestTxnStateMovesWithItsKeys(t *testing.T) {
	src := openMem(t)
	lock := func(k string, id uint64) *kvpb.Lock {
		return &kvpb.Lock{TxnId: id, CommitTs: 9, Record: []byte("\x02b"), Intent: &kvpb.Intent{Kv: &kvpb.KeyValue{Key: []byte(k), Value: []byte("v"), ModRevision: 9}}}
	}
	span := keys.Span{Start: []byte("\x02b"), End: []byte("\x02y")}
	as := AppliedState{Index: 42, Term: 3, ConfState: &raftpb.ConfState{Voters: []uint64{1}}, MaxTS: 7, TxnTS: 9}
	desc := &metapb.RangeDescriptor{RangeId: 5, StartKey: span.Start, EndKey: span.End, Replicas: []*metapb.ReplicaDescriptor{{NodeId: 1}}}
	write(t, src, func(b *Batch) error {
		for _, k := range []string{"\x02a", "\x02b", "\x02b\x00", "\x02x", "\x02y"} {
			if err := b.PutLock([]byte(k), lock(k, 1)); err != nil {
				return err
			}
		}
		if err := b.PutTxnMeta([]byte("\x02b"), 1, &kvpb.TxnMeta{Status: kvpb.TxnStatus_STAGING, CommitTs: 9, Participants: [][]byte{[]byte("\x02b"), []byte("\x02x")}}); err != nil {
			return err
		}
		if err := b.PutAppliedState(5, as); err != nil {
			return err
		}
		return b.PutLocalDescriptor(desc)
	})
	locks := func(e *Engine, s keys.Span) string {
		var out []string
		if err := ScanLocks(e, s, func(k []byte, l *kvpb.Lock) error {
			out = append(out, fmt.Sprintf("%q@%d", k, l.GetCommitTs()))
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return fmt.Sprint(out)
	}
	if got, want := locks(src, span), `["\x02b"@9 "\x02b\x00"@9 "\x02x"@9]`; got != want {
		t.Fatalf("locks of %v: %s, want %s", span, got, want)
	}
	if l, err := GetLock(src, []byte("\x02x")); err != nil || !proto.Equal(l, lock("\x02x", 1)) {
		t.Fatalf("GetLock: %v %v", l, err)
	}
	if l, err := GetLock(src, []byte("\x02c")); err != nil || l != nil {
		t.Fatalf("GetLock of an unlocked key: %v %v", l, err)
	}

	snap := src.NewSnapshot()
	blob, err := ExportRange(snap, 5)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	dst := openMem(t)
	write(t, dst, func(b *Batch) error {
		if err := b.PutLock([]byte("\x02c"), lock("\x02c", 2)); err != nil { // stale: the import replaces it
			return err
		}
		got, _, err := b.ImportRange(5, span, blob)
		if err == nil && got.TxnTS != 9 {
			err = fmt.Errorf("imported applied state %+v", got)
		}
		return err
	})
	if got, want := locks(dst, span), `["\x02b"@9 "\x02b\x00"@9 "\x02x"@9]`; got != want {
		t.Fatalf("imported locks: %s, want %s", got, want)
	}
	if m, err := GetTxnMeta(dst, []byte("\x02b"), 1); err != nil || m.GetStatus() != kvpb.TxnStatus_STAGING || len(m.GetParticipants()) != 2 {
		t.Fatalf("imported record: %v %v", m, err)
	}
	write(t, dst, func(b *Batch) error { return b.DestroyReplica(5, span) })
	if got := locks(dst, keys.Span{Start: []byte("\x02"), End: []byte("\x03")}); got != "[]" {
		t.Fatalf("locks after the replica is destroyed: %s", got)
	}
	if m, err := GetTxnMeta(dst, []byte("\x02b"), 1); err != nil || m != nil {
		t.Fatalf("record after the replica is destroyed: %v %v", m, err)
	}
}
