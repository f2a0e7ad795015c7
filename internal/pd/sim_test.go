package pd

import (
	"fmt"
	"slices"
)

// This file is the tests' executor: it applies Ops to a State the way the
// real one changes the cluster, and checks every step against the safety
// rules of the package doc, independently of how Decide reasons.

// clone deep-copies s so a step can be compared with the state before it.
func clone(s State) State {
	out := State{ReplicationFactor: s.ReplicationFactor}
	for _, n := range s.Nodes {
		n.Locality = slices.Clone(n.Locality)
		out.Nodes = append(out.Nodes, n)
	}
	for _, r := range s.Ranges {
		r.Voters = slices.Clone(r.Voters)
		r.Learners = slices.Clone(r.Learners)
		out.Ranges = append(out.Ranges, r)
	}
	return out
}

func findNode(s *State, id uint64) *Node {
	for i := range s.Nodes {
		if s.Nodes[i].ID == id {
			return &s.Nodes[i]
		}
	}
	return nil
}

func findRange(s *State, id uint64) *Range {
	for i := range s.Ranges {
		if s.Ranges[i].ID == id {
			return &s.Ranges[i]
		}
	}
	return nil
}

func isLive(s *State, id uint64) bool {
	n := findNode(s, id)
	return n != nil && n.Live && !n.Dead
}

func liveVoters(s *State, r *Range) int {
	n := 0
	for _, id := range r.Voters {
		if isLive(s, id) {
			n++
		}
	}
	return n
}

func quorate(s *State, r *Range) bool { return liveVoters(s, r) >= len(r.Voters)/2+1 }

// members counts the nodes ranges may be placed on.
func members(s *State) int {
	n := 0
	for _, nd := range s.Nodes {
		if !nd.Dead && !nd.Draining {
			n++
		}
	}
	return n
}

// elect is Raft's part: a range whose leader is gone elects its lowest
// live voter, if its live voters are a quorum.
func elect(s *State) {
	for i := range s.Ranges {
		r := &s.Ranges[i]
		if r.Leader != 0 && slices.Contains(r.Voters, r.Leader) && isLive(s, r.Leader) {
			continue
		}
		r.Leader = 0
		if !quorate(s, r) {
			continue
		}
		for _, id := range slices.Sorted(slices.Values(r.Voters)) {
			if isLive(s, id) {
				r.Leader = id
				break
			}
		}
	}
}

// applyOp carries out op on s, as the executor and Raft would, and
// returns an error if the op breaks a rule it could be checked against.
func applyOp(s *State, op Op) error {
	r := findRange(s, op.RangeID)
	if r == nil {
		return fmt.Errorf("%v: no such range", op)
	}
	if op.Generation != r.Generation {
		return fmt.Errorf("%v: generation %d, range at %d", op, op.Generation, r.Generation)
	}
	if r.Leader == 0 || !isLive(s, r.Leader) || !quorate(s, r) {
		return fmt.Errorf("%v: range has no live leader or quorum (leader n%d)", op, r.Leader)
	}
	isVoter, isLearner := slices.Contains(r.Voters, op.Node), slices.Contains(r.Learners, op.Node)
	switch op.Kind {
	case AddLearner:
		n := findNode(s, op.Node)
		if isVoter || isLearner || n == nil || !n.Live || n.Dead || n.Draining {
			return fmt.Errorf("%v: node holds a replica already or cannot take one", op)
		}
		if len(r.Learners) > 0 {
			return fmt.Errorf("%v: a learner is already in flight", op)
		}
		r.Learners = append(r.Learners, op.Node)
	case Promote:
		if !isLearner || !isLive(s, op.Node) {
			return fmt.Errorf("%v: not a live learner", op)
		}
		r.Learners = slices.DeleteFunc(r.Learners, func(id uint64) bool { return id == op.Node })
		r.Voters = append(r.Voters, op.Node)
	case RemoveReplica:
		switch {
		case isLearner:
			r.Learners = slices.DeleteFunc(r.Learners, func(id uint64) bool { return id == op.Node })
		case isVoter:
			if op.Node == r.Leader {
				return fmt.Errorf("%v: removes the leader", op)
			}
			if len(r.Learners) > 0 {
				return fmt.Errorf("%v: removes a voter while a learner is in flight", op)
			}
			if want := min(s.ReplicationFactor, members(s)); len(r.Voters)-1 < want {
				return fmt.Errorf("%v: leaves %d voters < %d", op, len(r.Voters)-1, want)
			}
			r.Voters = slices.DeleteFunc(r.Voters, func(id uint64) bool { return id == op.Node })
			if !quorate(s, r) {
				return fmt.Errorf("%v: leaves live voters %d of %d, not a quorum", op, liveVoters(s, r), len(r.Voters))
			}
		default:
			return fmt.Errorf("%v: node holds no replica", op)
		}
		if len(r.Voters) == 0 {
			return fmt.Errorf("%v: removes the last voter", op)
		}
	case TransferLeader:
		if op.Node != r.Leader || !slices.Contains(r.Voters, op.Target) || !isLive(s, op.Target) {
			return fmt.Errorf("%v: not from the leader to a live voter", op)
		}
		if n := findNode(s, op.Target); n.Draining {
			return fmt.Errorf("%v: to a draining node", op)
		}
		r.Leader = op.Target
		return nil // no descriptor change
	default:
		return fmt.Errorf("%v: unknown kind", op)
	}
	r.Generation++
	return nil
}

