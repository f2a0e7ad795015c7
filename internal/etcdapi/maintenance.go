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

func (s *maintenanceServer) Defragment(context.Context, *pb.DefragmentRequest) (*pb.DefragmentResponse, error) {
	return nil, errDefragment
}

func (s *maintenanceServer) Hash(context.Context, *pb.HashRequest) (*pb.HashResponse, error) {
	return nil, errHash
}

func (s *maintenanceServer) HashKV(context.Context, *pb.HashKVRequest) (*pb.HashKVResponse, error) {
	return nil, errHash
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
