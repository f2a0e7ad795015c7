package replica

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"google.golang.org/protobuf/proto"
)

// A range's side of cross-range transactions (internal/txn has the
// coordinator and the protocol as a whole).
//
// A txn at commit revision C stages on every range it writes: the range's
// leaseholder evaluates its part (eval.StagePart) and proposes a TxnStage
// that locks every key the part writes, holding the write, and leaves the
// participant's marker (on the primary participant, the txn's record).
// Once every participant's staging applied, the txn is committed; it is
// then resolved (TxnResolve): each lock's write becomes a version at C.
//
// The range keeps time consistent across ranges (DESIGN.md, "Time across
// ranges") with three rules:
//   - A staging at C is refused (TXN_ABORTED) if any of its keys was read
//     at C or above (the timestamp cache, locks.go, to which a feed's
//     resolved revision counts as a read of its span), has a version at C
//     or above, or is locked by another txn (LOCKED).
//   - A read at R waits for the stagings in flight at or below R over its
//     keys, and for the locks at or below R to resolve; past lockWait it
//     fails LOCKED and the gateway resolves the lock (internal/txn).
//   - A write meets a lock on its keys as LOCKED, at once: the proposer
//     never waits on a txn.
//
// evalMu orders a staging's evaluation against the proposer's: each
// evaluates against the applied state with nothing in flight on its keys.

// lockWait is how long a read waits at the range for the locks it meets
// to resolve before it fails LOCKED: a txn whose coordinator lives is
// resolved one consensus round after it staged, so most reads never see
// LOCKED.
const lockWait = 50 * time.Millisecond

// stagingRef is a staging proposed by this leader and not yet applied.
type stagingRef struct {
	ts int64
	fp []keys.Span
}

// reservation is a txn about to stage here (cmdpb.TxnReserveRequest):
// reads of fp above floor wait for it, and feeds stay below floor, until
// its staging comes or deadline passes. It lives on the leaseholder only
// and is lost with leadership; the timestamp cache keeps safety then,
// and reservations only spare a txn from being refused by the reads it
// races with.
type reservation struct {
	fp       []keys.Span
	floor    int64
	deadline time.Time
}

// Bounds of reservations.
const (
	// maxReservations bounds the txns reserved on one range at once.
	maxReservations = 10000
	// maxReservationTTL bounds how long one reservation holds reads back.
	maxReservationTTL = 10 * time.Second
)

// Txn serves a step of a cross-range txn on this range: a staging, a
// resolution, a marker's decision or a marker read (see cmdpb).
func (r *Replica) Txn(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	if r.Uninitialized() {
		return nil, kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "replica: range %d here waits for its first snapshot", r.RangeID)
	}
	r.touch()
	if err := r.waitLease(ctx); err != nil {
		return nil, err
	}
	switch {
	case req.GetTxnStage() != nil:
		return r.stage(ctx, req.GetTxnStage())
	case req.GetTxnResolve() != nil:
		rr := req.GetTxnResolve()
		res := proto.CloneOf(rr.GetResolve())
		r.mu.Lock()
		if rr.GetAllKeys() {
			res.Keys = r.mu.locks.keysOf(res.GetTxnId())
		}
		span := r.spanLocked()
		r.mu.Unlock()
		for _, k := range res.GetKeys() {
			if !span.Contains(k) {
				// A router that routed by a descriptor from before a
				// split: it must send each range its own keys.
				return nil, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: txn lock %q outside range %d %v", k, r.RangeID, span)
			}
		}
		return r.proposeTxn(ctx, &pendingWrite{txnResolve: res}, 0, nil)
	case req.GetTxnMark() != nil:
		if err := r.checkAnchor(req.GetTxnMark().GetAnchor()); err != nil {
			return nil, err
		}
		return r.proposeTxn(ctx, &pendingWrite{txnMark: req.GetTxnMark()}, 0, nil)
	case req.GetTxnReserve() != nil:
		return r.reserve(ctx, req.GetTxnReserve())
	case req.GetTxnForget() != nil:
		return r.proposeTxn(ctx, &pendingWrite{txnForget: req.GetTxnForget()}, 0, nil)
	case req.GetTxnQuery() != nil:
		q := req.GetTxnQuery()
		out := &cmdpb.BatchResponse{}
		if len(q.GetAnchor()) > 0 {
			if err := r.checkAnchor(q.GetAnchor()); err != nil {
				return nil, err
			}
			m, err := storage.GetTxnMeta(r.cfg.Engine, q.GetAnchor(), q.GetTxnId())
			if err != nil {
				return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: read txn marker: %v", r.RangeID, err)
			}
			out.Txn = m
		}
		if k := q.GetLockKey(); len(k) > 0 {
			if err := r.checkAnchor(k); err != nil {
				return nil, err
			}
			r.mu.Lock()
			if l, ok := r.mu.locks.m[string(k)]; ok {
				out.Lock = lockInfo(k, l)
			}
			r.mu.Unlock()
		}
		return out, nil
	}
	return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: empty txn request")
}

