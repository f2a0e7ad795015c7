package replica

import (
	"fmt"
	"time"

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
// now, not as it was at truncation. They are built on a goroutine of their
// own, not under the replica's lock that Raft holds when it asks: the range
// goes on serving while hundreds of MB are read (Raft is told to ask again,
// ErrSnapshotTemporarilyUnavailable, and does at the follower's next
// answer).
type raftStorage struct {
	*raft.MemoryStorage
	engine  *storage.Engine
	rangeID uint64
	// span returns the range's current span; called with the replica's mu
	// held.
	span func() keys.Span
	// build starts fn on a goroutine the replica waits for when it stops,
	// and reports false (nothing started) once it is stopping. Called
	// with the replica's mu held.
	build func(fn func()) bool
	// The fields below are guarded by the replica's mu.
	// building is set while a snapshot is being built; built is the last
	// one built and not handed to Raft yet, made at builtAt.
	building bool
	built    *raftpb.Snapshot
	builtAt  time.Time
	// done is called, with the replica's mu held, when a snapshot is
	// built (the replica wakes its Ready loop).
	done func()
	// slots bounds the snapshots the node builds at once (each holds a
	// whole range in memory while it is built): a build takes a slot or
	// does not start, and Raft asks again later. Nil: no bound.
	slots chan struct{}
	// lock and unlock take and release the replica's mu.
	lock, unlock func()
}

// builtMaxAge bounds how long a built snapshot waits for Raft to take it:
// an older one is built again (the log may have moved past it).
const builtMaxAge = 10 * time.Second

var _ raft.Storage = (*raftStorage)(nil)

// Snapshot implements raft.Storage. Raft calls it (with the replica's mu
// held) when a follower needs entries that were truncated. It hands out the
// snapshot built since it was last asked, or starts building one and asks
// Raft to come back.
func (s *raftStorage) Snapshot() (*raftpb.Snapshot, error) {
	if s.build == nil {
		return s.export(s.engine.NewSnapshot())
	}
	if s.built != nil {
		out := s.built
		s.built = nil
		if time.Since(s.builtAt) < builtMaxAge {
			return out, nil
		}
	}
	if !s.building && s.takeSlot() {
		// The engine snapshot is taken now, under the lock: the data and
		// the applied state it is read with are of one moment.
		snap := s.engine.NewSnapshot()
		if s.build(func() {
			out, err := s.export(snap)
			s.releaseSlot()
			s.lock()
			defer s.unlock()
			s.building = false
			if err != nil {
				return
			}
			s.built, s.builtAt = out, time.Now()
			s.done()
		}) {
			s.building = true
		} else {
			snap.Close()
			s.releaseSlot()
		}
	}
	return nil, raft.ErrSnapshotTemporarilyUnavailable
}

func (s *raftStorage) takeSlot() bool {
	if s.slots == nil {
		return true
	}
	select {
	case s.slots <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *raftStorage) releaseSlot() {
	if s.slots != nil {
		<-s.slots
	}
}

// export builds a snapshot of the range from snap, and closes snap.
func (s *raftStorage) export(snap *storage.Snapshot) (*raftpb.Snapshot, error) {
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

// BuildingSnapshot reports whether a snapshot of the range is being built
// for Raft (tests wait for it to settle).
func (r *Replica) BuildingSnapshot() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.storage.building
}
