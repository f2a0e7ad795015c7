package etcdapi

import (
	"context"
	"net/url"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// clusterServer maps Concord's nodes to etcd members. A node joins by
// itself when it starts with --initial-cluster-state existing; MemberAdd
// registers one ahead of that, as etcd requires.
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

// MemberAdd registers a member that will join with one of the given peer
// URLs (start it with --initial-cluster-state existing).
func (s *clusterServer) MemberAdd(ctx context.Context, r *pb.MemberAddRequest) (*pb.MemberAddResponse, error) {
	if len(r.GetPeerURLs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "etcdserver: member add needs peer URLs")
	}
	for _, u := range r.GetPeerURLs() {
		if _, err := url.Parse(u); err != nil {
			return nil, status.Errorf(codes.InvalidArgument, "etcdserver: bad peer URL %q: %v", u, err)
		}
	}
	rec, err := s.b.AddMember(ctx, r.GetPeerURLs(), r.GetIsLearner())
	if err != nil {
		return nil, toGRPCError(err)
	}
	members, err := s.members(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.MemberAddResponse{Header: header(s.cfg, Header{}), Member: fromNodeRecord(rec), Members: members}, nil
}

// MemberRemove removes a member that holds no replicas.
func (s *clusterServer) MemberRemove(ctx context.Context, r *pb.MemberRemoveRequest) (*pb.MemberRemoveResponse, error) {
	if _, err := s.b.ChangeMember(ctx, &cmdpb.SysChangeNode{NodeId: r.GetID(), Remove: true}); err != nil {
		return nil, toGRPCError(err)
	}
	members, err := s.members(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.MemberRemoveResponse{Header: header(s.cfg, Header{}), Members: members}, nil
}

// MemberUpdate replaces a member's peer URLs.
func (s *clusterServer) MemberUpdate(ctx context.Context, r *pb.MemberUpdateRequest) (*pb.MemberUpdateResponse, error) {
	if len(r.GetPeerURLs()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "etcdserver: member update needs peer URLs")
	}
	if _, err := s.b.ChangeMember(ctx, &cmdpb.SysChangeNode{NodeId: r.GetID(), PeerUrls: r.GetPeerURLs()}); err != nil {
		return nil, toGRPCError(err)
	}
	members, err := s.members(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.MemberUpdateResponse{Header: header(s.cfg, Header{}), Members: members}, nil
}

// MemberPromote turns a learner member into a voting one.
func (s *clusterServer) MemberPromote(ctx context.Context, r *pb.MemberPromoteRequest) (*pb.MemberPromoteResponse, error) {
	if _, err := s.b.ChangeMember(ctx, &cmdpb.SysChangeNode{NodeId: r.GetID(), Promote: true}); err != nil {
		return nil, toGRPCError(err)
	}
	members, err := s.members(ctx)
	if err != nil {
		return nil, err
	}
	return &pb.MemberPromoteResponse{Header: header(s.cfg, Header{}), Members: members}, nil
}

func (s *clusterServer) members(ctx context.Context) ([]*pb.Member, error) {
	nodes, err := s.b.Members(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := make([]*pb.Member, len(nodes))
	for i, n := range nodes {
		out[i] = fromNodeRecord(n)
	}
	return out, nil
}
