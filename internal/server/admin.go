package server

import (
	"context"
	"sync"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/etcdapi"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
)

// adminService serves rpcpb.Admin on the client port: the ranges of
// the cluster for `concord range`.
type adminService struct {
	rpcpb.UnimplementedAdminServer
	n *Node
}

var _ rpcpb.AdminServer = adminService{}

// Ranges lists every user range, read from the meta range, with each
// range's leader and recent QPS as its nodes report them (a node that does
// not answer in time is left out).
func (a adminService) Ranges(ctx context.Context, _ *rpcpb.RangesRequest) (*rpcpb.RangesResponse, error) {
	if err := a.n.router.Refresh(ctx); err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	descs, err := a.n.router.Ranges(ctx)
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	statuses := a.n.replicaStatuses(ctx, descs)
	out := &rpcpb.RangesResponse{}
	for _, d := range descs {
		info := a.n.rangeInfo(d)
		if st, ok := statuses[d.GetRangeId()]; ok {
			info.Leaseholder, info.Qps = st.GetLeader(), st.GetQps()
		}
		out.Ranges = append(out.Ranges, info)
	}
	return out, nil
}

// replicaStatuses asks every node holding a replica of descs for its
// replicas' status and returns, per range, its leader's own report (or
// any replica's when the leader did not answer).
func (n *Node) replicaStatuses(ctx context.Context, descs []*metapb.RangeDescriptor) map[uint64]*rpcpb.ReplicaStatus {
	nodes := map[uint64]bool{}
	for _, d := range descs {
		for _, r := range d.GetReplicas() {
			nodes[r.GetNodeId()] = true
		}
	}
	byNode := map[uint64]*rpcpb.NodeStatusResponse{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for id := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			st, err := n.nodeStatus(ctx, id)
			if err == nil {
				mu.Lock()
				byNode[id] = st
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	out := map[uint64]*rpcpb.ReplicaStatus{}
	leads := map[uint64]bool{} // out[range] is its leader's own report
	for id, st := range byNode {
		for _, r := range st.GetReplicas() {
			if leads[r.GetRangeId()] {
				continue
			}
			if _, ok := out[r.GetRangeId()]; !ok || r.GetLeader() == id {
				out[r.GetRangeId()] = r
				leads[r.GetRangeId()] = r.GetLeader() == id
			}
		}
	}
	return out
}

// SplitRange splits the range holding the request's key there.
func (a adminService) SplitRange(ctx context.Context, req *rpcpb.SplitRangeRequest) (*rpcpb.SplitRangeResponse, error) {
	left, right, err := a.n.Split(ctx, req.GetKey())
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	out := &rpcpb.SplitRangeResponse{Right: a.n.rangeInfo(right)}
	if left != nil {
		out.Left = a.n.rangeInfo(left)
	}
	return out, nil
}

// MergeRange merges the range starting at the request's key into its left
// neighbour.
func (a adminService) MergeRange(ctx context.Context, req *rpcpb.MergeRangeRequest) (*rpcpb.MergeRangeResponse, error) {
	merged, err := a.n.Merge(ctx, req.GetKey())
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	return &rpcpb.MergeRangeResponse{Merged: a.n.rangeInfo(merged)}, nil
}

// rangeInfo describes d as this node sees it: the leader as its replica of
// d knows it (or as the router last found it) and the size on its disk.
func (n *Node) rangeInfo(d *metapb.RangeDescriptor) *rpcpb.RangeInfo {
	info := &rpcpb.RangeInfo{
		RangeId:          d.GetRangeId(),
		StartKey:         etcdKey(d.GetStartKey()),
		EndKey:           etcdKey(d.GetEndKey()),
		Generation:       d.GetGeneration(),
		Leaseholder:      n.router.Leader(d.GetRangeId()),
		ApproximateBytes: -1,
	}
	for _, r := range d.GetReplicas() {
		info.Replicas = append(info.Replicas, r.GetNodeId())
	}
	info.Keys, info.Qps = -1, -1
	if r := n.store.Replica(d.GetRangeId()); r != nil && d.GetRangeId() != meta.MetaRangeID && !r.Uninitialized() {
		st := r.Status()
		if st.Leader != 0 {
			info.Leaseholder = st.Leader
		}
		if st.IsLeader {
			info.Qps = st.QPS
		}
		span := keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}
		if b, err := n.rangeBytes(span); err == nil {
			info.ApproximateBytes = b
		}
		if k, err := r.CountKeys(); err == nil {
			info.Keys = k
		}
	}
	return info
}

// etcdKey is the etcd key a global user key stands for: "" for the start
// and the end of the user keyspace.
func etcdKey(k []byte) []byte {
	if !keys.IsUser(k) || len(k) == 1 {
		return nil
	}
	return keys.StripUser(k)
}

// Nodes lists the members with what each holds, asking each one.
func (a adminService) Nodes(ctx context.Context, _ *rpcpb.NodesRequest) (*rpcpb.NodesResponse, error) {
	members, err := a.n.members(ctx)
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	var ids []uint64
	for _, m := range members {
		if m.GetName() != "" { // else registered, never started
			ids = append(ids, m.GetNodeId())
		}
	}
	sts := a.n.statusesOf(ctx, ids, true)
	out := &rpcpb.NodesResponse{Nodes: make([]*rpcpb.NodeInfo, len(members))}
	for i, m := range members {
		info := &rpcpb.NodeInfo{NodeId: m.GetNodeId(), Name: m.GetName(), PeerUrls: m.GetPeerUrls(), ClientUrls: m.GetClientUrls(), Learner: m.GetIsLearner(), Locality: m.GetLocality()}
		if st, ok := sts[m.GetNodeId()]; ok {
			info.Live, info.Replicas, info.Leaders, info.DbSizeBytes = true, st.GetReplicaCount(), st.GetLeaderCount(), st.GetDbSizeBytes()
		}
		out.Nodes[i] = info
	}
	return out, nil
}

// Decommission moves every replica off a member and removes it.
func (a adminService) Decommission(ctx context.Context, req *rpcpb.DecommissionRequest) (*rpcpb.DecommissionResponse, error) {
	_, moved, dropped, err := a.n.decommission(ctx, req.GetNodeId())
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	return &rpcpb.DecommissionResponse{Moved: uint64(moved), Dropped: uint64(dropped)}, nil
}
