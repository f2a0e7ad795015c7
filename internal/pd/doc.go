// Package pd owns the placement driver's decisions: given the cluster's
// state (nodes, range descriptors, leaders, load) it says which replica and
// leadership changes to make next. It owns no loop, no clock and no I/O:
// every decision is a pure, deterministic function of a State and Limits
// (the same input gives the same output, on any node, in any Go version),
// so the executor on the meta range's leader only builds the State, calls
// Decide, and carries out the returned Ops.
//
// # The executor's loop
//
//  1. Every few seconds, build a State from the meta range (node records,
//     range descriptors with their generations) and node status (liveness,
//     leaders, bytes, QPS), and check it with State.Validate.
//  2. ops := Decide(state, limits).
//  3. Carry out the ops in the order given, one at a time, each only if
//     its range's descriptor generation still equals Op.Generation (the
//     descriptor changed since the decision otherwise: skip the op, the
//     next call decides again). AddLearner, Promote and RemoveReplica are
//     Raft conf changes (ConfChangeV2); TransferLeader is a Raft leadership
//     transfer (leases follow leaders).
//  4. Go back to 1. Decide emits the next step of a move only once the
//     State shows the previous one done, and it re-emits a Promote every
//     call while the learner is there: the executor promotes only a
//     learner that has caught up (its snapshot applied, its log within a
//     few entries of the leader's) and otherwise skips the op.
//
// # Where replicas go
//
// A range's target replica set is chosen by weighted rendezvous
// (highest-random-weight) hashing: every member node (known, not Dead, not
// Draining) gets the score w/-ln(u), u uniform in (0,1) from a fixed hash
// of (range id, node id) and w the node's Capacity (all weights equal
// unless every member reports one), and the target is the want =
// min(ReplicationFactor, members) best-scoring nodes, picked greedily so
// that they sit in distinct zones when there are enough: each pick takes
// the best-scoring node among those sharing their zone (the full locality,
// most specific tier) with the fewest picks so far, then their more general
// tiers (region) with the fewest. Adding one node to N changes the target
// of a range only when the new node scores into it, so about RF/(N+1) of
// the ranges move one replica each: 1/(N+1) of the replicas, all of them
// onto the new node, which is the least any placement can move while
// giving the new node its share (TestMovedFraction measures it).
//
// A node that is merely not Live (down for less than the dead-node
// timeout) keeps its place in the hashing, so a restart moves nothing:
// nothing is added on it while it is down, and its replicas stay. Dead is
// the signal to re-create a node's replicas elsewhere.
//
// # Rules every decision follows
//
//   - One operation in flight per range: a range with a learner gets only
//     that learner's Promote (when the learner is a target on a live node)
//     or its removal (when it is not a target any more), nothing else.
//   - ADD BEFORE REMOVE: a range at or under its target size first gains a
//     learner on a missing target and promotes it; a voter is removed only
//     from a range with more voters than want. So a move never takes a
//     range below min(RF, its voters), and a dead or draining node's
//     replicas are replaced first and removed after.
//   - A voter is removed only if the live voters left are a quorum of the
//     new config; the last replica is never removed; a range whose live
//     voters are not a quorum of its config, or whose leader is unknown or
//     not live, gets no operation (no conf change can commit there).
//   - The removed voter is, in order: one on a dead or unknown node, on a
//     draining node, on a node that is not live, then the one the hashing
//     ranks lowest. So an over-replicated range (RF lowered) loses its
//     lowest-ranked replica; an under-replicated one (RF raised, dead node)
//     gains its best-ranked missing target.
//   - The leader's replica is never removed: its leadership is transferred
//     first, to the remaining live voter leading the fewest ranges.
//   - A draining node's leaderships leave it first, before its replicas
//     move (a dead or down node leads nothing once Raft elects elsewhere,
//     and Decide waits for that). Then leaderships are balanced by count,
//     below every replica move: a node
//     leading more than ceil(ranges/nodes)+1 hands one to a voter that
//     would still lead no more than that; then by load: a node whose led
//     QPS is above 1.25x the mean hands a range to a voter that stays at
//     or below it. Each such move lowers a potential (leaders above the
//     threshold, then the sum of squared loads), so balancing ends.
//
// # Order and rate limits
//
// Candidate ops are ranked by Priority (Finish, Repair, Drain, Rebalance,
// Leader), then by how close the range is to losing its quorum, then by
// range id, and taken in that order while Limits allow: at most MaxOps per
// call, at most MaxOpsPerNode per node per call (TiKV PD's store limits:
// an AddLearner counts on the node receiving the snapshot, a RemoveReplica
// on the node losing it unless that node is dead, a TransferLeader on both
// ends; a Promote moves no data and counts only in MaxOps), and at most
// MaxLearnersPerNode learners (snapshots in flight) on one node, counting
// those already in the State. A repair thus always gets a node's budget
// before a rebalance does.
//
// # Fewer nodes than RF
//
// When fewer member nodes than ReplicationFactor remain, every range is
// placed on all of them: draining one of 3 nodes at RF 3 leaves ranges of 2
// voters. Refusing such a decommission (as etcd's strict reconfig check
// refuses a member change that costs quorum) is the caller's choice;
// UnderReplicated reports it.
package pd
