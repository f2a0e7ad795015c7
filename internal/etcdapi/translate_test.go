package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"math"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// TestEnumsMatch pins the assumption translate.go converts enums by value on:
// both protos number every value alike.
func TestEnumsMatch(t *testing.T) {
	for _, tt := range []struct {
		etcd, concord map[int32]string
		prefix        string
	}{
		{pb.RangeRequest_SortOrder_name, kvpb.SortOrder_name, "SORT_"},
		{pb.RangeRequest_SortTarget_name, kvpb.SortTarget_name, "SORT_BY_"},
		{pb.Compare_CompareResult_name, kvpb.CompareResult_name, "COMPARE_"},
		{pb.Compare_CompareTarget_name, kvpb.CompareTarget_name, "COMPARE_"},
	} {
		if len(tt.etcd) != len(tt.concord) {
			t.Fatalf("%v vs %v", tt.etcd, tt.concord)
		}
		for n, name := range tt.etcd {
			// concordpb prefixes etcd's names, which are unprefixed.
			if got := tt.concord[n]; got != tt.prefix+name {
				t.Errorf("value %d: etcd %s, concordpb %s", n, name, got)
			}
		}
	}
}

func TestToRequestOp(t *testing.T) {
	full := &pb.RangeRequest{
		Key: []byte("a"), RangeEnd: []byte("b"), Limit: 1, Revision: 2,
		SortOrder: pb.RangeRequest_DESCEND, SortTarget: pb.RangeRequest_VALUE,
		Serializable: true, KeysOnly: true, CountOnly: true,
		MinModRevision: 3, MaxModRevision: 4, MinCreateRevision: 5, MaxCreateRevision: 6,
	}
	for _, tt := range []struct {
		name string
		in   *pb.RequestOp
		want *kvpb.RequestOp
	}{
		{"empty", &pb.RequestOp{}, &kvpb.RequestOp{}},
		{"nil", nil, &kvpb.RequestOp{}},
		{"range", &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: full}},
			&kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{
				Key: []byte("a"), RangeEnd: []byte("b"), Limit: 1, Revision: 2,
				SortOrder: kvpb.SortOrder_SORT_DESCEND, SortTarget: kvpb.SortTarget_SORT_BY_VALUE,
				Serializable: true, KeysOnly: true, CountOnly: true,
				MinModRevision: 3, MaxModRevision: 4, MinCreateRevision: 5, MaxCreateRevision: 6,
			}}}},
		{"nil range", &pb.RequestOp{Request: &pb.RequestOp_RequestRange{}},
			&kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{}}}},
		{"put", &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{
			Key: []byte("k"), Value: []byte("v"), Lease: 7, PrevKv: true, IgnoreValue: true, IgnoreLease: true}}},
			&kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{
				Key: []byte("k"), Value: []byte("v"), Lease: 7, PrevKv: true, IgnoreValue: true, IgnoreLease: true}}}},
		{"delete", &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{
			Key: []byte("k"), RangeEnd: []byte{0}, PrevKv: true}}},
			&kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{
				Key: []byte("k"), RangeEnd: []byte{0}, PrevKv: true}}}},
		{"txn", &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
			Compare: []*pb.Compare{
				{Result: pb.Compare_GREATER, Target: pb.Compare_VERSION, Key: []byte("a"), RangeEnd: []byte("b"), TargetUnion: &pb.Compare_Version{Version: 1}},
				{Result: pb.Compare_LESS, Target: pb.Compare_CREATE, Key: []byte("a"), TargetUnion: &pb.Compare_CreateRevision{CreateRevision: 2}},
				{Result: pb.Compare_NOT_EQUAL, Target: pb.Compare_MOD, Key: []byte("a"), TargetUnion: &pb.Compare_ModRevision{ModRevision: 3}},
				{Target: pb.Compare_VALUE, Key: []byte("a"), TargetUnion: &pb.Compare_Value{Value: []byte("x")}},
				{Target: pb.Compare_LEASE, Key: []byte("a"), TargetUnion: &pb.Compare_Lease{Lease: 4}},
				{Target: pb.Compare_VALUE, Key: []byte("a")}, // no union: passed on as such
			},
			Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestTxn{RequestTxn: &pb.TxnRequest{
				Failure: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("n")}}}},
			}}}},
			Failure: []*pb.RequestOp{{}},
		}}},
			&kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{
				Compare: []*kvpb.Compare{
					{Result: kvpb.CompareResult_COMPARE_GREATER, Target: kvpb.CompareTarget_COMPARE_VERSION, Key: []byte("a"), RangeEnd: []byte("b"), TargetUnion: &kvpb.Compare_Version{Version: 1}},
					{Result: kvpb.CompareResult_COMPARE_LESS, Target: kvpb.CompareTarget_COMPARE_CREATE, Key: []byte("a"), TargetUnion: &kvpb.Compare_CreateRevision{CreateRevision: 2}},
					{Result: kvpb.CompareResult_COMPARE_NOT_EQUAL, Target: kvpb.CompareTarget_COMPARE_MOD, Key: []byte("a"), TargetUnion: &kvpb.Compare_ModRevision{ModRevision: 3}},
					{Target: kvpb.CompareTarget_COMPARE_VALUE, Key: []byte("a"), TargetUnion: &kvpb.Compare_Value{Value: []byte("x")}},
					{Target: kvpb.CompareTarget_COMPARE_LEASE, Key: []byte("a"), TargetUnion: &kvpb.Compare_Lease{Lease: 4}},
					{Target: kvpb.CompareTarget_COMPARE_VALUE, Key: []byte("a")},
				},
				Success: []*kvpb.RequestOp{{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{
					Compare: []*kvpb.Compare{}, Success: []*kvpb.RequestOp{},
					Failure: []*kvpb.RequestOp{{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte("n")}}}},
				}}}},
				Failure: []*kvpb.RequestOp{{}},
			}}}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := toRequestOp(tt.in); !proto.Equal(got, tt.want) {
				t.Fatalf("got  %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestFromTxnResponse(t *testing.T) {
	kv := &kvpb.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 1, ModRevision: 2, Version: 3, Lease: 4}
	ekv := &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 1, ModRevision: 2, Version: 3, Lease: 4}
	in := &kvpb.TxnResponse{Succeeded: true, Responses: []*kvpb.ResponseOp{
		{Response: &kvpb.ResponseOp_Range{Range: &kvpb.RangeResponse{Kvs: []*kvpb.KeyValue{kv}, More: true, Count: 5}}},
		{Response: &kvpb.ResponseOp_Put{Put: &kvpb.PutResponse{PrevKv: kv}}},
		{Response: &kvpb.ResponseOp_Put{Put: &kvpb.PutResponse{}}},
		{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeResponse{Deleted: 1, PrevKvs: []*kvpb.KeyValue{kv}}}},
		{Response: &kvpb.ResponseOp_Txn{Txn: &kvpb.TxnResponse{Responses: []*kvpb.ResponseOp{
			{Response: &kvpb.ResponseOp_Put{Put: &kvpb.PutResponse{}}},
		}}}},
	}}
	top := &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 9, RaftTerm: 3}
	h := func() *pb.ResponseHeader { return &pb.ResponseHeader{Revision: 9} }
	want := &pb.TxnResponse{Header: top, Succeeded: true, Responses: []*pb.ResponseOp{
		{Response: &pb.ResponseOp_ResponseRange{ResponseRange: &pb.RangeResponse{Header: h(), Kvs: []*mvccpb.KeyValue{ekv}, More: true, Count: 5}}},
		{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: h(), PrevKv: ekv}}},
		{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: h()}}},
		{Response: &pb.ResponseOp_ResponseDeleteRange{ResponseDeleteRange: &pb.DeleteRangeResponse{Header: h(), Deleted: 1, PrevKvs: []*mvccpb.KeyValue{ekv}}}},
		// etcd leaves a nested txn's header revision at 0.
		{Response: &pb.ResponseOp_ResponseTxn{ResponseTxn: &pb.TxnResponse{Header: &pb.ResponseHeader{}, Responses: []*pb.ResponseOp{
			{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{Header: h()}}},
		}}}},
	}}
	got, err := fromTxnResponse(in, top, 9)
	if err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(got, want) {
		t.Fatalf("got  %v\nwant %v", got, want)
	}

	in.Responses[4].GetTxn().Responses = append(in.Responses[4].GetTxn().Responses, &kvpb.ResponseOp{})
	if _, err := fromTxnResponse(in, top, 9); err == nil {
		t.Fatal("empty nested response op accepted")
	}
}

