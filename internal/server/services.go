package server

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/etcdapi"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/router"
	"github.com/concorddb/concord/internal/tso"
)

// peerService serves the Peer gRPC service: what other nodes ask of this
// one.
type peerService struct {
	rpcpb.UnimplementedPeerServer
	n *Node
}

func (s *peerService) Raft(stream rpcpb.Peer_RaftServer) error {
	return s.n.transport.ServeRaft(stream)
}

func (s *peerService) Forward(stream rpcpb.Peer_ForwardServer) error {
	return router.ServeForward(stream, s.n.store.Execute, s.n.tel.metrics)
}

func (s *peerService) Timestamp(ctx context.Context, req *rpcpb.TimestampRequest) (*rpcpb.TimestampResponse, error) {
	first, err := s.n.localTimestamp(ctx, int(req.GetCount()))
	if err != nil {
		return &rpcpb.TimestampResponse{Error: kvpb.AsError(err)}, nil
	}
	return &rpcpb.TimestampResponse{First: first, Count: req.GetCount()}, nil
}

func (s *peerService) Join(ctx context.Context, req *rpcpb.JoinRequest) (*rpcpb.JoinResponse, error) {
	n := s.n
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_AddNode{AddNode: &cmdpb.SysAddNode{Node: req.GetNode()}}})
	if err != nil {
		return nil, err
	}
	nodes, err := n.members(ctx)
	if err != nil {
		return nil, err
	}
	n.log.Info("node joined", "joined", resp.GetNode().GetNodeId(), "name", req.GetNode().GetName())
	return &rpcpb.JoinResponse{
		ClusterId: n.ident.ClusterID,
		NodeId:    resp.GetNode().GetNodeId(),
		Nodes:     nodes,
		Meta:      n.router.MetaDescriptor(),
	}, nil
}

func (s *peerService) NodeStatus(ctx context.Context, req *rpcpb.NodeStatusRequest) (*rpcpb.NodeStatusResponse, error) {
	out := &rpcpb.NodeStatusResponse{NodeId: s.n.ident.NodeID, DbSizeBytes: s.n.engine.DiskUsageBytes(), AwakeCount: uint64(s.n.store.Awake())}
	replicas, leaders := s.n.store.Count()
	out.ReplicaCount, out.LeaderCount = uint64(replicas), uint64(leaders)
	if req.GetSummary() {
		return out, nil
	}
	for _, r := range s.n.store.Replicas() {
		st := r.Status()
		out.Replicas = append(out.Replicas, &rpcpb.ReplicaStatus{RangeId: st.RangeID, Leader: st.Leader, Term: st.Term, Commit: st.Commit, Applied: st.Applied, Qps: st.QPS})
	}
	return out, nil
}

// local is the router's view of this node.
type local struct{ n *Node }

var _ router.Local = local{}

func (l local) Execute(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	return l.n.store.Execute(ctx, req)
}

func (l local) Timestamp(ctx context.Context, n int) (int64, error) {
	return l.n.localTimestamp(ctx, n)
}

// localTimestamp serves the TSO if this node leads the meta range with a
// valid lease: count consecutive new revisions, or with count 0 the
// cluster's newest.
func (n *Node) localTimestamp(ctx context.Context, count int) (int64, error) {
	r := n.store.Replica(meta.MetaRangeID)
	if r == nil {
		return 0, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "server: node %d holds no meta replica", n.ident.NodeID)
	}
	st := r.Status()
	if !st.IsLeader {
		n.oracle.Reset()
		hint := st.Leader
		if hint == n.ident.NodeID {
			hint = 0
		}
		return 0, &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, Message: "server: not the meta leader", LeaderHint: hint}
	}
	if !st.LeaseValid {
		// A linearizable read waits for the lease (or fails without it).
		if _, err := (metaWindow{n}).Load(ctx); err != nil {
			return 0, err
		}
	}
	if count == 0 {
		return n.oracle.Current(ctx, st.Term)
	}
	return n.oracle.Next(ctx, count, st.Term)
}

// metaWindow persists the TSO window through the local meta replica.
type metaWindow struct{ n *Node }

var _ tso.Window = metaWindow{}

