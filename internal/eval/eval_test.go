package eval

import (
	"fmt"
	"math/rand"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// env is one range over the whole user span, with a revision counter.
type env struct {
	t         testing.TB
	e         *storage.Engine
	span      keys.Span
	rev       int64 // newest applied revision
	compacted int64
}

func newEnv(t testing.TB) *env {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return &env{t: t, e: e, span: keys.UserSpan}
}

// write applies op at the next revision; on error nothing may be written.
func (v *env) write(op *kvpb.RequestOp) (*kvpb.ResponseOp, bool, error) {
	v.t.Helper()
	b := v.e.NewBatch()
	defer b.Close()
	resp, wrote, err := WriteCompacted(b, v.span, v.rev+1, v.compacted, op)
	if err != nil {
		if !b.Empty() {
			v.t.Fatalf("failed write %v left writes in the batch", op)
		}
		return nil, false, err
	}
	if wrote == b.Empty() {
		v.t.Fatalf("wrote = %v but batch empty = %v", wrote, b.Empty())
	}
	if err := b.Commit(false); err != nil {
		v.t.Fatal(err)
	}
	v.rev++
	return resp, wrote, nil
}

func (v *env) mustWrite(op *kvpb.RequestOp) *kvpb.ResponseOp {
	v.t.Helper()
	resp, _, err := v.write(op)
	if err != nil {
		v.t.Fatalf("write %v: %v", op, err)
	}
	return resp
}

func (v *env) read(req *kvpb.RangeRequest) (*kvpb.RangeResponse, error) {
	return Read(v.e, v.span, req, v.rev, v.compacted)
}

func putOp(k, val string) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte(val)}}}
}

func putReq(p *kvpb.PutRequest) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: p}}
}

func delOp(k, end string, prev bool) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Key: []byte(k), RangeEnd: bytesOrNil(end), PrevKv: prev}}}
}

func rangeOp(r *kvpb.RangeRequest) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: r}}
}

func getOp(k, end string) *kvpb.RequestOp {
	return rangeOp(&kvpb.RangeRequest{Key: []byte(k), RangeEnd: bytesOrNil(end)})
}

func txnOp(cmps []*kvpb.Compare, succ, fail []*kvpb.RequestOp) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{Compare: cmps, Success: succ, Failure: fail}}}
}

func bytesOrNil(s string) []byte {
	if s == "" {
		return nil
	}
	return []byte(s)
}

// kvs renders kvs as "key=value@mod/create/version".
func kvs(list []*kvpb.KeyValue) string {
	var out []string
	for _, kv := range list {
		out = append(out, fmt.Sprintf("%s=%s@%d/%d/%d", kv.GetKey(), kv.GetValue(), kv.GetModRevision(), kv.GetCreateRevision(), kv.GetVersion()))
	}
	return strings.Join(out, " ")
}

func wantCode(t *testing.T, err error, code kvpb.ErrorCode, msg string) {
	t.Helper()
	if kvpb.CodeOf(err) != code || (msg != "" && err.Error() != msg) {
		t.Fatalf("err = %v (code %v), want %v %q", err, kvpb.CodeOf(err), code, msg)
	}
}

