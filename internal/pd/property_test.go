package pd

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// randomState is a cluster of 1 to 9 nodes in up to 4 zones (some in a
// second region), some down, dead or draining, with ranges on random
// nodes (dead ones too), some with a learner, some with QPS.
func randomState(rng *rand.Rand) State {
	s := State{ReplicationFactor: []int{1, 2, 3, 3, 5}[rng.IntN(5)]}
	nodes := 1 + rng.IntN(9)
	zones := 1 + rng.IntN(4)
	for i := range nodes {
		n := Node{ID: uint64(i + 1), Live: true}
		if zones > 1 {
			region := "eu"
			if rng.IntN(4) == 0 {
				region = "us"
			}
			n.Locality = []Tier{{"region", region}, {"zone", fmt.Sprintf("z%d", rng.IntN(zones))}}
		}
		switch rng.IntN(10) {
		case 0:
			n.Live = false
		case 1:
			n.Live, n.Dead = false, true
		case 2:
			n.Draining = true
		}
		s.Nodes = append(s.Nodes, n)
	}
	for id := range 5 + rng.IntN(30) {
		perm := rng.Perm(nodes)
		nv := 1 + rng.IntN(min(nodes, 5))
		r := Range{ID: uint64(id + 1), Bytes: rng.Int64N(1 << 30)}
		for _, p := range perm[:nv] {
			r.Voters = append(r.Voters, uint64(p+1))
		}
		if nv < nodes && rng.IntN(4) == 0 {
			r.Learners = []uint64{uint64(perm[nv] + 1)}
		}
		if rng.IntN(3) == 0 {
			r.QPS = float64(rng.IntN(1000))
		}
		s.Ranges = append(s.Ranges, r)
	}
	elect(&s)
	return s
}

func randomLimits(rng *rand.Rand) Limits {
	return Limits{MaxOps: 1 + rng.IntN(20), MaxOpsPerNode: 1 + rng.IntN(5), MaxLearnersPerNode: 1 + rng.IntN(3)}
}

// TestProperty runs Decide and the simulated executor to a fixed point on
// random clusters. step checks every step's safety (no range that had a
// quorum loses it, no last replica goes, no voter count drops below the
// target, one op per range). Then every down node is resolved to live or
// dead, and the second fixed point must have every range that kept its
// quorum on exactly min(RF, eligible) eligible nodes in as many zones as
// can be.
func TestProperty(t *testing.T) {
	const runs = 400
	for seed := range uint64(runs) {
		rng := rand.New(rand.NewPCG(seed, 17))
		s := randomState(rng)
		l := randomLimits(rng)
		start := clone(s)
		fail := func(phase string, err error) {
			t.Fatalf("seed %d (%s): %v\nstart: %+v\nlimits: %+v", seed, phase, err, start, l)
		}
		if _, err := stabilize(&s, l, 2000); err != nil {
			fail("down nodes", err)
		}
		for i := range s.Nodes {
			if n := &s.Nodes[i]; !n.Live && !n.Dead {
				n.Live = rng.IntN(2) == 0
				n.Dead = !n.Live
			}
		}
		elect(&s)
		if _, err := stabilize(&s, l, 2000); err != nil {
			fail("resolved", err)
		}
		if err := checkPlaced(&s); err != nil {
			fail("fixed point", err)
		}
		if got := Decide(s, l); len(got) != 0 {
			fail("fixed point", fmt.Errorf("Decide still returns %v", got))
		}
	}
}

// TestDeterministic checks that the order of nodes and ranges in a State
// does not change the decision.
func TestDeterministic(t *testing.T) {
	for seed := range uint64(100) {
		rng := rand.New(rand.NewPCG(seed, 3))
		s := randomState(rng)
		l := Limits{MaxOps: 8, MaxOpsPerNode: 2, MaxLearnersPerNode: 1}
		want := Decide(s, l)
		shuffled := clone(s)
		rng.Shuffle(len(shuffled.Nodes), func(i, j int) { shuffled.Nodes[i], shuffled.Nodes[j] = shuffled.Nodes[j], shuffled.Nodes[i] })
		rng.Shuffle(len(shuffled.Ranges), func(i, j int) { shuffled.Ranges[i], shuffled.Ranges[j] = shuffled.Ranges[j], shuffled.Ranges[i] })
		for i := range shuffled.Ranges {
			r := &shuffled.Ranges[i]
			rng.Shuffle(len(r.Voters), func(i, j int) { r.Voters[i], r.Voters[j] = r.Voters[j], r.Voters[i] })
		}
		if got := Decide(shuffled, l); !slices.Equal(got, want) {
			t.Fatalf("seed %d: shuffled state gives\n%v\nwant\n%v", seed, got, want)
		}
	}
}