func (w metaWindow) Load(ctx context.Context) (int64, error) {
	r := w.n.store.Replica(meta.MetaRangeID)
	if r == nil {
		return 0, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "server: no meta replica")
	}
	resp, err := r.Read(ctx, &cmdpb.BatchRequest{RangeId: meta.MetaRangeID, Sys: &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Get{Get: &cmdpb.SysGet{Key: keys.TSOWindow}}}})
	if err != nil {
		return 0, err
	}
	kvs := resp.GetSys().GetKvs()
	if len(kvs) == 0 {
		return 0, nil
	}
	if len(kvs[0].GetValue()) != 8 {
		return 0, fmt.Errorf("server: TSO window has %d bytes", len(kvs[0].GetValue()))
	}
	return int64(binary.BigEndian.Uint64(kvs[0].GetValue())), nil
}

func (w metaWindow) Advance(ctx context.Context, limit int64) (int64, error) {
	return w.write(ctx, &cmdpb.SysAdvance{Key: keys.TSOWindow, Value: limit})
}

func (w metaWindow) Settle(ctx context.Context, limit int64) (int64, error) {
	return w.write(ctx, &cmdpb.SysAdvance{Key: keys.TSOWindow, Value: limit, Lower: true})
}

func (w metaWindow) write(ctx context.Context, a *cmdpb.SysAdvance) (int64, error) {
	r := w.n.store.Replica(meta.MetaRangeID)
	if r == nil {
		return 0, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "server: no meta replica")
	}
	resp, err := r.Write(ctx, &cmdpb.BatchRequest{RangeId: meta.MetaRangeID, Sys: &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Advance{Advance: a}}})
	if err != nil {
		return 0, err
	}
	return resp.GetSys().GetValue(), nil
}

// backend is the etcd API's view of this node.
type backend struct{ n *Node }

var _ etcdapi.Backend = backend{}

func (b backend) Do(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, etcdapi.Header, error) {
	if err := b.n.checkWrite(ctx, op); err != nil {
		return nil, etcdapi.Header{}, err
	}
	if err := b.n.attachLeases(ctx, op); err != nil {
		return nil, etcdapi.Header{}, err
	}
	resp, h, err := b.n.txns.Do(ctx, op)
	return resp, etcdapi.Header{Revision: h.Revision, RaftTerm: h.RaftTerm}, err
}

func (b backend) Compact(ctx context.Context, rev int64) (etcdapi.Header, error) {
	h, err := b.n.router.Compact(ctx, &kvpb.CompactRequest{Revision: rev})
	if err == nil {
		// Before the client hears of it: its next watch through this
		// node must see the compaction, as on one etcd member.
		b.n.watchHub.NoteCompacted(rev)
	}
	return etcdapi.Header{Revision: h.Revision, RaftTerm: h.RaftTerm}, err
}

// HashKV hashes the user ranges this node holds a replica of, in range
// order; nodes holding the same ranges at the same revision hash alike.
func (b backend) HashKV(ctx context.Context, rev int64) (etcdapi.HashKV, error) {
	var out etcdapi.HashKV
	h := crc32.NewIEEE()
	found := false
	for _, r := range b.n.store.Replicas() {
		if r.RangeID == meta.MetaRangeID || r.Uninitialized() {
			continue
		}
		sum, hashRev, compactRev, err := r.HashKV(rev)
		if err != nil {
			return out, err
		}
		found = true
		h.Write(binary.BigEndian.AppendUint32(nil, sum))
		out.HashRevision = max(out.HashRevision, hashRev)
		out.CompactRevision = max(out.CompactRevision, compactRev)
		st := r.Status()
		out.Header = etcdapi.Header{Revision: hashRev, RaftTerm: st.Term}
	}
	if !found {
		return out, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "server: node %d holds no user range to hash", b.n.ident.NodeID)
	}
	out.Hash = h.Sum32()
	return out, nil
}

func (b backend) Snapshot(ctx context.Context, w io.Writer) error {
	info, err := b.n.writeBackup(ctx, w)
	if err == nil {
		b.n.log.Info("backup streamed", "revision", info.Revision, "keys", info.Keys)
	}
	return err
}

func (b backend) AddMember(ctx context.Context, peerURLs []string, learner bool) (*metapb.NodeRecord, error) {
	if !b.n.cfg.UnsafeNoStrictReconfigCheck {
		if err := b.n.mayAddMember(ctx, learner); err != nil {
			return nil, err
		}
	}
	resp, err := b.n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_AddNode{AddNode: &cmdpb.SysAddNode{
		Node: &metapb.NodeRecord{PeerUrls: peerURLs, IsLearner: learner},
	}}})
	if err != nil {
		return nil, err
	}
	return resp.GetNode(), nil
}