func TestPut(t *testing.T) {
	v := newEnv(t)
	v.mustWrite(putOp("a", "1"))                                                                      // rev 1
	resp := v.mustWrite(putReq(&kvpb.PutRequest{Key: []byte("a"), Value: []byte("2"), PrevKv: true})) // rev 2
	if got := kvs([]*kvpb.KeyValue{resp.GetPut().GetPrevKv()}); got != "a=1@1/1/1" {
		t.Fatalf("prev_kv = %s", got)
	}
	r, _ := v.read(&kvpb.RangeRequest{Key: []byte("a")})
	if got := kvs(r.Kvs); got != "a=2@2/1/2" {
		t.Fatalf("after second put: %s", got)
	}
	// ignore_value keeps the value, takes a new revision and version.
	v.mustWrite(putReq(&kvpb.PutRequest{Key: []byte("a"), IgnoreValue: true})) // rev 3
	r, _ = v.read(&kvpb.RangeRequest{Key: []byte("a")})
	if got := kvs(r.Kvs); got != "a=2@3/1/3" {
		t.Fatalf("after ignore_value: %s", got)
	}
	v.mustWrite(putReq(&kvpb.PutRequest{Key: []byte("a"), Value: []byte("4"), IgnoreLease: true}))   // rev 4
	v.mustWrite(delOp("a", "", false))                                                               // rev 5
	resp = v.mustWrite(putReq(&kvpb.PutRequest{Key: []byte("a"), Value: []byte("6"), PrevKv: true})) // rev 6
	if resp.GetPut().GetPrevKv() != nil {
		t.Fatalf("prev_kv of a deleted key: %v", resp.GetPut().GetPrevKv())
	}
	r, _ = v.read(&kvpb.RangeRequest{Key: []byte("a")})
	if got := kvs(r.Kvs); got != "a=6@6/6/1" {
		t.Fatalf("recreated key: %s", got)
	}
	_, _, err := v.write(putReq(&kvpb.PutRequest{Key: []byte("missing"), IgnoreValue: true}))
	wantCode(t, err, kvpb.ErrorCode_INVALID_ARGUMENT, "etcdserver: key not found")
	_, _, err = v.write(putReq(&kvpb.PutRequest{Key: []byte("missing"), IgnoreLease: true}))
	wantCode(t, err, kvpb.ErrorCode_INVALID_ARGUMENT, "etcdserver: key not found")
	// A lease is stored as given: the gateway checked it with the lessor.
	v.mustWrite(putReq(&kvpb.PutRequest{Key: []byte("a"), Value: []byte("7"), Lease: 7}))
	r, _ = v.read(&kvpb.RangeRequest{Key: []byte("a")})
	if len(r.Kvs) != 1 || r.Kvs[0].GetLease() != 7 {
		t.Fatalf("put with lease 7: %v", r.Kvs)
	}
	// The key mismatch check uses the range's span.
	v.span = keys.UserSpanOf([]byte("b"), []byte("c"))
	_, _, err = v.write(putOp("a", "x"))
	wantCode(t, err, kvpb.ErrorCode_KEY_MISMATCH, "")
}

func TestDeleteRange(t *testing.T) {
	for _, tc := range []struct {
		key, end string
		deleted  int64
		left     string
	}{
		{"b", "", 1, "a c d e"},
		{"x", "", 0, "a b c d e"},
		{"b", "d", 2, "a d e"},
		{"c", "\x00", 3, "a b"},
		{"\x00", "\x00", 5, ""},
		{"d", "b", 0, "a b c d e"},
	} {
		t.Run(fmt.Sprintf("%q-%q", tc.key, tc.end), func(t *testing.T) {
			v := newEnv(t)
			for _, k := range []string{"a", "b", "c", "d", "e"} {
				v.mustWrite(putOp(k, "v"+k))
			}
			resp, wrote, err := v.write(delOp(tc.key, tc.end, true))
			if err != nil {
				t.Fatal(err)
			}
			d := resp.GetDeleteRange()
			if d.Deleted != tc.deleted || int64(len(d.PrevKvs)) != tc.deleted || wrote != (tc.deleted > 0) {
				t.Fatalf("deleted %d, prev_kvs %s, wrote %v", d.Deleted, kvs(d.PrevKvs), wrote)
			}
			r, err := v.read(&kvpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, KeysOnly: true})
			if err != nil {
				t.Fatal(err)
			}
			var left []string
			for _, kv := range r.Kvs {
				left = append(left, string(kv.Key))
			}
			if got := strings.Join(left, " "); got != tc.left {
				t.Fatalf("left %q, want %q", got, tc.left)
			}
		})
	}
	v := newEnv(t)
	v.mustWrite(putOp("a", "1"))
	resp := v.mustWrite(delOp("a", "", false))
	if resp.GetDeleteRange().Deleted != 1 || resp.GetDeleteRange().PrevKvs != nil {
		t.Fatalf("delete without prev_kv: %v", resp)
	}
}

