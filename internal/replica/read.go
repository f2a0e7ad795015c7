package replica

import (
	"context"

	"github.com/concorddb/concord/internal/concordpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/storage"
)

// Read serves a read: a Range or read-only Txn in req.Op, or a system read
// in req.Sys. Serializable Ranges read this replica's applied state as it
// is; everything else is linearizable and needs the leader lease (see
// lease.go). The read sees one consistent engine snapshot.
func (r *Replica) Read(ctx context.Context, req *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
	if !req.GetOp().GetRange().GetSerializable() && !r.cfg.UnsafeNoReadLease {
		if err := r.waitLease(ctx); err != nil {
			return nil, err
		}
	}
	r.mu.Lock()
	span := r.spanLocked()
	term := r.mu.term
	r.mu.Unlock()
	snap := r.cfg.Engine.NewSnapshot()
	defer snap.Close()
	as, err := storage.LoadAppliedState(snap, r.RangeID)
	if err != nil {
		return nil, err
	}
	out := &concordpb.BatchResponse{Revision: max(as.MaxTS, 1), RaftTerm: term}
	if req.GetSys() != nil {
		out.Sys, err = evalSysRead(snap, span, req.GetSys())
	} else {
		out.Resp, err = eval.ReadOp(snap, span, req.GetOp(), as.MaxTS, as.CompactedRev)
	}
	if err != nil {
		return nil, err
	}
	return out, nil
}
