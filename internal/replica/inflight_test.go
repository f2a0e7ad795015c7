package replica

import (
	"testing"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
)

func putOp(k string) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte("v")}}}
}

func delOp(k, end string) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)}}}
}

// casOp is a txn comparing cmp's value and putting put (the else branch
// reads get).
func casOp(cmp, put, get string) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{
		Compare: []*kvpb.Compare{{Key: []byte(cmp), Target: kvpb.CompareTarget_COMPARE_VALUE, TargetUnion: &kvpb.Compare_Value{Value: []byte("x")}}},
		Success: []*kvpb.RequestOp{putOp(put)},
		Failure: []*kvpb.RequestOp{{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte(get)}}}},
	}}}
}

// A write waits for the writes in flight whose keys it reads or writes,
// and only for those: the proposer's decision whether it writes depends on
// exactly them.
func TestInflightOverlap(t *testing.T) {
	var f inflight
	f.add(1, eval.Footprint(putOp("a")))
	f.add(2, eval.Footprint(delOp("m", "p")))
	f.add(3, eval.Footprint(putOp("a"))) // a second write of the same key
	cases := []struct {
		op   *kvpb.RequestOp
		want bool
	}{
		{putOp("a"), true},
		{putOp("b"), false},
		{putOp("n"), true},            // inside the delete's span
		{putOp("p"), false},           // the span's end is exclusive
		{delOp("0", "b"), true},       // a span over the put of a
		{delOp("b", "c"), false},      // a span over nothing in flight
		{delOp("o", "z"), true},       // overlapping spans
		{casOp("z", "y", "a"), true},  // the else branch reads a
		{casOp("z", "y", "x"), false}, // touches z, y, x only
	}
	for _, c := range cases {
		if got := f.overlaps(eval.Footprint(c.op)); got != c.want {
			t.Errorf("overlaps(%v) = %v, want %v", c.op, got, c.want)
		}
	}
	f.remove(1)
	if !f.overlaps(eval.Footprint(putOp("a"))) {
		t.Fatal("a is still written by command 3")
	}
	f.remove(3)
	f.remove(99) // unknown: ignored
	if f.overlaps(eval.Footprint(putOp("a"))) {
		t.Fatal("a overlaps after both its writes applied")
	}
	f.clear()
	if f.overlaps(eval.Footprint(putOp("n"))) || len(f.points) != 0 || len(f.wide) != 0 {
		t.Fatal("clear left writes in flight")
	}
}

func TestFootprintCoversEveryKeyOfATxn(t *testing.T) {
	fp := eval.Footprint(casOp("c", "p", "g"))
	want := []keys.Span{keys.UserSpanOf([]byte("c"), nil), keys.UserSpanOf([]byte("p"), nil), keys.UserSpanOf([]byte("g"), nil)}
	if len(fp) != len(want) {
		t.Fatalf("footprint %v, want %v", fp, want)
	}
	for i := range want {
		if !overlapsSpans(fp[i], want[i]) || !overlapsSpans(want[i], fp[i]) {
			t.Fatalf("footprint %v, want %v", fp, want)
		}
	}
}
