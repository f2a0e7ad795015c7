package replica

import (
	"bytes"
	"context"
	"fmt"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/storage"
)

// Read serves a read: a Range or read-only Txn in req.Op, or a system read
// in req.Sys. Serializable Ranges read this replica's applied state as it
// is; everything else is linearizable and needs the leader lease (see
// lease.go). The read sees one consistent state: the applied state it
// reports, read at that revision.
func (r *Replica) Read(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	r.qps.add(r.cfg.Now())
	r.loadKeys.maybeAdd(requestKey(req))
	if r.Uninitialized() {
		return nil, kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "replica: range %d here waits for its first snapshot", r.RangeID)
	}
	linearizable := !req.GetOp().GetRange().GetSerializable() && !r.cfg.UnsafeNoReadLease
	if linearizable {
		r.touch()
		if err := r.waitLease(ctx); err != nil {
			return nil, err
		}
		if req.GetReadRevision() <= 0 && req.GetOp() != nil && !r.holdsAllUserKeys() {
			// Other ranges write too: read as of the cluster's newest
			// revision, not this range's (a router whose range cache has
			// not seen the splits yet sends none).
			cur, err := r.cfg.Revisions.Current(ctx)
			if err != nil {
				return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: no current revision: %v", r.RangeID, err)
			}
			req = &cmdpb.BatchRequest{RangeId: req.GetRangeId(), Op: req.GetOp(), ReadRevision: cur, TxnId: req.GetTxnId()}
		}
		if rev := req.GetReadRevision(); rev > 0 {
			if err := r.waitRevision(ctx, rev); err != nil {
				return nil, err
			}
		}
	}
	for attempt := 0; ; attempt++ {
		out, err, again := r.readOnce(ctx, req, linearizable)
		if !again || attempt >= maxReadRepins {
			return out, err
		}
	}
}

// holdsAllUserKeys reports whether the range holds the whole user
// keyspace (one user range: its newest revision is the cluster's).
func (r *Replica) holdsAllUserKeys() bool {
	d := r.desc.Load()
	return bytes.Equal(d.GetStartKey(), keys.UserSpan.Start) && bytes.Equal(d.GetEndKey(), keys.UserSpan.End)
}

// maxReadRepins bounds how often a read at the range's newest revision
// fixes its revision again because a compaction passed it meanwhile.
const maxReadRepins = 8

// readOnce serves a read at a revision it fixes first, once no txn can
// still commit at or below it over the read's keys (txn.go). again
// reports that a compaction passed that revision before the read (one at
// the newest revision then fixes it again).
func (r *Replica) readOnce(ctx context.Context, req *cmdpb.BatchRequest, linearizable bool) (_ *cmdpb.BatchResponse, _ error, again bool) {
	var rev int64
	if req.GetOp() != nil {
		r.mu.Lock()
		frozen := r.mu.applied.Frozen
		r.mu.Unlock()
		if frozen && linearizable {
			// What the range serves now its left neighbour's timestamp
			// cache would not know once it is merged: wait for the merge.
			return nil, errFrozen(r.RangeID), false
		}
		var err error
		if rev, err = r.waitReadLocks(ctx, eval.Footprint(req.GetOp()), req.GetReadRevision(), req.GetOp().GetRange().GetRevision(), req.GetTxnId(), linearizable); err != nil {
			return nil, err, false
		}
	}
	// Fast path: read the engine as it is, at the revision applied now.
	// Writes applied meanwhile have higher revisions, which the read skips;
	// only a change that drops versions could disturb it, and dropSeq
	// tells (see its comment). Otherwise fall back to a snapshot.
	seq := r.dropSeq.Load() // before reading applied: see dropSeq
	r.mu.Lock()
	span, term, as := r.spanLocked(), r.mu.term, r.mu.applied
	r.mu.Unlock()
	repin := req.GetReadRevision() <= 0 && rev > 0 && rev < as.CompactedRev
	if repin {
		return nil, nil, true
	}
	if seq%2 == 0 {
		out, err := r.readAt(r.cfg.Engine, span, term, as, req, rev)
		if r.dropSeq.Load() == seq {
			return out, err, false
		}
	}
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	as, err := storage.LoadAppliedState(snap, r.RangeID)
	if err != nil {
		return nil, err, false
	}
	if req.GetReadRevision() <= 0 && rev > 0 && rev < as.CompactedRev {
		return nil, nil, true
	}
	out, err := r.readAt(snap, span, term, as, req, rev)
	return out, err, false
}

