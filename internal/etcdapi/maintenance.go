package etcdapi

import (
	"context"
	"io"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/storage/encfs"
)

// maintenanceServer serves Status (what `etcdctl endpoint status` prints),
// alarms (NOSPACE, from the space quota; see Alarm), HashKV, Defragment
// and Snapshot. Hash and Downgrade answer Unimplemented, MoveLeader too
// unless the Backend is a LeaderMover.
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
		StorageVersion:   storageVersion(s.cfg.Version),
	}
	if st.Leader == 0 {
		resp.Errors = append(resp.Errors, rpctypes.ErrorDesc(rpctypes.ErrGRPCNoLeader))
	}
	return resp, nil
}

// storageVersion is the storage schema version etcd of the given release
// reports (etcd's schema version is its release's major.minor, as
// `etcdctl endpoint status` shows).
func storageVersion(release string) string {
	parts := strings.SplitN(release, ".", 3)
	if len(parts) < 2 {
		return release
	}
	return parts[0] + "." + parts[1] + ".0"
}

// Alarm lists, activates and deactivates the cluster's alarms through an
// AlarmBackend, as etcd does: GET lists every member's, ACTIVATE and
// DEACTIVATE answer the alarm they changed (none if nothing changed).
// Without an AlarmBackend the list is empty and activation is refused.
func (s *maintenanceServer) Alarm(ctx context.Context, r *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	ab, ok := s.b.(AlarmBackend)
	if !ok {
		if r.GetAction() == pb.AlarmRequest_ACTIVATE {
			return nil, errAlarmActivate
		}
		return &pb.AlarmResponse{Header: header(s.cfg, Header{})}, nil
	}
	a := Alarm{MemberID: r.GetMemberID(), Type: r.GetAlarm()}
	var changed []Alarm
	switch r.GetAction() {
	case pb.AlarmRequest_GET:
		as, err := ab.Alarms(ctx)
		if err != nil {
			return nil, toGRPCError(err)
		}
		changed = as
	case pb.AlarmRequest_ACTIVATE:
		if a.Type == pb.AlarmType_NONE {
			break
		}
		if err := ab.RaiseAlarm(ctx, a); err != nil {
			return nil, toGRPCError(err)
		}
		changed = []Alarm{a}
	case pb.AlarmRequest_DEACTIVATE:
		was, err := ab.DisarmAlarm(ctx, a)
		if err != nil {
			return nil, toGRPCError(err)
		}
		if was {
			changed = []Alarm{a}
		}
	default:
		return nil, status.Errorf(codes.InvalidArgument, "etcdserver: unknown alarm action %v", r.GetAction())
	}
	return &pb.AlarmResponse{Header: header(s.cfg, Header{}), Alarms: alarmMembers(changed)}, nil
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

// snapshotChunkBytes is the size of one streamed piece of a backup.
const snapshotChunkBytes = 32 << 10

// Snapshot streams a consistent backup of the keyspace (Concord's own
// format; `concord snapshot restore` reads it). The backup is written to a
// temporary file first, so a failure is reported before anything is sent
// and RemainingBytes is exact. The file is encrypted under a key that
// only this call holds, in memory: the keyspace never sits on the disk in
// the clear, whether or not the data dir is encrypted.
func (s *maintenanceServer) Snapshot(_ *pb.SnapshotRequest, stream grpc.ServerStreamingServer[pb.SnapshotResponse]) error {
	f, err := encfs.CreateTemp("", "concord-backup-*")
	if err != nil {
		return status.Errorf(codes.Internal, "concord: backup: %v", err)
	}
	defer f.Close()
	if err := s.b.Snapshot(stream.Context(), f); err != nil {
		return toGRPCError(err)
	}
	size := f.Size()
	r := io.NewSectionReader(f, 0, size)
	buf := make([]byte, snapshotChunkBytes)
	for sent := int64(0); sent < size; {
		n, err := io.ReadFull(r, buf[:min(int64(len(buf)), size-sent)])
		if err != nil {
			return status.Errorf(codes.Internal, "concord: backup: %v", err)
		}
		sent += int64(n)
		resp := &pb.SnapshotResponse{Header: header(s.cfg, Header{}), RemainingBytes: uint64(size - sent), Blob: buf[:n], Version: s.cfg.Version}
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
	return nil
}

// LeaderMover is a Backend that serves etcd's MoveLeader: this node hands
// the leaderships it holds to the member target. Errors are etcd's:
// ErrGRPCNotLeader on a node that does not lead (etcdctl sends the request
// to the member Status names leader), ErrGRPCBadLeaderTransferee for a
// target that is no voting member.
type LeaderMover interface {
	MoveLeader(ctx context.Context, target uint64) error
}

// MoveLeader is etcd's move-leader; a Backend that is no LeaderMover
// answers Unimplemented.
func (s *maintenanceServer) MoveLeader(ctx context.Context, r *pb.MoveLeaderRequest) (*pb.MoveLeaderResponse, error) {
	lm, ok := s.b.(LeaderMover)
	if !ok {
		return nil, errMoveLeader
	}
	if err := lm.MoveLeader(ctx, r.GetTargetID()); err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.MoveLeaderResponse{Header: header(s.cfg, Header{})}, nil
}

func (s *maintenanceServer) Downgrade(context.Context, *pb.DowngradeRequest) (*pb.DowngradeResponse, error) {
	return nil, errDowngrade
}