// checkAnchor fails with KEY_MISMATCH if anchor is not in the range.
func (r *Replica) checkAnchor(anchor []byte) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.spanLocked().Contains(anchor) {
		return kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: txn anchor %q outside range %d %v", anchor, r.RangeID, r.spanLocked())
	}
	return nil
}

// proposeTxn proposes one txn command (at revision ts for a staging) and
// waits for its result.
func (r *Replica) proposeTxn(ctx context.Context, pw *pendingWrite, ts int64, fp []keys.Span) (*cmdpb.BatchResponse, error) {
	pw.ctx, pw.done = ctx, make(chan result, 1)
	if pw.req == nil {
		pw.req = &cmdpb.BatchRequest{}
	}
	r.mu.Lock()
	var fps [][]keys.Span
	if fp != nil {
		fps = [][]keys.Span{fp}
	}
	offered, err := r.proposeLocked([]*pendingWrite{pw}, ts, fps)
	r.mu.Unlock()
	for _, pw := range offered {
		pw.done <- result{err: err}
	}
	r.signal()
	return r.await(ctx, pw)
}

// await waits for a proposed write's result.
func (r *Replica) await(ctx context.Context, pw *pendingWrite) (*cmdpb.BatchResponse, error) {
	select {
	case res := <-pw.done:
		return res.resp, res.err
	case <-ctx.Done():
		return nil, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d: %v with the write in flight", r.RangeID, ctx.Err())
	case <-r.stopped:
		return nil, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d stopped with the write in flight", r.RangeID)
	}
}

// ensureLowWater makes the timestamp cache's low water mark valid for the
// current term (see tsCache): the cluster's current revision, taken with
// the lease held.
func (r *Replica) ensureLowWater(ctx context.Context) error {
	r.mu.Lock()
	term, ok := r.mu.term, r.mu.tsc.term == r.mu.term
	r.mu.Unlock()
	if ok {
		return nil
	}
	cur, err := r.cfg.Revisions.Current(ctx)
	if err != nil {
		return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: no current revision: %v", r.RangeID, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.term == term && r.mu.tsc.term != term {
		r.mu.tsc.lw = max(r.mu.tsc.lw, cur)
		r.mu.tsc.term = term
	}
	return nil
}

// reserve serves a TxnReserveRequest.
func (r *Replica) reserve(ctx context.Context, rr *cmdpb.TxnReserveRequest) (*cmdpb.BatchResponse, error) {
	if rr.GetRelease() {
		r.mu.Lock()
		r.dropReservationLocked(rr.GetTxnId())
		r.mu.Unlock()
		return &cmdpb.BatchResponse{}, nil
	}
	// The low water mark now, before the txn draws its revision, so that
	// it is below it.
	if err := r.ensureLowWater(ctx); err != nil {
		return nil, err
	}
	var fp []keys.Span
	for _, s := range rr.GetSpans() {
		fp = append(fp, keys.Span{Start: s.GetStart(), End: s.GetEnd()})
	}
	var would [][]byte
	if rr.GetOp() != nil {
		// Another txn's locks on the part's keys would make it look
		// different than it is: wait for them (or have the gateway
		// resolve them, LOCKED) first.
		clip := keys.Span{Start: rr.GetSpanStart(), End: rr.GetSpanEnd()}
		if _, err := r.waitReadLocks(ctx, clipFootprint(rr.GetOp(), clip), math.MaxInt64, 0, rr.GetTxnId(), false); err != nil {
			return nil, err
		}
		var err error
		if would, err = r.dryRun(rr); err != nil {
			return nil, err
		}
		if len(would) == 0 {
			return &cmdpb.BatchResponse{}, nil // nothing to reserve
		}
	}
	ttl := min(time.Duration(rr.GetTtlMillis())*time.Millisecond, maxReservationTTL)
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leadsLocked() {
		return nil, r.notLeaderLocked()
	}
	for _, s := range fp {
		if !r.spanLocked().ContainsSpan(s) {
			return nil, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: txn reservation %v outside range %d %v", s, r.RangeID, r.spanLocked())
		}
	}
	now := r.cfg.Now()
	r.expireReservationsLocked(now)
	if len(r.mu.reservations) >= maxReservations {
		return nil, kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "replica: range %d has %d txns reserved (bound maxReservations); retry later", r.RangeID, maxReservations)
	}
	floor := rr.GetFloor()
	if floor <= 0 {
		floor = r.mu.applied.Newest()
		for _, s := range fp {
			if isPoint(s) {
				floor = max(floor, r.mu.tsc.max(s.Start))
			}
		}
	}
	if r.mu.reservations == nil {
		r.mu.reservations = make(map[uint64]*reservation)
	}
	r.mu.reservations[rr.GetTxnId()] = &reservation{fp: fp, floor: floor, deadline: now.Add(ttl)}
	return &cmdpb.BatchResponse{Revision: floor, LockedKeys: would}, nil
}

