package replica

import (
	"errors"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// Snapshots are built off the replica's lock, at most as many at once as
// the node's slots: with every slot taken nothing starts and Raft is told
// to ask again; with one free the build runs, gives its slot back, and the
// next ask gets the snapshot.
func TestSnapshotBuildsAreBounded(t *testing.T) {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	d := &metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End, Replicas: []*metapb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}, Generation: 1}
	b := e.NewBatch()
	if err := Bootstrap(b, d); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	slots := make(chan struct{}, 1)
	var started []func()
	s := &raftStorage{MemoryStorage: raft.NewMemoryStorage(), engine: e, rangeID: 2,
		build: func(fn func()) bool { started = append(started, fn); return true },
		done:  func() {}, lock: func() {}, unlock: func() {}, slots: slots}
	slots <- struct{}{} // another range is building
	if _, err := s.Snapshot(); !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) || len(started) != 0 {
		t.Fatalf("with no slot free: %v, %d builds started", err, len(started))
	}
	<-slots
	if _, err := s.Snapshot(); !errors.Is(err, raft.ErrSnapshotTemporarilyUnavailable) || len(started) != 1 || len(slots) != 1 {
		t.Fatalf("with a slot free: %v, %d builds started, %d slots taken", err, len(started), len(slots))
	}
	started[0]() // the build runs
	if len(slots) != 0 {
		t.Fatal("a finished build kept its slot")
	}
	snap, err := s.Snapshot()
	if err != nil || snap.GetMetadata().GetIndex() != initialIndex {
		t.Fatalf("after the build: %v, %v", snap.GetMetadata(), err)
	}
}
