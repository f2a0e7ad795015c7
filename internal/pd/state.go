package pd

import (
	"errors"
	"fmt"
	"strings"
)

// Tier is one level of a node's locality, as CockroachDB's --locality
// names it: Key "region", Value "eu".
type Tier struct {
	Key, Value string
}

// ParseLocality parses a --locality flag value, "region=eu,zone=a", into
// tiers, most general first. The empty string is no locality.
func ParseLocality(s string) ([]Tier, error) {
	if s == "" {
		return nil, nil
	}
	var out []Tier
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" || v == "" {
			return nil, fmt.Errorf("pd: locality tier %q is not key=value", part)
		}
		if seen[k] {
			return nil, fmt.Errorf("pd: locality %q repeats tier %q", s, k)
		}
		seen[k] = true
		out = append(out, Tier{Key: k, Value: v})
	}
	return out, nil
}

// FormatLocality is the inverse of ParseLocality.
func FormatLocality(loc []Tier) string {
	parts := make([]string, len(loc))
	for i, t := range loc {
		parts[i] = t.Key + "=" + t.Value
	}
	return strings.Join(parts, ",")
}

// Node is one node as the placement driver sees it.
type Node struct {
	// ID is the node's id (meta's node record).
	ID uint64
	// Locality is the node's --locality, most general tier first. Nodes
	// with equal localities share a zone; nodes without one all share one
	// zone.
	Locality []Tier
	// Live means the node was heard from recently: it can take new
	// replicas and lead ranges.
	Live bool
	// Dead means the node has been down longer than --dead-node-timeout:
	// its replicas are to be re-created elsewhere. Dead overrides Live.
	Dead bool
	// Draining means the node is being decommissioned: everything moves
	// off it and nothing is placed on it.
	Draining bool
	// Capacity is the node's weight in the hashing (its disk bytes, say):
	// a node of twice the capacity gets about twice the replicas. It is
	// used only when every member node reports one (> 0); otherwise all
	// weigh the same.
	Capacity int64
}

// Range is one range as the placement driver sees it.
type Range struct {
	// ID is the range id.
	ID uint64
	// Generation is the descriptor's generation; every Op carries it so
	// the executor applies the op only to the descriptor it was decided on.
	Generation uint64
	// Voters and Learners are the node ids holding a voting or learner
	// replica. Invariant: no node appears twice across both.
	Voters, Learners []uint64
	// Leader is the node id of the Raft leader, 0 if unknown. A leader
	// that is not among Voters counts as unknown (status lags the
	// descriptor).
	Leader uint64
	// Bytes is the range's size, for NodeStats.
	Bytes int64
	// QPS is the load on the range's leader (requests per second), for
	// leadership balance by load.
	QPS float64
}

// State is everything a decision depends on.
type State struct {
	// Nodes are the node records; order does not matter.
	Nodes []Node
	// Ranges are the range descriptors; order does not matter.
	Ranges []Range
	// ReplicationFactor is the number of voters every range should have
	// (--replication-factor).
	ReplicationFactor int
}

// Validate reports a malformed State: a replication factor below 1, a
// node or range id that is 0 or repeated, a node holding two replicas of
// one range, a range with no replica. Decide panics on such a State.
func (s State) Validate() error {
	if s.ReplicationFactor < 1 {
		return fmt.Errorf("pd: replication factor %d < 1", s.ReplicationFactor)
	}
	nodes := map[uint64]bool{}
	for _, n := range s.Nodes {
		if n.ID == 0 {
			return errors.New("pd: node id 0")
		}
		if nodes[n.ID] {
			return fmt.Errorf("pd: node %d listed twice", n.ID)
		}
		nodes[n.ID] = true
	}
	ranges := map[uint64]bool{}
	for _, r := range s.Ranges {
		if r.ID == 0 {
			return errors.New("pd: range id 0")
		}
		if ranges[r.ID] {
			return fmt.Errorf("pd: range %d listed twice", r.ID)
		}
		ranges[r.ID] = true
		if len(r.Voters) == 0 {
			return fmt.Errorf("pd: range %d has no voter", r.ID)
		}
		held := map[uint64]bool{}
		for _, id := range append(append([]uint64(nil), r.Voters...), r.Learners...) {
			if id == 0 || held[id] {
				return fmt.Errorf("pd: range %d: node %d holds two replicas (or is 0)", r.ID, id)
			}
			held[id] = true
		}
	}
	return nil
}

