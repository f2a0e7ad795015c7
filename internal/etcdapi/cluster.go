package etcdapi

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// clusterServer lists Concord's nodes as etcd members. Membership changes go
// through Concord's own join protocol, so the etcd calls that change
// membership answer Unimplemented.
type clusterServer struct {
	pb.UnimplementedClusterServer
	b   Backend
	cfg Config
}

var _ pb.ClusterServer = (*clusterServer)(nil)

// MemberList answers from the backend's node records. The request's
// linearizable flag is not passed on: the backend reads its node list the
// one way it has.
func (s *clusterServer) MemberList(ctx context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	nodes, err := s.b.Members(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	members := make([]*pb.Member, len(nodes))
	for i, n := range nodes {
		members[i] = fromNodeRecord(n)
	}
	return &pb.MemberListResponse{Header: header(s.cfg, Header{}), Members: members}, nil
}

func (s *clusterServer) MemberAdd(context.Context, *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	return nil, errMembershipChange
}

func (s *clusterServer) MemberRemove(context.Context, *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	return nil, errMembershipChange
}

func (s *clusterServer) MemberUpdate(context.Context, *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	return nil, errMembershipChange
}

func (s *clusterServer) MemberPromote(context.Context, *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	return nil, errMembershipChange
}