// mayAddMember is etcd's --strict-reconfig-check: a voting member may be
// added only if the members that ever started are a quorum of the
// membership with it, and any member only while every voting member
// answers (an added member that never started does not, so two adds in a
// row need the first one started, as on etcd).
func (n *Node) mayAddMember(ctx context.Context, learner bool) error {
	members, err := n.members(ctx)
	if err != nil {
		return err
	}
	voters, started := 0, 0
	var ids []uint64
	for _, m := range members {
		if m.GetIsLearner() {
			continue
		}
		voters++
		ids = append(ids, m.GetNodeId())
		if m.GetName() != "" {
			started++
		}
	}
	if !learner && started < (voters+1)/2+1 {
		return rpctypes.ErrGRPCMemberNotEnoughStarted
	}
	if len(n.statusesOf(ctx, ids, true)) < len(ids) {
		return rpctypes.ErrGRPCUnhealthy
	}
	return nil
}

// healthProbeTimeout bounds the wait for a member's answer in the checks
// of a membership change.
const healthProbeTimeout = 2 * time.Second

func (b backend) ChangeMember(ctx context.Context, change *cmdpb.SysChangeNode) (*metapb.NodeRecord, error) {
	if change.GetRemove() {
		return b.n.removeMember(ctx, change)
	}
	resp, err := b.n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_ChangeNode{ChangeNode: change}})
	if err != nil {
		return nil, err
	}
	return resp.GetNode(), nil
}

func (b backend) Defragment(ctx context.Context) error { return b.n.engine.Compact(ctx) }

func (b backend) Members(ctx context.Context) ([]*metapb.NodeRecord, error) {
	return b.n.members(ctx)
}

// Status reports this node's view of the cluster: the meta range's Raft
// position where this node holds a meta replica, else that of any replica
// it holds; the leader is the meta range's leader.
func (b backend) Status(ctx context.Context) (etcdapi.Status, error) {
	n := b.n
	out := etcdapi.Status{DBSize: n.engine.DiskUsageBytes()}
	out.DBSizeInUse = out.DBSize
	reps := n.store.Replicas()
	for _, r := range reps {
		st := r.Status()
		if r.RangeID == meta.MetaRangeID || out.RaftTerm == 0 {
			out.Leader, out.RaftTerm, out.RaftIndex, out.RaftAppliedIndex = st.Leader, st.Term, st.Commit, st.Applied
		}
	}
	if len(reps) == 0 {
		// A gateway-only node: find the meta leader by asking for a
		// revision through the router.
		if _, err := n.router.Timestamp(ctx, 0); err == nil { // 0: the current revision, none drawn
			out.Leader = n.router.Leader(meta.MetaRangeID)
		}
		out.IsLearner = false
	}
	return out, nil
}

// be64 encodes v as 8 bytes big-endian.
func be64(v int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(v)) }

var _ etcdapi.LeaderMover = backend{}

// MoveLeader is etcd's move-leader on Concord: this node, which must lead
// the meta range (the member Status names leader, where etcdctl sends the
// request), hands every leadership it holds to target wherever target has
// a voting replica: the meta range (so the TSO, settled first so that
// revisions stay dense, and the lessor, its leases checkpointed) and the
// user ranges. It returns once they moved.
func (b backend) MoveLeader(ctx context.Context, target uint64) error {
	n := b.n
	metaRep := n.store.Replica(meta.MetaRangeID)
	if metaRep == nil || !metaRep.Status().IsLeader {
		return rpctypes.ErrGRPCNotLeader
	}
	members, err := n.members(ctx)
	if err != nil {
		return err
	}
	ok := false
	for _, m := range members {
		if m.GetNodeId() == target && !m.GetIsLearner() && m.GetName() != "" {
			ok = true
		}
	}
	if !ok {
		return rpctypes.ErrGRPCBadLeaderTransferee
	}
	if target == n.ident.NodeID {
		return nil
	}
	if err := n.moveLeaderships(ctx, target); err != nil {
		return err
	}
	n.log.Info("moved leaderships", "to", target)
	return nil
}
