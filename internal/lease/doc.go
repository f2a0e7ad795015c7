// Package lease owns etcd's leases on Concord: their records in the meta
// range, their expiry, their checkpoints, and the keys attached to them.
//
// One Lessor per node; it serves only while its node leads the meta range
// (the lease records' home), so that expiry is decided in one place. The
// order of things:
//
//  1. The node's meta replica becomes leader in term T: Promote(T) loads
//     every lease record (a linearizable read of the meta range) and starts
//     each lease's clock at its checkpointed remaining TTL (the full TTL if
//     none) plus Config.Extend.
//  2. Tick, called every TickInterval while leading, first sweeps the user
//     keyspace once (Keys.Scan): that rebuilds the lease -> keys index and
//     deletes keys whose lease does not exist. No lease expires and no
//     Revoke runs before this first sweep of the term has finished, so a
//     revocation never misses a key the index has not learnt yet.
//  3. Then each Tick revokes expired leases (at most maxRevokesPerTick),
//     checkpoints the remaining TTL of every long lease once per
//     CheckpointInterval (one meta write per maxCheckpointBatch leases),
//     deletes a second time the keys of leases revoked RevokeGrace ago,
//     and sweeps again every SweepInterval.
//  4. The replica stops leading: Demote forgets everything; the next
//     leader's lessor starts again at step 1.
//
// Time is the Clock's, read only as differences of its readings: with
// time.Now that is Go's monotonic clock, so a wall-clock jump never
// expires a lease early.
//
// A put with a lease goes through Attach first: Attach fails with
// LEASE_NOT_FOUND unless the lease exists, and records the key in the
// index (an over-approximation: a key attached and later re-put without
// the lease stays listed; every deletion is guarded by the key's current
// lease, so a listed key that moved on is left alone).
//
// A revocation (Revoke, or expiry) is, in order: the record is marked
// revoking (one meta write; from now on Attach and KeepAlive refuse the
// lease), every attached key whose lease is still the lease is deleted
// (Keys.Delete: one guarded write per range), the record is deleted (one
// meta write). Only then does Revoke return. A lessor that fails over in
// between leaves the record marked revoking, and the next lessor finishes.
//
// The race "a put checked its lease with Attach, then the lease was
// revoked before the put applied" (the key would outlive its lease) is
// closed by sweeps: RevokeGrace after a revocation its keys are deleted
// once more (a put in flight has applied or failed by then: the gateway's
// requests time out sooner), and every sweep deletes any key whose lease
// does not exist, so such a key is gone within SweepInterval at worst.
//
// Bounds: MaxLeases leases, MaxKeysPerLease keys per lease (so one range's
// deletion for a revocation is one write of bounded size), MaxKeys index
// entries in all. A grant or attach past a bound fails with
// RESOURCE_EXHAUSTED.
package lease
