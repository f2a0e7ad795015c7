// Package txn runs etcd Txns and DeleteRanges whose keys lie in several
// ranges: atomically, serializably, at one revision, and acknowledged
// after one consensus round (parallel commits, as CockroachDB's, on
// Percolator's primary-record scheme). It owns the coordinator, which runs
// on the gateway that received the request, and the resolution of the
// locks such txns leave, by whoever meets them.
//
// # The protocol
//
//  1. The coordinator decides the txn's path (the branch of every txn in
//     it): it reads its compares at the cluster's current revision S; if the
//     path writes nothing the txn is a read at S. Otherwise it draws the
//     commit revision C from the TSO (one number, so revisions stay dense
//     and one txn is one revision) and reads the compares again at C-1,
//     where the txn serializes.
//  2. It splits the txn's keys by range and sends each range its part
//     (cmdpb.TxnStageRequest), all at once. Each range that the path
//     writes on (a participant) evaluates its part at C and, in one
//     consensus round, locks every key it writes (the lock holds the write)
//     and leaves its marker at its anchor key; the first participant's
//     marker is the txn's record and lists every participant. A range the
//     path only reads answers as a read at C, without a round. With one
//     participant the part commits at once, with no locks (one-phase).
//  3. The txn is committed as soon as every participant has staged (the
//     commit point: anyone can tell it later from the markers), and the
//     coordinator answers the client then. In the background it resolves
//     the txn: the record says COMMITTED, every lock becomes a version at
//     C, the markers and then the record are deleted.
//
// A staging is refused (TXN_ABORTED) where a read at C or above was served
// before it, or a key has a version at or above C; a key locked by another
// txn answers LOCKED (the coordinator waits on that txn, or wounds it if
// younger: wound-wait, so two txns never wait on each other). A refused
// txn is aborted (its record says ABORTED, its locks are dropped) and runs
// again with a new revision, up to maxAttempts times, keeping the
// priority of its first attempt. Request errors (COMPACTED, FUTURE_REV,
// ...) abort it and reach the client.
//
// # Locks that others meet
//
// A read at R or a write that meets a lock at C <= R (the range waits a
// moment first) asks ResolveLock: it reads the txn's record; COMMITTED or
// ABORTED settle it; STAGING with every participant's marker present is
// committed; a participant's marker absent past AbandonAfter (the
// coordinator is presumed dead) is prevented, by writing an ABORTED marker
// there, which its staging can never pass, and the txn is aborted. A lock
// with no record is prevented the same way at the record's anchor. So a
// SIGKILLed coordinator leaves nothing half visible, and nothing waits for
// it to come back longer than AbandonAfter.
package txn
