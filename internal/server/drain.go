package server

import (
	"context"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
)

// Member removal of a member that holds replicas (etcd's member remove,
// concord node decommission): its leaderships move off first (so the TSO
// settles and revisions stay dense), then every range re-creates its
// replica there on another member when there is one (a learner, caught up
// and promoted before the old replica goes, so the range never has fewer
// replicas than before) and drops it (one Raft conf change each, with the
// descriptor, recorded in the meta index), and only then is the member's
// record deleted. A range whose only replica is on the member stops the
// removal with FAILED_PRECONDITION.

// removeMember drains member id and deletes its record.
func (n *Node) removeMember(ctx context.Context, change *cmdpb.SysChangeNode) (*metapb.NodeRecord, error) {
	rec, _, _, err := n.decommission(ctx, change.GetNodeId())
	return rec, err
}

// decommission drains member id (its leaderships, then its replicas) and
// deletes its record, returning it and how many replicas moved elsewhere
// or were only dropped.
func (n *Node) decommission(ctx context.Context, id uint64) (_ *metapb.NodeRecord, moved, dropped int, _ error) {
	if !n.cfg.UnsafeNoStrictReconfigCheck {
		if err := n.mayRemoveMember(ctx, id); err != nil {
			return nil, 0, 0, err
		}
	}
	if err := n.drainLeadership(ctx, id); err != nil {
		n.log.Info("member remove: its leaderships did not all move (those ranges elect a leader when it goes)", "member", id, "err", err)
	}
	moved, dropped, err := n.drainReplicas(ctx, id)
	if err != nil {
		return nil, moved, dropped, fmt.Errorf("member remove: %w", err)
	}
	if moved+dropped > 0 {
		n.log.Info("member remove: replicas moved off", "member", id, "moved", moved, "dropped", dropped)
	}
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_ChangeNode{ChangeNode: &cmdpb.SysChangeNode{NodeId: id, Remove: true}}})
	if err != nil {
		return nil, moved, dropped, err
	}
	return resp.GetNode(), moved, dropped, nil
}

// drainReplicas moves every replica off node id: each range first gains a
// replica on the live member holding fewest (one that holds none of the
// range) so that it keeps its replication factor, then drops the one on
// id; a range with no such member left only drops it. It returns how many
// replicas moved and how many were only dropped.
func (n *Node) drainReplicas(ctx context.Context, id uint64) (moved, dropped int, err error) {
	ranges, err := n.allDescriptors(ctx)
	if err != nil {
		return 0, 0, err
	}
	members, err := n.members(ctx)
	if err != nil {
		return 0, 0, err
	}
	// Candidates: started voting members other than id that answer now,
	// by the replicas they hold.
	var ids []uint64
	for _, m := range members {
		if m.GetNodeId() != id && !m.GetIsLearner() && m.GetName() != "" {
			ids = append(ids, m.GetNodeId())
		}
	}
	load := map[uint64]int{}
	for node := range n.statusesOf(ctx, ids, true) {
		load[node] = 0
	}
	for _, d := range ranges {
		for _, rd := range d.GetReplicas() {
			if _, ok := load[rd.GetNodeId()]; ok {
				load[rd.GetNodeId()]++
			}
		}
	}
	for _, d := range ranges {
		if d.ReplicaOn(id) == nil {
			continue
		}
		var target uint64
		for node, l := range load {
			if d.ReplicaOn(node) == nil && (target == 0 || l < load[target] || (l == load[target] && node < target)) {
				target = node
			}
		}
		if target != 0 {
			nd, err := n.addReplica(ctx, d, target)
			if err != nil {
				return moved, dropped, fmt.Errorf("range %d: add a replica on member %x: %w", d.GetRangeId(), target, err)
			}
			d = nd
			load[target]++
		}
		if _, err := n.removeReplicaRetry(ctx, d, id); err != nil {
			return moved, dropped, fmt.Errorf("range %d: %w", d.GetRangeId(), err)
		}
		if target != 0 {
			moved++
		} else {
			dropped++
		}
	}
	return moved, dropped, nil
}

// removeReplicaRetry removes d's replica on node, retrying while a leader
// moves or a change is pending.
func (n *Node) removeReplicaRetry(ctx context.Context, d *metapb.RangeDescriptor, node uint64) (*metapb.RangeDescriptor, error) {
	return n.changeReplicasRetry(ctx, d, &cmdpb.ChangeReplicasRequest{RemoveNode: node}, 50)
}

