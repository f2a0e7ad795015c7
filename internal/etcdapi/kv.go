package etcdapi

import (
	"context"
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// kvServer is etcd's KV service over a Backend (RangeStream: rangestream.go).
type kvServer struct {
	pb.UnimplementedKVServer
	b   Backend
	cfg Config
}

var _ pb.KVServer = (*kvServer)(nil)

func (s *kvServer) Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	if err := checkRangeRequest(r); err != nil {
		return nil, err
	}
	return s.rangeOnce(ctx, r)
}

// rangeOnce serves a checked RangeRequest.
func (s *kvServer) rangeOnce(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error) {
	resp, h, err := s.do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: toRangeRequest(r)}})
	if err != nil {
		return nil, err
	}
	rr, ok := resp.GetResponse().(*kvpb.ResponseOp_Range)
	if !ok {
		return nil, mismatch("Range", resp)
	}
	return fromRangeResponse(rr.Range, header(s.cfg, h)), nil
}

func (s *kvServer) Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error) {
	if err := checkPutRequest(r); err != nil {
		return nil, err
	}
	if err := s.checkSize(r); err != nil {
		return nil, err
	}
	resp, h, err := s.do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: toPutRequest(r)}})
	if err != nil {
		return nil, err
	}
	pr, ok := resp.GetResponse().(*kvpb.ResponseOp_Put)
	if !ok {
		return nil, mismatch("Put", resp)
	}
	return fromPutResponse(pr.Put, header(s.cfg, h)), nil
}

func (s *kvServer) DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error) {
	if err := checkDeleteRequest(r); err != nil {
		return nil, err
	}
	if err := s.checkSize(r); err != nil {
		return nil, err
	}
	resp, h, err := s.do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: toDeleteRangeRequest(r)}})
	if err != nil {
		return nil, err
	}
	dr, ok := resp.GetResponse().(*kvpb.ResponseOp_DeleteRange)
	if !ok {
		return nil, mismatch("DeleteRange", resp)
	}
	return fromDeleteRangeResponse(dr.DeleteRange, header(s.cfg, h)), nil
}

func (s *kvServer) Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error) {
	if err := checkTxn(r, s.cfg.MaxTxnOps); err != nil {
		return nil, err
	}
	if !isTxnReadOnly(r) {
		if err := s.checkSize(r); err != nil {
			return nil, err
		}
	}
	resp, h, err := s.do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: toTxnRequest(r)}})
	if err != nil {
		return nil, err
	}
	tr, ok := resp.GetResponse().(*kvpb.ResponseOp_Txn)
	if !ok {
		return nil, mismatch("Txn", resp)
	}
	out, err := fromTxnResponse(tr.Txn, header(s.cfg, h), h.Revision)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "concord: backend answered a Txn with a bad response: %v", err)
	}
	return out, nil
}

// Compact discards history at the requested revision. Compaction is applied
// through Raft on every range before the call returns, so physical and
// non-physical requests both return once it is done.
func (s *kvServer) Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error) {
	h, err := s.b.Compact(ctx, r.GetRevision())
	if err != nil {
		return nil, toGRPCError(err)
	}
	return &pb.CompactionResponse{Header: header(s.cfg, h)}, nil
}

// do calls the backend and translates its error.
func (s *kvServer) do(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, Header, error) {
	resp, h, err := s.b.Do(ctx, op)
	if err != nil {
		return nil, Header{}, toGRPCError(err)
	}
	return resp, h, nil
}

// checkSize is etcd's proposal size limit: a write whose marshalled request
// exceeds MaxRequestBytes is refused before it reaches Raft.
func (s *kvServer) checkSize(m proto.Message) error {
	if proto.Size(m) > s.cfg.MaxRequestBytes {
		return rpctypes.ErrGRPCRequestTooLarge
	}
	return nil
}

// mismatch reports a backend that answered with the wrong kind of response:
// a bug below this layer, surfaced rather than papered over.
func mismatch(want string, got *kvpb.ResponseOp) error {
	return status.Error(codes.Internal, fmt.Sprintf("concord: backend answered a %s with %T", want, got.GetResponse()))
}
