package server

import (
	"context"
	"sort"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/pd"
	"github.com/concorddb/concord/internal/replica"
)

// The placement driver's executor (internal/pd decides): on the node that
// leads the meta range, every PlacementInterval it builds pd.State from the
// member records, every node's status and the range descriptors, asks
// pd.Decide what to do, and carries the operations out one at a time, each
// only on the descriptor generation it was decided on: add a learner
// replica (which its node creates and the leader brings up by snapshot),
// promote a learner that caught up, remove a replica, move a leadership.
// A node that has not answered for DeadNodeTimeout is dead: its replicas
// are re-created elsewhere. Learner members (etcd's member add
// --learner) take no replicas.

// placementState is what the executor remembers between rounds. Owned by
// the runPlacement goroutine.
type placementState struct {
	// lastLive is when each node last answered, as this meta leader saw
	// it; a node it never saw answer counts from when it began leading.
	lastLive map[uint64]time.Time
	// since is when this node began leading the meta range (zero: it does
	// not lead).
	since time.Time
}

// runPlacement runs the executor while this node leads the meta range.
func (n *Node) runPlacement() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.PlacementInterval)
	defer t.Stop()
	ps := &placementState{lastLive: map[uint64]time.Time{}}
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		r := n.store.Replica(meta.MetaRangeID)
		if r == nil || !r.Status().IsLeader {
			ps.since = time.Time{}
			clear(ps.lastLive)
			continue
		}
		if ps.since.IsZero() {
			ps.since = time.Now()
		}
		ctx, cancel := context.WithTimeout(context.Background(), placementRoundTimeout)
		if err := n.placeOnce(ctx, ps); err != nil {
			n.log.Debug("placement round", "err", err)
		}
		cancel()
	}
}

// placementRoundTimeout bounds one round: its status probes and the
// operations it carries out.
const placementRoundTimeout = 60 * time.Second

// maxOpsPerRound bounds the operations one round carries out; the next
// round decides again on what they changed.
const maxOpsPerRound = 8

// placeOnce is one round of the executor.
func (n *Node) placeOnce(ctx context.Context, ps *placementState) error {
	st, descs, err := n.placementStateNow(ctx, ps)
	if err != nil {
		return err
	}
	if err := st.Validate(); err != nil {
		return err
	}
	ops := pd.Decide(st, pd.DefaultLimits())
	done := 0
	for _, op := range ops {
		if done >= maxOpsPerRound || ctx.Err() != nil {
			break
		}
		d := descs[op.RangeID]
		if d == nil || d.GetGeneration() != op.Generation {
			continue
		}
		if err := n.execute(ctx, op, d); err != nil {
			n.log.Info("placement: operation not done", "op", op.String(), "err", err)
			continue
		}
		n.log.Info("placement", "op", op.String())
		done++
	}
	return nil
}

// execute carries out one operation on range d.
func (n *Node) execute(ctx context.Context, op pd.Op, d *metapb.RangeDescriptor) error {
	switch op.Kind {
	case pd.AddLearner:
		nd, err := n.router.ChangeReplicas(ctx, d, &cmdpb.ChangeReplicasRequest{AddLearnerNode: op.Node})
		if err != nil {
			return err
		}
		if err := n.recordDescriptor(ctx, nd); err != nil {
			return err
		}
		rd := nd.ReplicaOn(op.Node)
		if rd == nil {
			return kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "server: range %d has no replica on node %d after adding it", d.GetRangeId(), op.Node)
		}
		return n.createReplicaOn(ctx, op.Node, nd.GetRangeId(), rd.ID())
	case pd.Promote:
		// RETRY while the learner catches up: the next round tries again.
		nd, err := n.router.ChangeReplicas(ctx, d, &cmdpb.ChangeReplicasRequest{PromoteNode: op.Node})
		if err != nil {
			return err
		}
		return n.recordDescriptor(ctx, nd)
	case pd.RemoveReplica:
		nd, err := n.router.ChangeReplicas(ctx, d, &cmdpb.ChangeReplicasRequest{RemoveNode: op.Node})
		if err != nil {
			return err
		}
		return n.recordDescriptor(ctx, nd)
	case pd.TransferLeader:
		return n.transferLeaderOn(ctx, op.Node, d.GetRangeId(), op.Target)
	}
	return nil
}

// recordDescriptor writes a range's new descriptor into the meta index.
func (n *Node) recordDescriptor(ctx context.Context, d *metapb.RangeDescriptor) error {
	_, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_UpdateRanges{UpdateRanges: &cmdpb.SysUpdateRanges{Descriptors: []*metapb.RangeDescriptor{d}}}})
	return err
}

