package txn

import (
	"bytes"
	"context"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// ResolveLock settles the txn whose lock a request met (see the package
// doc, "Locks that others meet") and returns once the request may be sent
// again: the lock resolved, or, while the txn may still be staging,
// after waiting lockPoll. A txn of lower priority than the caller's (a
// younger one than the txn the caller runs for) is not waited on but
// aborted at once if it has not staged everywhere (wound-wait).
func (c *Coordinator) ResolveLock(ctx context.Context, li *kvpb.LockInfo) error {
	id, rec := li.GetTxnId(), li.GetRecord()
	abandoned := func() bool {
		if p := priorityOf(ctx); p != 0 && p < li.GetCommitTs() {
			return true // wound the younger txn
		}
		return c.cfg.Now().Sub(time.Unix(0, li.GetStagedUnixNanos())) > c.cfg.AbandonAfter
	}
	m, err := c.query(ctx, rec, id)
	if err != nil {
		return err
	}
	if m == nil {
		// No record: the record's staging has not applied yet, or the
		// txn is resolved and its record forgotten (then the lock is
		// gone too).
		still, err := c.lockStill(ctx, li)
		if err != nil || !still {
			return err
		}
		if !abandoned() {
			return pause(ctx)
		}
		if m, err = c.mark(ctx, rec, id, kvpb.TxnStatus_ABORTED, true /* ifAbsent */); err != nil {
			return err
		}
	}
	if m.GetStatus() == kvpb.TxnStatus_STAGING {
		committed, undecided, err := c.staged(ctx, id, rec, m, abandoned())
		if err != nil {
			return err
		}
		if undecided {
			return pause(ctx)
		}
		status := kvpb.TxnStatus_ABORTED
		if committed {
			status = kvpb.TxnStatus_COMMITTED
		}
		if m, err = c.mark(ctx, rec, id, status, false); err != nil {
			return err
		}
	}
	commit := m.GetStatus() == kvpb.TxnStatus_COMMITTED
	if err := c.resolveKeys(ctx, id, commit, [][]byte{li.GetKey()}, nil, false); err != nil {
		return err
	}
	c.finishLater(id, rec, commit, m)
	return nil
}

// staged reports whether every participant of a STAGING txn (its record
// m, at rec) has staged. A participant whose marker is absent is prevented
// from staging (an ABORTED marker) if prevent is set; otherwise the
// answer is undecided.
func (c *Coordinator) staged(ctx context.Context, id uint64, rec []byte, m *kvpb.TxnMeta, prevent bool) (committed, undecided bool, _ error) {
	for _, a := range m.GetParticipants() {
		if bytes.Equal(a, rec) {
			continue
		}
		pm, err := c.query(ctx, a, id)
		if err != nil {
			return false, false, err
		}
		if pm == nil {
			if !prevent {
				return false, true, nil
			}
			if pm, err = c.mark(ctx, a, id, kvpb.TxnStatus_ABORTED, true /* ifAbsent */); err != nil {
				return false, false, err
			}
		}
		if pm.GetStatus() == kvpb.TxnStatus_ABORTED {
			return false, false, nil
		}
		// STAGING, or COMMITTED: resolved, which only a committed txn is.
	}
	return true, false, nil
}

// finishLater resolves, in the background, every lock of a decided txn
// whose record (m, at rec) lists its participants, and deletes its
// markers and record; one resolution per txn at a time.
func (c *Coordinator) finishLater(id uint64, rec []byte, commit bool, m *kvpb.TxnMeta) {
	if _, busy := c.finishing.LoadOrStore(id, struct{}{}); busy {
		return
	}
	started := c.background(c.cfg.ResolveTimeout, func(ctx context.Context) {
		defer c.finishing.Delete(id)
		ps := []participant{{anchor: rec, keys: m.GetKeys()}}
		for _, a := range m.GetParticipants() {
			if bytes.Equal(a, rec) {
				continue
			}
			pm, err := c.query(ctx, a, id)
			if err != nil {
				c.log.Debug("txn: recover: read marker", "txn", txnName(id), "err", err)
				return
			}
			ps = append(ps, participant{anchor: a, keys: pm.GetKeys()})
		}
		if err := c.finish(ctx, id, rec, commit, ps); err != nil {
			c.log.Debug("txn: recover: resolve", "txn", txnName(id), "err", err)
		}
	})
	if !started {
		c.finishing.Delete(id) // the next request that meets a lock of it tries again
	}
}

// query reads txn id's marker at anchor (nil: none).
func (c *Coordinator) query(ctx context.Context, anchor []byte, id uint64) (*kvpb.TxnMeta, error) {
	resp, err := c.r.Send(ctx, keys.Span{Start: anchor}, &cmdpb.BatchRequest{TxnQuery: &cmdpb.TxnQueryRequest{TxnId: id, Anchor: anchor}}, false)
	if err != nil {
		return nil, err
	}
	return resp.GetTxn(), nil
}

// lockStill reports whether the lock li names is still there.
func (c *Coordinator) lockStill(ctx context.Context, li *kvpb.LockInfo) (bool, error) {
	resp, err := c.r.Send(ctx, keys.Span{Start: li.GetKey()}, &cmdpb.BatchRequest{TxnQuery: &cmdpb.TxnQueryRequest{TxnId: li.GetTxnId(), LockKey: li.GetKey()}}, false)
	if err != nil {
		return false, err
	}
	return resp.GetLock().GetTxnId() == li.GetTxnId(), nil
}

// pause waits lockPoll (or until ctx ends, which the caller then sees).
func pause(ctx context.Context) error {
	select {
	case <-time.After(lockPoll):
	case <-ctx.Done():
	}
	return nil
}