// readAt serves req from rd, whose state includes everything applied up to
// as (and perhaps more, at higher revisions), at revision rev (0: as's
// newest).
func (r *Replica) readAt(rd storage.Reader, span keys.Span, term uint64, as storage.AppliedState, req *cmdpb.BatchRequest, rev int64) (*cmdpb.BatchResponse, error) {
	// A read at a cluster revision above this range's newest write reads
	// the range as it is: waitRevision made sure nothing below it is still
	// to come.
	current := max(as.Newest(), req.GetReadRevision())
	if rev > 0 {
		current = rev
	}
	out := &cmdpb.BatchResponse{Revision: max(current, 1), RaftTerm: term}
	var err error
	if req.GetSys() != nil {
		out.Sys, err = meta.EvalRead(rd, span, req.GetSys())
	} else {
		out.Resp, err = eval.ReadOp(rd, span, req.GetOp(), current, as.CompactedRev, req.GetUncounted())
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}

// HashKV hashes this replica's MVCC history up to rev (0: its newest
// revision), for etcd's HashKV consistency check. It returns the hash, the
// revision hashed and the range's compacted revision. Errors: COMPACTED if
// rev is below the compacted revision, FUTURE_REV if above the newest.
func (r *Replica) HashKV(rev int64) (hash uint32, hashRev, compactRev int64, err error) {
	r.mu.Lock()
	span := r.spanLocked()
	r.mu.Unlock()
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	as, err := storage.LoadAppliedState(snap, r.RangeID)
	if err != nil {
		return 0, 0, 0, err
	}
	if rev == 0 {
		rev = as.Newest()
	}
	switch {
	case rev > 0 && rev < as.CompactedRev:
		return 0, 0, 0, kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")
	case rev > max(as.Newest(), 1):
		return 0, 0, 0, kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	}
	hash, err = storage.MVCCHash(snap, span, rev)
	return hash, rev, as.CompactedRev, err
}

// waitRevision returns once every write this range numbered at or below
// rev has applied or never will (DESIGN.md, "Time across ranges"): none is
// being numbered (drawing) and the range has resolved up to rev, or up to
// everything it proposed in this term. Call it with the lease held: every
// write of an earlier term is then applied or lost. Errors: NOT_LEADER if the replica stops leading
// meanwhile (the writes of its term may then never resolve here),
// UNAVAILABLE when ctx ends first.
func (r *Replica) waitRevision(ctx context.Context, rev int64) error {
	return r.waitApplying(ctx, fmt.Sprintf("writes at or below revision %d", rev), func() (bool, error) {
		if !r.leadsLocked() {
			return true, r.notLeaderLocked()
		}
		var proposed int64 // the newest revision this term may still apply
		if r.mu.lastProposedTerm == r.mu.term {
			proposed = r.mu.lastProposedTS
		}
		return !r.mu.drawing && r.mu.resolvedTS >= min(rev, proposed), nil
	})
}

// waitApplying waits until done, called with mu held, reports true (with
// its error), checking it again each time the applied index moves or
// leadership is lost. Errors: done's, or UNAVAILABLE naming what it waited
// for when ctx ends or the replica stops first.
func (r *Replica) waitApplying(ctx context.Context, what string, done func() (bool, error)) error {
	for {
		r.mu.Lock()
		ok, err := done()
		if ok {
			r.mu.Unlock()
			return err
		}
		ch := r.mu.lease.appliedChLocked()
		r.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: %v waiting for %s", r.RangeID, ctx.Err(), what)
		case <-r.stopped:
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d stopped", r.RangeID)
		}
	}
}

// Uninitialized reports whether the replica still waits for its first
// snapshot (see the package function Uninitialized).
func (r *Replica) Uninitialized() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return IsUninitialized(r.mu.desc)
}

// CountKeys counts the range's live keys as this replica has applied them
// (it reads every key).
func (r *Replica) CountKeys() (int64, error) {
	r.mu.Lock()
	span, as := r.spanLocked(), r.mu.applied
	r.mu.Unlock()
	var n int64
	err := storage.MVCCScan(r.cfg.Engine, span, max(as.Newest(), 1), func(*kvpb.KeyValue) error {
		n++
		return nil
	})
	return n, err
}