// placementStateNow builds the pd state: the members with their liveness,
// every range with its leader, and the descriptors by range id.
func (n *Node) placementStateNow(ctx context.Context, ps *placementState) (pd.State, map[uint64]*metapb.RangeDescriptor, error) {
	members, err := n.members(ctx)
	if err != nil {
		return pd.State{}, nil, err
	}
	ranges, err := n.allDescriptors(ctx)
	if err != nil {
		return pd.State{}, nil, err
	}
	var ids []uint64
	for _, m := range members {
		if m.GetName() != "" {
			ids = append(ids, m.GetNodeId())
		}
	}
	answers := n.statusesOf(ctx, ids, false)
	now := time.Now()
	live := map[uint64]bool{}
	type lead struct {
		node, term uint64
		qps        float64
	}
	leaders := map[uint64]lead{}
	for id, st := range answers {
		live[id] = true
		ps.lastLive[id] = now
		for _, rs := range st.GetReplicas() {
			if rs.GetLeader() == id {
				if l, ok := leaders[rs.GetRangeId()]; !ok || rs.GetTerm() > l.term {
					leaders[rs.GetRangeId()] = lead{node: id, term: rs.GetTerm(), qps: rs.GetQps()}
				}
			}
		}
	}
	st := pd.State{ReplicationFactor: n.cfg.ReplicationFactor}
	for _, m := range members {
		loc, _ := pd.ParseLocality(m.GetLocality())
		node := pd.Node{ID: m.GetNodeId(), Locality: loc, Live: live[m.GetNodeId()], Draining: m.GetIsLearner() || m.GetName() == ""}
		if !node.Live {
			seen, ok := ps.lastLive[m.GetNodeId()]
			if !ok {
				seen = ps.since
			}
			node.Dead = now.Sub(seen) > n.cfg.DeadNodeTimeout
		}
		st.Nodes = append(st.Nodes, node)
	}
	descs := map[uint64]*metapb.RangeDescriptor{}
	for _, d := range ranges {
		descs[d.GetRangeId()] = d
		r := pd.Range{ID: d.GetRangeId(), Generation: d.GetGeneration(), Leader: leaders[d.GetRangeId()].node, QPS: leaders[d.GetRangeId()].qps}
		for _, rd := range d.GetReplicas() {
			if rd.GetLearner() {
				r.Learners = append(r.Learners, rd.GetNodeId())
			} else {
				r.Voters = append(r.Voters, rd.GetNodeId())
			}
		}
		st.Ranges = append(st.Ranges, r)
	}
	sort.Slice(st.Ranges, func(i, j int) bool { return st.Ranges[i].ID < st.Ranges[j].ID })
	return st, descs, nil
}

// transferLeaderOn asks node (the range's leader) to hand range's
// leadership to its replica on target.
func (n *Node) transferLeaderOn(ctx context.Context, node, rangeID, target uint64) error {
	if node == n.ident.NodeID {
		return n.transferLeader(ctx, rangeID, target)
	}
	conn, err := n.transport.Conn(ctx, node)
	if err != nil {
		return err
	}
	_, err = rpcpb.NewPeerClient(conn).TransferLeader(ctx, &rpcpb.TransferLeaderRequest{RangeId: rangeID, TargetNode: target})
	return err
}

// transferLeader hands this node's leadership of range to its replica on
// target (the meta range's with the TSO settled first, so revisions stay
// dense, and the leases checkpointed).
func (n *Node) transferLeader(ctx context.Context, rangeID, target uint64) error {
	r := n.store.Replica(rangeID)
	if r == nil {
		return kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "server: no replica of range %d here", rangeID)
	}
	rd := r.Descriptor().ReplicaOn(target)
	if rd == nil || rd.GetLearner() {
		return kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "server: range %d has no voter on node %d", rangeID, target)
	}
	return n.handOver(ctx, r, rd.ID())
}

// handOver hands r's leadership to its replica to (0: the most up-to-date
// other voter) if r leads: for the meta range with the TSO settled first
// (so that the next leader continues without a gap, and resumed if the
// move failed) and the leases checkpointed.
func (n *Node) handOver(ctx context.Context, r *replica.Replica, to uint64) error {
	st := r.Status()
	if !st.IsLeader {
		return nil
	}
	if r.RangeID == meta.MetaRangeID {
		if err := n.oracle.Settle(ctx, st.Term); err != nil {
			return err
		}
		if err := n.leases.lessor.Settle(ctx); err != nil {
			n.log.Warn("leases not checkpointed before moving the meta leadership", "err", err)
		}
	}
	err := r.TransferLeadershipTo(ctx, to)
	if err != nil && r.RangeID == meta.MetaRangeID {
		n.oracle.Resume(st.Term)
	}
	return err
}

// TransferLeader hands this node's leadership of a range to another node.
func (s *peerService) TransferLeader(ctx context.Context, req *rpcpb.TransferLeaderRequest) (*rpcpb.TransferLeaderResponse, error) {
	if err := s.n.transferLeader(ctx, req.GetRangeId(), req.GetTargetNode()); err != nil {
		return nil, err
	}
	return &rpcpb.TransferLeaderResponse{}, nil
}
