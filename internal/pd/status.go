package pd

import "slices"

// UnderReplicated is the number of ranges with fewer voters on nodes that
// are not dead (nor unknown) than the replication factor: the value of
// concord_ranges_under_replicated. It stays above 0 while fewer member
// nodes than the factor remain, even once Decide has nothing left to do.
func UnderReplicated(s State) int {
	v := newView(s)
	n := 0
	for i := range s.Ranges {
		held := 0
		for _, id := range s.Ranges[i].Voters {
			if v.badness(id) < 3 {
				held++
			}
		}
		if held < s.ReplicationFactor {
			n++
		}
	}
	return n
}

// Unavailable is the number of ranges whose live voters are not a quorum
// of their config: they serve nothing, and Decide leaves them alone.
func Unavailable(s State) int {
	v := newView(s)
	n := 0
	for i := range s.Ranges {
		r := &s.Ranges[i]
		if v.liveCount(r.Voters) < quorum(len(r.Voters)) {
			n++
		}
	}
	return n
}

// NodeStat is one node's share of the cluster, for `concord node status`
// and the dashboard.
type NodeStat struct {
	// ID is the node id.
	ID uint64
	// Voters, Learners and Leaders count the ranges the node holds a
	// voter or learner of, and leads.
	Voters, Learners, Leaders int
	// Bytes is the size of the ranges it holds a replica of.
	Bytes int64
	// LeaderQPS is the load of the ranges it leads.
	LeaderQPS float64
}

// Replicas is the number of replicas left on the node: a draining node is
// drained when it reaches 0.
func (n NodeStat) Replicas() int { return n.Voters + n.Learners }

// NodeStats returns a NodeStat for every node of s, and for every node id
// the ranges name without a record, sorted by id. The caller owns the
// slice.
func NodeStats(s State) []NodeStat {
	m := map[uint64]*NodeStat{}
	get := func(id uint64) *NodeStat {
		if m[id] == nil {
			m[id] = &NodeStat{ID: id}
		}
		return m[id]
	}
	for _, n := range s.Nodes {
		get(n.ID)
	}
	for _, r := range s.Ranges {
		for _, id := range r.Voters {
			get(id).Voters++
			get(id).Bytes += r.Bytes
		}
		for _, id := range r.Learners {
			get(id).Learners++
			get(id).Bytes += r.Bytes
		}
		if r.Leader != 0 && slices.Contains(r.Voters, r.Leader) {
			get(r.Leader).Leaders++
			get(r.Leader).LeaderQPS += r.QPS
		}
	}
	out := make([]NodeStat, 0, len(m))
	for _, st := range m {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b NodeStat) int { return cmpU64(a.ID, b.ID) })
	return out
}

// DrainRemaining is the number of replicas still on node id: a
// decommission's progress, done at 0.
func DrainRemaining(s State, id uint64) int {
	n := 0
	for _, r := range s.Ranges {
		if slices.Contains(r.Voters, id) || slices.Contains(r.Learners, id) {
			n++
		}
	}
	return n
}
