package compat

import (
	"fmt"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

var results = []string{"=", "!=", ">", "<"}

// probe is what every compare case runs in its branches, so the record
// shows which branch ran.
func probe(c ...cmp) step {
	return txn(c, ops(get("a", withKeysOnly)), ops(get("b", withCountOnly)))
}

// TestCompare covers every compare target with every result against a
// value below, equal to and above the key's, on a present key, a missing
// key, and ranges of keys (every key in the range must satisfy the compare;
// an empty range compares the zero value, except VALUE, which fails).
func TestCompare(t *testing.T) {
	var cases []tcase
	add := func(c cmp) {
		cases = append(cases, tcase{name: c.name, steps: steps(probe(c))})
	}
	for _, r := range results {
		// b: value "222", version 3, created b1, modified b3, no lease.
		for _, v := range []string{"2", "222", "3", "", "2220"} {
			add(cmpValue("b", r, v))
		}
		for _, v := range []int64{0, 2, 3, 4} {
			add(cmpVersion("b", r, v))
		}
		for _, v := range []rev{at("a1"), at("b1"), at("b3"), lit(0)} {
			add(cmpCreate("b", r, v))
		}
		for _, v := range []rev{at("b2"), at("b3"), at("ab1"), lit(0)} {
			add(cmpMod("b", r, v))
		}
		for _, v := range []int64{-1, 0, 1} {
			add(cmpLease("b", r, v))
		}
		// A missing key, and a deleted one.
		for _, key := range []string{"zz"} {
			add(cmpValue(key, r, ""))
			add(cmpVersion(key, r, 0))
			add(cmpCreate(key, r, lit(0)))
			add(cmpMod(key, r, lit(0)))
			add(cmpLease(key, r, 0))
		}
		// Ranges: a, aa, ab (values 11, 6, 6; versions 2, 1, 1).
		add(cmpValue("a", r, "6").prefixed())
		add(cmpValue("aa", r, "6").to("b"))
		add(cmpVersion("a", r, 1).prefixed())
		add(cmpVersion("aa", r, 1).to("b"))
		add(cmpCreate("a", r, at("c2")).prefixed())
		add(cmpMod("a", r, at("aa1")).to("b"))
		add(cmpMod("a", r, at("ab1")).fromKey())
		add(cmpLease("a", r, 0).prefixed())
		add(cmpValue("x", r, "").prefixed())
		add(cmpVersion("x", r, 0).prefixed())
		add(cmpMod("c", r, at("c2")).to("a"))
	}
	// Several compares: all must hold.
	cases = append(cases,
		tcase{name: "all-true", steps: steps(probe(cmpValue("a", "=", "11"), cmpVersion("b", "=", 3), cmpMod("e", "=", at("e1"))))},
		tcase{name: "last-false", steps: steps(probe(cmpValue("a", "=", "11"), cmpVersion("b", "=", 3), cmpMod("e", "<", at("e1"))))},
		tcase{name: "first-false", steps: steps(probe(cmpValue("a", "=", "1"), cmpVersion("b", "=", 3)))},
		tcase{name: "no-compares", steps: steps(probe())},
		tcase{name: "empty-branches", steps: steps(txn(ifs(cmpValue("a", "=", "11")), nil, nil))},
		tcase{name: "empty-else", steps: steps(txn(ifs(cmpValue("a", "=", "x")), ops(get("a")), nil))},
		tcase{name: "reads-in-branch", steps: steps(txn(nil, ops(get("", withPrefix, withLimit(2)), get("b", withRev(at("b1"))), get("", withFromKey, withCountOnly)), nil))},
		tcase{name: "read-at-future-in-txn", steps: steps(txn(nil, ops(get("a", withRev(future))), nil))},
		tcase{name: "read-at-next-in-txn", steps: steps(txn(nil, ops(get("a", withRev(next))), nil))},
		tcase{name: "nested-read-only", steps: steps(txn(ifs(cmpVersion("a", ">", 0)),
			ops(txn(ifs(cmpValue("b", "=", "222")), ops(get("b")), ops(get("c"))), get("d")),
			ops(get("e"))))},
	)
	runGroup(t, group{setup: fixture(), cases: cases})
}

// TestTxnWrites covers txns that write, each on a fresh prefix.
func TestTxnWrites(t *testing.T) {
	base := steps(put("a", "1").as("a1"), put("b", "2").as("b1"), put("c", "3").as("c1"))
	with := func(s ...step) []step { return append(append([]step(nil), base...), s...) }
	cases := []tcase{
		{name: "cas-success", steps: with(txn(ifs(cmpValue("a", "=", "1")), ops(put("a", "2", withPrevKV)), ops(get("a"))), get("a"))},
		{name: "cas-failure", steps: with(txn(ifs(cmpValue("a", "=", "9")), ops(put("a", "2")), ops(get("a"))), get("a"))},
		{name: "create-if-absent", steps: with(txn(ifs(cmpCreate("n", "=", lit(0))), ops(put("n", "new")), ops(get("n"))), get("n"),
			txn(ifs(cmpCreate("n", "=", lit(0))), ops(put("n", "again")), ops(get("n"))))},
		{name: "mod-revision-guard", steps: with(txn(ifs(cmpMod("b", "=", at("b1"))), ops(put("b", "x")), nil),
			txn(ifs(cmpMod("b", "=", at("b1"))), ops(put("b", "y")), ops(get("b"))))},
		{name: "write-then-read", steps: with(txn(nil, ops(put("a", "new"), get("a"), del("b"), get("", withPrefix), put("b", "back"), get("b")), nil))},
		{name: "read-then-write", steps: with(txn(nil, ops(get("a"), put("a", "new"), get("a")), nil))},
		{name: "delete-nothing-then-write", steps: with(txn(nil, ops(del("zz"), put("a", "new")), nil))},
		{name: "read-write-read-at-rev", steps: with(txn(nil, ops(put("a", "new"), get("a", withRev(at("a1")))), nil))},
		{name: "delete-nothing-then-read", steps: with(txn(nil, ops(del("zz"), get("a")), nil), get("a"))},
		{name: "delete-only-nothing", steps: with(txn(nil, ops(del("zz")), nil), put("q", "1"))},
		{name: "delete-range-prev", steps: with(txn(nil, ops(del("a", withRange("c"), withPrevKV), get("", withPrefix)), nil))},
		{name: "delete-then-put-same-key", steps: with(txn(nil, ops(del("a"), get("a")), nil), put("a", "again"), get("a"))},
		{name: "put-twice-is-duplicate", steps: with(txn(nil, ops(put("a", "1"), put("a", "2")), nil), get("a"))},
		{name: "put-in-deleted-range-is-duplicate", steps: with(txn(nil, ops(del("a", withRange("c")), put("b", "x")), nil))},
		{name: "put-then-delete-is-duplicate", steps: with(txn(nil, ops(put("b", "x"), del("a", withPrefix)), nil))},
		{name: "put-and-from-key-delete", steps: with(txn(nil, ops(put("b", "x"), del("a", withFromKey)), nil), get("", withPrefix))},
		{name: "duplicate-in-else-only", steps: with(txn(ifs(cmpValue("a", "=", "1")), ops(put("x", "1")), ops(put("x", "1"), put("x", "2"))))},
		{name: "nested-both-branches-same-key", steps: with(txn(nil, ops(txn(ifs(cmpValue("a", "=", "1")), ops(put("k", "then")), ops(put("k", "else")))), nil), get("k"))},
		{name: "nested-and-outer-same-key", steps: with(txn(nil, ops(put("k", "outer"), txn(nil, ops(put("k", "inner")), nil)), nil))},
		{name: "nested-delete-outer-put", steps: with(txn(nil, ops(put("a", "outer"), txn(nil, ops(del("a")), nil)), nil))},
		{name: "nested-writes", steps: with(txn(ifs(cmpVersion("a", "=", 1)),
			ops(put("x", "1"), txn(ifs(cmpValue("b", "=", "2")), ops(put("y", "2"), get("x")), ops(put("z", "3"))), get("", withPrefix)),
			ops(put("w", "0"))), get("", withPrefix))},
		{name: "nested-three-deep", steps: with(txn(nil,
			ops(txn(nil, ops(txn(ifs(cmpValue("c", "=", "3")), ops(put("deep", "1")), ops(put("deep", "0"))), get("deep")), nil)), nil), get("deep"))},
		{name: "nested-compares-see-state-before-txn", steps: with(txn(nil,
			ops(put("a", "changed"), txn(ifs(cmpValue("a", "=", "1")), ops(put("seen", "before")), ops(put("seen", "after")))), nil), get("seen"))},
		{name: "ignore-value-in-txn", steps: with(txn(nil, ops(put("a", "", withIgnoreValue, withPrevKV)), nil), get("a"))},
		{name: "ignore-value-missing-in-txn", steps: with(txn(nil, ops(put("a", "ok"), put("n", "", withIgnoreValue)), nil), get("a"))},
		{name: "ignore-value-after-delete-in-txn", steps: with(txn(nil, ops(del("a"), put("a", "", withIgnoreValue)), nil), get("a"))},
		{name: "ignore-value-after-put-in-txn", steps: with(txn(nil, ops(put("n", "v"), txn(nil, ops(put("n", "", withIgnoreValue)), nil)), nil), get("n"))},
		{name: "lease-in-txn", steps: with(txn(nil, ops(put("a", "x", withLease(12345))), nil), get("a"))},
		{name: "future-read-in-writing-txn", steps: with(txn(nil, ops(put("a", "x"), get("b", withRev(future))), nil), get("a"))},
		{name: "next-revision-read-in-writing-txn", steps: with(txn(nil, ops(put("a", "x"), get("b", withRev(next))), nil), get("a"))},
		{name: "next-revision-read", steps: with(get("b", withRev(next)))},
		{name: "txn-header-revisions", steps: with(
			txn(nil, ops(put("a", "2"), get("a"), del("zz"), del("b"), txn(nil, ops(get("c")), nil)), nil))},
		{name: "nested-txn-header", steps: with(txn(nil, ops(txn(nil, ops(put("a", "n")), nil)), nil), txn(nil, ops(txn(nil, ops(get("a")), nil)), nil))},
		{name: "read-only-txn-header", steps: with(txn(nil, ops(get("a"), get("zz")), nil))},
	}
	runCases(t, cases)
}

// TestTxnLimits covers --max-txn-ops (128, as etcd's default, on both).
func TestTxnLimits(t *testing.T) {
	many := func(n int, f func(i int) step) []step {
		out := make([]step, n)
		for i := range out {
			out[i] = f(i)
		}
		return out
	}
	manyCmps := func(n int) []cmp {
		out := make([]cmp, n)
		for i := range out {
			out[i] = cmpVersion(fmt.Sprint("k", i), "=", 0)
		}
		return out
	}
	putK := func(i int) step { return put(fmt.Sprint("k", i), "v") }
	getK := func(i int) step { return get(fmt.Sprint("k", i)) }
	cases := []tcase{
		{name: "128-puts", steps: steps(txn(nil, many(128, putK), nil), get("", withPrefix, withCountOnly))},
		{name: "129-puts", steps: steps(txn(nil, many(129, putK), nil))},
		{name: "129-gets", steps: steps(txn(nil, many(129, getK), nil))},
		{name: "129-in-else", steps: steps(txn(nil, nil, many(129, getK)))},
		{name: "128-compares", steps: steps(txn(manyCmps(128), ops(put("x", "1")), nil))},
		{name: "129-compares", steps: steps(txn(manyCmps(129), nil, nil))},
		{name: "nested-budget", steps: steps(txn(nil, append(many(100, getK), txn(nil, many(29, getK), nil)), nil))},
		{name: "nested-over-budget", steps: steps(txn(nil, append(many(100, getK), txn(nil, many(30, getK), nil)), nil))},
	}
	runCases(t, cases)
}

// TestTxnRaw covers txns clientv3 cannot build: empty ops, compares whose
// target union disagrees with their target, empty compare keys.
func TestTxnRaw(t *testing.T) {
	base := steps(put("a", "1"), put("b", "2"))
	with := func(s ...step) []step { return append(append([]step(nil), base...), s...) }
	key := func(x *exec, k string) []byte { return []byte(x.k(k)) }
	cases := []tcase{
		{name: "empty-op-in-success", steps: with(rawTxn("success=[{}]", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Success: []*pb.RequestOp{{}}}
		}))},
		{name: "empty-op-in-untaken-branch", steps: with(rawTxn("failure=[{}]", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Failure: []*pb.RequestOp{{}}}
		}))},
		{name: "compare-empty-key", steps: with(rawTxn("compare key empty", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION, Result: pb.Compare_EQUAL}}}
		}))},
		{name: "compare-mismatched-union", steps: with(rawTxn("target VERSION with a value union", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{
				Compare: []*pb.Compare{{Target: pb.Compare_VERSION, Result: pb.Compare_GREATER, Key: key(x, "a"), TargetUnion: &pb.Compare_Value{Value: []byte("1")}}},
				Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key(x, "a")}}}},
			}
		}))},
		{name: "compare-value-nil-union", steps: with(rawTxn("target VALUE without a union", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VALUE, Result: pb.Compare_GREATER, Key: key(x, "a")}}}
		}))},
		{name: "compare-unknown-target", steps: with(rawTxn("target 9", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Compare: []*pb.Compare{{Target: 9, Result: pb.Compare_EQUAL, Key: key(x, "a")}}}
		}))},
		{name: "compare-unknown-result", steps: with(rawTxn("result 9", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Compare: []*pb.Compare{{Target: pb.Compare_VERSION, Result: 9, Key: key(x, "a")}}}
		}))},
		{name: "range-empty-key-in-txn", steps: with(rawTxn("success range key empty", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{}}}}}
		}))},
		{name: "put-empty-key-in-txn", steps: with(rawTxn("success put key empty", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{}}}}}
		}))},
		{name: "invalid-sort-in-txn", steps: with(rawTxn("success range sort order 7", func(x *exec) *pb.TxnRequest {
			return &pb.TxnRequest{Success: []*pb.RequestOp{{Request: &pb.RequestOp_RequestRange{RequestRange: &pb.RangeRequest{Key: key(x, "a"), SortOrder: 7}}}}}
		}))},
	}
	runCases(t, cases)
}

// TestEtcdPanicCase runs, on Concord alone, the txn that makes etcd v3.7.3
// panic in apply (and so cannot run against the shared embedded etcd): a
// from-key delete, then an ignore_value put of a key it deleted. etcd checks
// ignore_value against the state before the txn; Concord checks it against
// the txn's earlier ops, refuses with etcd's "key not found", and writes
// nothing.
func TestEtcdPanicCase(t *testing.T) {
	x := newExec(concordSys, newPrefix())
	for _, s := range steps(
		put("d", "1"),
		txn(nil, ops(put("x", "1"), del("c", withFromKey), put("d", "", withIgnoreValue)), nil),
		get("", withPrefix, withKeysOnly),
	) {
		x.run(s)
	}
	got := x.normalised()
	if want := `error InvalidArgument "etcdserver: key not found"`; got[1] != want {
		t.Errorf("txn: got %s, want %s", got[1], want)
	}
	if want := `range rev=@1 count=1 more=false kvs=[{"d"="" create=@1 mod=@1 ver=1 lease=0}]`; got[2] != want {
		t.Errorf("after the refused txn: got %s, want %s", got[2], want)
	}
}
