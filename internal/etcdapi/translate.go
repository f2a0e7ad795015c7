package etcdapi

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// This file holds the pure translations between etcd's wire types and
// concordpb. They copy every field, never validate (validate.go does that
// first) and never panic, whatever the input: nil messages translate to empty
// ones. Byte slices are shared, not copied: requests are read-only once
// received, and responses are owned by the caller.
//
// The enums (sort order and target, compare result and target) have the same
// numbers in both protos (asserted by TestEnumsMatch), so they convert by
// value; unknown values pass through as proto3 open enums do.

// toRequestOp translates one op. An op with no request translates to an
// empty RequestOp (validation rejects it before translation).
func toRequestOp(r *pb.RequestOp) *kvpb.RequestOp {
	switch v := r.GetRequest().(type) {
	case *pb.RequestOp_RequestRange:
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: toRangeRequest(v.RequestRange)}}
	case *pb.RequestOp_RequestPut:
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: toPutRequest(v.RequestPut)}}
	case *pb.RequestOp_RequestDeleteRange:
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: toDeleteRangeRequest(v.RequestDeleteRange)}}
	case *pb.RequestOp_RequestTxn:
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: toTxnRequest(v.RequestTxn)}}
	default:
		return &kvpb.RequestOp{}
	}
}

func toRangeRequest(r *pb.RangeRequest) *kvpb.RangeRequest {
	return &kvpb.RangeRequest{
		Key:               r.GetKey(),
		RangeEnd:          r.GetRangeEnd(),
		Limit:             r.GetLimit(),
		Revision:          r.GetRevision(),
		SortOrder:         kvpb.SortOrder(r.GetSortOrder()),
		SortTarget:        kvpb.SortTarget(r.GetSortTarget()),
		Serializable:      r.GetSerializable(),
		KeysOnly:          r.GetKeysOnly(),
		CountOnly:         r.GetCountOnly(),
		MinModRevision:    r.GetMinModRevision(),
		MaxModRevision:    r.GetMaxModRevision(),
		MinCreateRevision: r.GetMinCreateRevision(),
		MaxCreateRevision: r.GetMaxCreateRevision(),
	}
}

func toPutRequest(r *pb.PutRequest) *kvpb.PutRequest {
	return &kvpb.PutRequest{
		Key:         r.GetKey(),
		Value:       r.GetValue(),
		Lease:       r.GetLease(),
		PrevKv:      r.GetPrevKv(),
		IgnoreValue: r.GetIgnoreValue(),
		IgnoreLease: r.GetIgnoreLease(),
	}
}

func toDeleteRangeRequest(r *pb.DeleteRangeRequest) *kvpb.DeleteRangeRequest {
	return &kvpb.DeleteRangeRequest{
		Key:      r.GetKey(),
		RangeEnd: r.GetRangeEnd(),
		PrevKv:   r.GetPrevKv(),
	}
}

func toTxnRequest(r *pb.TxnRequest) *kvpb.TxnRequest {
	out := &kvpb.TxnRequest{
		Compare: make([]*kvpb.Compare, len(r.GetCompare())),
		Success: make([]*kvpb.RequestOp, len(r.GetSuccess())),
		Failure: make([]*kvpb.RequestOp, len(r.GetFailure())),
	}
	for i, c := range r.GetCompare() {
		out.Compare[i] = toCompare(c)
	}
	for i, op := range r.GetSuccess() {
		out.Success[i] = toRequestOp(op)
	}
	for i, op := range r.GetFailure() {
		out.Failure[i] = toRequestOp(op)
	}
	return out
}

func toCompare(c *pb.Compare) *kvpb.Compare {
	out := &kvpb.Compare{
		Result:   kvpb.CompareResult(c.GetResult()),
		Target:   kvpb.CompareTarget(c.GetTarget()),
		Key:      c.GetKey(),
		RangeEnd: c.GetRangeEnd(),
	}
	// The union is copied as sent, even when it disagrees with target: etcd
	// then compares against the zero value of target's field, and so must the
	// backend, which sees exactly what the client sent.
	switch u := c.GetTargetUnion().(type) {
	case *pb.Compare_Version:
		out.TargetUnion = &kvpb.Compare_Version{Version: u.Version}
	case *pb.Compare_CreateRevision:
		out.TargetUnion = &kvpb.Compare_CreateRevision{CreateRevision: u.CreateRevision}
	case *pb.Compare_ModRevision:
		out.TargetUnion = &kvpb.Compare_ModRevision{ModRevision: u.ModRevision}
	case *pb.Compare_Value:
		out.TargetUnion = &kvpb.Compare_Value{Value: u.Value}
	case *pb.Compare_Lease:
		out.TargetUnion = &kvpb.Compare_Lease{Lease: u.Lease}
	}
	return out
}