// step applies ops to s in order and checks the whole state after: one
// op per range, and every range that had a quorum keeps it.
func step(s *State, ops []Op) error {
	before := clone(*s)
	seen := map[uint64]bool{}
	for _, op := range ops {
		if seen[op.RangeID] {
			return fmt.Errorf("%v: second op for the range in one call", op)
		}
		seen[op.RangeID] = true
		if err := applyOp(s, op); err != nil {
			return err
		}
	}
	elect(s)
	if err := s.Validate(); err != nil {
		return err
	}
	for i := range before.Ranges {
		r0 := &before.Ranges[i]
		r1 := findRange(s, r0.ID)
		if quorate(&before, r0) && !quorate(s, r1) {
			return fmt.Errorf("r%d lost its quorum: %v -> %v", r0.ID, r0.Voters, r1.Voters)
		}
		if len(r1.Voters)+len(r1.Learners) == 0 {
			return fmt.Errorf("r%d lost its last replica", r0.ID)
		}
	}
	return nil
}

// stabilize runs Decide and step until Decide returns nothing, at most
// maxSteps times, and returns the ops of every step.
func stabilize(s *State, l Limits, maxSteps int) ([][]Op, error) {
	var steps [][]Op
	for range maxSteps {
		ops := Decide(*s, l)
		if len(ops) == 0 {
			return steps, nil
		}
		if err := step(s, ops); err != nil {
			return steps, fmt.Errorf("step %d: %w", len(steps)+1, err)
		}
		steps = append(steps, ops)
	}
	return steps, fmt.Errorf("no fixed point after %d steps", maxSteps)
}

// zoneOf names a node's zone as the placement rules count zones.
func zoneOf(n *Node) string { return FormatLocality(n.Locality) }

// checkPlaced checks a fixed point in which every node is live or dead
// (none down): every range that has a quorum sits on exactly min(RF,
// eligible) eligible nodes, in as many distinct zones as can be, with no
// learner, led by a node that may lead.
func checkPlaced(s *State) error {
	zones := map[string]bool{}
	for i := range s.Nodes {
		n := &s.Nodes[i]
		if n.Live && !n.Dead && !n.Draining {
			zones[zoneOf(n)] = true
		}
	}
	want := min(s.ReplicationFactor, members(s))
	for i := range s.Ranges {
		r := &s.Ranges[i]
		// With no member node left there is nowhere to go: ranges stay.
		if !quorate(s, r) || want == 0 {
			continue
		}
		if len(r.Learners) > 0 || len(r.Voters) != want {
			return fmt.Errorf("r%d: voters %v learners %v, want %d voters", r.ID, r.Voters, r.Learners, want)
		}
		got := map[string]bool{}
		for _, id := range r.Voters {
			n := findNode(s, id)
			if n == nil || !n.Live || n.Dead || n.Draining {
				return fmt.Errorf("r%d: voter n%d is not on an eligible node", r.ID, id)
			}
			got[zoneOf(n)] = true
		}
		if len(got) != min(want, len(zones)) {
			return fmt.Errorf("r%d: voters %v in %d zones, %d possible", r.ID, r.Voters, len(got), min(want, len(zones)))
		}
		if n := findNode(s, r.Leader); n == nil || n.Draining {
			return fmt.Errorf("r%d: leader n%d cannot lead", r.ID, r.Leader)
		}
	}
	return nil
}
