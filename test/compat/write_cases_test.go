package compat

import (
	"context"
	"strings"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestWrite covers Put and Delete with their options, and the requests
// both servers must refuse, each on a fresh prefix.
func TestWrite(t *testing.T) {
	// big is over --max-request-bytes (1.5 MiB, both systems' default).
	big := strings.Repeat("x", 3*512*1024+1)
	almost := strings.Repeat("y", 1024*1024)
	cases := []tcase{
		{name: "put-new", steps: steps(put("a", "1"), get("a"))},
		{name: "put-overwrite-versions", steps: steps(put("a", "1"), put("a", "2"), put("a", "3"), get("a"))},
		{name: "put-prev-kv-new", steps: steps(put("a", "1", withPrevKV))},
		{name: "put-prev-kv-existing", steps: steps(put("a", "1"), put("a", "2", withPrevKV))},
		{name: "put-empty-value", steps: steps(put("a", ""), get("a"), txn(ifs(cmpValue("a", "=", "")), ops(get("a")), nil))},
		{name: "put-binary", steps: steps(put("\x00\xff\x01", "\xff\x00"), get("\x00", withPrefix), get("", withFromKey))},
		{name: "put-big-key", steps: steps(put(strings.Repeat("k", 64*1024), "v"), get("k", withPrefix, withKeysOnly, withCountOnly), del("k", withPrefix))},
		{name: "put-ff-keys", steps: steps(put("\xff", "1"), put("\xff\xff", "2"), put("\xfe\xff", "3"), get("\xff", withPrefix), get("\xfe", withPrefix), get("\xfe\xff", withFromKey))},
		{name: "put-same-value-again", steps: steps(put("a", "1"), put("a", "1", withPrevKV), get("a"))},
		{name: "put-large-value", steps: steps(put("a", almost), get("a", withCountOnly))},
		{name: "put-too-large", steps: steps(put("a", big), get("a"))},
		{name: "put-ignore-value", steps: steps(put("a", "1"), put("a", "", withIgnoreValue, withPrevKV), get("a"))},
		{name: "put-ignore-value-missing", steps: steps(put("a", "", withIgnoreValue))},
		{name: "put-ignore-value-deleted", steps: steps(put("a", "1"), del("a"), put("a", "", withIgnoreValue))},
		{name: "put-ignore-value-with-value", steps: steps(put("a", "1"), put("a", "2", withIgnoreValue))},
		{name: "put-ignore-lease", steps: steps(put("a", "1"), put("a", "2", withIgnoreLease, withPrevKV), get("a"))},
		{name: "put-ignore-lease-missing", steps: steps(put("a", "1", withIgnoreLease))},
		{name: "put-ignore-both", steps: steps(put("a", "1"), put("a", "", withIgnoreValue, withIgnoreLease), get("a"))},
		{name: "put-ignore-lease-with-lease", steps: steps(put("a", "1"), put("a", "2", withIgnoreLease, withLease(7)))},
		{name: "put-unknown-lease", steps: steps(put("a", "1", withLease(0x1234)), get("a"))},
		{name: "put-empty-key", steps: steps(rawPut("key empty", func(*exec) *pb.PutRequest { return &pb.PutRequest{Value: []byte("v")} }))},
		{name: "delete-key", steps: steps(put("a", "1"), del("a"), get("a"))},
		{name: "delete-missing", steps: steps(put("a", "1"), del("zz"), del("zz", withPrevKV))},
		{name: "delete-prev-kv", steps: steps(put("a", "1"), put("a", "2"), del("a", withPrevKV))},
		{name: "delete-prefix", steps: steps(put("a", "1"), put("ab", "2"), put("b", "3"), del("a", withPrefix, withPrevKV), get("", withPrefix))},
		{name: "delete-range", steps: steps(put("a", "1"), put("b", "2"), put("c", "3"), del("a", withRange("c")), get("", withPrefix))},
		{name: "delete-range-inverted", steps: steps(put("a", "1"), put("b", "2"), del("c", withRange("a")), get("", withPrefix))},
		{name: "delete-from-key", steps: steps(put("a", "1"), put("b", "2"), put("c", "3"), del("b", withFromKey, withPrevKV), get("", withPrefix))},
		{name: "delete-all-of-run", steps: steps(put("a", "1"), put("b", "2"), del("", withPrefix), get("", withFromKey))},
		{name: "delete-then-recreate", steps: steps(put("a", "1").as("a1"), put("a", "2"), del("a").as("del"), put("a", "3"),
			get("a"), get("a", withRev(at("a1"))), get("a", withRev(at("del"))), get("a", withMinCreate(at("del"))))},
		{name: "delete-twice", steps: steps(put("a", "1"), del("a"), del("a"), put("b", "1"))},
		{name: "delete-empty-key", steps: steps(step{desc: "raw delete key empty", raw: rawDelete(&pb.DeleteRangeRequest{})})},
		{name: "get-empty-key", steps: steps(rawRange("key empty", "", func(_ *exec, r *pb.RangeRequest) { r.Key = nil }))},
		{name: "get-invalid-sort-order", steps: steps(put("a", "1"), rawRange("sort order 7", "a", func(_ *exec, r *pb.RangeRequest) { r.SortOrder = 7 }))},
		{name: "get-invalid-sort-target", steps: steps(put("a", "1"), rawRange("sort target 9", "a", func(_ *exec, r *pb.RangeRequest) { r.SortTarget = 9 }))},
		{name: "get-sort-none-by-value-raw", steps: steps(put("a", "2"), put("b", "1"), rawRange("prefix, order NONE, target VALUE", "", func(x *exec, r *pb.RangeRequest) {
			r.RangeEnd = []byte(x.prefix[:len(x.prefix)-1] + "0")
			r.SortTarget = pb.RangeRequest_VALUE
		}))},
		{name: "get-future", steps: steps(put("a", "1"), get("a", withRev(future)), get("a", withRev(next)))},
		{name: "get-future-count-only", steps: steps(put("a", "1"), get("a", withRev(future), withCountOnly))},
		{name: "header-after-failed-write", steps: steps(put("a", "1"), put("a", "", withIgnoreValue, withLease(3)), put("b", "", withIgnoreValue), get("a"))},
		{name: "header-after-noop-delete", steps: steps(put("a", "1"), del("zz"), get("a"), put("b", "1"))},
	}
	runCases(t, cases)
}

func rawDelete(r *pb.DeleteRangeRequest) func(ctxt context.Context, x *exec) (any, error) {
	return func(ctx context.Context, x *exec) (any, error) {
		resp, err := x.sys.kv.DeleteRange(ctx, r)
		if resp == nil {
			return nil, err
		}
		return resp, err
	}
}
