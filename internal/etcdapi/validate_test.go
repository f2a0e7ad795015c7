package etcdapi

import (
	"errors"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

func put(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(k)}}}
}

func del(k, end string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
}

func get(k string) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte(k)}}}
}

func txn(cmps int, then, els []*pb.RequestOp) *pb.TxnRequest {
	t := &pb.TxnRequest{Success: then, Failure: els}
	for range cmps {
		t.Compare = append(t.Compare, &pb.Compare{Key: []byte("c")})
	}
	return t
}

func nested(then, els []*pb.RequestOp) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestTxn{RequestTxn: txn(0, then, els)}}
}

func ops(o ...*pb.RequestOp) []*pb.RequestOp { return o }

func many(n int, f func(i int) *pb.RequestOp) []*pb.RequestOp {
	out := make([]*pb.RequestOp, n)
	for i := range out {
		out[i] = f(i)
	}
	return out
}

func TestCheckTxn(t *testing.T) {
	const maxOps = 4
	putN := func(i int) *pb.RequestOp { return put(string(rune('a' + i))) }
	for _, tt := range []struct {
		name string
		txn  *pb.TxnRequest
		want error
	}{
		{"empty", txn(0, nil, nil), nil},
		{"at limit", txn(4, many(4, putN), many(4, putN)), nil},
		{"compares over", txn(5, nil, nil), rpctypes.ErrGRPCTooManyOps},
		{"success over", txn(0, many(5, putN), nil), rpctypes.ErrGRPCTooManyOps},
		{"failure over", txn(0, nil, many(5, putN)), rpctypes.ErrGRPCTooManyOps},
		// A nested txn gets the budget left by its parent's widest list.
		// Here the parent's widest list is 2 long, so the nested txn may have 2.
		{"nested within budget", txn(0, ops(put("x"), nested(ops(put("a"), put("b")), nil)), nil), nil},
		{"nested over budget", txn(0, ops(put("x"), nested(ops(put("a"), put("b"), put("c")), nil)), nil), rpctypes.ErrGRPCTooManyOps},
		{"empty compare key", &pb.TxnRequest{Compare: []*pb.Compare{{}}}, rpctypes.ErrGRPCEmptyKey},
		{"empty op", txn(0, ops(&pb.RequestOp{}), nil), rpctypes.ErrGRPCKeyNotFound},
		{"nil op", txn(0, ops(nil), nil), rpctypes.ErrGRPCKeyNotFound},
		{"nil put", txn(0, ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{}}), nil), rpctypes.ErrGRPCEmptyKey},
		{"bad sort", txn(0, ops(&pb.RequestOp{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: []byte("k"), SortOrder: 9}}}), nil), rpctypes.ErrGRPCInvalidSortOption},
		{"lease with ignore lease", txn(0, nil, ops(&pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte("k"), Lease: 1, IgnoreLease: true}}})), rpctypes.ErrGRPCLeaseProvided},

		{"put twice", txn(0, ops(put("a"), put("a")), nil), rpctypes.ErrGRPCDuplicateKey},
		{"put in each branch", txn(0, ops(put("a")), ops(put("a"))), nil},
		{"get and put", txn(0, ops(get("a"), put("a")), nil), nil},
		{"delete twice", txn(0, ops(del("a", ""), del("a", "z")), nil), nil},
		{"put and delete same key", txn(0, ops(del("a", ""), put("a")), nil), rpctypes.ErrGRPCDuplicateKey},
		{"put inside deleted range", txn(0, ops(put("b"), del("a", "c")), nil), rpctypes.ErrGRPCDuplicateKey},
		{"put at deleted range end", txn(0, ops(put("c"), del("a", "c")), nil), nil},
		// etcd takes range_end literally: a from-key delete covers nothing here.
		{"put after from-key delete", txn(0, ops(put("b"), del("a", "\x00")), nil), nil},
		{"nested then and else same key", txn(0, ops(nested(ops(put("a")), ops(put("a")))), nil), nil},
		{"nested and outer put", txn(0, ops(put("a"), nested(ops(put("a")), nil)), nil), rpctypes.ErrGRPCDuplicateKey},
		{"nested else and outer put", txn(0, ops(put("a"), nested(nil, ops(put("a")))), nil), rpctypes.ErrGRPCDuplicateKey},
		{"two nested txns same key", txn(0, ops(nested(ops(put("a")), nil), nested(ops(put("a")), nil)), nil), rpctypes.ErrGRPCDuplicateKey},
		{"nested put under outer delete", txn(0, ops(del("a", "z"), nested(ops(put("m")), nil)), nil), rpctypes.ErrGRPCDuplicateKey},
		{"outer put under nested delete", txn(0, ops(put("m"), nested(nil, ops(del("a", "z")))), nil), rpctypes.ErrGRPCDuplicateKey},
		{"deep nesting conflict", txn(0, ops(put("a"), nested(ops(nested(ops(put("a")), nil)), nil)), nil), rpctypes.ErrGRPCDuplicateKey},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := checkTxn(tt.txn, maxOps); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCheckSingleRequests(t *testing.T) {
	for _, tt := range []struct {
		name string
		err  error
		want error
	}{
		{"range ok", checkRangeRequest(&pb.RangeRequest{Key: []byte("k")}), nil},
		{"range empty key", checkRangeRequest(&pb.RangeRequest{RangeEnd: []byte("z")}), rpctypes.ErrGRPCEmptyKey},
		{"range nil", checkRangeRequest(nil), rpctypes.ErrGRPCEmptyKey},
		{"range bad target", checkRangeRequest(&pb.RangeRequest{Key: []byte("k"), SortTarget: -1}), rpctypes.ErrGRPCInvalidSortOption},
		{"put ok", checkPutRequest(&pb.PutRequest{Key: []byte("k"), IgnoreValue: true, IgnoreLease: true}), nil},
		{"put value with ignore", checkPutRequest(&pb.PutRequest{Key: []byte("k"), Value: []byte("v"), IgnoreValue: true}), rpctypes.ErrGRPCValueProvided},
		{"delete empty key", checkDeleteRequest(&pb.DeleteRangeRequest{}), rpctypes.ErrGRPCEmptyKey},
	} {
		if !errors.Is(tt.err, tt.want) {
			t.Errorf("%s: got %v, want %v", tt.name, tt.err, tt.want)
		}
	}
}

func TestIsTxnReadOnly(t *testing.T) {
	for _, tt := range []struct {
		txn  *pb.TxnRequest
		want bool
	}{
		{txn(1, nil, nil), true},
		{txn(0, ops(get("a"), nested(ops(get("b")), ops(get("c")))), ops(get("d"))), true},
		{txn(0, ops(get("a")), ops(put("b"))), false},
		{txn(0, ops(nested(nil, ops(del("a", "")))), nil), false},
	} {
		if got := isTxnReadOnly(tt.txn); got != tt.want {
			t.Errorf("isTxnReadOnly(%v) = %v", tt.txn, got)
		}
	}
}