func TestRange(t *testing.T) {
	v := newEnv(t)
	// rev 1..5: a, b, c, d; then b again (version 2), value order reversed.
	v.mustWrite(putOp("a", "z"))       // 1
	v.mustWrite(putOp("b", "y"))       // 2
	v.mustWrite(putOp("c", "x"))       // 3
	v.mustWrite(putOp("d", "w"))       // 4
	v.mustWrite(putOp("b", "y2"))      // 5
	v.mustWrite(delOp("d", "", false)) // 6
	all := func(r *kvpb.RangeRequest) *kvpb.RangeRequest {
		r.Key, r.RangeEnd = []byte("a"), []byte("\x00")
		return r
	}
	for _, tc := range []struct {
		name  string
		req   *kvpb.RangeRequest
		want  string
		count int64
		more  bool
		code  kvpb.ErrorCode
	}{
		{name: "single", req: &kvpb.RangeRequest{Key: []byte("b")}, want: "b=y2@5/2/2", count: 1},
		{name: "single missing", req: &kvpb.RangeRequest{Key: []byte("bb")}, count: 0},
		{name: "deleted", req: &kvpb.RangeRequest{Key: []byte("d")}, count: 0},
		{name: "prefix range", req: &kvpb.RangeRequest{Key: []byte("a"), RangeEnd: []byte("c")}, want: "a=z@1/1/1 b=y2@5/2/2", count: 2},
		{name: "from key", req: all(&kvpb.RangeRequest{}), want: "a=z@1/1/1 b=y2@5/2/2 c=x@3/3/1", count: 3},
		{name: "at revision", req: all(&kvpb.RangeRequest{Revision: 4}), want: "a=z@1/1/1 b=y@2/2/1 c=x@3/3/1 d=w@4/4/1", count: 4},
		{name: "revision between", req: all(&kvpb.RangeRequest{Revision: 2}), want: "a=z@1/1/1 b=y@2/2/1", count: 2},
		{name: "current revision", req: all(&kvpb.RangeRequest{Revision: 6}), want: "a=z@1/1/1 b=y2@5/2/2 c=x@3/3/1", count: 3},
		{name: "future", req: all(&kvpb.RangeRequest{Revision: 7}), code: kvpb.ErrorCode_FUTURE_REV},
		// etcd reads the current revision for any revision <= 0.
		{name: "negative revision", req: all(&kvpb.RangeRequest{Revision: -1}), want: "a=z@1/1/1 b=y2@5/2/2 c=x@3/3/1", count: 3},
		{name: "limit", req: all(&kvpb.RangeRequest{Limit: 2}), want: "a=z@1/1/1 b=y2@5/2/2", count: 3, more: true},
		{name: "limit exact", req: all(&kvpb.RangeRequest{Limit: 3}), want: "a=z@1/1/1 b=y2@5/2/2 c=x@3/3/1", count: 3},
		{name: "count only", req: all(&kvpb.RangeRequest{CountOnly: true, Limit: 1}), count: 3},
		{name: "keys only", req: all(&kvpb.RangeRequest{KeysOnly: true, Limit: 1}), want: "a=@1/1/1", count: 3, more: true},
		{name: "descend by key", req: all(&kvpb.RangeRequest{SortOrder: kvpb.SortOrder_SORT_DESCEND}), want: "c=x@3/3/1 b=y2@5/2/2 a=z@1/1/1", count: 3},
		{name: "descend by key limit", req: all(&kvpb.RangeRequest{SortOrder: kvpb.SortOrder_SORT_DESCEND, Limit: 1}), want: "c=x@3/3/1", count: 3, more: true},
		{name: "none by value ascends", req: all(&kvpb.RangeRequest{SortTarget: kvpb.SortTarget_SORT_BY_VALUE}), want: "c=x@3/3/1 b=y2@5/2/2 a=z@1/1/1", count: 3},
		{name: "ascend by mod", req: all(&kvpb.RangeRequest{SortOrder: kvpb.SortOrder_SORT_ASCEND, SortTarget: kvpb.SortTarget_SORT_BY_MOD}), want: "a=z@1/1/1 c=x@3/3/1 b=y2@5/2/2", count: 3},
		{name: "descend by create", req: all(&kvpb.RangeRequest{SortOrder: kvpb.SortOrder_SORT_DESCEND, SortTarget: kvpb.SortTarget_SORT_BY_CREATE}), want: "c=x@3/3/1 b=y2@5/2/2 a=z@1/1/1", count: 3},
		{name: "descend by version ties in key order", req: all(&kvpb.RangeRequest{SortOrder: kvpb.SortOrder_SORT_DESCEND, SortTarget: kvpb.SortTarget_SORT_BY_VERSION}), want: "b=y2@5/2/2 a=z@1/1/1 c=x@3/3/1", count: 3},
		{name: "min mod", req: all(&kvpb.RangeRequest{MinModRevision: 3}), want: "b=y2@5/2/2 c=x@3/3/1", count: 3},
		{name: "max mod", req: all(&kvpb.RangeRequest{MaxModRevision: 3}), want: "a=z@1/1/1 c=x@3/3/1", count: 3},
		{name: "min create", req: all(&kvpb.RangeRequest{MinCreateRevision: 2}), want: "b=y2@5/2/2 c=x@3/3/1", count: 3},
		{name: "max create limit", req: all(&kvpb.RangeRequest{MaxCreateRevision: 2, Limit: 1}), want: "a=z@1/1/1", count: 3, more: true},
		{name: "empty interval", req: &kvpb.RangeRequest{Key: []byte("c"), RangeEnd: []byte("a")}, count: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := v.read(tc.req)
			if tc.code != kvpb.ErrorCode_OK {
				wantCode(t, err, tc.code, "")
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := kvs(r.Kvs); got != tc.want || r.Count != tc.count || r.More != tc.more {
				t.Fatalf("got %q count %d more %v, want %q count %d more %v", got, r.Count, r.More, tc.want, tc.count, tc.more)
			}
		})
	}
	// Compaction.
	b := v.e.NewBatch()
	if err := storage.MVCCCompact(b, v.span, 4); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	v.compacted = 4
	_, err := v.read(all(&kvpb.RangeRequest{Revision: 3}))
	wantCode(t, err, kvpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")
	_, err = v.read(all(&kvpb.RangeRequest{Revision: 7}))
	wantCode(t, err, kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	if r, err := v.read(all(&kvpb.RangeRequest{Revision: 4})); err != nil || r.Count != 4 {
		t.Fatalf("read at the compacted revision: %v %v", r, err)
	}
	// A txn's Range below the compacted revision fails, and writes nothing.
	_, _, err = v.write(txnOp(nil, []*kvpb.RequestOp{putOp("x", "1"), rangeOp(&kvpb.RangeRequest{Key: []byte("a"), Revision: 2})}, nil))
	wantCode(t, err, kvpb.ErrorCode_COMPACTED, "")
}

func cmp(key string, target kvpb.CompareTarget, result kvpb.CompareResult, val any) *kvpb.Compare {
	c := &kvpb.Compare{Key: []byte(key), Target: target, Result: result}
	switch target {
	case kvpb.CompareTarget_COMPARE_VALUE:
		c.TargetUnion = &kvpb.Compare_Value{Value: []byte(val.(string))}
	case kvpb.CompareTarget_COMPARE_VERSION:
		c.TargetUnion = &kvpb.Compare_Version{Version: int64(val.(int))}
	case kvpb.CompareTarget_COMPARE_CREATE:
		c.TargetUnion = &kvpb.Compare_CreateRevision{CreateRevision: int64(val.(int))}
	case kvpb.CompareTarget_COMPARE_MOD:
		c.TargetUnion = &kvpb.Compare_ModRevision{ModRevision: int64(val.(int))}
	case kvpb.CompareTarget_COMPARE_LEASE:
		c.TargetUnion = &kvpb.Compare_Lease{Lease: int64(val.(int))}
	}
	return c
}

func withEnd(c *kvpb.Compare, end string) *kvpb.Compare {
	c.RangeEnd = []byte(end)
	return c
}

func TestTxnCompare(t *testing.T) {
	const (
		VALUE   = kvpb.CompareTarget_COMPARE_VALUE
		VERSION = kvpb.CompareTarget_COMPARE_VERSION
		CREATE  = kvpb.CompareTarget_COMPARE_CREATE
		MOD     = kvpb.CompareTarget_COMPARE_MOD
		LEASE   = kvpb.CompareTarget_COMPARE_LEASE
		EQ      = kvpb.CompareResult_COMPARE_EQUAL
		NE      = kvpb.CompareResult_COMPARE_NOT_EQUAL
		GT      = kvpb.CompareResult_COMPARE_GREATER
		LT      = kvpb.CompareResult_COMPARE_LESS
	)
	v := newEnv(t)
	v.mustWrite(putOp("a", "1")) // 1
	v.mustWrite(putOp("b", "2")) // 2
	v.mustWrite(putOp("a", "3")) // 3: a version 2, create 1, mod 3
	for _, tc := range []struct {
		name string
		cmps []*kvpb.Compare
		want bool
	}{
		{"no compares", nil, true},
		{"value eq", []*kvpb.Compare{cmp("a", VALUE, EQ, "3")}, true},
		{"value ne", []*kvpb.Compare{cmp("a", VALUE, NE, "3")}, false},
		{"value gt", []*kvpb.Compare{cmp("a", VALUE, GT, "2")}, true},
		{"value lt", []*kvpb.Compare{cmp("a", VALUE, LT, "2")}, false},
		{"value of missing key is false", []*kvpb.Compare{cmp("zz", VALUE, NE, "x")}, false},
		{"version", []*kvpb.Compare{cmp("a", VERSION, EQ, 2)}, true},
		{"create", []*kvpb.Compare{cmp("a", CREATE, EQ, 1)}, true},
		{"mod", []*kvpb.Compare{cmp("a", MOD, GT, 2)}, true},
		{"lease", []*kvpb.Compare{cmp("a", LEASE, EQ, 0)}, true},
		{"missing key version 0", []*kvpb.Compare{cmp("zz", VERSION, EQ, 0)}, true},
		{"missing key create 0", []*kvpb.Compare{cmp("zz", CREATE, EQ, 0)}, true},
		{"missing key mod lt", []*kvpb.Compare{cmp("zz", MOD, LT, 1)}, true},
		{"all must hold", []*kvpb.Compare{cmp("a", VERSION, EQ, 2), cmp("b", VERSION, EQ, 2)}, false},
		{"range all satisfy", []*kvpb.Compare{withEnd(cmp("a", VERSION, GT, 0), "c")}, true},
		{"range one fails", []*kvpb.Compare{withEnd(cmp("a", VERSION, EQ, 2), "c")}, false},
		{"range from key", []*kvpb.Compare{withEnd(cmp("a", MOD, LT, 4), "\x00")}, true},
		{"empty range value", []*kvpb.Compare{withEnd(cmp("x", VALUE, EQ, ""), "y")}, false},
		{"empty range create", []*kvpb.Compare{withEnd(cmp("x", CREATE, EQ, 0), "y")}, true},
		{"target union mismatch compares to 0", []*kvpb.Compare{{Key: []byte("a"), Target: MOD, Result: GT, TargetUnion: &kvpb.Compare_Version{Version: 100}}}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op := txnOp(tc.cmps, []*kvpb.RequestOp{getOp("a", "")}, []*kvpb.RequestOp{getOp("b", "")})
			for _, read := range []bool{true, false} {
				var resp *kvpb.ResponseOp
				var err error
				if read {
					resp, err = ReadOp(v.e, v.span, op, v.rev, 0, false)
				} else {
					resp, _, err = v.write(op)
				}
				if err != nil {
					t.Fatal(err)
				}
				tr := resp.GetTxn()
				wantKey := map[bool]string{true: "a", false: "b"}[tc.want]
				if tr.Succeeded != tc.want || len(tr.Responses) != 1 || string(tr.Responses[0].GetRange().Kvs[0].Key) != wantKey {
					t.Fatalf("read %v: succeeded %v, responses %v", read, tr.Succeeded, tr.Responses)
				}
			}
		})
	}
}

func TestTxnWrites(t *testing.T) {
	v := newEnv(t)
	v.mustWrite(putOp("a", "1")) // 1
	v.mustWrite(putOp("k", "1")) // 2
	// Every op runs at one revision; reads see earlier writes of the txn;
	// compares of nested txns see the state before the txn.
	resp := v.mustWrite(txnOp(
		[]*kvpb.Compare{cmp("a", kvpb.CompareTarget_COMPARE_VALUE, kvpb.CompareResult_COMPARE_EQUAL, "1")},
		[]*kvpb.RequestOp{
			putOp("a", "2"),
			putOp("b", "new"),
			putReq(&kvpb.PutRequest{Key: []byte("a"), Value: []byte("3"), PrevKv: true}),
			getOp("a", "c"),
			delOp("k", "", true),
			txnOp([]*kvpb.Compare{cmp("a", kvpb.CompareTarget_COMPARE_VALUE, kvpb.CompareResult_COMPARE_EQUAL, "1")},
				[]*kvpb.RequestOp{putOp("nested", "yes")},
				[]*kvpb.RequestOp{putOp("nested", "no")}),
			getOp("k", ""),
		},
		nil)) // rev 3
	tr := resp.GetTxn()
	if !tr.Succeeded || len(tr.Responses) != 7 {
		t.Fatalf("txn: %v", tr)
	}
	if got := kvs([]*kvpb.KeyValue{tr.Responses[2].GetPut().PrevKv}); got != "a=2@3/1/2" {
		t.Fatalf("prev_kv inside txn: %s", got)
	}
	if got := kvs(tr.Responses[3].GetRange().Kvs); got != "a=3@3/1/3 b=new@3/3/1" {
		t.Fatalf("range inside txn: %s", got)
	}
	if d := tr.Responses[4].GetDeleteRange(); d.Deleted != 1 || kvs(d.PrevKvs) != "k=1@2/2/1" {
		t.Fatalf("delete inside txn: %v", d)
	}
	if n := tr.Responses[5].GetTxn(); !n.Succeeded {
		t.Fatalf("nested txn compare saw the txn's own write: %v", n)
	}
	if r := tr.Responses[6].GetRange(); r.Count != 0 {
		t.Fatalf("deleted key visible later in txn: %v", r)
	}
	r, _ := v.read(&kvpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})
	if got := kvs(r.Kvs); got != "a=3@3/1/3 b=new@3/3/1 nested=yes@3/3/1" {
		t.Fatalf("after txn: %s", got)
	}
	// Failure branch; a read-only branch writes nothing.
	resp, wrote, err := v.write(txnOp([]*kvpb.Compare{cmp("a", kvpb.CompareTarget_COMPARE_VERSION, kvpb.CompareResult_COMPARE_EQUAL, 1)},
		[]*kvpb.RequestOp{putOp("a", "x")}, []*kvpb.RequestOp{getOp("a", "")}))
	if err != nil || wrote || resp.GetTxn().Succeeded || kvs(resp.GetTxn().Responses[0].GetRange().Kvs) != "a=3@3/1/3" {
		t.Fatalf("failure branch: %v %v %v", resp, wrote, err)
	}
	// Errors anywhere on the taken path write nothing, even after writes.
	for _, tc := range []struct {
		name string
		op   *kvpb.RequestOp
		code kvpb.ErrorCode
	}{
		{"ignore_value after delete", txnOp(nil, []*kvpb.RequestOp{delOp("a", "", false), putReq(&kvpb.PutRequest{Key: []byte("a"), IgnoreValue: true})}, nil), kvpb.ErrorCode_INVALID_ARGUMENT},
		{"ignore_value after range delete", txnOp(nil, []*kvpb.RequestOp{delOp("a", "b", false), putReq(&kvpb.PutRequest{Key: []byte("a"), IgnoreLease: true})}, nil), kvpb.ErrorCode_INVALID_ARGUMENT},
		{"future range", txnOp(nil, []*kvpb.RequestOp{putOp("z", "1"), rangeOp(&kvpb.RangeRequest{Key: []byte("a"), Revision: v.rev + 1})}, nil), kvpb.ErrorCode_FUTURE_REV},
		{"nested", txnOp(nil, []*kvpb.RequestOp{putOp("z", "1"), txnOp(nil, nil, nil), txnOp(nil, []*kvpb.RequestOp{putReq(&kvpb.PutRequest{Key: []byte("none"), IgnoreValue: true})}, nil)}, nil), kvpb.ErrorCode_INVALID_ARGUMENT},
		{"key outside span in untaken branch", txnOp(nil, nil, []*kvpb.RequestOp{rangeOp(&kvpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}})}), kvpb.ErrorCode_KEY_MISMATCH},
	} {
		if tc.code == kvpb.ErrorCode_KEY_MISMATCH {
			v.span = keys.UserSpanOf([]byte("a"), []byte("zz"))
		}
		_, _, err := v.write(tc.op)
		if kvpb.CodeOf(err) != tc.code {
			t.Fatalf("%s: err %v, want %v", tc.name, err, tc.code)
		}
	}
	// ignore_value on a key put earlier in the same txn is fine.
	v.span = keys.UserSpan
	v.mustWrite(txnOp(nil, []*kvpb.RequestOp{putOp("fresh", "v"), putReq(&kvpb.PutRequest{Key: []byte("fresh"), IgnoreValue: true})}, nil))
	r, _ = v.read(&kvpb.RangeRequest{Key: []byte("fresh")})
	if got := kvs(r.Kvs); got != fmt.Sprintf("fresh=v@%d/%d/2", v.rev, v.rev) {
		t.Fatalf("put twice in one txn: %s", got)
	}
}

