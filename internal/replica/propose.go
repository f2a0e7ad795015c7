package replica

import (
	"context"
	"time"

	"github.com/concorddb/concord/internal/concordpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3/raftpb"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"
)

// tsoTimeout bounds one TSO call of the proposer: past it the batch fails as
// UNAVAILABLE (never proposed) and the router retries.
const tsoTimeout = 3 * time.Second

// pendingWrite is a client write waiting for the proposer.
type pendingWrite struct {
	ctx  context.Context
	req  *concordpb.BatchRequest
	done chan result // buffered(1)
}

// Write replicates a write (a Put, DeleteRange or writing Txn in req.Op, or
// a system write in req.Sys) and returns its result once applied here.
//
// Errors: NOT_LEADER (with a hint) and UNAVAILABLE mean the write was not
// proposed and may be retried anywhere; AMBIGUOUS means it may have been
// applied; RETRY means it lost a timestamp race and was not applied.
func (r *Replica) Write(ctx context.Context, req *concordpb.BatchRequest) (_ *concordpb.BatchResponse, err error) {
	ctx, span := r.startSpan(ctx, "replica.Write")
	defer func() { endSpan(span, err) }()
	r.mu.Lock()
	if !r.leadsLocked() {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, err
	}
	if n := req.GetCompact().GetRetainWrites(); n > 0 {
		// Name the revision here, on the leader, from its write samples.
		rev := r.mu.writes.revisionKeeping(uint64(n))
		if rev == 0 {
			out := &concordpb.BatchResponse{Revision: max(r.mu.applied.MaxTS, 1), RaftTerm: r.mu.term}
			r.mu.Unlock()
			return out, nil
		}
		req = &concordpb.BatchRequest{RangeId: req.GetRangeId(), Compact: &concordpb.CompactRequest{Revision: rev, Clamp: true}}
	}
	r.mu.Unlock()
	pw := &pendingWrite{ctx: ctx, req: req, done: make(chan result, 1)}
	if req.GetSys() != nil || req.GetCompact() != nil {
		// System writes and compactions carry no revision: propose them
		// directly.
		r.mu.Lock()
		r.proposeLocked([]*pendingWrite{pw}, 0)
		r.mu.Unlock()
		r.cfg.Signal()
	} else {
		select {
		case r.writes <- pw:
		default:
			return nil, concordpb.Errorf(concordpb.ErrorCode_UNAVAILABLE, "replica: range %d has %d writes queued", r.RangeID, cap(r.writes))
		}
	}
	select {
	case res := <-pw.done:
		return res.resp, res.err
	case <-ctx.Done():
		return nil, concordpb.Errorf(concordpb.ErrorCode_AMBIGUOUS, "replica: range %d: %v with the write in flight", r.RangeID, ctx.Err())
	case <-r.stopped:
		return nil, concordpb.Errorf(concordpb.ErrorCode_AMBIGUOUS, "replica: range %d stopped with the write in flight", r.RangeID)
	}
}

// runProposer timestamps and proposes queued writes. One goroutine per
// replica, so one TSO call at a time per range: every batch's timestamps are
// above the previous batch's, and log order is revision order.
func (r *Replica) runProposer() {
	defer r.wg.Done()
	batch := make([]*pendingWrite, 0, r.cfg.MaxProposalBatch)
	for {
		batch = batch[:0]
		select {
		case <-r.stopped:
			return
		case pw := <-r.writes:
			batch = append(batch, pw)
		}
	drain:
		for len(batch) < r.cfg.MaxProposalBatch {
			select {
			case pw := <-r.writes:
				batch = append(batch, pw)
			default:
				break drain
			}
		}
		live := batch[:0]
		for _, pw := range batch {
			if pw.ctx.Err() == nil {
				live = append(live, pw)
			}
		}
		if len(live) == 0 {
			continue
		}
		r.proposeBatch(live)
	}
}

func (r *Replica) proposeBatch(batch []*pendingWrite) {
	ctx, cancel := context.WithTimeout(context.Background(), tsoTimeout)
	first, err := r.cfg.Timestamps.Next(ctx, len(batch))
	cancel()
	if err != nil {
		e := concordpb.Errorf(concordpb.ErrorCode_UNAVAILABLE, "replica: range %d: no timestamp: %v", r.RangeID, err)
		for _, pw := range batch {
			pw.done <- result{err: e}
		}
		return
	}
	r.mu.Lock()
	if first <= r.mu.lastProposedTS {
		// Only a deposed TSO leader can hand out such a timestamp.
		r.mu.Unlock()
		e := concordpb.Errorf(concordpb.ErrorCode_RETRY, "replica: range %d: timestamp %d not above %d", r.RangeID, first, r.mu.lastProposedTS)
		for _, pw := range batch {
			pw.done <- result{err: e}
		}
		return
	}
	r.proposeLocked(batch, first)
	r.mu.lastProposedTS = first + int64(len(batch)) - 1
	r.mu.Unlock()
	r.cfg.Signal()
}

