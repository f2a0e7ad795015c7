package etcdapi

import (
	"context"
	"errors"
	"io"
	"sync/atomic"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// LeaseBackend is what etcd's Lease service needs from the node. A Backend
// that implements it too gets the Lease service from Register. Errors are
// as Backend's; LEASE_NOT_FOUND, LEASE_EXIST and LEASE_TTL_TOO_LARGE
// become etcd's lease errors. Implementations must be safe for concurrent
// use.
type LeaseBackend interface {
	// LeaseGrant grants lease id (a fresh one if 0) for ttl seconds and
	// returns the id and the TTL granted (raised to the minimum).
	LeaseGrant(ctx context.Context, id, ttl int64) (int64, int64, Header, error)
	// LeaseRevoke revokes lease id; it returns once its keys are deleted.
	LeaseRevoke(ctx context.Context, id int64) (Header, error)
	// LeaseKeepAlive renews lease id and returns its TTL.
	LeaseKeepAlive(ctx context.Context, id int64) (int64, Header, error)
	// LeaseTimeToLive reports lease id, with its attached keys if keys.
	LeaseTimeToLive(ctx context.Context, id int64, keys bool) (LeaseStatus, Header, error)
	// LeaseLeases lists the ids of every lease.
	LeaseLeases(ctx context.Context) ([]int64, Header, error)
}

// LeaseStatus is a lease as TimeToLive reports it: the TTL left and the
// TTL granted in seconds, and the attached keys.
type LeaseStatus struct {
	TTL, GrantedTTL int64
	Keys            [][]byte
}

// MaxKeepAliveStreams bounds the keepalive streams one node serves at once
// (each holds a goroutine and a stream); past it a new stream is refused
// with ResourceExhausted. clientv3 opens one stream per client for all its
// leases, so this is a bound on clients with leases per node.
const MaxKeepAliveStreams = 1 << 16

// leaseServer is etcd's Lease service over a LeaseBackend.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	b   LeaseBackend
	cfg Config
	// streams counts the keepalive streams open.
	// Invariant: streams <= MaxKeepAliveStreams once a stream is admitted.
	streams    atomic.Int64
	maxStreams int64
}

var _ pb.LeaseServer = (*leaseServer)(nil)

func (s *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	id, ttl, h, err := s.b.LeaseGrant(ctx, r.GetID(), r.GetTTL())
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.LeaseGrantResponse{Header: header(s.cfg, h), ID: id, TTL: ttl}, nil
}

func (s *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	h, err := s.b.LeaseRevoke(ctx, r.GetID())
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.LeaseRevokeResponse{Header: header(s.cfg, h)}, nil
}

// LeaseTimeToLive answers a lease that does not exist with TTL -1, as etcd.
func (s *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	st, h, err := s.b.LeaseTimeToLive(ctx, r.GetID(), r.GetKeys())
	if kvpb.CodeOf(err) == kvpb.ErrorCode_LEASE_NOT_FOUND {
		return &pb.LeaseTimeToLiveResponse{Header: header(s.cfg, h), ID: r.GetID(), TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.LeaseTimeToLiveResponse{Header: header(s.cfg, h), ID: r.GetID(), TTL: st.TTL, GrantedTTL: st.GrantedTTL, Keys: st.Keys}, nil
}

func (s *leaseServer) LeaseLeases(ctx context.Context, _ *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	ids, h, err := s.b.LeaseLeases(ctx)
	if err != nil {
		return nil, toGRPCError(err)
	}
	out := &pb.LeaseLeasesResponse{Header: header(s.cfg, h), Leases: make([]*pb.LeaseStatus, 0, len(ids))}
	for _, id := range ids {
		out.Leases = append(out.Leases, &pb.LeaseStatus{ID: id})
	}
	return out, nil
}

// LeaseKeepAlive answers each request in turn with the lease's TTL, and a
// lease that does not exist with TTL 0 (as etcd; clientv3 then closes its
// keepalive channel). Any other error ends the stream: the client opens a
// new one.
func (s *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	if n := s.streams.Add(1); n > s.maxStreams {
		s.streams.Add(-1)
		return status.Errorf(codes.ResourceExhausted, "etcdserver: %d lease keepalive streams open on this member (bound MaxKeepAliveStreams)", n-1)
	}
	defer s.streams.Add(-1)
	ctx := stream.Context()
	for {
		req, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		ttl, h, err := s.b.LeaseKeepAlive(ctx, req.GetID())
		if kvpb.CodeOf(err) == kvpb.ErrorCode_LEASE_NOT_FOUND {
			ttl, err = 0, nil
		}
		if err != nil {
			return toGRPCError(err)
		}
		if err := stream.Send(&pb.LeaseKeepAliveResponse{Header: header(s.cfg, h), ID: req.GetID(), TTL: ttl}); err != nil {
			return err
		}
	}
}
