// Package ap is Concord's AP keyspaces: keys whose values are CRDTs
// (package crdt), replicated leaderless on the nodes of a consistent-hash
// ring, that stay writable on both sides of a partition and converge after
// it heals. It owns placement (rendezvous hashing over the members),
// quorum reads and writes with sloppy quorums and hinted handoff, read
// repair, and the node's AP data in its Pebble engine (Local; engine key
// kind 0x06, see storage/ap.go). Membership comes from memberlist
// (Gossip); node-to-node calls travel over the peer gRPC port (Service,
// GRPCPeers).
//
// # A write (Node.Update)
//
//  1. Plan the key's N slots: its preference list is the first N members
//     in rendezvous order; a slot whose node is down, or fails, goes to a
//     fallback: first the live nodes after the list, then the live nodes
//     again (so a node cut off from every other still fills all slots,
//     as Riak's fallback vnodes do). A fallback holds the state as a HINT
//     for the preferred node. A node whose last call failed is taken as
//     down for suspectTime, or until a call to it succeeds, as the
//     membership takes seconds to see a node cut off.
//  2. Read the key from R slots and merge (with this node's own copy).
//  3. Under the key's lock, apply the operation to the merged state as
//     this node's actor, and store the result durably (fsync) BEFORE any
//     other node sees it: this node's copy always holds every update it
//     minted (crdt rule 1).
//  4. Send the state to every slot; acknowledge once W slots stored it
//     durably. The remaining slots finish in the background.
//
// # A read (Node.Read)
//
// Fetch the key from R slots (a fallback answers with its replica and
// hints merged), merge, answer; when every slot answered, send the full
// merge to the preferred nodes that answered with less (read repair).
//
// # Handoff
//
// Every HandoffInterval a node offers the hints it holds to their nodes
// that are alive, and deletes each hint its node stored, unless it grew
// meanwhile.
//
// # Anti-entropy
//
// Every AntiEntropyInterval a node compares a Merkle tree of the replicas
// it shares with each live peer, per keyspace, and exchanges the keys of
// the leaves that differ both ways (merkle.go), so replicas converge for
// keys nobody reads, whatever hints were lost.
//
// # Per-replica reads
//
// Node.Replica returns this node's own replica of a key, whether the node
// is in its preference list, and how many hints it holds under it: what
// Redis's CONCORD REPLICA answers (internal/resp), and how the
// fault-injection harness sees whether the replicas agree, which a
// quorum Read, merging them, cannot show.
//
// # Keyspaces
//
// Each keyspace has its N, R and W (Config.Keyspaces; the records live in
// the meta range, internal/server loads them), DefaultKeyspace otherwise.
//
// What is not here yet: ONE/QUORUM/ALL per command, and the garbage
// collection of tombstones, of hints for nodes that left for good and of
// replicas on nodes no longer preferred.
package ap
