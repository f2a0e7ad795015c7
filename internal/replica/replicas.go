package replica

import (
	"context"
	"fmt"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/storage"
)

// Replica changes.
//
// A change of a range's replicas is one Raft conf change whose context is
// a Command carrying the range's descriptor after it (a
// ChangeReplicasTrigger): Raft's membership and the descriptor change at
// the same log position on every replica. It applies only over the
// descriptor it was built from (generation one above), so a split or merge
// in between makes it a no-op (RETRY); Raft lets one conf change be
// pending at a time, and the leader proposes one only once it applied an
// entry of its own term (a new leader's earlier conf changes are settled
// then).

// changeReplicas serves a ChangeReplicasRequest: it removes the replica
// on node cr.RemoveNode and returns the new descriptor once the change
// applied here. A range with no replica there is answered with its
// descriptor as it is. Errors: NOT_LEADER (this replica leads no more; it
// hands its leadership to another voter first when it is the one
// removed), RETRY (a change is pending, or this leader has not applied an
// entry of its term yet), FAILED_PRECONDITION (the last voter, or a frozen
// range), AMBIGUOUS (ctx ended with the change proposed).
func (r *Replica) changeReplicas(ctx context.Context, cr *cmdpb.ChangeReplicasRequest) (*cmdpb.BatchResponse, error) {
	r.mu.Lock()
	if !r.leadsLocked() {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, err
	}
	d := r.mu.desc
	var target uint64
	voters := 0
	for _, rd := range d.GetReplicas() {
		voters++
		if rd.GetNodeId() == cr.GetRemoveNode() {
			target = rd.GetReplicaId()
		}
	}
	switch {
	case target == 0:
		r.mu.Unlock()
		return &cmdpb.BatchResponse{Descriptors: []*metapb.RangeDescriptor{d}}, nil
	case voters == 1:
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_FAILED_PRECONDITION, "replica: range %d has its only replica on node %d; it cannot be removed", r.RangeID, cr.GetRemoveNode())
	case r.mu.applied.Frozen:
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d is frozen for a merge; change its replicas after", r.RangeID)
	case target == r.replicaID:
		r.mu.Unlock()
		// The leader leaves: another voter leads first, then it removes
		// this one.
		if err := r.TransferLeadershipTo(ctx, 0); err != nil {
			return nil, err
		}
		r.mu.Lock()
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, err
	case r.mu.confPending != 0 || r.mu.applied.Term != r.mu.term:
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: a replica change is pending; retry", r.RangeID)
	}
	nd := proto.CloneOf(d)
	nd.Replicas = nd.Replicas[:0]
	for _, rd := range d.GetReplicas() {
		if rd.GetReplicaId() != target {
			nd.Replicas = append(nd.Replicas, proto.CloneOf(rd))
		}
	}
	nd.Generation++
	r.mu.nextID++
	id := r.mu.nextID
	cmd := &cmdpb.Command{Id: id, Proposer: r.cfg.NodeID, ChangeReplicas: &cmdpb.ChangeReplicasTrigger{Desc: nd}}
	cctx, err := proto.Marshal(cmd)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	cc := raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(target), Context: cctx}
	if err := r.mu.rn.ProposeConfChange(&cc); err != nil {
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: replica change dropped: %v", r.RangeID, err)
	}
	done := make(chan result, 1)
	r.mu.proposals[id] = &proposal{done: done}
	r.mu.confPending = id
	r.mu.Unlock()
	r.signal()
	r.log.Info("removing a replica", "replica", target, "node", cr.GetRemoveNode(), "generation", nd.GetGeneration())
	select {
	case res := <-done:
		return res.resp, res.err
	case <-ctx.Done():
		return nil, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d: %v with the replica change in flight", r.RangeID, ctx.Err())
	case <-r.stopped:
		return nil, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d stopped with the replica change in flight", r.RangeID)
	}
}

// applyConfEntry applies a conf change entry: Raft's membership and, for
// a replica change (a Command in its context), the descriptor, into b. A
// change that no longer fits the descriptor applies as an empty conf
// change, so Raft still sees it applied.
func (r *Replica) applyConfEntry(b *storage.Batch, cc raftpb.ConfChangeI, ctxData []byte, as *storage.AppliedState) (*cmdpb.Command, result) {
	if len(ctxData) == 0 {
		r.applyConfChange(cc, as)
		return nil, result{}
	}
	var cmd cmdpb.Command
	if err := proto.Unmarshal(ctxData, &cmd); err != nil {
		panic(fmt.Sprintf("replica: range %d: undecodable replica change: %v", r.RangeID, err))
	}
	nd := cmd.GetChangeReplicas().GetDesc()
	r.mu.Lock()
	gen := r.mu.desc.GetGeneration()
	r.mu.Unlock()
	if nd == nil || nd.GetGeneration() != gen+1 || nd.GetRangeId() != r.RangeID {
		r.applyConfChange(&raftpb.ConfChangeV2{}, as)
		return &cmd, result{err: kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: replica change for generation %d, the range is at %d", r.RangeID, nd.GetGeneration()-1, gen)}
	}
	if err := b.PutLocalDescriptor(nd); err != nil {
		r.applyConfChange(&raftpb.ConfChangeV2{}, as)
		return &cmd, result{err: err}
	}
	r.applyConfChange(cc, as)
	return &cmd, result{resp: &cmdpb.BatchResponse{Revision: max(as.MaxTS, 1), Descriptors: []*metapb.RangeDescriptor{nd}}}
}

// leaderTarget picks the voter to hand leadership to when none is named:
// the most up-to-date other voter. 0 if there is none. Called with r.mu
// held.
func (r *Replica) leaderTargetLocked(st raft.Status) uint64 {
	var target, best uint64
	for id, pr := range st.Progress {
		if id != r.replicaID && !pr.IsLearner && pr.Match >= best {
			target, best = id, pr.Match
		}
	}
	return target
}