func TestIsReadOnly(t *testing.T) {
	for _, tc := range []struct {
		op   *kvpb.RequestOp
		want bool
	}{
		{getOp("a", ""), true},
		{putOp("a", ""), false},
		{delOp("a", "", false), false},
		{txnOp(nil, nil, nil), true},
		{txnOp(nil, []*kvpb.RequestOp{getOp("a", "")}, []*kvpb.RequestOp{txnOp(nil, []*kvpb.RequestOp{getOp("b", "")}, nil)}), true},
		{txnOp(nil, []*kvpb.RequestOp{getOp("a", "")}, []*kvpb.RequestOp{txnOp(nil, nil, []*kvpb.RequestOp{putOp("b", "")})}), false},
	} {
		if got := IsReadOnly(tc.op); got != tc.want {
			t.Errorf("IsReadOnly(%v) = %v", tc.op, got)
		}
	}
	v := newEnv(t)
	if _, err := ReadOp(v.e, v.span, putOp("a", "1"), 0, 0, false); kvpb.CodeOf(err) != kvpb.ErrorCode_INVALID_ARGUMENT {
		t.Fatalf("ReadOp of a put: %v", err)
	}
}

// The index must give a Put exactly what the engine would: run the same
// writes with and without one and compare every response and the final
// keyspace, across deletes, txns and a reset in the middle.
func TestIndexAgreesWithEngine(t *testing.T) {
	run := func(idx *Index) []string {
		e := newEnv(t).e
		var out []string
		span := keys.UserSpan
		rng := rand.New(rand.NewSource(7))
		for ts := int64(1); ts <= 600; ts++ {
			k := []byte(fmt.Sprintf("k%d", rng.Intn(20)))
			var op *kvpb.RequestOp
			switch rng.Intn(4) {
			case 0:
				op = &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Key: k}}}
			case 1:
				op = &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{
					Success: []*kvpb.RequestOp{{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: k, Value: []byte("t")}}}},
				}}}
			default:
				op = &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: k, Value: []byte(fmt.Sprint(ts)), PrevKv: rng.Intn(3) == 0}}}
			}
			if ts == 300 {
				idx.Reset()
			}
			b := e.NewBatch()
			resp, _, err := WriteIndexed(b, span, ts, ts-1, 0, idx, op)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
			b.Close()
			out = append(out, resp.String())
		}
		all, err := Read(e, span, &kvpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}}, 600, 0)
		if err != nil {
			t.Fatal(err)
		}
		return append(out, all.String())
	}
	with, without := run(NewIndex(8)), run(nil)
	for i := range with {
		if with[i] != without[i] {
			t.Fatalf("step %d differs:\nindex:  %s\nengine: %s", i, with[i], without[i])
		}
	}
}

