package pd

import (
	"math"
	"slices"
)

// view is a State indexed for decisions. Its maps are only looked up,
// never iterated, so no map order leaks into a decision.
type view struct {
	s     State
	nodes map[uint64]*Node
	// members are the nodes ranges are placed on (not dead, not
	// draining), sorted by id.
	members  []*Node
	weighted bool
	// want is every range's target voter count: min(RF, members).
	want int
}

func newView(s State) *view {
	v := &view{s: s, nodes: make(map[uint64]*Node, len(s.Nodes))}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		v.nodes[n.ID] = n
		if !n.Dead && !n.Draining {
			v.members = append(v.members, n)
		}
	}
	slices.SortFunc(v.members, func(a, b *Node) int { return cmpU64(a.ID, b.ID) })
	v.weighted = len(v.members) > 0
	for _, n := range v.members {
		if n.Capacity <= 0 {
			v.weighted = false
		}
	}
	v.want = min(s.ReplicationFactor, len(v.members))
	return v
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// live reports whether node id is known, live and not dead.
func (v *view) live(id uint64) bool {
	n := v.nodes[id]
	return n != nil && n.Live && !n.Dead
}

// leadable reports whether node id may lead ranges: live, not draining.
func (v *view) leadable(id uint64) bool {
	return v.live(id) && !v.nodes[id].Draining
}

// badness orders the voters to remove first: a replica on a dead or
// unknown node (3), on a draining node (2), on a down node (1), else 0.
func (v *view) badness(id uint64) int {
	n := v.nodes[id]
	switch {
	case n == nil || n.Dead:
		return 3
	case n.Draining:
		return 2
	case !n.Live:
		return 1
	}
	return 0
}

// mix64 is splitmix64's finalizer. The placement of every range depends
// on it: changing it moves almost every replica in every cluster.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// hrw is the rendezvous hash of a (range, node) pair.
func hrw(rangeID, nodeID uint64) uint64 {
	return mix64(mix64(rangeID+0x9e3779b97f4a7c15) ^ (nodeID * 0xc2b2ae3d27d4eb4f))
}

// scored is a member node with its score for one range.
type scored struct {
	n *Node
	h uint64
	w float64 // weighted score; used only when view.weighted
}

// better reports whether a outranks b: higher score, then lower node id.
// Unweighted scores compare as integers, so rank is exact on every
// platform.
func (v *view) better(a, b scored) bool {
	if v.weighted && a.w != b.w {
		return a.w > b.w
	}
	if a.h != b.h {
		return a.h > b.h
	}
	return a.n.ID < b.n.ID
}

// ranked returns the member nodes in rendezvous order for rangeID, best
// first.
func (v *view) ranked(rangeID uint64) []scored {
	out := make([]scored, len(v.members))
	for i, n := range v.members {
		sc := scored{n: n, h: hrw(rangeID, n.ID)}
		if v.weighted {
			// u in (0,1); -ln(u) is exponential, so w/-ln(u) makes the
			// node's chance to rank first proportional to w.
			u := (float64(sc.h>>11) + 0.5) / (1 << 53)
			sc.w = float64(n.Capacity) / -math.Log(u)
		}
		out[i] = sc
	}
	slices.SortFunc(out, func(a, b scored) int {
		if v.better(a, b) {
			return -1
		}
		if v.better(b, a) {
			return 1
		}
		return 0
	})
	return out
}

// zonePath is the locality a node's zone is named by: its tiers, or one
// empty tier for a node without locality (all such nodes share a zone).
func zonePath(n *Node) []Tier {
	if len(n.Locality) == 0 {
		return []Tier{{}}
	}
	return n.Locality
}

// sharedPrefix is the number of leading tiers a and b have in common.
func sharedPrefix(a, b []Tier) int {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return i
}

// diversity is how crowded a candidate's localities are among the nodes
// picked so far: element 0 counts picks in its zone (all tiers equal),
// element 1 those sharing all but its last tier, and so on to its first
// tier. Lower is better, compared element by element.
func diversity(c *Node, picked []scored) []int {
	cp := zonePath(c)
	key := make([]int, len(cp))
	for _, p := range picked {
		shared := sharedPrefix(cp, zonePath(p.n))
		for depth := 1; depth <= shared; depth++ {
			key[len(cp)-depth]++
		}
	}
	return key
}

// cmpDiversity compares diversity keys; a missing element counts 0.
func cmpDiversity(a, b []int) int {
	for i := range max(len(a), len(b)) {
		var x, y int
		if i < len(a) {
			x = a[i]
		}
		if i < len(b) {
			y = b[i]
		}
		if x != y {
			return x - y
		}
	}
	return 0
}

// targets returns rangeID's target voters, best first: v.want members by
// rendezvous rank, in distinct zones while there are zones left.
func (v *view) targets(rangeID uint64) []scored {
	ranked := v.ranked(rangeID)
	picked := make([]scored, 0, v.want)
	used := make([]bool, len(ranked))
	for len(picked) < v.want {
		best := -1
		var bestKey []int
		for i, c := range ranked {
			if used[i] {
				continue
			}
			key := diversity(c.n, picked)
			// ranked is best first: a later candidate wins only with a
			// strictly better locality.
			if best < 0 || cmpDiversity(key, bestKey) < 0 {
				best, bestKey = i, key
			}
		}
		used[best] = true
		picked = append(picked, ranked[best])
	}
	return picked
}

// Targets returns the nodes the hashing places rangeID's voters on in s,
// best first: where Decide moves the range. It is empty when no member
// node is left.
func Targets(s State, rangeID uint64) []uint64 {
	v := newView(s)
	var out []uint64
	for _, t := range v.targets(rangeID) {
		out = append(out, t.n.ID)
	}
	return out
}
