// Package crdt holds the conflict-free replicated data types behind
// Concord's AP keyspaces, their causality metadata and their binary
// encoding. It is pure: no I/O, no goroutines, no clock of its own (the
// hybrid logical clock reads a physical time source it is given).
//
// # Types
//
//   - Register: a last-writer-wins register ordered by (HLC timestamp,
//     actor). A delete is a write of a tombstone.
//   - Counter and FloatCounter: one (sequence, total) entry per actor, the
//     entry with the higher sequence winning a merge, plus a reset baseline
//     per actor (what a SET or DEL observed), so that a reset removes the
//     increments it saw and keeps the concurrent ones.
//   - Set: an add-wins observed-remove set. Every add mints a dot
//     (actor, sequence) recorded in the set's causal context (a version
//     vector); a remove drops the dots it observed. In a merge a dot
//     survives unless the other side's context holds it and the other side
//     no longer has it, so an add concurrent with a remove wins.
//   - Str: a string value: a Register plus an integer and a float Counter
//     added to it (INCR on "5" gives "6").
//   - Hash: a map from field to Str.
//   - Object: what one key holds: one slot per kind, an expiry Register,
//     and per kind the stamp of its last write; the key's visible kind is
//     the live kind written last.
//
// # Rules
//
//  1. Only an actor mints its own dots and advances its own counter
//     entries, and only from a state that contains everything it minted
//     before (the AP engine guarantees it by keeping the coordinator's
//     copy durable before it ships the state).
//  2. Merge is idempotent, commutative and associative: replicas that
//     received the same states in any order, any number of times, hold
//     equal states, byte for byte in their encoding.
//  3. Encode is deterministic (maps in key order) and starts with the
//     version byte EncodingVersion; Decode checks every length and every
//     invariant and returns an error wrapping ErrCorrupt, never panics.
package crdt