// Limits bound what one Decide call returns (TiKV PD's store limits are
// the model). Every field must be positive.
type Limits struct {
	// MaxOps bounds the ops of one call.
	MaxOps int
	// MaxOpsPerNode bounds the ops of one call that load one node (see
	// the package doc for what counts where).
	MaxOpsPerNode int
	// MaxLearnersPerNode bounds the learners on one node, those in the
	// State included: the snapshots streaming into it at once.
	MaxLearnersPerNode int
}

// DefaultLimits suit a Decide call every few seconds: 64 ops keep one
// call's work to what the executor finishes before the next; 4 per node
// and 2 snapshots in flight per node keep a rebalance from taking more
// than a slice of a node's disk and network from its clients (TiKV's
// default store limit is 15 operations a minute).
func DefaultLimits() Limits {
	return Limits{MaxOps: 64, MaxOpsPerNode: 4, MaxLearnersPerNode: 2}
}

// Validate reports a limit that is not positive.
func (l Limits) Validate() error {
	if l.MaxOps < 1 || l.MaxOpsPerNode < 1 || l.MaxLearnersPerNode < 1 {
		return fmt.Errorf("pd: limits %+v: every limit must be at least 1", l)
	}
	return nil
}

// OpKind is what an Op does.
type OpKind int

const (
	// AddLearner adds a learner replica of RangeID on Node (a conf change,
	// then a snapshot).
	AddLearner OpKind = iota + 1
	// Promote makes the learner on Node a voter, once it has caught up.
	Promote
	// RemoveReplica removes Node's replica (voter or learner) of RangeID.
	RemoveReplica
	// TransferLeader moves RangeID's leadership from Node to Target.
	TransferLeader
)

// String is the kind's name as the testdata prints it.
func (k OpKind) String() string {
	switch k {
	case AddLearner:
		return "add-learner"
	case Promote:
		return "promote"
	case RemoveReplica:
		return "remove"
	case TransferLeader:
		return "transfer-leader"
	}
	return fmt.Sprintf("OpKind(%d)", int(k))
}

// Priority is why an op was chosen, in the order ops are chosen.
type Priority int

const (
	// Finish completes or undoes a move without moving data: promoting a
	// learner, removing a learner that is no target, removing a voter from
	// a range that has more than its target, or the leader transfer that
	// must precede that.
	Finish Priority = iota + 1
	// Repair restores a range's replication: replicas for an
	// under-replicated range or for replicas on dead nodes.
	Repair
	// Drain moves replicas and leaderships off draining nodes.
	Drain
	// Rebalance moves a replica to where the hashing places it (a node
	// joined or came back from being dead).
	Rebalance
	// Leader balances leaderships by count and load.
	Leader
)

// String is the priority's name as the testdata prints it.
func (p Priority) String() string {
	switch p {
	case Finish:
		return "finish"
	case Repair:
		return "repair"
	case Drain:
		return "drain"
	case Rebalance:
		return "rebalance"
	case Leader:
		return "leader"
	}
	return fmt.Sprintf("Priority(%d)", int(p))
}

// Op is one operation for the executor.
type Op struct {
	// Kind is what to do.
	Kind OpKind
	// RangeID and Generation name the range and the descriptor generation
	// the op was decided on.
	RangeID, Generation uint64
	// Node is the node whose replica is added, promoted or removed; for a
	// TransferLeader, the current leader.
	Node uint64
	// Target is a TransferLeader's new leader; 0 for other kinds.
	Target uint64
	// Priority is the op's class (why it was chosen first).
	Priority Priority
	// Reason says why, for logs and `concord node status`.
	Reason string
}

// String formats the op as the testdata prints it.
func (o Op) String() string {
	if o.Kind == TransferLeader {
		return fmt.Sprintf("r%d: %s n%d -> n%d (%s: %s)", o.RangeID, o.Kind, o.Node, o.Target, o.Priority, o.Reason)
	}
	return fmt.Sprintf("r%d: %s n%d (%s: %s)", o.RangeID, o.Kind, o.Node, o.Priority, o.Reason)
}
