package etcdapi

import (
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// FuzzTranslateTxn feeds arbitrary bytes through what a Txn call does before
// and after the backend: decode, validate, translate, and translate a
// response of the same shape back. None of it may panic, and translation must
// keep the shape of the request.
func FuzzTranslateTxn(f *testing.F) {
	seeds := []*pb.TxnRequest{
		txn(2, ops(put("a"), get("b"), nested(ops(put("c")), ops(del("d", "e")))), ops(del("a", "\x00"))),
		txn(0, ops(put("a"), put("a")), nil),
		{Compare: []*pb.Compare{{Key: []byte("k"), Target: pb.Compare_VALUE, TargetUnion: &pb.Compare_Value{Value: []byte("v")}}}},
		txn(0, ops(&pb.RequestOp{}), nil),
	}
	for _, s := range seeds {
		b, err := proto.Marshal(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var r pb.TxnRequest
		if err := proto.Unmarshal(data, &r); err != nil {
			return
		}
		_ = isTxnReadOnly(&r)
		if err := checkTxn(&r, DefaultMaxTxnOps); err != nil {
			return
		}
		got := toTxnRequest(&r)
		if !sameShape(&r, got) {
			t.Fatalf("translation changed the txn's shape:\n%v\n%v", &r, got)
		}
		resp := responseFor(got)
		if _, err := fromTxnResponse(resp, &pb.ResponseHeader{}, 1); err != nil {
			t.Fatalf("translating a well-formed response: %v", err)
		}
	})
}

// sameShape reports whether a and b have the same compares and ops, kind for
// kind, at every level.
func sameShape(a *pb.TxnRequest, b *kvpb.TxnRequest) bool {
	if len(a.Compare) != len(b.Compare) || len(a.Success) != len(b.Success) || len(a.Failure) != len(b.Failure) {
		return false
	}
	for i, c := range a.Compare {
		if string(c.Key) != string(b.Compare[i].Key) || int32(c.Target) != int32(b.Compare[i].Target) {
			return false
		}
	}
	pairs := append(append([][2]any{}, zipOps(a.Success, b.Success)...), zipOps(a.Failure, b.Failure)...)
	for _, p := range pairs {
		x, y := p[0].(*pb.RequestOp), p[1].(*kvpb.RequestOp)
		switch v := x.Request.(type) {
		case *pb.RequestOp_RequestRange:
			if string(v.RequestRange.GetKey()) != string(y.GetRange().GetKey()) {
				return false
			}
		case *pb.RequestOp_RequestPut:
			if string(v.RequestPut.GetKey()) != string(y.GetPut().GetKey()) {
				return false
			}
		case *pb.RequestOp_RequestDeleteRange:
			if string(v.RequestDeleteRange.GetKey()) != string(y.GetDeleteRange().GetKey()) {
				return false
			}
		case *pb.RequestOp_RequestTxn:
			if y.GetTxn() == nil || !sameShape(v.RequestTxn, y.GetTxn()) {
				return false
			}
		}
	}
	return true
}

func zipOps(a []*pb.RequestOp, b []*kvpb.RequestOp) [][2]any {
	out := make([][2]any, len(a))
	for i := range a {
		out[i] = [2]any{a[i], b[i]}
	}
	return out
}

// responseFor builds a response of the shape a backend would answer r with,
// taking the success branch at every level.
func responseFor(r *kvpb.TxnRequest) *kvpb.TxnResponse {
	resp := &kvpb.TxnResponse{Succeeded: true}
	for _, op := range r.Success {
		var o *kvpb.ResponseOp
		switch v := op.Request.(type) {
		case *kvpb.RequestOp_Range:
			o = &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: &kvpb.RangeResponse{
				Kvs: []*kvpb.KeyValue{{Key: v.Range.Key}}}}}
		case *kvpb.RequestOp_Put:
			o = &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Put{Put: &kvpb.PutResponse{}}}
		case *kvpb.RequestOp_DeleteRange:
			o = &kvpb.ResponseOp{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeResponse{}}}
		case *kvpb.RequestOp_Txn:
			o = &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Txn{Txn: responseFor(v.Txn)}}
		}
		resp.Responses = append(resp.Responses, o)
	}
	return resp
}