// dryRun evaluates a reservation's txn part against the range's state now,
// as of the cluster revision floor, and returns the keys it would write.
// Errors: the part's request errors.
func (r *Replica) dryRun(rr *cmdpb.TxnReserveRequest) ([][]byte, error) {
	clip := keys.Span{Start: rr.GetSpanStart(), End: rr.GetSpanEnd()}
	r.mu.Lock()
	as, span := r.mu.applied, r.spanLocked()
	r.mu.Unlock()
	if clip.Empty() || !span.ContainsSpan(clip) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: txn part %v outside range %d %v", clip, r.RangeID, span)
	}
	at := max(rr.GetFloor(), as.Newest())
	scratch := r.cfg.Engine.NewBatch()
	defer scratch.Close()
	scratch.RecordEvents()
	_, wrote, err := eval.StagePart(scratch, clip, at+1, rr.GetFloor(), as.CompactedRev, rr.GetPath(), rr.GetOp())
	if err != nil {
		if kvpb.CodeOf(err) == kvpb.ErrorCode_OK {
			err = kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: evaluate txn part: %v", r.RangeID, err)
		}
		return nil, err
	}
	if !wrote {
		return nil, nil
	}
	var out [][]byte
	for _, ev := range scratch.TakeEvents() {
		out = append(out, ev.GetKv().GetKey())
	}
	return out, nil
}

// dropReservationLocked forgets txn's reservation and wakes the reads
// waiting on it.
func (r *Replica) dropReservationLocked(txn uint64) {
	if _, ok := r.mu.reservations[txn]; ok {
		delete(r.mu.reservations, txn)
		r.mu.lease.notifyAppliedLocked()
	}
}

// expireReservationsLocked drops the reservations past their deadline.
func (r *Replica) expireReservationsLocked(now time.Time) {
	for id, rv := range r.mu.reservations {
		if now.After(rv.deadline) {
			delete(r.mu.reservations, id)
			r.mu.lease.notifyAppliedLocked()
		}
	}
}

// reservedBelowLocked returns the earliest deadline of a live reservation
// over fp whose floor is below rev, other than txn except's (the zero time
// if none).
func (r *Replica) reservedBelowLocked(fp []keys.Span, rev int64, except uint64, now time.Time) (deadline time.Time) {
	for id, rv := range r.mu.reservations {
		if id == except || rv.floor >= rev || now.After(rv.deadline) {
			continue
		}
		for _, a := range fp {
			for _, b := range rv.fp {
				if overlapsSpans(a, b) && (deadline.IsZero() || rv.deadline.Before(deadline)) {
					deadline = rv.deadline
				}
			}
		}
	}
	return deadline
}

// clipFootprint returns the spans of op's footprint that touch clip, cut
// to it.
func clipFootprint(op *kvpb.RequestOp, clip keys.Span) []keys.Span {
	var out []keys.Span
	for _, s := range eval.Footprint(op) {
		if x, ok := s.Within(clip); ok {
			out = append(out, x)
		}
	}
	return out
}

