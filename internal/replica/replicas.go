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

// changeReplicas serves a ChangeReplicasRequest and returns the new
// descriptor once the change applied here:
//   - remove_node: removes the range's replica there (a range with none is
//     answered with its descriptor as it is);
//   - add_learner_node: adds a learner replica there, with the range's next
//     replica id (the node must then create it, store.AddUninitialized,
//     to receive its snapshot); a node that holds one already is answered
//     as it is;
//   - promote_node: makes the learner there a voter, once it has caught up
//     with the leader's log (RETRY until then).
//
// Errors: NOT_LEADER (this replica leads no more; it hands its leadership
// to another voter first when it is the one removed), RETRY (a change is
// pending, this leader has not applied an entry of its term yet, or the
// learner lags), FAILED_PRECONDITION (removing the last voter),
// UNAVAILABLE (a frozen range), AMBIGUOUS (ctx ended with the change
// proposed).
func (r *Replica) changeReplicas(ctx context.Context, cr *cmdpb.ChangeReplicasRequest) (*cmdpb.BatchResponse, error) {
	r.mu.Lock()
	if !r.leadsLocked() {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, err
	}
	d := r.mu.desc
	unchanged := &cmdpb.BatchResponse{Descriptors: []*metapb.RangeDescriptor{d}}
	switch {
	case r.mu.applied.Frozen:
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d is frozen for a merge; change its replicas after", r.RangeID)
	case r.mu.confPending != 0 || r.mu.applied.Term != r.mu.term:
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: a replica change is pending; retry", r.RangeID)
	}
	nd := proto.CloneOf(d)
	nd.Generation++
	var cc raftpb.ConfChange
	var what string
	switch {
	case cr.GetRemoveNode() != 0:
		rd := d.ReplicaOn(cr.GetRemoveNode())
		if rd == nil {
			r.mu.Unlock()
			return unchanged, nil
		}
		target := rd.ID()
		voters := 0
		for _, x := range d.GetReplicas() {
			if !x.GetLearner() {
				voters++
			}
		}
		if voters == 1 && !rd.GetLearner() {
			r.mu.Unlock()
			return nil, kvpb.Errorf(kvpb.ErrorCode_FAILED_PRECONDITION, "replica: range %d has its only voter on node %d; it cannot be removed", r.RangeID, cr.GetRemoveNode())
		}
		if target == r.replicaID {
			r.mu.Unlock()
			// The leader leaves: another voter leads first, then it
			// removes this one.
			if err := r.TransferLeadershipTo(ctx, 0); err != nil {
				return nil, err
			}
			r.mu.Lock()
			err := r.notLeaderLocked()
			r.mu.Unlock()
			return nil, err
		}
		nd.Replicas = nd.Replicas[:0]
		for _, x := range d.GetReplicas() {
			if x.ID() != target {
				nd.Replicas = append(nd.Replicas, proto.CloneOf(x))
			}
		}
		cc = raftpb.ConfChange{Type: raftpb.ConfChangeRemoveNode.Enum(), NodeId: new(target)}
		what = fmt.Sprintf("removing replica %d on node %d", target, cr.GetRemoveNode())
	case cr.GetAddLearnerNode() != 0:
		if d.ReplicaOn(cr.GetAddLearnerNode()) != nil {
			r.mu.Unlock()
			return unchanged, nil
		}
		id := d.GetNextReplicaId()
		for _, x := range d.GetReplicas() {
			id = max(id, x.ID()+1)
		}
		nd.NextReplicaId = id + 1
		nd.Replicas = append(nd.Replicas, &metapb.ReplicaDescriptor{NodeId: cr.GetAddLearnerNode(), ReplicaId: id, Learner: true})
		cc = raftpb.ConfChange{Type: raftpb.ConfChangeAddLearnerNode.Enum(), NodeId: new(id)}
		what = fmt.Sprintf("adding learner replica %d on node %d", id, cr.GetAddLearnerNode())
	case cr.GetPromoteNode() != 0:
		rd := nd.ReplicaOn(cr.GetPromoteNode())
		if rd == nil {
			r.mu.Unlock()
			return nil, kvpb.Errorf(kvpb.ErrorCode_FAILED_PRECONDITION, "replica: range %d has no replica on node %d to promote", r.RangeID, cr.GetPromoteNode())
		}
		if !rd.GetLearner() {
			r.mu.Unlock()
			return unchanged, nil
		}
		st := r.mu.rn.Status()
		if pr, ok := st.Progress[rd.ID()]; !ok || pr.Match < st.HardState.GetCommit() {
			r.mu.Unlock()
			return nil, kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: learner on node %d has not caught up yet", r.RangeID, cr.GetPromoteNode())
		}
		rd.Learner = false
		cc = raftpb.ConfChange{Type: raftpb.ConfChangeAddNode.Enum(), NodeId: new(rd.ID())}
		what = fmt.Sprintf("promoting replica %d on node %d", rd.ID(), cr.GetPromoteNode())
	default:
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: range %d: an empty replica change", r.RangeID)
	}
	r.mu.nextID++
	id := r.mu.nextID
	cmd := &cmdpb.Command{Id: id, Proposer: r.cfg.NodeID, ChangeReplicas: &cmdpb.ChangeReplicasTrigger{Desc: nd}}
	cctx, err := proto.Marshal(cmd)
	if err != nil {
		r.mu.Unlock()
		return nil, err
	}
	cc.Context = cctx
	if err := r.mu.rn.ProposeConfChange(&cc); err != nil {
		r.mu.Unlock()
		return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: replica change dropped: %v", r.RangeID, err)
	}
	done := make(chan result, 1)
	r.mu.proposals[id] = &proposal{done: done}
	r.mu.confPending = id
	r.mu.Unlock()
	r.signal()
	r.log.Info(what, "generation", nd.GetGeneration())
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
