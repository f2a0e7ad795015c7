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

	"github.com/concorddb/concord/internal/concordpb"
)

// TestEnumsMatch pins the assumption translate.go converts enums by value on:
// both protos number every value alike.
func TestEnumsMatch(t *testing.T) {
	for _, tt := range []struct {
		etcd, concord map[int32]string
		prefix        string
	}{
		{pb.RangeRequest_SortOrder_name, concordpb.SortOrder_name, "SORT_"},
		{pb.RangeRequest_SortTarget_name, concordpb.SortTarget_name, "SORT_BY_"},
		{pb.Compare_CompareResult_name, concordpb.CompareResult_name, "COMPARE_"},
		{pb.Compare_CompareTarget_name, concordpb.CompareTarget_name, "COMPARE_"},
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
		want *concordpb.RequestOp
	}{
		{"empty", &pb.RequestOp{}, &concordpb.RequestOp{}},
		{"nil", nil, &concordpb.RequestOp{}},
		{"range", &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: full}},
			&concordpb.RequestOp{Request: &concordpb.RequestOp_Range{Range: &concordpb.RangeRequest{
				Key: []byte("a"), RangeEnd: []byte("b"), Limit: 1, Revision: 2,
				SortOrder: concordpb.SortOrder_SORT_DESCEND, SortTarget: concordpb.SortTarget_SORT_BY_VALUE,
				Serializable: true, KeysOnly: true, CountOnly: true,
				MinModRevision: 3, MaxModRevision: 4, MinCreateRevision: 5, MaxCreateRevision: 6,
			}}}},
		{"nil range", &pb.RequestOp{Request: &pb.RequestOp_RequestRange{}},
			&concordpb.RequestOp{Request: &concordpb.RequestOp_Range{Range: &concordpb.RangeRequest{}}}},
		{"put", &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{
			Key: []byte("k"), Value: []byte("v"), Lease: 7, PrevKv: true, IgnoreValue: true, IgnoreLease: true}}},
			&concordpb.RequestOp{Request: &concordpb.RequestOp_Put{Put: &concordpb.PutRequest{
				Key: []byte("k"), Value: []byte("v"), Lease: 7, PrevKv: true, IgnoreValue: true, IgnoreLease: true}}}},
		{"delete", &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{
			Key: []byte("k"), RangeEnd: []byte{0}, PrevKv: true}}},
			&concordpb.RequestOp{Request: &concordpb.RequestOp_DeleteRange{DeleteRange: &concordpb.DeleteRangeRequest{
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
			&concordpb.RequestOp{Request: &concordpb.RequestOp_Txn{Txn: &concordpb.TxnRequest{
				Compare: []*concordpb.Compare{
					{Result: concordpb.CompareResult_COMPARE_GREATER, Target: concordpb.CompareTarget_COMPARE_VERSION, Key: []byte("a"), RangeEnd: []byte("b"), TargetUnion: &concordpb.Compare_Version{Version: 1}},
					{Result: concordpb.CompareResult_COMPARE_LESS, Target: concordpb.CompareTarget_COMPARE_CREATE, Key: []byte("a"), TargetUnion: &concordpb.Compare_CreateRevision{CreateRevision: 2}},
					{Result: concordpb.CompareResult_COMPARE_NOT_EQUAL, Target: concordpb.CompareTarget_COMPARE_MOD, Key: []byte("a"), TargetUnion: &concordpb.Compare_ModRevision{ModRevision: 3}},
					{Target: concordpb.CompareTarget_COMPARE_VALUE, Key: []byte("a"), TargetUnion: &concordpb.Compare_Value{Value: []byte("x")}},
					{Target: concordpb.CompareTarget_COMPARE_LEASE, Key: []byte("a"), TargetUnion: &concordpb.Compare_Lease{Lease: 4}},
					{Target: concordpb.CompareTarget_COMPARE_VALUE, Key: []byte("a")},
				},
				Success: []*concordpb.RequestOp{{Request: &concordpb.RequestOp_Txn{Txn: &concordpb.TxnRequest{
					Compare: []*concordpb.Compare{}, Success: []*concordpb.RequestOp{},
					Failure: []*concordpb.RequestOp{{Request: &concordpb.RequestOp_Put{Put: &concordpb.PutRequest{Key: []byte("n")}}}},
				}}}},
				Failure: []*concordpb.RequestOp{{}},
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
	kv := &concordpb.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 1, ModRevision: 2, Version: 3, Lease: 4}
	ekv := &mvccpb.KeyValue{Key: []byte("k"), Value: []byte("v"), CreateRevision: 1, ModRevision: 2, Version: 3, Lease: 4}
	in := &concordpb.TxnResponse{Succeeded: true, Responses: []*concordpb.ResponseOp{
		{Response: &concordpb.ResponseOp_Range{Range: &concordpb.RangeResponse{Kvs: []*concordpb.KeyValue{kv}, More: true, Count: 5}}},
		{Response: &concordpb.ResponseOp_Put{Put: &concordpb.PutResponse{PrevKv: kv}}},
		{Response: &concordpb.ResponseOp_Put{Put: &concordpb.PutResponse{}}},
		{Response: &concordpb.ResponseOp_DeleteRange{DeleteRange: &concordpb.DeleteRangeResponse{Deleted: 1, PrevKvs: []*concordpb.KeyValue{kv}}}},
		{Response: &concordpb.ResponseOp_Txn{Txn: &concordpb.TxnResponse{Responses: []*concordpb.ResponseOp{
			{Response: &concordpb.ResponseOp_Put{Put: &concordpb.PutResponse{}}},
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

	in.Responses[4].GetTxn().Responses = append(in.Responses[4].GetTxn().Responses, &concordpb.ResponseOp{})
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
		{concordpb.Errorf(concordpb.ErrorCode_COMPACTED, "x"), codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted", rpctypes.ErrCompacted},
		{concordpb.Errorf(concordpb.ErrorCode_FUTURE_REV, "x"), codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision", rpctypes.ErrFutureRev},
		{concordpb.Errorf(concordpb.ErrorCode_DUPLICATE_KEY, "x"), codes.InvalidArgument, "etcdserver: duplicate key given in txn request", rpctypes.ErrDuplicateKey},
		{concordpb.Errorf(concordpb.ErrorCode_LEASE_NOT_FOUND, "x"), codes.NotFound, "etcdserver: requested lease not found", rpctypes.ErrLeaseNotFound},
		{concordpb.Errorf(concordpb.ErrorCode_TOO_MANY_OPS, "x"), codes.InvalidArgument, "etcdserver: too many operations in txn request", rpctypes.ErrTooManyOps},
		{concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "etcdserver: key not found"), codes.InvalidArgument, "etcdserver: key not found", rpctypes.ErrKeyNotFound},
		{concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "bad thing"), codes.InvalidArgument, "bad thing", nil},
		{concordpb.Errorf(concordpb.ErrorCode_NOT_LEADER, "x"), codes.Unavailable, "etcdserver: no leader", rpctypes.ErrNoLeader},
		{concordpb.Errorf(concordpb.ErrorCode_UNAVAILABLE, "x"), codes.Unavailable, "etcdserver: no leader", rpctypes.ErrNoLeader},
		{concordpb.Errorf(concordpb.ErrorCode_AMBIGUOUS, "x"), codes.Unavailable, "etcdserver: request timed out", rpctypes.ErrTimeout},
		{concordpb.Errorf(concordpb.ErrorCode_CROSS_RANGE, "txn spans ranges"), codes.Unimplemented, "txn spans ranges", nil},
		{concordpb.Errorf(concordpb.ErrorCode_RETRY, "lost race"), codes.Unavailable, "lost race", nil},
		{&concordpb.Error{Code: concordpb.ErrorCode_KEY_MISMATCH}, codes.Unavailable, "concord: KEY_MISMATCH", nil},
		{concordpb.Errorf(concordpb.ErrorCode_INTERNAL, "boom"), codes.Internal, "boom", nil},
		{fmt.Errorf("router: %w", concordpb.Errorf(concordpb.ErrorCode_NOT_LEADER, "x")), codes.Unavailable, "etcdserver: no leader", rpctypes.ErrNoLeader},
		{fmt.Errorf("wait: %w", context.DeadlineExceeded), codes.Unavailable, "etcdserver: request timed out", rpctypes.ErrTimeout},
		{context.Canceled, codes.Canceled, "etcdserver: request canceled", nil},
		{grpcUnavailable, codes.Unavailable, "connection refused", nil},
		{grpcFull, codes.ResourceExhausted, "router: forward stream to node 2 full", nil},
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
