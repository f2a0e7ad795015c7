package pd

import (
	"fmt"
	"slices"
)

// hotLoadRatio is how far above the mean a node's led QPS must be before
// a leadership moves for load: below it, the brief stall of a transfer
// costs more than the evening out gains, and small noise in QPS samples
// would make leaders flap.
const hotLoadRatio = 1.25

// leaderBalancer holds the leadership counts and loads one Decide call
// plans against, updated as it picks transfers.
type leaderBalancer struct {
	v *view
	// nodes are the leadable nodes, by id.
	nodes []uint64
	count map[uint64]int
	load  map[uint64]float64
	// ranges are the ranges a balancing transfer may move: a live leader,
	// no learner, no op yet in this call; by id.
	ranges []*Range
	// leader is each range's leader as planned so far.
	leader map[uint64]uint64
	// maxCount is ceil(ranges/nodes)+1: no node is to lead more.
	maxCount int
	hotLoad  float64
}

// balanceLeaders returns the Leader-priority transfers that fit in b, for
// ranges not in busy: first count moves, then load moves (package doc).
func (v *view) balanceLeaders(b *budget, busy map[uint64]bool) []Op {
	lb := &leaderBalancer{v: v, count: map[uint64]int{}, load: map[uint64]float64{}, leader: map[uint64]uint64{}}
	for _, n := range v.members {
		if v.leadable(n.ID) {
			lb.nodes = append(lb.nodes, n.ID)
		}
	}
	if len(lb.nodes) == 0 {
		return nil
	}
	led, total := 0, 0.0
	for _, r := range sortedRanges(v.s) {
		if !v.hasLeader(r) {
			continue
		}
		led++
		lb.count[r.Leader]++
		lb.load[r.Leader] += r.QPS
		total += r.QPS
		lb.leader[r.ID] = r.Leader
		if !busy[r.ID] && len(r.Learners) == 0 && v.liveCount(r.Voters) >= quorum(len(r.Voters)) {
			lb.ranges = append(lb.ranges, r)
		}
	}
	lb.maxCount = (led+len(lb.nodes)-1)/len(lb.nodes) + 1
	lb.hotLoad = total / float64(len(lb.nodes)) * hotLoadRatio

	var ops []Op
	// Each move lowers (leaders above maxCount, sum of squared loads), so
	// the loop ends; the bound on ranges is a second guard.
	for range len(lb.ranges) + 1 {
		if b.exhausted() {
			break
		}
		op, ok := lb.countMove(b)
		if !ok {
			op, ok = lb.loadMove(b)
		}
		if !ok {
			break
		}
		taken, ok := b.take(v, candidate{op: op})
		if !ok {
			panic(fmt.Sprintf("pd: leader move %v chosen over budget", op))
		}
		lb.apply(taken)
		ops = append(ops, taken)
	}
	return ops
}

func (lb *leaderBalancer) apply(op Op) {
	r := lb.rangeByID(op.RangeID)
	lb.count[op.Node]--
	lb.count[op.Target]++
	lb.load[op.Node] -= r.QPS
	lb.load[op.Target] += r.QPS
	lb.leader[op.RangeID] = op.Target
	// A range moves once per call.
	lb.ranges = slices.DeleteFunc(lb.ranges, func(x *Range) bool { return x.ID == op.RangeID })
}

func (lb *leaderBalancer) rangeByID(id uint64) *Range {
	i := slices.IndexFunc(lb.ranges, func(r *Range) bool { return r.ID == id })
	return lb.ranges[i]
}

// led returns the movable ranges node leads, coldest first (hottest first
// if hot), then by id.
func (lb *leaderBalancer) led(node uint64, hot bool) []*Range {
	var out []*Range
	for _, r := range lb.ranges {
		if lb.leader[r.ID] == node {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b *Range) int {
		switch {
		case a.QPS < b.QPS:
			return b2i(hot)*2 - 1
		case a.QPS > b.QPS:
			return 1 - b2i(hot)*2
		}
		return 0
	})
	return out
}

// sources returns the leadable nodes ordered by key, highest first, then
// by id.
func (lb *leaderBalancer) sources(key func(uint64) float64) []uint64 {
	out := slices.Clone(lb.nodes)
	slices.SortStableFunc(out, func(a, b uint64) int {
		ka, kb := key(a), key(b)
		switch {
		case ka > kb:
			return -1
		case ka < kb:
			return 1
		}
		return 0
	})
	return out
}

// pick returns the voter of r, not from, that ok accepts with the lowest
// key, then the lowest id.
func (lb *leaderBalancer) pick(r *Range, from uint64, b *budget, ok func(uint64) bool, key func(uint64) float64) (uint64, bool) {
	var best uint64
	for _, id := range slices.Sorted(slices.Values(r.Voters)) {
		if id == from || !lb.v.leadable(id) || !b.nodeFree(id) || !ok(id) {
			continue
		}
		if best == 0 || key(id) < key(best) {
			best = id
		}
	}
	return best, best != 0
}

// countMove finds a transfer off a node leading more than maxCount to a
// voter that leads fewer and stays within maxCount.
func (lb *leaderBalancer) countMove(b *budget) (Op, bool) {
	for _, s := range lb.sources(func(id uint64) float64 { return float64(lb.count[id]) }) {
		if lb.count[s] <= lb.maxCount {
			break
		}
		if !b.nodeFree(s) {
			continue
		}
		for _, r := range lb.led(s, false) {
			t, ok := lb.pick(r, s, b, func(t uint64) bool {
				return lb.count[t]+1 <= lb.maxCount && lb.count[t]+1 < lb.count[s]
			}, func(t uint64) float64 { return float64(lb.count[t]) })
			if ok {
				return Op{Kind: TransferLeader, RangeID: r.ID, Generation: r.Generation, Node: s, Target: t, Priority: Leader,
					Reason: fmt.Sprintf("n%d leads %d > %d", s, lb.count[s], lb.maxCount)}, true
			}
		}
	}
	return Op{}, false
}

// loadMove finds a transfer off a node whose led QPS is above hotLoad to
// a voter that stays at or below it and within maxCount.
func (lb *leaderBalancer) loadMove(b *budget) (Op, bool) {
	for _, s := range lb.sources(func(id uint64) float64 { return lb.load[id] }) {
		if lb.load[s] <= lb.hotLoad {
			break
		}
		if !b.nodeFree(s) {
			continue
		}
		for _, r := range lb.led(s, true) {
			if r.QPS <= 0 {
				break
			}
			t, ok := lb.pick(r, s, b, func(t uint64) bool {
				return lb.count[t]+1 <= lb.maxCount && lb.load[t]+r.QPS <= lb.hotLoad
			}, func(t uint64) float64 { return lb.load[t] })
			if ok {
				return Op{Kind: TransferLeader, RangeID: r.ID, Generation: r.Generation, Node: s, Target: t, Priority: Leader,
					Reason: fmt.Sprintf("n%d leads %.0f qps > %.0f", s, lb.load[s], lb.hotLoad)}, true
			}
		}
	}
	return Op{}, false
}
