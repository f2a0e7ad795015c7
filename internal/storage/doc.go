// Package storage is a node's single Pebble engine: every range's Raft log,
// Raft and applied state, the meta range's raw system keys, and the MVCC
// history of user keys, all in one keyspace so that one batch with one fsync
// can persist the work of many ranges (group commit).
//
// # Engine key layout
//
// The first byte of an engine key picks its kind:
//
//	0x01 <range id, 8 bytes BE> <suffix>   range-local state (not replicated
//	                                        data; owned by one replica):
//	     'a'                                 AppliedState
//	     'd'                                 local copy of the RangeDescriptor
//	     'h'                                 raftpb.HardState
//	     'l' <index, 8 bytes BE>             raft log entry
//	     't'                                 TruncatedState
//	0x02 <global key>                        raw system value (the meta range's
//	                                        non-MVCC keys, keys.MetaSpan)
//	0x03 <escaped global key> <^rev, 8 BE>  one MVCC version of a global key;
//	                                        versions sort newest first
//	0x04 <name>                              node-local values: the Ident,
//	                                        the address book ("book" <node
//	                                        id, 8 BE>) and the meta range's
//	                                        descriptor as last known ("meta")
//	0x05 <escaped global key> 'l'            the lock a cross-range txn holds
//	                                        on the key (txn.go)
//	0x05 <escaped global key> 'm' <txn, 8>  a txn's marker or record there
//	0x06 'r'|'h' <keyspace, 4 BE> ...        AP keyspace replicas and hints
//	                                        (ap.go; outside every range)
//
// Escaping keeps the order of global keys and makes the encoding prefix-free,
// so that all versions of one key are contiguous and a span of global keys
// maps to a span of engine keys: every 0x00 byte becomes 0x00 0xFF and the
// key ends with 0x00 0x01.
//
// # Value encodings
//
// MVCC values use a small binary format: a kind byte (1 value, 2 tombstone),
// then uvarint create_revision, uvarint version, uvarint lease and the raw
// value. Applied, truncated and ident states have fixed small formats (see
// values.go); hard states, log entries and descriptors are protobuf. Every
// decoder returns an error wrapping ErrCorrupt on bad bytes and never panics.
//
// # Use
//
//  1. Open the engine once per node; Close it last.
//  2. Write through a Batch (NewBatch): it is indexed, so reads through the
//     batch (it is a Reader) see its own writes. Commit(true) returns only
//     after the batch is durable; then Close it. A Batch is not safe for
//     concurrent use.
//  3. Read through any Reader: the Engine (newest committed state), a Batch,
//     or a Snapshot (a consistent point-in-time view; Close it when done).
//
// Values returned by any function here are owned by the caller.
package storage
