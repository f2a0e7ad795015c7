package server

import (
	"context"
	"time"
)

// Bounds of the lock sweeper.
const (
	// lockSweepEvery is how often the sweeper looks for stale locks.
	lockSweepEvery = time.Second
	// lockStaleAfter is how old a txn's lock must be for the sweeper to
	// resolve it: past the txn's abandonment (2 s), so that a live
	// coordinator, which resolves its txns one round after they commit,
	// is rarely raced.
	lockStaleAfter = 5 * time.Second
	// maxSweptLocks bounds the locks one sweep resolves per range.
	maxSweptLocks = 64
	// lockSweepTimeout bounds one lock's resolution.
	lockSweepTimeout = 10 * time.Second
)

// runLockSweeper resolves, on the ranges this node leads, the locks of
// cross-range txns that no request met for lockStaleAfter (their
// coordinator died, or its resolution failed): such a lock holds the
// range's feeds, and so every watch of its keys, below its revision until
// someone resolves it.
func (n *Node) runLockSweeper() {
	defer n.wg.Done()
	t := time.NewTicker(lockSweepEvery)
	defer t.Stop()
	base, cancelAll := context.WithCancel(context.Background())
	defer cancelAll()
	go func() {
		<-n.stop
		cancelAll()
	}()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		for _, r := range n.store.Replicas() {
			for _, li := range r.StaleLocks(time.Now().Add(-lockStaleAfter), maxSweptLocks) {
				select {
				case <-n.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(base, lockSweepTimeout)
				if err := n.txns.ResolveLock(ctx, li); err != nil {
					n.log.Debug("stale txn lock not resolved", "range", r.RangeID, "err", err)
				}
				cancel()
			}
		}
	}
}
