package store

import (
	"testing"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"go.etcd.io/raft/v3/raftpb"
)

// A message for a range this node does not hold yet is kept, and handed to
// the replica once the node creates it (as a split does when this node
// applies it after the range's leader already wrote to it): the replica
// learns its leader from it at once, not at the leader's next heartbeat.
func TestMessagesForARangeNotHereYetAreDelivered(t *testing.T) {
	h := newHarness(t)
	defer h.stopAll()
	h.bootstrap(3)
	s := h.nodes[2].store
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(1)), To: new(uint64(2)), Term: new(uint64(5))}
	s.HandleRaftBatch(&rpcpb.RaftBatch{ClusterId: 1, FromNode: 1, ToNode: 2, Msgs: []*rpcpb.RaftMessage{{RangeId: 9, Msg: hb}}})
	if err := s.AddUninitialized(9, 2); err != nil {
		t.Fatal(err)
	}
	if st := s.Replica(9).Status(); st.Term != 5 {
		t.Fatalf("new replica of range 9 at term %d, want 5 (the kept heartbeat's)", st.Term)
	}
	// Nothing is kept once delivered, and a quiesce heartbeat is never
	// kept (it must not put a replica to sleep that did not hear it).
	s.early.Lock()
	n := len(s.early.m)
	s.early.Unlock()
	if n != 0 {
		t.Fatalf("%d ranges' messages still kept", n)
	}
	s.HandleRaftBatch(&rpcpb.RaftBatch{ClusterId: 1, FromNode: 1, ToNode: 2, Msgs: []*rpcpb.RaftMessage{{RangeId: 10, Msg: hb, Quiesce: true}}})
	s.early.Lock()
	n = len(s.early.m)
	s.early.Unlock()
	if n != 0 {
		t.Fatal("a quiesce heartbeat was kept")
	}
}

// The messages kept are bounded, however many unknown ranges are written to.
func TestMessagesKeptForUnknownRangesAreBounded(t *testing.T) {
	h := newHarness(t)
	defer h.stopAll()
	h.bootstrap(1)
	s := h.nodes[1].store
	hb := &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: new(uint64(2)), To: new(uint64(1)), Term: new(uint64(5))}
	for id := uint64(100); id < 100+3*maxEarlyRanges; id++ {
		for range 2 * maxEarlyMsgs {
			s.HandleRaftBatch(&rpcpb.RaftBatch{Msgs: []*rpcpb.RaftMessage{{RangeId: id, Msg: hb}}})
		}
	}
	s.early.Lock()
	defer s.early.Unlock()
	if len(s.early.m) > maxEarlyRanges {
		t.Fatalf("messages kept for %d ranges, bound %d", len(s.early.m), maxEarlyRanges)
	}
	for id, q := range s.early.m {
		if len(q) > maxEarlyMsgs {
			t.Fatalf("range %d: %d messages kept, bound %d", id, len(q), maxEarlyMsgs)
		}
	}
}