// stage serves a TxnStageRequest (see cmdpb): evaluates the part and
// proposes its staging, or answers a part that writes nothing as a read at
// the txn's revision. Errors: TXN_ABORTED or LOCKED when it cannot stage
// at that revision (nothing proposed), the part's request errors, and a
// write's errors (AMBIGUOUS once proposed).
func (r *Replica) stage(ctx context.Context, sr *cmdpb.TxnStageRequest) (*cmdpb.BatchResponse, error) {
	ts := sr.GetTs()
	clip := keys.Span{Start: sr.GetSpanStart(), End: sr.GetSpanEnd()}
	if ts <= 1 || clip.Empty() || sr.GetTxnId() == 0 {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: malformed txn staging (revision %d, span %v)", ts, clip)
	}
	if sr.GetParticipant() && !sr.GetCommitNow() && !clip.Contains(sr.GetAnchor()) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: txn anchor %q outside its part %v", sr.GetAnchor(), clip)
	}
	if err := r.waitRevision(ctx, ts); err != nil {
		return nil, err
	}
	fp := clipFootprint(sr.GetOp(), clip)
	defer func() {
		r.mu.Lock()
		r.dropReservationLocked(sr.GetTxnId())
		r.mu.Unlock()
	}()
	for {
		r.evalMu.Lock()
		resp, pw, wait, err := r.evalStage(sr, clip, fp)
		r.evalMu.Unlock()
		if err != nil {
			return nil, err
		}
		if wait {
			if err := r.waitApplying(ctx, "writes in flight on a txn's keys", func() (bool, error) {
				return !r.leadsLocked() || !r.mu.inflight.overlaps(fp), nil
			}); err != nil {
				return nil, err
			}
			continue
		}
		if pw == nil {
			return resp, nil // a part that only reads
		}
		out, err := r.await(ctx, pw)
		if err != nil {
			return nil, err
		}
		out.Resp = resp.GetResp()
		out.LockedKeys = resp.GetLockedKeys()
		return out, nil
	}
}

