package router

import (
	"bytes"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// opSpan returns the smallest global span covering every key op touches.
func opSpan(op *kvpb.RequestOp) (keys.Span, error) {
	var out keys.Span
	first := true
	add := func(key, end []byte) {
		s := keys.UserSpanOf(key, end)
		e := s.End
		if len(e) == 0 {
			e = append(append([]byte(nil), s.Start...), 0) // the single key
		}
		if first || bytes.Compare(s.Start, out.Start) < 0 {
			out.Start = s.Start
		}
		if first || bytes.Compare(e, out.End) > 0 {
			out.End = e
		}
		first = false
	}
	var walk func(op *kvpb.RequestOp)
	walk = func(op *kvpb.RequestOp) {
		switch {
		case op.GetRange() != nil:
			add(op.GetRange().GetKey(), op.GetRange().GetRangeEnd())
		case op.GetPut() != nil:
			add(op.GetPut().GetKey(), nil)
		case op.GetDeleteRange() != nil:
			add(op.GetDeleteRange().GetKey(), op.GetDeleteRange().GetRangeEnd())
		case op.GetTxn() != nil:
			t := op.GetTxn()
			for _, c := range t.GetCompare() {
				add(c.GetKey(), c.GetRangeEnd())
			}
			for _, o := range t.GetSuccess() {
				walk(o)
			}
			for _, o := range t.GetFailure() {
				walk(o)
			}
		}
	}
	walk(op)
	if first {
		// A txn with nothing in it: route it to the first user range.
		return keys.Span{Start: keys.UserSpan.Start}, nil
	}
	return out, nil
}
