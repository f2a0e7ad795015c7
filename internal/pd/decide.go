package pd

import (
	"fmt"
	"slices"
)

// quorum is the number of voters a config of n voters needs.
func quorum(n int) int { return n/2 + 1 }

// candidate is the one op Decide would give a range, before limits.
type candidate struct {
	op Op
	// alts are, for an AddLearner, the missing targets in rank order
	// (op.Node first): limits may take another than the first.
	alts []uint64
	// margin is live voters minus quorum: ranges nearer to losing quorum
	// go first within a priority.
	margin int
}

// Decide returns the operations to carry out next, in the order to carry
// them out: at most one per range, within l, by the rules of the package
// doc. The same s and l give the same ops. It panics if s.Validate or
// l.Validate fails. The caller owns the returned slice.
func Decide(s State, l Limits) []Op {
	if err := s.Validate(); err != nil {
		panic(err)
	}
	if err := l.Validate(); err != nil {
		panic(err)
	}
	v := newView(s)
	leaders := v.leaderCounts()
	var cands []candidate
	for _, r := range sortedRanges(s) {
		if c, ok := v.rangeOp(r, leaders); ok {
			cands = append(cands, c)
		}
	}
	slices.SortStableFunc(cands, func(a, b candidate) int {
		if a.op.Priority != b.op.Priority {
			return int(a.op.Priority - b.op.Priority)
		}
		if a.margin != b.margin {
			return a.margin - b.margin
		}
		return cmpU64(a.op.RangeID, b.op.RangeID)
	})

	b := newBudget(v, l)
	var ops []Op
	busy := map[uint64]bool{} // ranges given an op in this call
	for _, c := range cands {
		if b.exhausted() {
			break
		}
		op, ok := b.take(v, c)
		if !ok {
			continue
		}
		ops = append(ops, op)
		busy[op.RangeID] = true
	}
	return append(ops, v.balanceLeaders(b, busy)...)
}

// sortedRanges returns pointers into s.Ranges, by range id.
func sortedRanges(s State) []*Range {
	out := make([]*Range, len(s.Ranges))
	for i := range s.Ranges {
		out[i] = &s.Ranges[i]
	}
	slices.SortFunc(out, func(a, b *Range) int { return cmpU64(a.ID, b.ID) })
	return out
}

// hasLeader reports whether r's leader is known, a voter and live: the
// replica every conf change and transfer is proposed through.
func (v *view) hasLeader(r *Range) bool {
	return r.Leader != 0 && slices.Contains(r.Voters, r.Leader) && v.live(r.Leader)
}

// liveCount is the number of ids on live nodes.
func (v *view) liveCount(ids []uint64) int {
	n := 0
	for _, id := range ids {
		if v.live(id) {
			n++
		}
	}
	return n
}

// leaderCounts is the number of ranges each node leads, for picking the
// least loaded transfer target.
func (v *view) leaderCounts() map[uint64]int {
	m := map[uint64]int{}
	for i := range v.s.Ranges {
		if r := &v.s.Ranges[i]; v.hasLeader(r) {
			m[r.Leader]++
		}
	}
	return m
}