// placedCluster is n unlabelled live nodes and ranges 1..ranges at their
// targets.
func placedCluster(n, ranges, rf int) State {
	s := State{ReplicationFactor: rf}
	for i := range n {
		s.Nodes = append(s.Nodes, Node{ID: uint64(i + 1), Live: true})
	}
	for id := range uint64(ranges) {
		t := Targets(s, id+1)
		s.Ranges = append(s.Ranges, Range{ID: id + 1, Voters: t, Leader: t[0]})
	}
	return s
}

// TestMovedFraction adds one node to N and measures, after Decide and the
// executor reach a fixed point, the fraction of replicas that moved. The
// new node enters a range's top RF with probability RF/(N+1) and then
// displaces exactly one replica, so the expected fraction of the
// RF·ranges replicas moved is (ranges·RF/(N+1))/(ranges·RF) = 1/(N+1):
// exactly the new node's fair share, the least any placement can move.
// Every moved replica must land on the new node.
func TestMovedFraction(t *testing.T) {
	const ranges = 1000
	l := Limits{MaxOps: 10000, MaxOpsPerNode: 10000, MaxLearnersPerNode: 10000}
	for _, c := range []struct{ n, rf int }{{3, 3}, {4, 3}, {9, 3}, {9, 5}} {
		s := placedCluster(c.n, ranges, c.rf)
		before := clone(s)
		s.Nodes = append(s.Nodes, Node{ID: uint64(c.n + 1), Live: true})
		if _, err := stabilize(&s, l, 100); err != nil {
			t.Fatal(err)
		}
		moved := 0
		for i := range s.Ranges {
			for _, id := range s.Ranges[i].Voters {
				if !slices.Contains(before.Ranges[i].Voters, id) {
					moved++
					if id != uint64(c.n+1) {
						t.Fatalf("r%d gained n%d, not the new node", s.Ranges[i].ID, id)
					}
				}
			}
		}
		got := float64(moved) / float64(ranges*c.rf)
		want := 1 / float64(c.n+1)
		// The count of ranges moved is binomial(1000, RF/(N+1)): its
		// standard deviation is under 1.6% of the range count, so 15%
		// of the expectation is more than 3 of them in every case here.
		t.Logf("%d -> %d nodes, RF %d: moved %d of %d replicas = %.4f, expected 1/(N+1) = %.4f", c.n, c.n+1, c.rf, moved, ranges*c.rf, got, want)
		if math.Abs(got-want) > 0.15*want {
			t.Errorf("%d -> %d nodes: moved fraction %.4f, want %.4f ± 15%%", c.n, c.n+1, got, want)
		}
	}
}

// TestWeighted checks the capacity weighting: at RF 1 a node's share of
// ranges is its share of the capacity.
func TestWeighted(t *testing.T) {
	const ranges = 6000
	caps := []int64{100, 100, 100, 300}
	s := State{ReplicationFactor: 1}
	for i, c := range caps {
		s.Nodes = append(s.Nodes, Node{ID: uint64(i + 1), Live: true, Capacity: c})
	}
	count := map[uint64]int{}
	for id := range uint64(ranges) {
		count[Targets(s, id+1)[0]]++
	}
	for i, c := range caps {
		got := float64(count[uint64(i+1)]) / ranges
		want := float64(c) / 600
		t.Logf("n%d capacity %d: %.3f of ranges, expected %.3f", i+1, c, got, want)
		if math.Abs(got-want) > 0.03 {
			t.Errorf("n%d: share %.3f, want %.3f ± 0.03", i+1, got, want)
		}
	}
	// One node without a capacity: all weigh the same.
	s.Nodes[0].Capacity = 0
	count = map[uint64]int{}
	for id := range uint64(ranges) {
		count[Targets(s, id+1)[0]]++
	}
	if got := float64(count[4]) / ranges; math.Abs(got-0.25) > 0.03 {
		t.Errorf("unweighted: n4 share %.3f, want 0.25", got)
	}
}

