// Package replica owns one node's copy of one range: its Raft RawNode, the
// in-memory view of its log, its proposals, the application of committed
// commands to the node's engine, and its leader lease for reads.
//
// A Replica does no I/O scheduling of its own. The node's store drives every
// replica through one Ready loop, in this order for each round:
//
//  1. Ready: take the RawNode's Ready (if it has one).
//  2. Persist: add the Ready's entries, hard state and snapshot to the
//     store's shared batch. The store commits that batch with ONE fsync for
//     all replicas (group commit).
//  3. AfterPersist: make the persisted entries visible to Raft (memory log).
//     Only now may the Ready's messages be sent: entries are durable BEFORE
//     any acknowledgement for them leaves the node.
//  4. Apply: evaluate the committed commands against the engine, in log
//     order, and wake the clients that proposed them.
//  5. Advance: tell the RawNode the Ready is done.
//
// Writes enter through Write: a per-replica proposer goroutine takes the
// queued writes, decides which of them write by evaluating them against the
// applied state under the lease (a write that touches the keys of one still
// in flight waits for it, see inflight.go), answers the others at once, and
// fetches one revision per writer from the TSO in one call and proposes
// them in revision order, so log order and revision order agree and
// revisions stay dense.
// Reads enter through Read: serializable reads use the applied state as it
// is; linearizable reads need this replica to be the leader and to hold a
// leader lease (see lease.go).
// The steps of transactions across ranges (reservations, stagings, lock
// resolution, markers) enter through Txn (txn.go): their commit revision
// is drawn by the txn's coordinator, not by the proposer, so they apply
// below the range's newest revision, judged per key, and reads and feeds
// keep time consistent around their locks (locks.go).
package replica