// rangeOp is the op range r needs next, if any, before limits.
func (v *view) rangeOp(r *Range, leaders map[uint64]int) (candidate, bool) {
	if v.want == 0 || !v.hasLeader(r) {
		return candidate{}, false
	}
	liveVoters := v.liveCount(r.Voters)
	if liveVoters < quorum(len(r.Voters)) {
		return candidate{}, false
	}
	c := candidate{margin: liveVoters - quorum(len(r.Voters))}
	mk := func(kind OpKind, node uint64, p Priority, reason string, args ...any) candidate {
		c.op = Op{Kind: kind, RangeID: r.ID, Generation: r.Generation, Node: node, Priority: p, Reason: fmt.Sprintf(reason, args...)}
		return c
	}
	targets := v.targets(r.ID)
	isTarget := func(id uint64) bool {
		return slices.ContainsFunc(targets, func(t scored) bool { return t.n.ID == id })
	}

	if len(r.Learners) > 0 {
		learners := slices.Sorted(slices.Values(r.Learners))
		for _, id := range learners {
			if isTarget(id) && v.live(id) {
				return mk(Promote, id, Finish, "learner is a target"), true
			}
		}
		for _, id := range learners {
			if !isTarget(id) {
				// Removing a learner costs no data and frees the range.
				return mk(RemoveReplica, id, Finish, "learner n%d %s", id, v.why(id)), true
			}
		}
		return candidate{}, false // learners on down target nodes: wait
	}

	// A draining leader hands over first, before its range's replica
	// moves, so a decommission takes load off the node at once.
	if v.nodes[r.Leader].Draining {
		t, ok := v.transferTarget(r, r.Leader, targets, leaders)
		if ok {
			c = mk(TransferLeader, r.Leader, Drain, "leader n%d draining", r.Leader)
			c.op.Target = t
			return c, true
		}
	}

	// Voters not in the target, worst first.
	var extra []uint64
	for _, id := range r.Voters {
		if !isTarget(id) {
			extra = append(extra, id)
		}
	}
	rank := v.ranked(r.ID)
	rankOf := func(id uint64) int {
		return slices.IndexFunc(rank, func(s scored) bool { return s.n.ID == id }) // -1: not a member
	}
	slices.SortFunc(extra, func(a, b uint64) int {
		if ba, bb := v.badness(a), v.badness(b); ba != bb {
			return bb - ba
		}
		if ra, rb := rankOf(a), rankOf(b); ra != rb {
			return rb - ra // lowest ranked (largest index) first
		}
		return cmpU64(a, b)
	})

	if len(r.Voters) > v.want {
		for _, x := range extra {
			if v.liveCount(r.Voters)-b2i(v.live(x)) < quorum(len(r.Voters)-1) {
				continue
			}
			why := fmt.Sprintf("%d voters > %d; n%d %s", len(r.Voters), v.want, x, v.why(x))
			if x == r.Leader {
				t, ok := v.transferTarget(r, x, targets, leaders)
				if !ok {
					continue
				}
				c = mk(TransferLeader, x, Finish, "%s", why)
				c.op.Target = t
				return c, true
			}
			return mk(RemoveReplica, x, Finish, "%s", why), true
		}
		return candidate{}, false
	}

	var missing []uint64
	for _, t := range targets {
		if !slices.Contains(r.Voters, t.n.ID) && v.live(t.n.ID) {
			missing = append(missing, t.n.ID)
		}
	}
	if len(missing) > 0 {
		worst := 0
		if len(extra) > 0 {
			worst = v.badness(extra[0])
		}
		switch {
		case len(r.Voters) < v.want:
			c = mk(AddLearner, missing[0], Repair, "under-replicated %d/%d", len(r.Voters), v.want)
		case worst == 3:
			c = mk(AddLearner, missing[0], Repair, "replace n%d: %s", extra[0], v.why(extra[0]))
		case worst == 2:
			c = mk(AddLearner, missing[0], Drain, "replace n%d: %s", extra[0], v.why(extra[0]))
		default:
			c = mk(AddLearner, missing[0], Rebalance, "replace n%d: %s", extra[0], v.why(extra[0]))
		}
		c.alts = missing
		return c, true
	}

	return candidate{}, false
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// why names what is wrong with a replica's node, for Op.Reason.
func (v *view) why(id uint64) string {
	n := v.nodes[id]
	switch {
	case n == nil:
		return "unknown"
	case n.Dead:
		return "dead"
	case n.Draining:
		return "draining"
	case !n.Live:
		return "down"
	}
	return "not a target"
}

// transferTarget picks the voter of r, other than from, to lead r: a
// leadable one, targets before others, then the one leading the fewest
// ranges, then the lowest id.
func (v *view) transferTarget(r *Range, from uint64, targets []scored, leaders map[uint64]int) (uint64, bool) {
	var best uint64
	bestKey := [2]int{}
	for _, id := range r.Voters {
		if id == from || !v.leadable(id) {
			continue
		}
		notTarget := b2i(!slices.ContainsFunc(targets, func(t scored) bool { return t.n.ID == id }))
		key := [2]int{notTarget, leaders[id]}
		if best == 0 || key[0] < bestKey[0] || (key[0] == bestKey[0] && (key[1] < bestKey[1] || (key[1] == bestKey[1] && id < best))) {
			best, bestKey = id, key
		}
	}
	return best, best != 0
}

// budget tracks Limits within one Decide call.
type budget struct {
	l        Limits
	ops      int
	perNode  map[uint64]int
	learners map[uint64]int // learners on each node, the State's (of ranges that can stream) included
}

func newBudget(v *view, l Limits) *budget {
	b := &budget{l: l, perNode: map[uint64]int{}, learners: map[uint64]int{}}
	for i := range v.s.Ranges {
		r := &v.s.Ranges[i]
		// A range without a leader or quorum streams no snapshot: its
		// learners must not hold other ranges' repairs back.
		if !v.hasLeader(r) || v.liveCount(r.Voters) < quorum(len(r.Voters)) {
			continue
		}
		for _, id := range r.Learners {
			b.learners[id]++
		}
	}
	return b
}

func (b *budget) exhausted() bool { return b.ops >= b.l.MaxOps }

// nodeFree reports whether node id has per-node budget left.
func (b *budget) nodeFree(id uint64) bool { return b.perNode[id] < b.l.MaxOpsPerNode }

// take returns c's op (an AddLearner maybe retargeted to another missing
// target) and charges it, or false if the limits leave no room for it.
func (b *budget) take(v *view, c candidate) (Op, bool) {
	op := c.op
	switch op.Kind {
	case Promote:
	case AddLearner:
		i := slices.IndexFunc(c.alts, func(id uint64) bool {
			return b.nodeFree(id) && b.learners[id] < b.l.MaxLearnersPerNode
		})
		if i < 0 {
			return Op{}, false
		}
		op.Node = c.alts[i]
		b.perNode[op.Node]++
		b.learners[op.Node]++
	case RemoveReplica:
		if v.badness(op.Node) != 3 { // a dead node does no work to lose one
			if !b.nodeFree(op.Node) {
				return Op{}, false
			}
			b.perNode[op.Node]++
		}
	case TransferLeader:
		if !b.nodeFree(op.Node) || !b.nodeFree(op.Target) {
			return Op{}, false
		}
		b.perNode[op.Node]++
		b.perNode[op.Target]++
	}
	b.ops++
	return op, true
}
