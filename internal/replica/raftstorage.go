package replica

import (
	"fmt"

	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// raftStorage is the raft.Storage of one replica: the log lives in memory (a
// raft.MemoryStorage rebuilt from the engine at start), and is made durable by
// the store's Ready loop before Raft sees it. Snapshots are produced on
// demand from a consistent engine snapshot of the range's applied state, so
// a follower that fell behind the truncated log receives the range as it is
// now, not as it was at truncation.
type raftStorage struct {
	*raft.MemoryStorage
	engine  *storage.Engine
	rangeID uint64
	// span returns the range's current span; called with the replica's mu
	// held.
	span func() keys.Span
}

var _ raft.Storage = (*raftStorage)(nil)

// Snapshot implements raft.Storage. Raft calls it (with the replica's mu
// held) when a follower needs entries that were truncated.
func (s *raftStorage) Snapshot() (*raftpb.Snapshot, error) {
	snap := s.engine.NewSnapshot()
	defer snap.Close()
	as, err := storage.LoadAppliedState(snap, s.rangeID)
	if err != nil {
		return nil, err
	}
	data, err := storage.ExportRange(snap, s.rangeID)
	if err != nil {
		return nil, fmt.Errorf("replica: export range %d: %w", s.rangeID, err)
	}
	return &raftpb.Snapshot{
		Data: data,
		Metadata: &raftpb.SnapshotMetadata{
			Index:     proto.Uint64(as.Index),
			Term:      proto.Uint64(as.Term),
			ConfState: proto.Clone(as.ConfState).(*raftpb.ConfState),
		},
	}, nil
}
