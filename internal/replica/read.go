package replica

import (
	"context"

	"github.com/concorddb/concord/internal/concordpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// Read serves a read: a Range or read-only Txn in req.Op, or a system read
// in req.Sys. Serializable Ranges read this replica's applied state as it
// is; everything else is linearizable and needs the leader lease (see
// lease.go). The read sees one consistent state: the applied state it
// reports, read at that revision.
func (r *Replica) Read(ctx context.Context, req *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
	if !req.GetOp().GetRange().GetSerializable() && !r.cfg.UnsafeNoReadLease {
		if err := r.waitLease(ctx); err != nil {
			return nil, err
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
	if seq%2 == 0 {
		out, err := r.readAt(r.cfg.Engine, span, term, as, req)
		if r.dropSeq.Load() == seq {
			return out, err
		}
	}
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	as, err := storage.LoadAppliedState(snap, r.RangeID)
	if err != nil {
		return nil, err
	}
	return r.readAt(snap, span, term, as, req)
}

// readAt serves req from rd, whose state includes everything applied up to
// as (and perhaps more, at higher revisions).
func (r *Replica) readAt(rd storage.Reader, span keys.Span, term uint64, as storage.AppliedState, req *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
	out := &concordpb.BatchResponse{Revision: max(as.MaxTS, 1), RaftTerm: term}
	var err error
	if req.GetSys() != nil {
		out.Sys, err = evalSysRead(rd, span, req.GetSys())
	} else {
		out.Resp, err = eval.ReadOp(rd, span, req.GetOp(), as.MaxTS, as.CompactedRev)
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
		rev = as.MaxTS
	}
	switch {
	case rev > 0 && rev < as.CompactedRev:
		return 0, 0, 0, concordpb.Errorf(concordpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")
	case rev > max(as.MaxTS, 1):
		return 0, 0, 0, concordpb.Errorf(concordpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	}
	hash, err = storage.MVCCHash(snap, span, rev)
	return hash, rev, as.CompactedRev, err
}