// evalStage is one attempt of stage, with evalMu held: wait reports writes
// in flight on the part's keys (stage waits for them and tries again).
func (r *Replica) evalStage(sr *cmdpb.TxnStageRequest, clip keys.Span, fp []keys.Span) (resp *cmdpb.BatchResponse, pw *pendingWrite, wait bool, err error) {
	ts := sr.GetTs()
	r.mu.Lock()
	if !r.leadsLocked() {
		err := r.notLeaderLocked()
		r.mu.Unlock()
		return nil, nil, false, err
	}
	if !r.spanLocked().ContainsSpan(clip) {
		span := r.spanLocked()
		r.mu.Unlock()
		return nil, nil, false, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: txn part %v outside range %d %v", clip, r.RangeID, span)
	}
	as, term := r.mu.applied, r.mu.term
	switch {
	case as.Frozen:
		r.mu.Unlock()
		return nil, nil, false, errFrozen(r.RangeID)
	case r.mu.inflight.overlaps(fp):
		r.mu.Unlock()
		return nil, nil, true, nil
	}
	if key, l := r.mu.locks.first(fp, 0, sr.GetTxnId()); l != nil {
		r.mu.Unlock()
		return nil, nil, false, &kvpb.Error{Code: kvpb.ErrorCode_LOCKED, Message: fmt.Sprintf("replica: range %d: key %q is locked by txn %x at revision %d", r.RangeID, keys.StripUser(key), l.GetTxnId(), l.GetCommitTs()), Lock: lockInfo(key, l)}
	}
	r.mu.Unlock()

	scratch := r.cfg.Engine.NewBatch()
	scratch.RecordEvents()
	out, wrote, err := eval.StagePart(scratch, clip, ts, ts-1, as.CompactedRev, sr.GetPath(), sr.GetOp())
	evs := scratch.TakeEvents()
	scratch.Close()
	if err != nil {
		if kvpb.CodeOf(err) == kvpb.ErrorCode_OK {
			err = kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: evaluate txn part: %v", r.RangeID, err)
		}
		return nil, nil, false, err
	}
	intents := eval.Intents(evs)
	if !wrote {
		intents = nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.term != term || !r.leadsLocked() {
		return nil, nil, false, r.notLeaderLocked()
	}
	if len(intents) > 0 || sr.GetParticipant() {
		switch {
		case r.mu.tsc.term != term:
			// No reservation took the low water mark in this term: the
			// txn drew its revision before this replica knew what its
			// predecessor served.
			return nil, nil, false, kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: the txn was not reserved in this leader's term", r.RangeID)
		case ts <= r.mu.tsc.lw:
			return nil, nil, false, kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: txn at revision %d is below revision %d, which reads may have been served at", r.RangeID, ts, r.mu.tsc.lw)
		}
	}
	locked := make([][]byte, 0, len(intents))
	for _, in := range intents {
		key := in.GetKv().GetKey()
		if read := r.mu.tsc.max(key); read >= ts {
			return nil, nil, false, kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: key %q was read at revision %d, at or above the txn's %d", r.RangeID, keys.StripUser(key), read, ts)
		}
		latest, err := storage.MVCCLatest(r.cfg.Engine, key)
		if err != nil {
			return nil, nil, false, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: %v", r.RangeID, err)
		}
		if latest >= ts {
			return nil, nil, false, kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: key %q has a version at revision %d, at or above the txn's %d", r.RangeID, keys.StripUser(key), latest, ts)
		}
		locked = append(locked, key)
	}
	// The part read its keys at ts: no txn may now write them below it.
	r.mu.tsc.bump(fp, ts)
	resp = &cmdpb.BatchResponse{Resp: out, Revision: ts, RaftTerm: term, LockedKeys: locked}
	if len(intents) == 0 && !sr.GetParticipant() {
		return resp, nil, false, nil
	}
	stage := &cmdpb.TxnStage{TxnId: sr.GetTxnId(), Intents: intents, CommitNow: sr.GetCommitNow()}
	if !sr.GetCommitNow() {
		stage.Anchor, stage.Record, stage.Participants, stage.StagedUnixNanos = sr.GetAnchor(), sr.GetRecord(), sr.GetParticipants(), sr.GetStagedUnixNanos()
	}
	pw = &pendingWrite{ctx: context.Background(), req: &cmdpb.BatchRequest{}, done: make(chan result, 1), txnStage: stage}
	wfp := append(fp[:len(fp):len(fp)], pointSpans(locked)...)
	offered, err := r.proposeLocked([]*pendingWrite{pw}, ts, [][]keys.Span{wfp})
	r.dropReservationLocked(sr.GetTxnId()) // the staging in flight holds reads now
	if err != nil || len(offered) > 0 {
		return nil, nil, false, err
	}
	r.signal()
	return resp, pw, false, nil
}

func pointSpans(ks [][]byte) []keys.Span {
	out := make([]keys.Span, 0, len(ks))
	for _, k := range ks {
		out = append(out, keys.Span{Start: k})
	}
	return out
}

// lockChange is a change an applying command made to the lock table,
// made to the in-memory table once the batch commits.
type lockChange struct {
	key  []byte
	lock *kvpb.Lock // nil: removed
}

// evalTxnStage applies a staging into b (see cmdpb.TxnStage).
func (r *Replica) evalTxnStage(b *storage.Batch, span keys.Span, cmd *cmdpb.Command, as *storage.AppliedState) result {
	st, ts := cmd.GetTxnStage(), cmd.GetTs()
	if as.Frozen {
		return result{err: errFrozen(r.RangeID)}
	}
	for _, in := range st.GetIntents() {
		key := in.GetKv().GetKey()
		if !span.Contains(key) || in.GetKv().GetModRevision() != ts {
			return result{err: kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d %v: txn intent on %q at %d", r.RangeID, span, key, in.GetKv().GetModRevision())}
		}
		l, err := storage.GetLock(b, key)
		if err != nil {
			return result{err: err}
		}
		if l != nil {
			return result{err: kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: %q is locked by txn %x", r.RangeID, key, l.GetTxnId())}
		}
		latest, err := storage.MVCCLatest(b, key)
		if err != nil {
			return result{err: err}
		}
		if latest >= ts {
			return result{err: kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: %q has a version at %d, at or above the txn's %d", r.RangeID, key, latest, ts)}
		}
	}
	if st.GetCommitNow() {
		for _, in := range st.GetIntents() {
			if err := eval.CommitIntent(b, r.idx, in); err != nil {
				return result{err: err}
			}
		}
		as.TxnTS = max(as.TxnTS, ts)
		return result{resp: &cmdpb.BatchResponse{Revision: ts}}
	}
	if !span.Contains(st.GetAnchor()) {
		return result{err: kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d %v: txn anchor %q outside", r.RangeID, span, st.GetAnchor())}
	}
	m, err := storage.GetTxnMeta(b, st.GetAnchor(), st.GetTxnId())
	if err != nil {
		return result{err: err}
	}
	if m != nil {
		return result{err: kvpb.Errorf(kvpb.ErrorCode_TXN_ABORTED, "replica: range %d: txn %x already has its marker here (%s)", r.RangeID, st.GetTxnId(), m.GetStatus())}
	}
	for _, in := range st.GetIntents() {
		l := &kvpb.Lock{TxnId: st.GetTxnId(), CommitTs: ts, Record: st.GetRecord(), Intent: in, StagedUnixNanos: st.GetStagedUnixNanos()}
		if err := b.PutLock(in.GetKv().GetKey(), l); err != nil {
			return result{err: err}
		}
		r.applyLocks = append(r.applyLocks, lockChange{key: in.GetKv().GetKey(), lock: l})
	}
	meta := &kvpb.TxnMeta{Status: kvpb.TxnStatus_STAGING, CommitTs: ts, StagedUnixNanos: st.GetStagedUnixNanos(), Record: st.GetRecord()}
	for _, in := range st.GetIntents() {
		meta.Keys = append(meta.Keys, in.GetKv().GetKey())
	}
	if bytes.Equal(st.GetAnchor(), st.GetRecord()) {
		meta.Participants = st.GetParticipants()
	}
	if err := b.PutTxnMeta(st.GetAnchor(), st.GetTxnId(), meta); err != nil {
		return result{err: err}
	}
	return result{resp: &cmdpb.BatchResponse{Revision: ts}}
}

// evalTxnResolve applies a resolution into b (see cmdpb.TxnResolve).
func (r *Replica) evalTxnResolve(b *storage.Batch, span keys.Span, cmd *cmdpb.Command, as *storage.AppliedState) result {
	rs := cmd.GetTxnResolve()
	if a := rs.GetAnchor(); len(a) > 0 {
		if !span.Contains(a) {
			return result{err: kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d %v: txn anchor %q outside", r.RangeID, span, a)}
		}
		m, err := storage.GetTxnMeta(b, a, rs.GetTxnId())
		if err != nil {
			return result{err: err}
		}
		if m != nil && ((rs.GetCommit() && m.GetStatus() == kvpb.TxnStatus_ABORTED) || (!rs.GetCommit() && m.GetStatus() == kvpb.TxnStatus_COMMITTED)) {
			return result{err: kvpb.Errorf(kvpb.ErrorCode_FAILED_PRECONDITION, "replica: range %d: txn %x is %s here; cannot resolve it as committed=%v", r.RangeID, rs.GetTxnId(), m.GetStatus(), rs.GetCommit())}
		}
	}
	for _, key := range rs.GetKeys() {
		if !span.Contains(key) {
			// A split applied since the resolution was proposed: resolve
			// nothing, so that the resolver sends each range its own keys
			// (skipping it would leave its lock behind a forgotten record).
			return result{err: kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d %v: txn lock %q outside", r.RangeID, span, key)}
		}
	}
	for _, key := range rs.GetKeys() {
		l, err := storage.GetLock(b, key)
		if err != nil {
			return result{err: err}
		}
		if l == nil || l.GetTxnId() != rs.GetTxnId() {
			continue
		}
		if rs.GetCommit() {
			if err := eval.CommitIntent(b, r.idx, l.GetIntent()); err != nil {
				return result{err: err}
			}
			as.TxnTS = max(as.TxnTS, l.GetCommitTs())
		}
		if err := b.DeleteLock(key); err != nil {
			return result{err: err}
		}
		r.applyLocks = append(r.applyLocks, lockChange{key: key})
	}
	if a := rs.GetAnchor(); len(a) > 0 {
		m, err := storage.GetTxnMeta(b, a, rs.GetTxnId())
		if err != nil {
			return result{err: err}
		}
		switch {
		case rs.GetForget():
			if err := b.DeleteTxnMeta(a, rs.GetTxnId()); err != nil {
				return result{err: err}
			}
		case m != nil && m.GetStatus() == kvpb.TxnStatus_STAGING:
			m.Status = kvpb.TxnStatus_ABORTED
			if rs.GetCommit() {
				m.Status = kvpb.TxnStatus_COMMITTED
			}
			if err := b.PutTxnMeta(a, rs.GetTxnId(), m); err != nil {
				return result{err: err}
			}
		}
	}
	return result{resp: &cmdpb.BatchResponse{Revision: max(as.Newest(), 1)}}
}

// evalTxnForget applies a batch of marker deletions into b (see
// cmdpb.TxnForget); markers outside the range are skipped (the range
// split: its new neighbour holds them).
func (r *Replica) evalTxnForget(b *storage.Batch, span keys.Span, cmd *cmdpb.Command, as *storage.AppliedState) result {
	for _, ref := range cmd.GetTxnForget().GetRefs() {
		if !span.Contains(ref.GetAnchor()) {
			continue
		}
		if err := b.DeleteTxnMeta(ref.GetAnchor(), ref.GetTxnId()); err != nil {
			return result{err: err}
		}
	}
	return result{resp: &cmdpb.BatchResponse{Revision: max(as.Newest(), 1)}}
}

// evalTxnMark applies a marker decision into b (see cmdpb.TxnMark).
func (r *Replica) evalTxnMark(b *storage.Batch, span keys.Span, cmd *cmdpb.Command, as *storage.AppliedState) result {
	mk := cmd.GetTxnMark()
	if !span.Contains(mk.GetAnchor()) {
		return result{err: kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d %v: txn anchor %q outside", r.RangeID, span, mk.GetAnchor())}
	}
	m, err := storage.GetTxnMeta(b, mk.GetAnchor(), mk.GetTxnId())
	if err != nil {
		return result{err: err}
	}
	write := false
	switch {
	case mk.GetIfAbsent() && m == nil:
		m, write = &kvpb.TxnMeta{Status: kvpb.TxnStatus_ABORTED}, true
	case !mk.GetIfAbsent() && m != nil && m.GetStatus() == kvpb.TxnStatus_STAGING && mk.GetStatus() != kvpb.TxnStatus_STAGING:
		m.Status, write = mk.GetStatus(), true
	}
	if write {
		if err := b.PutTxnMeta(mk.GetAnchor(), mk.GetTxnId(), m); err != nil {
			return result{err: err}
		}
	}
	return result{resp: &cmdpb.BatchResponse{Txn: m, Revision: max(as.Newest(), 1)}}
}

// waitReadLocks, for a read of fp at rev (0: the range's newest, fixed
// here), records the read in the timestamp cache (a linearizable read on
// the leaseholder), waits for the stagings in flight and reservations
// (except those of txn, the read's own) at or below it over fp, and for the
// locks at or below it to resolve, up to lockWait. A read of an older
// revision (atMost > 0, a Range's revision) is judged at that revision. It
// returns the revision read. Errors: LOCKED with the lock still there,
// UNAVAILABLE when ctx ends.
func (r *Replica) waitReadLocks(ctx context.Context, fp []keys.Span, rev, atMost int64, txn uint64, linearizable bool) (int64, error) {
	var timer *time.Timer
	for {
		r.mu.Lock()
		if rev <= 0 {
			rev = r.mu.applied.Newest() // one revision for every round
		}
		read := rev
		if atMost > 0 {
			read = min(read, atMost)
		}
		blocked := linearizable && r.stagingBelowLocked(fp, read)
		var reserved time.Time
		if linearizable && !blocked && len(r.mu.reservations) > 0 {
			reserved = r.reservedBelowLocked(fp, read, txn, r.cfg.Now())
			blocked = !reserved.IsZero()
		}
		var info *kvpb.LockInfo
		if !blocked {
			key, l := r.mu.locks.first(fp, read, 0)
			if l == nil {
				// Served from here on: no txn may stage below it now
				// (recorded in the same critical section as the checks,
				// and not before: a read held back must not refuse the
				// staging it waits for).
				if linearizable && r.leadsLocked() {
					r.mu.tsc.bump(fp, read)
				}
				r.mu.Unlock()
				return rev, nil
			}
			info = lockInfo(key, l)
		}
		ch := r.mu.lease.appliedChLocked()
		r.mu.Unlock()
		if timer == nil {
			timer = time.NewTimer(lockWait)
			defer timer.Stop()
		}
		if !reserved.IsZero() {
			// Wake at the reservation's deadline at the latest, to expire
			// it (a coordinator that died before staging).
			if d := time.Until(reserved); d < lockWait {
				timer.Reset(max(d, time.Millisecond))
			}
		}
		select {
		case <-ch:
		case <-timer.C:
			if info != nil {
				return 0, &kvpb.Error{Code: kvpb.ErrorCode_LOCKED, Message: fmt.Sprintf("replica: range %d: key %q is locked by txn %x at revision %d", r.RangeID, keys.StripUser(info.GetKey()), info.GetTxnId(), info.GetCommitTs()), Lock: info}
			}
			// A staging in flight (it applies or fails soon), or a
			// reservation: expire it if its deadline passed.
			r.mu.Lock()
			r.expireReservationsLocked(r.cfg.Now())
			r.mu.Unlock()
			timer.Reset(lockWait)
		case <-ctx.Done():
			return 0, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: %v waiting for txn locks", r.RangeID, ctx.Err())
		case <-r.stopped:
			return 0, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d stopped", r.RangeID)
		}
	}
}

// stagingBelowLocked reports whether a staging in flight at or below rev
// touches fp.
func (r *Replica) stagingBelowLocked(fp []keys.Span, rev int64) bool {
	for _, s := range r.mu.stagings {
		if s.ts > rev {
			continue
		}
		for _, a := range fp {
			for _, b := range s.fp {
				if overlapsSpans(a, b) {
					return true
				}
			}
		}
	}
	return false
}

// txnCapLocked is the highest revision a feed of span may call resolved
// as far as cross-range txns go: below every lock and staging in flight
// there (0: no bound).
func (r *Replica) txnCapLocked(span keys.Span) int64 {
	if len(r.mu.reservations) > 0 {
		r.expireReservationsLocked(r.cfg.Now())
	}
	low := r.mu.locks.minTS(span)
	for _, rv := range r.mu.reservations {
		for _, b := range rv.fp {
			if overlapsSpans(span, b) && (low == 0 || rv.floor+1 < low) {
				low = rv.floor + 1 // the txn commits above its floor
			}
		}
	}
	for _, s := range r.mu.stagings {
		for _, b := range s.fp {
			if overlapsSpans(span, b) && (low == 0 || s.ts < low) {
				low = s.ts
			}
		}
	}
	if low == 0 {
		return 0
	}
	return low - 1
}

// freeResolvedLocked is the newest revision every change at or below which
// has applied, as far as the range's own numbered writes go: its newest
// revision, unless a txn's resolution moved it above writes this range
// numbered that are still in flight.
func (r *Replica) freeResolvedLocked() int64 {
	newest := r.mu.applied.Newest()
	if newest <= r.mu.resolvedTS {
		return newest
	}
	if r.mu.drawing || (r.mu.lastProposedTerm == r.mu.term && r.mu.lastProposedTS > r.mu.resolvedTS) {
		return r.mu.resolvedTS
	}
	return newest
}

// LockCount is the number of cross-range txn locks the range holds, as
// applied here.
func (r *Replica) LockCount() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.locks.len()
}

// TxnMarkers counts the txn markers (records included) the range holds, as
// applied here, by status.
func (r *Replica) TxnMarkers() (map[kvpb.TxnStatus]int, error) {
	r.mu.Lock()
	span := r.spanLocked()
	r.mu.Unlock()
	out := map[kvpb.TxnStatus]int{}
	if len(span.End) == 0 {
		return out, nil
	}
	err := storage.ScanTxnMetas(r.cfg.Engine, span, func(_ []byte, _ uint64, m *kvpb.TxnMeta) error {
		out[m.GetStatus()]++
		return nil
	})
	return out, err
}

// StaleLocks returns, on the leader, up to max locks whose txns began
// staging before olderThan (a coordinator's clock): txns whose locks
// nobody met may still hold the range's feeds back, so the node resolves
// them (internal/server's lock sweeper). Nil on a follower.
func (r *Replica) StaleLocks(olderThan time.Time, max int) []*kvpb.LockInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.leadsLocked() || len(r.mu.locks.m) == 0 {
		return nil
	}
	var out []*kvpb.LockInfo
	for k, l := range r.mu.locks.m {
		if len(out) >= max {
			break
		}
		if l.GetStagedUnixNanos() < olderThan.UnixNano() {
			out = append(out, lockInfo([]byte(k), l))
		}
	}
	return out
}
