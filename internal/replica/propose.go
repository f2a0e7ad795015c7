package replica

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3/raftpb"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// tsoTimeout bounds one TSO call of the proposer: past it the batch fails as
// UNAVAILABLE (never proposed) and the router retries.
const tsoTimeout = 3 * time.Second

// pendingWrite is a client write waiting for the proposer.
type pendingWrite struct {
	ctx  context.Context
	req  *cmdpb.BatchRequest
	done chan result // buffered(1)
	// split and merge are the triggers of a split or merge request, built
	// from the descriptor at proposal time.
	split *cmdpb.SplitTrigger
	merge *cmdpb.MergeTrigger
	// txnStage, txnResolve and txnMark are a cross-range txn's steps
	// (txn.go).
	txnStage   *cmdpb.TxnStage
	txnResolve *cmdpb.TxnResolve
	txnMark    *cmdpb.TxnMark
	txnForget  *cmdpb.TxnForget
}

// Write replicates a write (a Put, DeleteRange or writing Txn in req.Op, or
// a system write in req.Sys) and returns its result once applied here.
//
// Errors: NOT_LEADER (with a hint) and UNAVAILABLE mean the write was not
// proposed and may be retried anywhere; AMBIGUOUS means it may have been
// applied; RETRY means it lost a timestamp race and was not applied.
func (r *Replica) Write(ctx context.Context, req *cmdpb.BatchRequest) (_ *cmdpb.BatchResponse, err error) {
	ctx, span := r.startSpan(ctx, "replica.Write")
	defer func() { endSpan(span, err) }()
	r.qps.add(r.cfg.Now())
	r.loadKeys.maybeAdd(requestKey(req))
	r.touch()
	r.mu.Lock()
	if !r.leadsLocked() {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, err
	}
	r.mu.Unlock()
	if cr := req.GetChangeReplicas(); cr != nil {
		return r.changeReplicas(ctx, cr)
	}
	pw := &pendingWrite{ctx: ctx, req: req, done: make(chan result, 1)}
	if req.GetSys() != nil || req.GetCompact() != nil || req.GetSplit() != nil || req.GetFreeze() != nil || req.GetMerge() != nil {
		// System writes, compactions and splits carry no revision: propose
		// them directly. A split is in flight over the span it gives away,
		// so writes there wait for it and are then refused as outside the
		// range (KEY_MISMATCH: the router sends them to the new range).
		r.mu.Lock()
		var fps [][]keys.Span
		if sr := req.GetSplit(); sr != nil {
			trig, err := r.splitTriggerLocked(sr)
			if err != nil {
				r.mu.Unlock()
				return nil, err
			}
			pw.split = trig
			fps = [][]keys.Span{{{Start: trig.GetRight().GetStartKey(), End: trig.GetRight().GetEndKey()}}}
		}
		if req.GetFreeze() != nil {
			// Writes wait for the freeze and are then refused.
			fps = [][]keys.Span{{r.spanLocked()}}
		}
		if mr := req.GetMerge(); mr != nil {
			trig, err := r.mergeTriggerLocked(mr)
			if err != nil {
				r.mu.Unlock()
				return nil, err
			}
			pw.merge = trig
		}
		offered, err := r.proposeLocked([]*pendingWrite{pw}, 0, fps)
		r.mu.Unlock()
		for _, pw := range offered {
			pw.done <- result{err: err}
		}
		r.signal()
	} else {
		if !r.writes.push(pw, func() { r.wg.Add(1); go r.runProposer() }) {
			select {
			case <-r.stopped:
				return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d stopped", r.RangeID)
			default:
			}
			return nil, kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "replica: range %d has %d writes queued (bound MaxQueuedWrites); retry later", r.RangeID, r.writes.max)
		}
	}
	select {
	case res := <-pw.done:
		return res.resp, res.err
	case <-ctx.Done():
		return nil, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d: %v with the write in flight", r.RangeID, ctx.Err())
	case <-r.stopped:
		return nil, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d stopped with the write in flight", r.RangeID)
	}
}