// TestStatus checks the helpers the executor and `concord node status`
// read.
func TestStatus(t *testing.T) {
	s := State{ReplicationFactor: 3, Nodes: []Node{{ID: 1, Live: true}, {ID: 2, Live: true}, {ID: 3, Dead: true}, {ID: 4, Draining: true, Live: true}}}
	s.Ranges = []Range{
		{ID: 1, Voters: []uint64{1, 2, 3}, Leader: 1, Bytes: 10, QPS: 5}, // under-replicated: n3 dead
		{ID: 2, Voters: []uint64{1, 2, 4}, Leader: 4, Bytes: 20, QPS: 7},
		{ID: 3, Voters: []uint64{3, 4, 9}, Learners: []uint64{1}, Leader: 4, Bytes: 40}, // n9 unknown: counts as dead
	}
	if got := UnderReplicated(s); got != 2 {
		t.Errorf("UnderReplicated = %d, want 2", got)
	}
	if got := Unavailable(s); got != 1 {
		t.Errorf("Unavailable = %d, want 1 (r3: 1 live voter of 3)", got)
	}
	if got := DrainRemaining(s, 4); got != 2 {
		t.Errorf("DrainRemaining(n4) = %d, want 2", got)
	}
	want := []NodeStat{
		{ID: 1, Voters: 2, Learners: 1, Leaders: 1, Bytes: 70, LeaderQPS: 5},
		{ID: 2, Voters: 2, Bytes: 30},
		{ID: 3, Voters: 2, Bytes: 50},
		{ID: 4, Voters: 2, Leaders: 2, Bytes: 60, LeaderQPS: 7},
		{ID: 9, Voters: 1, Bytes: 40},
	}
	if got := NodeStats(s); !slices.Equal(got, want) {
		t.Errorf("NodeStats =\n%+v\nwant\n%+v", got, want)
	}
	if got := NodeStats(s)[0].Replicas(); got != 3 {
		t.Errorf("Replicas = %d, want 3", got)
	}
}

func TestValidate(t *testing.T) {
	ok := State{ReplicationFactor: 3, Nodes: []Node{{ID: 1}}, Ranges: []Range{{ID: 1, Voters: []uint64{1}}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for name, mutate := range map[string]func(*State){
		"rf 0":           func(s *State) { s.ReplicationFactor = 0 },
		"node twice":     func(s *State) { s.Nodes = append(s.Nodes, Node{ID: 1}) },
		"range twice":    func(s *State) { s.Ranges = append(s.Ranges, Range{ID: 1, Voters: []uint64{1}}) },
		"no voter":       func(s *State) { s.Ranges[0].Voters = nil },
		"voter+learner":  func(s *State) { s.Ranges[0].Learners = []uint64{1} },
		"node id 0":      func(s *State) { s.Nodes[0].ID = 0 },
		"replica node 0": func(s *State) { s.Ranges[0].Voters = []uint64{0} },
	} {
		s := clone(ok)
		mutate(&s)
		if s.Validate() == nil {
			t.Errorf("%s: Validate accepted %+v", name, s)
		}
	}
	if (Limits{MaxOps: 1, MaxOpsPerNode: 1}).Validate() == nil {
		t.Error("Limits.Validate accepted MaxLearnersPerNode 0")
	}
	if DefaultLimits().Validate() != nil {
		t.Error("DefaultLimits invalid")
	}
}

func TestParseLocality(t *testing.T) {
	loc, err := ParseLocality("region=eu,zone=a")
	if err != nil || !slices.Equal(loc, []Tier{{"region", "eu"}, {"zone", "a"}}) {
		t.Fatalf("ParseLocality = %v, %v", loc, err)
	}
	if got := FormatLocality(loc); got != "region=eu,zone=a" {
		t.Errorf("FormatLocality = %q", got)
	}
	for _, bad := range []string{"zone", "zone=", "=a", "zone=a,zone=b", "region=eu,"} {
		if _, err := ParseLocality(bad); err == nil {
			t.Errorf("ParseLocality(%q) accepted", bad)
		}
	}
}
