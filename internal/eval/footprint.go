package eval

import (
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// Footprint returns the global spans a write may read or write: every key
// and range of its compares and of both branches of its txns, as
// keys.UserSpanOf maps them (a single key is a span with an empty End). Two
// writes whose footprints do not overlap commute: each evaluates the same
// whichever applies first.
func Footprint(op *kvpb.RequestOp) []keys.Span {
	var out []keys.Span
	var walk func(op *kvpb.RequestOp)
	walk = func(op *kvpb.RequestOp) {
		switch req := op.GetRequest().(type) {
		case *kvpb.RequestOp_Range:
			out = append(out, keys.UserSpanOf(req.Range.GetKey(), req.Range.GetRangeEnd()))
		case *kvpb.RequestOp_Put:
			out = append(out, keys.UserSpanOf(req.Put.GetKey(), nil))
		case *kvpb.RequestOp_DeleteRange:
			out = append(out, keys.UserSpanOf(req.DeleteRange.GetKey(), req.DeleteRange.GetRangeEnd()))
		case *kvpb.RequestOp_Txn:
			for _, c := range req.Txn.GetCompare() {
				out = append(out, keys.UserSpanOf(c.GetKey(), c.GetRangeEnd()))
			}
			for _, ops := range [][]*kvpb.RequestOp{req.Txn.GetSuccess(), req.Txn.GetFailure()} {
				for _, o := range ops {
					walk(o)
				}
			}
		}
	}
	walk(op)
	return out
}

// AlwaysWrites reports whether op writes whatever the range holds, once its
// key is known to lie inside the range: a Put of a non-empty key with no
// lease and neither ignore_value nor ignore_lease. Anything else may write
// nothing or fail, which only an evaluation against the range's state
// tells.
func AlwaysWrites(op *kvpb.RequestOp) bool {
	p := op.GetPut()
	return p != nil && p.GetLease() == 0 && !p.GetIgnoreValue() && !p.GetIgnoreLease() && len(p.GetKey()) > 0
}