// runProposer numbers and proposes queued writes, and exits once the queue
// is empty (push starts it again). At most one runs per replica, so one
// TSO call at a time per range: every batch's revisions are above the
// previous batch's, and log order is revision order.
func (r *Replica) runProposer() {
	defer r.wg.Done()
	batch := make([]*pendingWrite, 0, min(r.cfg.MaxProposalBatch, 64))
	for {
		batch = r.writes.takeOrExit(batch[:0], r.cfg.MaxProposalBatch)
		if len(batch) == 0 {
			return
		}
		select {
		case <-r.stopped:
			return
		default:
		}
		live := batch[:0]
		for _, pw := range batch {
			if pw.ctx.Err() == nil {
				live = append(live, pw)
			}
		}
		r.proposeWrites(live)
	}
}

// writeQueue holds the writes waiting for the proposer, at most max. It
// takes memory only for what it holds, and the proposer goroutine runs
// only while it holds something: a replica of an idle range (there may be
// thousands on a node) keeps neither.
type writeQueue struct {
	max int
	mu  sync.Mutex
	// Invariant: len(items) <= max.
	items []*pendingWrite
	// running is set while a proposer goroutine runs; closed once the
	// replica stops (nothing more is queued).
	running, closed bool
}

// push queues pw and starts the proposer if none runs (start, called with
// q.mu held, must start it); false if the queue is full or closed.
func (q *writeQueue) push(pw *pendingWrite, start func()) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.items) >= q.max || q.closed {
		return false
	}
	q.items = append(q.items, pw)
	if !q.running {
		q.running = true
		start()
	}
	return true
}

// takeOrExit moves up to n queued writes, oldest first, into out. If there
// are none it marks the proposer stopped, which must then exit.
func (q *writeQueue) takeOrExit(out []*pendingWrite, n int) []*pendingWrite {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := min(n, len(q.items))
	if k == 0 {
		q.running = false
		return out
	}
	out = append(out, q.items[:k]...)
	clear(q.items[:k])
	q.items = q.items[k:]
	if len(q.items) == 0 {
		q.items = nil // let the backing array go
	}
	return out
}

// len is the number of queued writes.
func (q *writeQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

// close refuses every later push.
func (q *writeQueue) close() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
}

// proposeWrites takes writes in arrival order and decides which of them
// write (classify): those it proposes with one revision each, drawn
// together; the others (a txn whose compares fail, a delete of nothing, a
// request error) it answers at once, from the applied state, without a
// revision or a Raft round, as a linearizable read would be. So revisions
// stay dense: only writes that write draw one.
func (r *Replica) proposeWrites(batch []*pendingWrite) {
	for len(batch) > 0 {
		r.evalMu.Lock()
		k, writers, fps := r.classify(batch)
		if len(writers) > 0 {
			r.proposeWriters(writers, fps)
		}
		r.evalMu.Unlock()
		batch = batch[k:]
		if len(batch) > 0 {
			// batch[0] touches keys of a write still on its way through
			// Raft: its outcome depends on that write's.
			if err := r.waitNotInFlight(batch[0]); err != nil {
				batch[0].done <- result{err: err}
				batch = batch[1:]
			}
		}
	}
}

