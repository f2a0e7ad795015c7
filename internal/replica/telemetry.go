package replica

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// ActiveVoters returns, on the leader, how many of the range's voters it
// heard from within the last election timeout (itself included); 0 on a
// follower. It is for metrics: it copies Raft's progress map.
func (r *Replica) ActiveVoters() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leadsLocked() {
		return 0
	}
	n := 0
	for id, pr := range r.mu.rn.Status().Progress {
		if !pr.IsLearner && (id == r.replicaID || pr.RecentActive) {
			n++
		}
	}
	return n
}

// startSpan starts a span of this replica under ctx's span.
func (r *Replica) startSpan(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	opts = append(opts, trace.WithAttributes(
		attribute.Int64("concord.node_id", int64(r.cfg.NodeID)),
		attribute.Int64("concord.range_id", int64(r.RangeID)),
	))
	return r.cfg.Metrics.StartSpan(ctx, name, opts...)
}

// traceApply records, under the proposing request's span, the wait from
// proposal to apply (Raft replication and fsyncs on a quorum) and the apply
// of entry index that started at applyStart.
func (r *Replica) traceApply(p *proposal, applyStart time.Time, index uint64, err error) {
	if !p.span.IsValid() || !p.span.IsSampled() {
		return
	}
	ctx := trace.ContextWithSpanContext(context.Background(), p.span)
	idx := attribute.Int64("concord.raft_index", int64(index))
	_, commit := r.cfg.Metrics.StartSpan(ctx, "raft.replicate", trace.WithTimestamp(p.proposed), trace.WithAttributes(idx))
	commit.End(trace.WithTimestamp(applyStart))
	_, apply := r.startSpan(ctx, "replica.apply", trace.WithTimestamp(applyStart), trace.WithAttributes(idx))
	endSpan(apply, err)
}

// endSpan ends span, marking it failed with err if err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