// proposeLocked proposes the commands of batch, the i-th at timestamp
// firstTS+i (or all at 0, for writes that carry no revision), as one Raft
// proposal, and registers their waiters. One proposal for the batch means
// one append and one message per follower, not one per write. A write it
// does not propose gets its error on done: a command that cannot be encoded
// fails alone; if Raft refuses the proposal, none of the batch is in the
// log.
func (r *Replica) proposeLocked(batch []*pendingWrite, firstTS int64) {
	fail := func(pws []*pendingWrite, err error) {
		for _, pw := range pws {
			pw.done <- result{err: err}
		}
	}
	if !r.leadsLocked() {
		fail(batch, r.notLeaderLocked())
		return
	}
	ents := make([]*raftpb.Entry, 0, len(batch))
	kept := make([]*pendingWrite, 0, len(batch))
	ids := make([]uint64, 0, len(batch))
	var buf []byte
	for i, pw := range batch {
		ts := firstTS
		if ts != 0 {
			ts += int64(i)
		}
		id := r.mu.nextID + 1 + uint64(i)
		cmd := &concordpb.Command{Id: id, Proposer: r.cfg.NodeID, Ts: ts, Op: pw.req.GetOp(), Sys: pw.req.GetSys(), Compact: pw.req.GetCompact()}
		start := len(buf)
		var err error
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf, cmd); err != nil {
			buf = buf[:start]
			fail([]*pendingWrite{pw}, concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "replica: encode command: %v", err))
			continue
		}
		// Full slice expressions: an entry's data never grows into the
		// next one's.
		ents = append(ents, &raftpb.Entry{Data: buf[start:len(buf):len(buf)]})
		kept = append(kept, pw)
		ids = append(ids, id)
	}
	r.mu.nextID += uint64(len(batch)) // ids of unencodable writes stay unused
	if len(ents) == 0 {
		return
	}
	if err := r.mu.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(r.cfg.NodeID), Entries: ents}); err != nil {
		// Dropped (no leader, transfer, or too much uncommitted data):
		// definitely not in the log.
		r.cfg.Metrics.ObserveProposalDropped()
		fail(kept, concordpb.Errorf(concordpb.ErrorCode_UNAVAILABLE, "replica: range %d: proposal dropped: %v", r.RangeID, err))
		return
	}
	r.cfg.Metrics.ObserveProposals(len(kept))
	now := time.Now()
	for i, pw := range kept {
		r.mu.proposals[ids[i]] = &proposal{done: pw.done, span: trace.SpanContextFromContext(pw.ctx), proposed: now}
	}
}

// evalCommand applies one command into b. On error nothing of it may be
// kept: the caller discards b.
func (r *Replica) evalCommand(b *storage.Batch, cmd *concordpb.Command, span keys.Span, as *storage.AppliedState) result {
	if cmd.GetTs() != 0 && cmd.GetTs() <= as.MaxTS {
		return result{err: concordpb.Errorf(concordpb.ErrorCode_RETRY, "replica: range %d: command timestamp %d not above applied %d", r.RangeID, cmd.GetTs(), as.MaxTS)}
	}
	switch {
	case cmd.GetOp() != nil:
		resp, wrote, err := eval.WriteIndexed(b, span, cmd.GetTs(), as.MaxTS, as.CompactedRev, r.idx, cmd.GetOp())
		if err != nil {
			return result{err: err}
		}
		if wrote {
			as.MaxTS = cmd.GetTs()
		}
		return result{resp: &concordpb.BatchResponse{Resp: resp, Revision: max(as.MaxTS, 1)}}
	case cmd.GetCompact() != nil:
		return r.evalCompact(b, span, cmd.GetCompact(), as)
	case cmd.GetSys() != nil:
		resp, err := evalSysWrite(b, span, cmd.GetSys())
		if err != nil {
			return result{err: err}
		}
		return result{resp: &concordpb.BatchResponse{Sys: resp, Revision: max(as.MaxTS, 1)}}
	}
	return result{err: concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "replica: empty command")}
}

// evalCompact discards the range's MVCC history superseded at the request's
// revision, with etcd's rules: it must be above the last compaction and not
// above the range's newest revision (unless clamped, see CompactRequest).
func (r *Replica) evalCompact(b *storage.Batch, span keys.Span, req *concordpb.CompactRequest, as *storage.AppliedState) result {
	rev := req.GetRevision()
	if req.GetClamp() {
		rev = min(rev, as.MaxTS)
		if rev <= as.CompactedRev {
			return result{resp: &concordpb.BatchResponse{Revision: max(as.MaxTS, 1)}}
		}
	}
	switch {
	case rev <= as.CompactedRev:
		return result{err: concordpb.Errorf(concordpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")}
	case rev > max(as.MaxTS, 1):
		return result{err: concordpb.Errorf(concordpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")}
	}
	if keys.UserSpan.ContainsSpan(span) {
		if err := storage.MVCCCompact(b, span, rev); err != nil {
			return result{err: err}
		}
	}
	as.CompactedRev = rev
	r.log.Info("compacted", "revision", rev)
	return result{resp: &concordpb.BatchResponse{Revision: max(as.MaxTS, 1)}}
}