// classify decides, for a prefix of batch, which writes write, by
// evaluating them (eval.WriteFrom into a scratch batch that is discarded)
// against the applied state. It stops before the first write whose
// footprint overlaps a write in flight (proposed, not applied) or an
// earlier writer of the prefix, since the applied state does not show
// their effects yet. It answers the writes of the prefix that write
// nothing, and returns the prefix's length and its writers with their
// footprints, in order.
//
// The evaluation is exact only while this replica holds the lease and has
// applied every earlier term's entries, so it first waits for the lease
// (waitLease), and it answers nothing if the term, the lease or a change
// that drops versions (dropSeq) moved meanwhile.
func (r *Replica) classify(batch []*pendingWrite) (n int, writers []*pendingWrite, fps [][]keys.Span) {
	ctx, cancel := context.WithTimeout(context.Background(), tsoTimeout)
	err := r.waitLease(ctx)
	cancel()
	if err != nil {
		for _, pw := range batch {
			pw.done <- result{err: err}
		}
		return len(batch), nil, nil
	}
	seq := r.dropSeq.Load()
	r.mu.Lock()
	term, span, as := r.mu.term, r.spanLocked(), r.mu.applied
	if as.Frozen {
		r.mu.Unlock()
		for _, pw := range batch {
			pw.done <- result{err: errFrozen(r.RangeID)}
		}
		return len(batch), nil, nil
	}
	footprints := make([][]keys.Span, 0, len(batch))
	var locked []*kvpb.LockInfo // by footprint, the lock one meets (rarely any)
	for i, pw := range batch {
		fp := eval.Footprint(pw.req.GetOp())
		if r.mu.inflight.overlaps(fp) {
			break
		}
		footprints = append(footprints, fp)
		if key, l := r.mu.locks.first(fp, 0, 0); l != nil {
			if locked == nil {
				locked = make([]*kvpb.LockInfo, len(batch))
			}
			locked[i] = lockInfo(key, l)
		}
	}
	r.mu.Unlock()

	var pass inflight // the prefix's writers so far
	var scratch *storage.Batch
	defer func() {
		if scratch != nil {
			scratch.Close()
		}
	}()
	type answer struct {
		pw  *pendingWrite
		res result
	}
	var answers []answer
	for i, fp := range footprints {
		if pass.overlaps(fp) {
			break
		}
		pw := batch[i]
		n = i + 1
		op := pw.req.GetOp()
		if locked != nil && locked[i] != nil {
			// A txn holds one of its keys: the gateway resolves the lock
			// and sends the write again (the proposer never waits on it).
			li := locked[i]
			answers = append(answers, answer{pw, result{err: &kvpb.Error{Code: kvpb.ErrorCode_LOCKED, Message: fmt.Sprintf("replica: range %d: key %q is locked by txn %x at revision %d", r.RangeID, keys.StripUser(li.GetKey()), li.GetTxnId(), li.GetCommitTs()), Lock: li}}})
			continue
		}
		inside := true
		for _, s := range fp {
			inside = inside && span.ContainsSpan(s)
		}
		if inside && eval.AlwaysWrites(op) {
			writers, fps = append(writers, pw), append(fps, fp)
			pass.add(uint64(i), fp)
			continue
		}
		if scratch == nil {
			scratch = r.cfg.Engine.NewBatch()
		}
		resp, wrote, err := eval.WriteFrom(scratch, span, as.Newest()+1, as.Newest(), as.CompactedRev, op)
		switch {
		case err != nil && kvpb.CodeOf(err) == kvpb.ErrorCode_OK:
			// An engine error: the scratch batch is in an unknown state.
			scratch.Close()
			scratch = nil
			answers = append(answers, answer{pw, result{err: kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: evaluate: %v", r.RangeID, err)}})
		case err != nil:
			answers = append(answers, answer{pw, result{err: err}})
		case wrote:
			writers, fps = append(writers, pw), append(fps, fp)
			pass.add(uint64(i), fp)
		default:
			answers = append(answers, answer{pw, result{resp: &cmdpb.BatchResponse{Resp: resp, Revision: max(as.Newest(), 1), RaftTerm: term}}})
		}
	}
	if len(answers) == 0 {
		return n, writers, fps
	}
	r.mu.Lock()
	still := r.mu.term == term && r.leadsLocked() && r.mu.lease.validLocked(r.cfg.Now())
	r.mu.Unlock()
	if !still || seq%2 == 1 || r.dropSeq.Load() != seq {
		// What was read may not be what a linearizable read would see now:
		// evaluate the whole prefix again (a lost lease fails it then).
		return 0, nil, nil
	}
	// The answers' header is the cluster's newest revision, as etcd's is
	// its store's: with other ranges writing, this range's newest write
	// may be far behind. The keys they read have no write in flight, so
	// they read the same at that revision.
	ctx, cancel = context.WithTimeout(context.Background(), tsoTimeout)
	cur, err := r.cfg.Revisions.Current(ctx)
	cancel()
	for _, a := range answers {
		switch {
		case err != nil && a.res.err == nil:
			a.res = result{err: kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: no current revision: %v", r.RangeID, err)}
		case a.res.resp != nil:
			a.res.resp.Revision = max(a.res.resp.GetRevision(), cur)
			// So do the headers inside a txn that wrote nothing.
			eval.SetTxnHeaders(a.res.resp.GetResp(), a.res.resp.Revision)
		}
		a.pw.done <- a.res
	}
	return n, writers, fps
}

// waitNotInFlight waits until no write in flight touches pw's keys, or
// this replica stops leading (then classify fails pw). Errors:
// UNAVAILABLE when pw's caller gives up first (pw was never proposed).
func (r *Replica) waitNotInFlight(pw *pendingWrite) error {
	fp := eval.Footprint(pw.req.GetOp())
	return r.waitApplying(pw.ctx, "a conflicting write to apply", func() (bool, error) {
		return !r.leadsLocked() || !r.mu.inflight.overlaps(fp), nil
	})
}

// maxProposeRetries bounds how often the proposer offers Raft a batch it
// dropped (too much uncommitted data) while this replica still leads; the
// batch keeps its revisions meanwhile.
const maxProposeRetries = 20

// proposeWriters draws one revision per writer and proposes them in order,
// as one Raft proposal.
func (r *Replica) proposeWriters(writers []*pendingWrite, fps [][]keys.Span) {
	// While the revisions are being drawn, a read at a revision they may
	// be at or below waits (see waitRevision).
	r.mu.Lock()
	r.mu.drawing = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.mu.drawing = false
		r.mu.lease.notifyAppliedLocked()
		r.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), tsoTimeout)
	first, err := r.cfg.Revisions.Next(ctx, len(writers))
	cancel()
	if err != nil {
		code := kvpb.ErrorCode_UNAVAILABLE
		if status.Code(err) == codes.ResourceExhausted {
			code = kvpb.ErrorCode_RESOURCE_EXHAUSTED // the TSO client's queue is full
		}
		e := kvpb.Errorf(code, "replica: range %d: no revision: %v", r.RangeID, err)
		for _, pw := range writers {
			pw.done <- result{err: e}
		}
		return
	}
	for attempt := 0; ; attempt++ {
		r.mu.Lock()
		if first <= r.mu.lastProposedTS {
			// Only a deposed TSO leader can hand out such a revision.
			r.mu.Unlock()
			e := kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: revision %d not above %d", r.RangeID, first, r.mu.lastProposedTS)
			for _, pw := range writers {
				pw.done <- result{err: e}
			}
			return
		}
		kept, err := r.proposeLocked(writers, first, fps)
		if err == nil {
			r.mu.lastProposedTS = first + int64(len(writers)) - 1
			r.mu.lastProposedTerm = r.mu.term
			r.mu.Unlock()
			r.signal()
			return
		}
		retry := attempt < maxProposeRetries && r.leadsLocked() && r.mu.rn.BasicStatus().LeadTransferee == 0
		ch := r.mu.lease.appliedChLocked()
		r.mu.Unlock()
		if !retry {
			for _, pw := range kept {
				pw.done <- result{err: err}
			}
			return
		}
		// Raft holds too much uncommitted data: offer the batch again, with
		// its revisions, once some of it has applied.
		r.signal()
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
		case <-r.stopped:
		}
	}
}

// proposeLocked proposes the commands of batch, the i-th at revision
// firstTS+i (or all at 0, for writes that carry no revision), as one Raft
// proposal, registers their waiters and records their footprints (fps[i],
// if fps is given) as in flight. One proposal for the batch means one
// append and one message per follower, not one per write. A command that
// cannot be encoded fails alone (its waiter is answered; its revision is
// never used). If this replica does not lead, every write is answered
// NOT_LEADER. If Raft drops the proposal, none of the batch is in the log:
// proposeLocked returns the writes it offered and an UNAVAILABLE error,
// and answers none of them.
func (r *Replica) proposeLocked(batch []*pendingWrite, firstTS int64, fps [][]keys.Span) (offered []*pendingWrite, _ error) {
	if !r.leadsLocked() {
		err := r.notLeaderLocked()
		for _, pw := range batch {
			pw.done <- result{err: err}
		}
		return nil, nil
	}
	ents := make([]*raftpb.Entry, 0, len(batch))
	kept := make([]*pendingWrite, 0, len(batch))
	ids := make([]uint64, 0, len(batch))
	keptFPs := make([][]keys.Span, 0, len(batch))
	var buf []byte
	for i, pw := range batch {
		ts := firstTS
		if ts != 0 {
			ts += int64(i)
		}
		id := r.mu.nextID + 1 + uint64(i)
		cmd := &cmdpb.Command{Id: id, Proposer: r.cfg.NodeID, Ts: ts, Op: pw.req.GetOp(), Sys: pw.req.GetSys(), Compact: pw.req.GetCompact(), Split: pw.split, Freeze: pw.req.GetFreeze(), Merge: pw.merge,
			TxnStage: pw.txnStage, TxnResolve: pw.txnResolve, TxnMark: pw.txnMark, TxnForget: pw.txnForget}
		start := len(buf)
		var err error
		if buf, err = (proto.MarshalOptions{}).MarshalAppend(buf, cmd); err != nil {
			buf = buf[:start]
			pw.done <- result{err: kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: encode command: %v", err)}
			continue
		}
		// Full slice expressions: an entry's data never grows into the
		// next one's.
		ents = append(ents, &raftpb.Entry{Data: buf[start:len(buf):len(buf)]})
		kept = append(kept, pw)
		ids = append(ids, id)
		if fps != nil {
			keptFPs = append(keptFPs, fps[i])
		}
	}
	r.mu.nextID += uint64(len(batch)) // ids of unencodable writes stay unused
	if len(ents) == 0 {
		return nil, nil
	}
	if err := r.mu.rn.Step(&raftpb.Message{Type: raftpb.MsgProp.Enum(), From: new(r.replicaID), Entries: ents}); err != nil {
		// Dropped (no leader, transfer, or too much uncommitted data):
		// definitely not in the log.
		r.cfg.Metrics.ObserveProposalDropped()
		return kept, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: proposal dropped: %v", r.RangeID, err)
	}
	r.cfg.Metrics.ObserveProposals(len(kept))
	now := time.Now()
	for i, pw := range kept {
		r.mu.proposals[ids[i]] = &proposal{done: pw.done, span: trace.SpanContextFromContext(pw.ctx), proposed: now}
		if fps != nil {
			r.mu.inflight.add(ids[i], keptFPs[i])
		}
		if pw.txnStage != nil {
			if r.mu.stagings == nil {
				r.mu.stagings = make(map[uint64]stagingRef)
			}
			r.mu.stagings[ids[i]] = stagingRef{ts: firstTS, fp: keptFPs[i]}
		}
	}
	return nil, nil
}

// evalCommand applies one command into b. On error nothing of it may be
// kept: the caller discards b.
func (r *Replica) evalCommand(b *storage.Batch, cmd *cmdpb.Command, span keys.Span, as *storage.AppliedState) result {
	if cmd.GetOp() != nil && as.Frozen {
		return result{err: errFrozen(r.RangeID)}
	}
	if cmd.GetTs() != 0 && cmd.GetTs() <= as.MaxTS && cmd.GetTxnStage() == nil {
		return result{err: kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: command timestamp %d not above applied %d", r.RangeID, cmd.GetTs(), as.MaxTS)}
	}
	switch {
	case cmd.GetTxnStage() != nil:
		return r.evalTxnStage(b, span, cmd, as)
	case cmd.GetTxnResolve() != nil:
		return r.evalTxnResolve(b, span, cmd, as)
	case cmd.GetTxnMark() != nil:
		return r.evalTxnMark(b, span, cmd, as)
	case cmd.GetTxnForget() != nil:
		return r.evalTxnForget(b, span, cmd, as)
	case cmd.GetOp() != nil:
		// Before the txn first writes, its ops see the cluster as of the
		// revision before its own (as etcd's see its store's), which the
		// range's newest may lie far below.
		resp, wrote, err := eval.WriteIndexed(b, span, cmd.GetTs(), cmd.GetTs()-1, as.CompactedRev, r.idx, cmd.GetOp())
		if err != nil {
			return result{err: err}
		}
		if wrote {
			as.MaxTS = cmd.GetTs()
		}
		return result{resp: &cmdpb.BatchResponse{Resp: resp, Revision: max(as.MaxTS, 1)}}
	case cmd.GetCompact() != nil:
		return r.evalCompact(b, span, cmd.GetCompact(), as)
	case cmd.GetSplit() != nil:
		return r.evalSplit(b, span, cmd.GetSplit(), as)
	case cmd.GetFreeze() != nil:
		as.Frozen = !cmd.GetFreeze().GetThaw()
		r.log.Info("frozen for a merge", "frozen", as.Frozen, "index", as.Index)
		return result{resp: &cmdpb.BatchResponse{Revision: max(as.MaxTS, 1), AppliedIndex: as.Index}}
	case cmd.GetMerge() != nil:
		return r.evalMerge(b, span, cmd.GetMerge(), as)
	case cmd.GetSys() != nil:
		resp, err := meta.EvalWrite(b, span, cmd.GetSys())
		if err != nil {
			return result{err: err}
		}
		return result{resp: &cmdpb.BatchResponse{Sys: resp, Revision: max(as.MaxTS, 1)}}
	}
	return result{err: kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: empty command")}
}

// evalCompact discards the range's MVCC history superseded at the request's
// revision, with etcd's rules: it must be above the last compaction and not
// above the range's newest revision (unless clamped, see CompactRequest).
func (r *Replica) evalCompact(b *storage.Batch, span keys.Span, req *kvpb.CompactRequest, as *storage.AppliedState) result {
	rev := req.GetRevision()
	if req.GetClamp() {
		if !req.GetClusterChecked() {
			rev = min(rev, as.Newest())
		}
		if rev <= as.CompactedRev {
			return result{resp: &cmdpb.BatchResponse{Revision: max(as.MaxTS, 1)}}
		}
	}
	switch {
	case rev <= as.CompactedRev:
		return result{err: kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")}
	case rev > max(as.Newest(), 1) && !req.GetClusterChecked():
		return result{err: kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")}
	}
	if keys.UserSpan.ContainsSpan(span) {
		if err := storage.MVCCCompact(b, span, rev); err != nil {
			return result{err: err}
		}
	}
	as.CompactedRev = rev
	r.log.Info("compacted", "revision", rev)
	return result{resp: &cmdpb.BatchResponse{Revision: max(as.MaxTS, 1)}}
}

// splitTriggerLocked builds the trigger that splits the range at sr's key,
// from its descriptor now. Errors: INVALID_ARGUMENT for a key that is not a
// user key strictly inside the range, or a bad new range id.
func (r *Replica) splitTriggerLocked(sr *cmdpb.SplitRequest) (*cmdpb.SplitTrigger, error) {
	d := r.mu.desc
	key := sr.GetSplitKey()
	switch {
	case !keys.IsUser(key) || !keys.IsUser(d.GetStartKey()):
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: cannot split range %d %v at %q: only user ranges split, at user keys", r.RangeID, r.spanLocked(), key)
	case bytes.Equal(key, d.GetStartKey()):
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: %q already starts range %d", key, r.RangeID)
	case !r.spanLocked().Contains(key):
		return nil, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: split key %q outside range %d %v", key, r.RangeID, r.spanLocked())
	}
	if id := sr.GetNewRangeId(); id == 0 || id == r.RangeID {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: cannot split range %d into range id %d", r.RangeID, id)
	}
	left := proto.CloneOf(d)
	left.EndKey = append([]byte(nil), key...)
	left.Generation++
	right := &metapb.RangeDescriptor{
		RangeId:  sr.GetNewRangeId(),
		StartKey: append([]byte(nil), key...),
		EndKey:   append([]byte(nil), d.GetEndKey()...),
		// The same replicas, with the same ids: they are the same Raft
		// peers, on the same nodes, in a new group.
		Replicas:      proto.CloneOf(d).GetReplicas(),
		Generation:    left.GetGeneration(),
		NextReplicaId: d.GetNextReplicaId(),
	}
	return &cmdpb.SplitTrigger{Left: left, Right: right}, nil
}

// evalSplit applies a split trigger into b: the range's descriptor shrinks
// to the left side, and the right side's range gets its initial state, the
// same on every replica (as Bootstrap writes it, with the splitting range's
// newest and compacted revisions, since its keys keep their versions). The
// right side's MVCC data is already in the engine: one engine holds every
// range of the node, so a split moves no data. The caller updates the
// in-memory descriptor and creates the right replica once b commits.
func (r *Replica) evalSplit(b *storage.Batch, span keys.Span, t *cmdpb.SplitTrigger, as *storage.AppliedState) result {
	r.mu.Lock()
	gen := r.mu.desc.GetGeneration()
	r.mu.Unlock()
	left, right := t.GetLeft(), t.GetRight()
	switch {
	case left.GetGeneration() != gen+1:
		return result{err: kvpb.Errorf(kvpb.ErrorCode_RETRY, "replica: range %d: split for generation %d, the range is at %d", r.RangeID, left.GetGeneration()-1, gen)}
	case left.GetRangeId() != r.RangeID || !bytes.Equal(left.GetStartKey(), span.Start) || !bytes.Equal(right.GetEndKey(), span.End) ||
		!bytes.Equal(left.GetEndKey(), right.GetStartKey()) || !span.Contains(right.GetStartKey()) || bytes.Equal(right.GetStartKey(), span.Start):
		return result{err: kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "replica: range %d %v: malformed split %v", r.RangeID, span, t)}
	}
	if err := b.PutLocalDescriptor(left); err != nil {
		return result{err: err}
	}
	if err := bootstrapState(b, right, storage.AppliedState{ConfState: as.ConfState, MaxTS: as.MaxTS, TxnTS: as.TxnTS, CompactedRev: as.CompactedRev}); err != nil {
		return result{err: err}
	}
	r.log.Info("split", "at", fmt.Sprintf("%q", right.GetStartKey()), "new_range", right.GetRangeId())
	return result{resp: &cmdpb.BatchResponse{Revision: max(as.MaxTS, 1), Descriptors: []*metapb.RangeDescriptor{left, right}}}
}

// errFrozen refuses a write to a range frozen for a merge: retryable, and
// the range is gone once the merge applies (the router then finds its left
// neighbour).
func errFrozen(rangeID uint64) error {
	return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d is frozen for a merge", rangeID)
}

// mergeTriggerLocked builds the trigger that merges mr's right range into
// this one. Errors: KEY_MISMATCH if right does not start where this range
// ends (a stale descriptor), INVALID_ARGUMENT if their replicas differ.
func (r *Replica) mergeTriggerLocked(mr *cmdpb.MergeRequest) (*cmdpb.MergeTrigger, error) {
	d, right := r.mu.desc, mr.GetRight()
	if !bytes.Equal(right.GetStartKey(), d.GetEndKey()) || right.GetRangeId() == r.RangeID {
		return nil, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d %v does not end where range %d starts", r.RangeID, r.spanLocked(), right.GetRangeId())
	}
	if !sameNodes(d, right) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: ranges %d and %d have different replicas; only ranges on the same nodes merge", r.RangeID, right.GetRangeId())
	}
	left := proto.CloneOf(d)
	left.EndKey = append([]byte(nil), right.GetEndKey()...)
	left.Generation = max(d.GetGeneration(), right.GetGeneration()) + 1
	left.NextReplicaId = max(d.GetNextReplicaId(), right.GetNextReplicaId())
	return &cmdpb.MergeTrigger{Left: left, Right: proto.CloneOf(right)}, nil
}

func sameNodes(a, b *metapb.RangeDescriptor) bool {
	if len(a.GetReplicas()) != len(b.GetReplicas()) {
		return false
	}
	in := map[uint64]bool{}
	for _, rd := range a.GetReplicas() {
		in[rd.GetNodeId()] = true
	}
	for _, rd := range b.GetReplicas() {
		if !in[rd.GetNodeId()] {
			return false
		}
	}
	return true
}

// evalMerge applies a merge trigger into b: the range widens over right's
// span, takes right's newest and compacted revisions where higher, and
// right's range-local state (log, Raft and applied state, descriptor) is
// deleted; right's data, already in this node's engine, becomes this
// range's. Right must be frozen here: the merge is proposed only once
// every replica of right applied its freeze, so its data is final.
func (r *Replica) evalMerge(b *storage.Batch, span keys.Span, t *cmdpb.MergeTrigger, as *storage.AppliedState) result {
	left, right := t.GetLeft(), t.GetRight()
	r.mu.Lock()
	gen := r.mu.desc.GetGeneration()
	r.mu.Unlock()
	if left.GetGeneration() <= gen || !bytes.Equal(left.GetStartKey(), span.Start) || !bytes.Equal(right.GetStartKey(), span.End) {
		// Definitive, not RETRY: the same merge never applies later (the
		// left range changed since it was made, perhaps by this very
		// merge, proposed twice).
		return result{err: kvpb.Errorf(kvpb.ErrorCode_FAILED_PRECONDITION, "replica: range %d %v (generation %d): stale merge %v", r.RangeID, span, gen, t)}
	}
	ras, err := storage.LoadAppliedState(b, right.GetRangeId())
	if err != nil {
		return result{err: err}
	}
	if !ras.Frozen {
		panic(fmt.Sprintf("replica: range %d: merging range %d, which is not frozen on node %d (applied %d)", r.RangeID, right.GetRangeId(), r.cfg.NodeID, ras.Index))
	}
	if err := b.PutLocalDescriptor(left); err != nil {
		return result{err: err}
	}
	if err := b.ClearRangeLocal(right.GetRangeId()); err != nil {
		return result{err: err}
	}
	as.MaxTS = max(as.MaxTS, ras.MaxTS)
	as.TxnTS = max(as.TxnTS, ras.TxnTS)
	as.CompactedRev = max(as.CompactedRev, ras.CompactedRev)
	r.log.Info("merged", "range", right.GetRangeId(), "span", fmt.Sprintf("[%q, %q)", left.GetStartKey(), left.GetEndKey()))
	return result{resp: &cmdpb.BatchResponse{Revision: max(as.MaxTS, 1), Descriptors: []*metapb.RangeDescriptor{left}}}
}