// fromKeyValue translates a key-value; nil stays nil (an absent prev_kv).
func fromKeyValue(kv *kvpb.KeyValue) *mvccpb.KeyValue {
	if kv == nil {
		return nil
	}
	return &mvccpb.KeyValue{
		Key:            kv.GetKey(),
		CreateRevision: kv.GetCreateRevision(),
		ModRevision:    kv.GetModRevision(),
		Version:        kv.GetVersion(),
		Value:          kv.GetValue(),
		Lease:          kv.GetLease(),
	}
}

func fromKeyValues(kvs []*kvpb.KeyValue) []*mvccpb.KeyValue {
	if len(kvs) == 0 {
		return nil
	}
	out := make([]*mvccpb.KeyValue, len(kvs))
	for i, kv := range kvs {
		out[i] = fromKeyValue(kv)
	}
	return out
}

// The from*Response functions take the header to put on the response: the
// full one at the top level, a revision-only one inside a txn (as etcd).

func fromRangeResponse(r *kvpb.RangeResponse, h *pb.ResponseHeader) *pb.RangeResponse {
	return &pb.RangeResponse{
		Header: h,
		Kvs:    fromKeyValues(r.GetKvs()),
		More:   r.GetMore(),
		Count:  r.GetCount(),
	}
}

func fromPutResponse(r *kvpb.PutResponse, h *pb.ResponseHeader) *pb.PutResponse {
	return &pb.PutResponse{Header: h, PrevKv: fromKeyValue(r.GetPrevKv())}
}

func fromDeleteRangeResponse(r *kvpb.DeleteRangeResponse, h *pb.ResponseHeader) *pb.DeleteRangeResponse {
	return &pb.DeleteRangeResponse{
		Header:  h,
		Deleted: r.GetDeleted(),
		PrevKvs: fromKeyValues(r.GetPrevKvs()),
	}
}

// fromTxnResponse translates a txn response; every nested Range, Put and
// DeleteRange response gets a header carrying only rev, and every nested txn
// an empty header (revision 0), as etcd's apply does: etcd sets the revision
// of the top-level txn only. It fails if an op in the response is empty: that
// is a backend bug, not something to pass on.
func fromTxnResponse(r *kvpb.TxnResponse, h *pb.ResponseHeader, rev int64) (*pb.TxnResponse, error) {
	out := &pb.TxnResponse{
		Header:    h,
		Succeeded: r.GetSucceeded(),
		Responses: make([]*pb.ResponseOp, len(r.GetResponses())),
	}
	for i, op := range r.GetResponses() {
		o, err := fromResponseOp(op, rev)
		if err != nil {
			return nil, fmt.Errorf("txn response %d: %w", i, err)
		}
		out.Responses[i] = o
	}
	return out, nil
}

// fromResponseOp translates one op of a txn response.
func fromResponseOp(r *kvpb.ResponseOp, rev int64) (*pb.ResponseOp, error) {
	h := func() *pb.ResponseHeader {
		if r.GetHeaderRevision() != 0 {
			return &pb.ResponseHeader{Revision: r.GetHeaderRevision()}
		}
		return &pb.ResponseHeader{Revision: rev}
	}
	switch v := r.GetResponse().(type) {
	case *kvpb.ResponseOp_Range:
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: fromRangeResponse(v.Range, h())}}, nil
	case *kvpb.ResponseOp_Put:
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: fromPutResponse(v.Put, h())}}, nil
	case *kvpb.ResponseOp_DeleteRange:
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: fromDeleteRangeResponse(v.DeleteRange, h())}}, nil
	case *kvpb.ResponseOp_Txn:
		t, err := fromTxnResponse(v.Txn, &pb.ResponseHeader{}, rev)
		if err != nil {
			return nil, err
		}
		return &pb.ResponseOp{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: t}}, nil
	default:
		return nil, fmt.Errorf("empty response op %T", v)
	}
}

// fromNodeRecord translates a node record into an etcd member. Concord has
// no learners at the node level (learners are per range replica).
func fromNodeRecord(n *metapb.NodeRecord) *pb.Member {
	return &pb.Member{
		ID:         n.GetNodeId(),
		Name:       n.GetName(),
		PeerURLs:   n.GetPeerUrls(),
		ClientURLs: n.GetClientUrls(),
		IsLearner:  n.GetIsLearner(),
	}
}