func TestToGRPCError(t *testing.T) {
	grpcUnavailable := status.Error(codes.Unavailable, "connection refused")
	grpcFull := status.Error(codes.ResourceExhausted, "router: forward stream to node 2 full")
	for _, tt := range []struct {
		in       error
		code     codes.Code
		message  string
		sentinel error // the clientv3 error it must become, if any
	}{
		{kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "x"), codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted", rpctypes.ErrCompacted},
		{kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "x"), codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision", rpctypes.ErrFutureRev},
		{kvpb.Errorf(kvpb.ErrorCode_DUPLICATE_KEY, "x"), codes.InvalidArgument, "etcdserver: duplicate key given in txn request", rpctypes.ErrDuplicateKey},
		{kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "x"), codes.NotFound, "etcdserver: requested lease not found", rpctypes.ErrLeaseNotFound},
		{kvpb.Errorf(kvpb.ErrorCode_TOO_MANY_OPS, "x"), codes.InvalidArgument, "etcdserver: too many operations in txn request", rpctypes.ErrTooManyOps},
		{kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "etcdserver: key not found"), codes.InvalidArgument, "etcdserver: key not found", rpctypes.ErrKeyNotFound},
		{kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "bad thing"), codes.InvalidArgument, "bad thing", nil},
		{kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "x"), codes.Unavailable, "etcdserver: no leader", rpctypes.ErrNoLeader},
		{kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "x"), codes.Unavailable, "etcdserver: no leader", rpctypes.ErrNoLeader},
		{kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "x"), codes.Unavailable, "etcdserver: request timed out", rpctypes.ErrTimeout},
		{kvpb.Errorf(kvpb.ErrorCode_CROSS_RANGE, "txn spans ranges"), codes.Unimplemented, "txn spans ranges", nil},
		{kvpb.Errorf(kvpb.ErrorCode_RETRY, "lost race"), codes.Unavailable, "lost race", nil},
		{&kvpb.Error{Code: kvpb.ErrorCode_KEY_MISMATCH}, codes.Unavailable, "concord: KEY_MISMATCH", nil},
		{kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "boom"), codes.Internal, "boom", nil},
		{fmt.Errorf("router: %w", kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "x")), codes.Unavailable, "etcdserver: no leader", rpctypes.ErrNoLeader},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.Unavailable, "etcdserver: request timed out", rpctypes.ErrTimeout},
		{context.Canceled, codes.Canceled, "etcdserver: request canceled", nil},
		{grpcUnavailable, codes.Unavailable, "connection refused", nil},
		{grpcFull, codes.ResourceExhausted, "router: forward stream to node 2 full", nil},
		{kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "replica: range 2 has 10000 writes queued"), codes.ResourceExhausted, "replica: range 2 has 10000 writes queued", nil},
		{fmt.Errorf("gateway: %w", grpcFull), codes.ResourceExhausted, "gateway: rpc error: code = ResourceExhausted desc = router: forward stream to node 2 full", nil},
		{errors.New("disk on fire"), codes.Unknown, "disk on fire", nil},
	} {
		t.Run(tt.in.Error(), func(t *testing.T) {
			got := toGRPCError(tt.in)
			s := status.Convert(got)
			if s.Code() != tt.code || s.Message() != tt.message {
				t.Fatalf("got %v %q, want %v %q", s.Code(), s.Message(), tt.code, tt.message)
			}
			if tt.sentinel != nil && !errors.Is(rpctypes.Error(got), tt.sentinel) {
				t.Fatalf("clientv3 sees %v, want %v", rpctypes.Error(got), tt.sentinel)
			}
		})
	}
}

func TestConfig(t *testing.T) {
	c := Config{}.withDefaults()
	if c.MaxRequestBytes != 1572864 || c.MaxTxnOps != 128 || c.Version != DefaultVersion || c.MaxConcurrentStreams != math.MaxUint32 {
		t.Fatalf("defaults %+v", c)
	}
	for _, bad := range []Config{{MaxRequestBytes: -1}, {MaxTxnOps: -1}, {MaxRequestBytes: 1 << 31}} {
		if bad.Validate() == nil {
			t.Errorf("%+v validated", bad)
		}
	}
}