// TestUncountedRange checks what an internal pager gets (ReadOp's
// uncounted): a limited Range stops at one more key than its limit, so its
// count no longer covers the rest of the span, while its keys and more are
// those of the counted Range; a Range the stop cannot apply to (sorted,
// count_only) answers as etcd's does.
func TestUncountedRange(t *testing.T) {
	v := newEnv(t)
	for i := 0; i < 50; i++ {
		v.mustWrite(putOp(fmt.Sprintf("k%02d", i), "v"))
	}
	read := func(req *kvpb.RangeRequest, uncounted bool) *kvpb.RangeResponse {
		t.Helper()
		resp, err := ReadOp(v.e, v.span, rangeOp(req), v.rev, 0, uncounted)
		if err != nil {
			t.Fatal(err)
		}
		return resp.GetRange()
	}
	for _, tc := range []struct {
		name      string
		req       *kvpb.RangeRequest
		wantCount int64 // uncounted
		wantKVs   int
	}{
		{"first page", &kvpb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 10}, 11, 10},
		{"middle page", &kvpb.RangeRequest{Key: []byte("k20"), RangeEnd: []byte("l"), Limit: 10}, 11, 10},
		{"last page", &kvpb.RangeRequest{Key: []byte("k45"), RangeEnd: []byte("l"), Limit: 10}, 5, 5},
		{"no limit", &kvpb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l")}, 50, 50},
		{"negative limit", &kvpb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: -1}, 50, 50},
		{"sorted", &kvpb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 10, SortOrder: kvpb.SortOrder_SORT_DESCEND}, 50, 10},
		{"count only", &kvpb.RangeRequest{Key: []byte("k"), RangeEnd: []byte("l"), Limit: 10, CountOnly: true}, 50, 0},
	} {
		counted, uncounted := read(tc.req, false), read(tc.req, true)
		if kvs(counted.GetKvs()) != kvs(uncounted.GetKvs()) || counted.GetMore() != uncounted.GetMore() {
			t.Errorf("%s: uncounted kvs %s more %v, counted kvs %s more %v", tc.name,
				kvs(uncounted.GetKvs()), uncounted.GetMore(), kvs(counted.GetKvs()), counted.GetMore())
		}
		if len(counted.GetKvs()) != tc.wantKVs {
			t.Errorf("%s: %d kvs, want %d", tc.name, len(counted.GetKvs()), tc.wantKVs)
		}
		if uncounted.GetCount() != tc.wantCount {
			t.Errorf("%s: uncounted count %d, want %d (counted: %d)", tc.name, uncounted.GetCount(), tc.wantCount, counted.GetCount())
		}
	}
}
