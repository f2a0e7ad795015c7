package etcdapi

import (
	"bytes"
	"math"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// RangeStream answers etcd 3.7's streaming Range as etcd does: the keys in
// chunks read one after another at one revision (the first chunk's, unless
// the request names one), each chunk's limit grown or shrunk so that a
// chunk lands near --max-request-bytes; header, more and count come with
// the last chunk. Only key-ordered reads without revision filters stream,
// with etcd's Unimplemented errors otherwise. The serving node holds one
// chunk at a time, whatever the range's size or how many ranges it spans.
func (s *kvServer) RangeStream(r *pb.RangeRequest, rs pb.KV_RangeStreamServer) error {
	if err := checkRangeRequest(r); err != nil {
		return err
	}
	if !defaultOrdering(r) {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support custom sort orders")
	}
	if r.MinModRevision != 0 || r.MaxModRevision != 0 || r.MinCreateRevision != 0 || r.MaxCreateRevision != 0 {
		return status.Errorf(codes.Unimplemented, "RangeStream does not support revision filters")
	}
	ctx := rs.Context()
	req := proto.CloneOf(r)
	rangeAt := func(req *pb.RangeRequest) (*pb.RangeResponse, error) { return s.rangeOnce(ctx, req) }
	if req.CountOnly {
		resp, err := rangeAt(req)
		if err != nil {
			return err
		}
		return rs.Send(&pb.RangeStreamResponse{RangeResponse: &pb.RangeResponse{Header: resp.Header, Count: resp.Count}})
	}
	total := req.Limit
	if total <= 0 {
		total = math.MaxInt64
	}
	req.Limit = min(initialStreamChunkLimit, total)
	var sent int64
	var hdr *pb.ResponseHeader
	for {
		resp, err := rangeAt(req)
		if err != nil {
			return err
		}
		if hdr == nil {
			// The stream reads the keyspace as it was when it began.
			hdr = resp.Header
			if req.Revision == 0 {
				req.Revision = hdr.Revision
			}
		}
		sent += int64(len(resp.Kvs))
		out := &pb.RangeResponse{Kvs: resp.Kvs}
		var next []byte
		if resp.More {
			next = append(bytes.Clone(resp.Kvs[len(resp.Kvs)-1].Key), 0)
		}
		done := !resp.More || sent == total
		if done {
			out.Header, out.More, out.Count = hdr, resp.More, sent
			if resp.More {
				rest, err := rangeAt(&pb.RangeRequest{Key: next, RangeEnd: req.RangeEnd, Revision: req.Revision, CountOnly: true})
				if err != nil {
					return err
				}
				out.Count += rest.Count
			}
		}
		if err := rs.Send(&pb.RangeStreamResponse{RangeResponse: out}); err != nil {
			return err
		}
		if done {
			return nil
		}
		req.Key = next
		req.Limit = min(adjustChunkLimit(req.Limit, proto.Size(resp), s.cfg.MaxRequestBytes), total-sent)
	}
}

// initialStreamChunkLimit is the first chunk's limit, as etcd's.
const initialStreamChunkLimit = 10

// adjustChunkLimit doubles or halves a chunk's limit when the last chunk
// was under half or over twice the target size (etcd's rule; at least 1).
func adjustChunkLimit(last int64, lastSize, target int) int64 {
	switch {
	case lastSize < target/2:
		last *= 2
	case lastSize > target*2:
		last /= 2
	}
	return max(last, 1)
}

// defaultOrdering reports whether r's results come in key order (etcd's
// txn.IsDefaultOrdering).
func defaultOrdering(r *pb.RangeRequest) bool {
	return r.SortOrder == pb.RangeRequest_NONE ||
		(r.SortTarget == pb.RangeRequest_KEY && r.SortOrder == pb.RangeRequest_ASCEND)
}
