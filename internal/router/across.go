package router

import (
	"context"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"google.golang.org/protobuf/proto"
)

// rangeAcross serves a Range whose keys lie in several ranges, part by
// part in key order, all at one revision, and merges the parts as one range
// would answer (eval.SplitRange, eval.MergeRanges). The revision is the
// request's, or else the cluster's newest (from the TSO); a revision above
// the cluster's newest is a future revision. Each part's leaseholder first
// waits until every write its range numbered at or below that revision has
// applied.
//
// A serializable Range across ranges is served the same way, from the
// leaseholders: a replica's own state tells the revision it is at only for
// its range, and an idle range's would hold every other part back at its
// last write. Serving it from any replica needs each range to publish a
// closed revision (DESIGN.md, "Time across ranges").
//
// With results in key order and no revision filter, parts past the limit
// only count their keys, and are not read at all for a pager that does
// not read Count (WithoutCount).
func (r *Router) rangeAcross(ctx context.Context, rr *kvpb.RangeRequest, descs []*metapb.RangeDescriptor) (*kvpb.ResponseOp, Header, error) {
	cur, err := r.CurrentRevision(ctx)
	if err != nil {
		return nil, Header{}, err
	}
	rev := rr.GetRevision()
	switch {
	case rev > cur:
		return nil, Header{}, kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	case rev <= 0:
		rev = cur
	}
	parts := make([]*kvpb.RangeResponse, 0, len(descs))
	// As on etcd, the header is the current revision even for a read of
	// a past one.
	h := Header{Revision: cur}
	have := 0
	for _, d := range descs {
		fetch, countOnly := eval.PartFetch(rr, have)
		if countOnly && uncounted(ctx) {
			// The limit is reached (one more than it, so More is known):
			// an uncounted pager needs no count of the rest.
			break
		}
		sub := eval.SplitRange(rr, keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}, rev, fetch, countOnly)
		sub.Serializable = false
		resp, err := r.readPart(ctx, sub, cur)
		if err != nil {
			return nil, Header{}, err
		}
		p := resp.GetResp().GetRange()
		have += len(p.GetKvs())
		h.RaftTerm = max(h.RaftTerm, resp.GetRaftTerm())
		parts = append(parts, p)
	}
	return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: eval.MergeRanges(rr, parts)}}, h, nil
}

// readPart serves one part from its range's leaseholder, as of the cluster
// revision rev (sub may read an older one). A part whose range split since the ranges were looked up
// fails with CROSS_RANGE, and Do serves the whole request again.
func (r *Router) readPart(ctx context.Context, sub *kvpb.RangeRequest, rev int64) (*cmdpb.BatchResponse, error) {
	op := &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: sub}}
	span := keys.UserSpanOf(sub.GetKey(), sub.GetRangeEnd())
	return r.send(ctx, span, &cmdpb.BatchRequest{Op: op, ReadRevision: rev}, false /* write */)
}

// txnAcross evaluates a read-only Txn whose keys lie in several ranges,
// as one range would (eval's three steps), at the cluster's newest
// revision: every compare on the taken path against its keys at that
// revision (eval.CompareKVs), then the reads of the taken branches, each a
// Range served wherever its keys are.
func (r *Router) txnAcross(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, Header, error) {
	cur, err := r.CurrentRevision(ctx)
	if err != nil {
		return nil, Header{}, err
	}
	h := Header{Revision: cur}
	resp, err := r.execAt(ctx, op, cur, &h)
	return resp, h, err
}

// execAt evaluates a read-only op at revision rev.
func (r *Router) execAt(ctx context.Context, op *kvpb.RequestOp, rev int64, h *Header) (*kvpb.ResponseOp, error) {
	switch req := op.GetRequest().(type) {
	case *kvpb.RequestOp_Range:
		sub := proto.CloneOf(req.Range)
		if sub.GetRevision() <= 0 {
			sub.Revision = rev
		}
		resp, sh, err := r.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: sub}})
		if err != nil {
			return nil, err
		}
		h.RaftTerm = max(h.RaftTerm, sh.RaftTerm)
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: resp.GetRange()}}, nil
	case *kvpb.RequestOp_Txn:
		ok := true
		for _, c := range req.Txn.GetCompare() {
			resp, _, err := r.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: c.GetKey(), RangeEnd: c.GetRangeEnd(), Revision: rev}}})
			if err != nil {
				return nil, err
			}
			if ok = eval.CompareKVs(c, resp.GetRange().GetKvs()); !ok {
				break
			}
		}
		ops := req.Txn.GetSuccess()
		if !ok {
			ops = req.Txn.GetFailure()
		}
		out := &kvpb.TxnResponse{Succeeded: ok, Responses: make([]*kvpb.ResponseOp, 0, len(ops))}
		for _, o := range ops {
			resp, err := r.execAt(ctx, o, rev, h)
			if err != nil {
				return nil, err
			}
			out.Responses = append(out.Responses, resp)
		}
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Txn{Txn: out}}, nil
	}
	// An empty op inside a txn: etcd answers it with an empty response.
	return &kvpb.ResponseOp{}, nil
}
