package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
)

// maintenanceServer serves Status (what `etcdctl endpoint status` prints)
// and an alarm list that is always empty: Concord raises no etcd alarms
// (no space quota, no corruption check yet). The rest answers Unimplemented.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	b   Backend
	cfg Config
}

var _ pb.MaintenanceServer = (*maintenanceServer)(nil)

// Status reports this node's view. Like etcd it reports a missing leader as
// an entry in Errors, not as a failed call. The header has no revision: this
// node has no single store revision to report without a read.
func (s *maintenanceServer) Status(ctx context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	st, err := s.b.Status(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp := &pb.StatusResponse{
		Header:           header(s.cfg, Header{RaftTerm: st.RaftTerm}),
		Version:          s.cfg.Version,
		DbSize:           st.DBSize,
		Leader:           st.Leader,
		RaftIndex:        st.RaftIndex,
		RaftTerm:         st.RaftTerm,
		RaftAppliedIndex: st.RaftAppliedIndex,
		DbSizeInUse:      st.DBSizeInUse,
		IsLearner:        st.IsLearner,
		DowngradeInfo:    &pb.DowngradeInfo{},
	}
	if st.Leader == 0 {
		resp.Errors = append(resp.Errors, rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader))
	}
	return resp, nil
}

// Alarm lists no alarms and accepts deactivation (of nothing), so
// `etcdctl alarm list` and `alarm disarm` work; activation is not served.
func (s *maintenanceServer) Alarm(_ context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	switch r.GetAction() {
	case pb.AlarmRequest_GET, pb.AlarmRequest_DEACTIVATE:
		return &pb.AlarmResponse{Header: header(s.cfg, Header{})}, nil
	default:
		return nil, errAlarmActivate
	}
}

// Defragment compacts the node's storage engine files: Pebble's
// counterpart of rewriting etcd's bbolt file.
func (s *maintenanceServer) Defragment(ctx context.Context, _ *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	if err := s.b.Defragment(ctx); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.DefragmentResponse{Header: header(s.cfg, Header{})}, nil
}

func (s *maintenanceServer) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return nil, errHash
}

// HashKV hashes this member's MVCC history up to a revision; members that
// applied the same history answer the same hash.
func (s *maintenanceServer) HashKV(ctx context.Context, r *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	h, err := s.b.HashKV(ctx, r.GetRevision())
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.HashKVResponse{Header: header(s.cfg, h.Header), Hash: h.Hash, CompactRevision: h.CompactRevision, HashRevision: h.HashRevision}, nil
}

func (s *maintenanceServer) Snapshot(*pb.SnapshotRequest, grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	return errSnapshot
}

func (s *maintenanceServer) MoveLeader(context.Context, *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	return nil, errMoveLeader
}

func (s *maintenanceServer) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, errDowngrade
}