// changeReplicasRetry sends a replica change, retrying up to attempts
// times (100 ms apart) while a leader moves, a change is pending or a
// learner catches up, and records the new descriptor in the meta index.
func (n *Node) changeReplicasRetry(ctx context.Context, d *metapb.RangeDescriptor, change *cmdpb.ChangeReplicasRequest, attempts int) (*metapb.RangeDescriptor, error) {
	for attempt := 0; ; attempt++ {
		nd, err := n.router.ChangeReplicas(ctx, d, change)
		if err == nil {
			// The range's own descriptor is the truth; the index learns
			// it now rather than at the leader's next repair round.
			if err := n.recordDescriptor(ctx, nd); err != nil {
				return nil, err
			}
			return nd, nil
		}
		switch kvpb.CodeOf(err) {
		case kvpb.ErrorCode_RETRY, kvpb.ErrorCode_NOT_LEADER, kvpb.ErrorCode_UNAVAILABLE:
		default:
			return nil, err
		}
		if attempt >= attempts || ctx.Err() != nil {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mayRemoveMember is etcd's --strict-reconfig-check for a removal: the
// voting members that answer, without the one removed, must be a quorum of
// the membership after it.
func (n *Node) mayRemoveMember(ctx context.Context, id uint64) error {
	members, err := n.members(ctx)
	if err != nil {
		return err
	}
	voters, removingVoter := 0, false
	var others []uint64
	for _, m := range members {
		if m.GetIsLearner() {
			continue
		}
		voters++
		if m.GetNodeId() == id {
			removingVoter = true
			continue
		}
		others = append(others, m.GetNodeId())
	}
	if !removingVoter {
		return nil
	}
	if active := len(n.statusesOf(ctx, others, true)); active < (voters-1)/2+1 {
		return rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	return nil
}

// drainLeadership asks member id to hand every leadership it holds to
// other members (itself when id is this node).
func (n *Node) drainLeadership(ctx context.Context, id uint64) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if id == n.ident.NodeID {
		return n.moveLeaderships(ctx, 0)
	}
	conn, err := n.transport.Conn(ctx, id)
	if err != nil {
		return err
	}
	_, err = rpcpb.NewPeerClient(conn).Drain(ctx, &rpcpb.DrainRequest{})
	return err
}

// Drain hands every leadership this node holds to other members.
func (s *peerService) Drain(ctx context.Context, _ *rpcpb.DrainRequest) (*rpcpb.DrainResponse, error) {
	if err := s.n.moveLeaderships(ctx, 0); err != nil {
		return nil, err
	}
	return &rpcpb.DrainResponse{}, nil
}

// moveLeaderships hands the leadership of every range this node leads to
// node target wherever it has a replica (0: to each range's most
// up-to-date other voter), settling the TSO and the leases first for the
// meta range. Ranges target holds no replica of are left alone.
func (n *Node) moveLeaderships(ctx context.Context, target uint64) error {
	errs := make(chan error, len(n.store.Replicas()))
	done := make(chan struct{})
	pending := 0
	for _, r := range n.store.Replicas() {
		st := r.Status()
		if !st.IsLeader {
			continue
		}
		var to uint64
		if target != 0 {
			rd := r.Descriptor().ReplicaOn(target)
			if rd == nil {
				continue
			}
			to = rd.ID()
		}
		pending++
		go func() {
			defer func() { done <- struct{}{} }()
			if err := n.handOver(ctx, r, to); err != nil {
				errs <- err
			}
		}()
	}
	for range pending {
		<-done
	}
	close(errs)
	for err := range errs {
		return err
	}
	return nil
}

// addReplica adds a voting replica of range d on node: a learner first,
// which the node creates and the leader brings up to date by snapshot,
// then promoted once it has caught up; the meta index records the result.
func (n *Node) addReplica(ctx context.Context, d *metapb.RangeDescriptor, node uint64) (*metapb.RangeDescriptor, error) {
	nd, err := n.changeReplicasRetry(ctx, d, &cmdpb.ChangeReplicasRequest{AddLearnerNode: node}, 50)
	if err != nil {
		return nil, fmt.Errorf("add a learner: %w", err)
	}
	rd := nd.ReplicaOn(node)
	if rd == nil {
		return nil, fmt.Errorf("range %d has no replica on node %d after adding it", d.GetRangeId(), node)
	}
	// A learner that cannot be made a voter is taken out again, so that a
	// failed add leaves the range as it was.
	undo := func(cause error) error {
		if _, err := n.removeReplicaRetry(ctx, nd, node); err != nil {
			n.log.Warn("a learner replica that failed to join was not removed", "range", nd.GetRangeId(), "node", node, "err", err)
		}
		return cause
	}
	if err := n.createReplicaOn(ctx, node, nd.GetRangeId(), rd.ID()); err != nil {
		return nil, undo(fmt.Errorf("create the replica on node %d: %w", node, err))
	}
	// The learner catches up by snapshot, then from the log.
	pd, err := n.changeReplicasRetry(ctx, nd, &cmdpb.ChangeReplicasRequest{PromoteNode: node}, 300)
	if err != nil {
		return nil, undo(fmt.Errorf("promote the learner: %w", err))
	}
	nd = pd
	return nd, nil
}

// createReplicaOn makes node create its uninitialized replica of a range.
func (n *Node) createReplicaOn(ctx context.Context, node, rangeID, replicaID uint64) error {
	if node == n.ident.NodeID {
		return n.store.AddUninitialized(rangeID, replicaID)
	}
	conn, err := n.transport.Conn(ctx, node)
	if err != nil {
		return err
	}
	_, err = rpcpb.NewPeerClient(conn).CreateReplica(ctx, &rpcpb.CreateReplicaRequest{RangeId: rangeID, ReplicaId: replicaID})
	return err
}

// CreateReplica creates an uninitialized replica of a range that added a
// learner here.
func (s *peerService) CreateReplica(ctx context.Context, req *rpcpb.CreateReplicaRequest) (*rpcpb.CreateReplicaResponse, error) {
	if req.GetRangeId() == 0 || req.GetReplicaId() == 0 {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "server: create replica needs a range and a replica id")
	}
	if err := s.n.store.AddUninitialized(req.GetRangeId(), req.GetReplicaId()); err != nil {
		return nil, err
	}
	return &rpcpb.CreateReplicaResponse{}, nil
}
