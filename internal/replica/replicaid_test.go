package replica

import (
	"context"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3/raftpb"
)

type noRevisions struct{}

func (noRevisions) Next(context.Context, int) (int64, error) { return 0, context.Canceled }
func (noRevisions) Current(context.Context) (int64, error)   { return 0, context.Canceled }

// A replica's Raft id is its id in the range's descriptor, not its node's;
// a descriptor written before replica ids existed (replica_id 0) gives the
// node id, as those clusters used; peers' ids map back to their nodes.
func TestReplicaIDsComeFromTheDescriptor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		reps     []*metapb.ReplicaDescriptor
		wantID   uint64
		peerID   uint64
		peerNode uint64
	}{
		{"replica ids", []*metapb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 7}, {NodeId: 2, ReplicaId: 4}}, 4, 7, 1},
		{"legacy", []*metapb.ReplicaDescriptor{{NodeId: 1}, {NodeId: 2}}, 2, 1, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
			if err != nil {
				t.Fatal(err)
			}
			defer e.Close()
			d := &metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End, Replicas: tc.reps, Generation: 1}
			b := e.NewBatch()
			if err := Bootstrap(b, d); err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(true); err != nil {
				t.Fatal(err)
			}
			b.Close()
			cfg := DefaultConfig()
			cfg.NodeID, cfg.Engine, cfg.Revisions, cfg.Signal = 2, e, noRevisions{}, func(uint64) {}
			r, err := Load(cfg, d)
			if err != nil {
				t.Fatal(err)
			}
			defer r.Stop()
			if r.ReplicaID() != tc.wantID {
				t.Fatalf("replica id %d, want %d", r.ReplicaID(), tc.wantID)
			}
			if n := r.NodeOf(tc.peerID); n != tc.peerNode {
				t.Fatalf("replica %d is on node %d, want %d", tc.peerID, n, tc.peerNode)
			}
			if n := r.NodeOf(99); n != 0 {
				t.Fatalf("unknown replica 99 maps to node %d", n)
			}
			r.LearnPeer(99, 3)
			if n := r.NodeOf(99); n != 3 {
				t.Fatalf("learned replica 99 maps to node %d, want 3", n)
			}
			// A message for another replica id (a replica removed, or
			// one this node held before) is not this replica's: Raft
			// never sees it, so its higher term changes nothing.
			hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(tc.peerID), To: new(uint64(99)), Term: new(uint64(9))}
			r.Step(hb)
			if st := r.Status(); st.Term == 9 {
				t.Fatal("a message for replica 99 was stepped into this replica")
			}
			hb.To = new(tc.wantID)
			r.Step(hb)
			if st := r.Status(); st.Term != 9 {
				t.Fatalf("a heartbeat for this replica at term 9 left it at term %d", st.Term)
			}
			// Raft knows the peers by replica id: the voters are them.
			as, err := storage.LoadAppliedState(e, 2)
			if err != nil {
				t.Fatal(err)
			}
			for i, v := range as.ConfState.GetVoters() {
				if v != tc.reps[i].ID() {
					t.Fatalf("voters %v, want the replica ids of %v", as.ConfState.GetVoters(), tc.reps)
				}
			}
		})
	}
}
