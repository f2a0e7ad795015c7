package server

import (
	"context"

	"github.com/concorddb/concord/internal/concordpb"
	"github.com/concorddb/concord/internal/etcdapi"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/store"
)

// adminService serves concordpb.Admin on the client port: the ranges of
// the cluster for `concord range`.
type adminService struct {
	concordpb.UnimplementedAdminServer
	n *Node
}

var _ concordpb.AdminServer = adminService{}

// Ranges lists every user range, read from the meta range.
func (a adminService) Ranges(ctx context.Context, _ *concordpb.RangesRequest) (*concordpb.RangesResponse, error) {
	if err := a.n.router.Refresh(ctx); err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	descs, err := a.n.router.Ranges(ctx)
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	out := &concordpb.RangesResponse{}
	for _, d := range descs {
		out.Ranges = append(out.Ranges, a.n.rangeInfo(d))
	}
	return out, nil
}

// SplitRange splits the range holding the request's key there.
func (a adminService) SplitRange(ctx context.Context, req *concordpb.SplitRangeRequest) (*concordpb.SplitRangeResponse, error) {
	left, right, err := a.n.Split(ctx, req.GetKey())
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	out := &concordpb.SplitRangeResponse{Right: a.n.rangeInfo(right)}
	if left != nil {
		out.Left = a.n.rangeInfo(left)
	}
	return out, nil
}

// MergeRange merges the range starting at the request's key into its left
// neighbour.
func (a adminService) MergeRange(ctx context.Context, req *concordpb.MergeRangeRequest) (*concordpb.MergeRangeResponse, error) {
	merged, err := a.n.Merge(ctx, req.GetKey())
	if err != nil {
		return nil, etcdapi.GRPCError(err)
	}
	return &concordpb.MergeRangeResponse{Merged: a.n.rangeInfo(merged)}, nil
}

// rangeInfo describes d as this node sees it: the leader as its replica of
// d knows it (or as the router last found it) and the size on its disk.
func (n *Node) rangeInfo(d *concordpb.RangeDescriptor) *concordpb.RangeInfo {
	info := &concordpb.RangeInfo{
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
	if r := n.store.Replica(d.GetRangeId()); r != nil && d.GetRangeId() != store.MetaRangeID {
		if l := r.Status().Leader; l != 0 {
			info.Leaseholder = l
		}
		if b, err := n.engine.ApproximateBytes(keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}); err == nil {
			info.ApproximateBytes = b
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
