package pd

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/datadriven"
)

// The datadriven DSL (testdata/*):
//
//	nodes                 one node a line, added or replaced by id:
//	<id> [region=eu,zone=a] [live|down|dead|draining] [capacity=N]
//	mark id=N state=live|down|dead|draining
//	ranges                one range a line, added or replaced by id:
//	<id> voters=1,2,3 [learners=4] [leader=1] [qps=N] [bytes=N]
//	gen-ranges n=N voters=1,2,3 [qps=Q]   ranges 1..N, leaders spread over voters
//	rf n=N                the replication factor
//	decide [max-ops=N] [per-node=N] [learners=N]   prints the ops
//	apply                 applies the last decide's ops, Raft elects
//	stabilize [max-ops=N] [per-node=N] [learners=N] [verbose]
//	                      decide+apply until no op; prints each step
//	show [ranges] [nodes] the state
//	check                 under-replicated, unavailable, placement
//
// Every apply checks the safety rules (sim_test.go) and fails the test on
// a violation.
func TestDatadriven(t *testing.T) {
	datadriven.Walk(t, "testdata", func(t *testing.T, path string) {
		s := &State{ReplicationFactor: 3}
		var last []Op
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			switch td.Cmd {
			case "nodes":
				for _, line := range lines(td.Input) {
					n, err := parseNode(line)
					if err != nil {
						td.Fatalf(t, "%v", err)
					}
					if old := findNode(s, n.ID); old != nil {
						*old = n
					} else {
						s.Nodes = append(s.Nodes, n)
					}
				}
				elect(s)
				return showNodes(s)
			case "mark":
				var id uint64
				var state string
				td.ScanArgs(t, "id", &id)
				td.ScanArgs(t, "state", &state)
				n := findNode(s, id)
				if n == nil {
					td.Fatalf(t, "no node %d", id)
				}
				if err := setState(n, state); err != nil {
					td.Fatalf(t, "%v", err)
				}
				elect(s)
				return showNodes(s)
			case "ranges":
				for _, line := range lines(td.Input) {
					r, err := parseRange(line)
					if err != nil {
						td.Fatalf(t, "%v", err)
					}
					if old := findRange(s, r.ID); old != nil {
						*old = r
					} else {
						s.Ranges = append(s.Ranges, r)
					}
				}
				elect(s)
				return showRanges(s)
			case "gen-ranges":
				var n int
				var voters string
				td.ScanArgs(t, "n", &n)
				td.ScanArgs(t, "voters", &voters)
				vs, err := parseIDs(voters)
				if err != nil {
					td.Fatalf(t, "%v", err)
				}
				var qps float64
				if td.HasArg("qps") {
					td.ScanArgs(t, "qps", &qps)
				}
				s.Ranges = nil
				for i := range n {
					s.Ranges = append(s.Ranges, Range{ID: uint64(i + 1), Voters: slices.Clone(vs), Leader: vs[i%len(vs)], QPS: qps, Bytes: 64 << 20})
				}
				elect(s)
				return fmt.Sprintf("%d ranges\n", n)
			case "rf":
				td.ScanArgs(t, "n", &s.ReplicationFactor)
				return "ok\n"
			case "decide":
				last = Decide(*s, limits(t, td))
				return showOps(last)
			case "apply":
				if err := step(s, last); err != nil {
					td.Fatalf(t, "%v", err)
				}
				n := len(last)
				last = nil
				return fmt.Sprintf("applied %d ops\n", n)
			case "stabilize":
				steps, err := stabilize(s, limits(t, td), 500)
				if err != nil {
					td.Fatalf(t, "%v", err)
				}
				var b strings.Builder
				for i, ops := range steps {
					fmt.Fprintf(&b, "step %d: %s\n", i+1, summarize(ops))
					if td.HasArg("verbose") {
						for _, op := range ops {
							fmt.Fprintf(&b, "  %v\n", op)
						}
					}
				}
				fmt.Fprintf(&b, "stable after %d steps\n", len(steps))
				return b.String()
			case "show":
				all := len(td.CmdArgs) == 0
				var b strings.Builder
				if all || td.HasArg("ranges") {
					b.WriteString(showRanges(s))
				}
				if all || td.HasArg("nodes") {
					b.WriteString(showStats(s))
				}
				return b.String()
			case "check":
				placed := "placed"
				if err := checkPlaced(s); err != nil {
					placed = err.Error()
				}
				return fmt.Sprintf("under-replicated=%d unavailable=%d %s\n", UnderReplicated(*s), Unavailable(*s), placed)
			}
			td.Fatalf(t, "unknown command %q", td.Cmd)
			return ""
		})
	})
}

func lines(input string) []string {
	var out []string
	for _, l := range strings.Split(input, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	return out
}

func limits(t *testing.T, td *datadriven.TestData) Limits {
	l := Limits{MaxOps: 100, MaxOpsPerNode: 100, MaxLearnersPerNode: 100}
	for key, p := range map[string]*int{"max-ops": &l.MaxOps, "per-node": &l.MaxOpsPerNode, "learners": &l.MaxLearnersPerNode} {
		if td.HasArg(key) {
			td.ScanArgs(t, key, p)
		}
	}
	return l
}

func setState(n *Node, state string) error {
	switch state {
	case "live":
		n.Live, n.Dead = true, false
	case "down":
		n.Live = false
	case "dead":
		n.Live, n.Dead = false, true
	case "draining":
		n.Draining = true
	default:
		return fmt.Errorf("unknown node state %q", state)
	}
	return nil
}

func parseNode(line string) (Node, error) {
	f := strings.Fields(line)
	id, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return Node{}, err
	}
	n := Node{ID: id, Live: true}
	for _, tok := range f[1:] {
		switch {
		case strings.HasPrefix(tok, "capacity="):
			if n.Capacity, err = strconv.ParseInt(strings.TrimPrefix(tok, "capacity="), 10, 64); err != nil {
				return Node{}, err
			}
		case strings.Contains(tok, "="):
			if n.Locality, err = ParseLocality(tok); err != nil {
				return Node{}, err
			}
		default:
			if err := setState(&n, tok); err != nil {
				return Node{}, err
			}
		}
	}
	return n, nil
}

func parseIDs(s string) ([]uint64, error) {
	var out []uint64
	for _, p := range strings.Split(s, ",") {
		if p == "" {
			continue
		}
		id, err := strconv.ParseUint(p, 10, 64)
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}

func parseRange(line string) (Range, error) {
	f := strings.Fields(line)
	id, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return Range{}, err
	}
	r := Range{ID: id}
	for _, tok := range f[1:] {
		k, val, _ := strings.Cut(tok, "=")
		switch k {
		case "voters":
			r.Voters, err = parseIDs(val)
		case "learners":
			r.Learners, err = parseIDs(val)
		case "leader":
			r.Leader, err = strconv.ParseUint(val, 10, 64)
		case "qps":
			r.QPS, err = strconv.ParseFloat(val, 64)
		case "bytes":
			r.Bytes, err = strconv.ParseInt(val, 10, 64)
		default:
			err = fmt.Errorf("unknown range field %q", tok)
		}
		if err != nil {
			return Range{}, err
		}
	}
	if r.Leader == 0 && len(r.Voters) > 0 {
		r.Leader = r.Voters[0]
	}
	return r, nil
}

func ids(xs []uint64) string {
	parts := make([]string, len(xs))
	for i, x := range slices.Sorted(slices.Values(xs)) {
		parts[i] = strconv.FormatUint(x, 10)
	}
	return strings.Join(parts, ",")
}

func showNodes(s *State) string {
	var b strings.Builder
	ns := slices.Clone(s.Nodes)
	slices.SortFunc(ns, func(a, b Node) int { return cmpU64(a.ID, b.ID) })
	for _, n := range ns {
		state := "live"
		switch {
		case n.Dead:
			state = "dead"
		case !n.Live:
			state = "down"
		}
		if n.Draining {
			state += ",draining"
		}
		fmt.Fprintf(&b, "n%d %s\n", n.ID, strings.TrimSpace(FormatLocality(n.Locality)+" "+state))
	}
	return b.String()
}

func showRanges(s *State) string {
	var b strings.Builder
	rs := slices.Clone(s.Ranges)
	slices.SortFunc(rs, func(a, b Range) int { return cmpU64(a.ID, b.ID) })
	for _, r := range rs {
		fmt.Fprintf(&b, "r%d voters=%s", r.ID, ids(r.Voters))
		if len(r.Learners) > 0 {
			fmt.Fprintf(&b, " learners=%s", ids(r.Learners))
		}
		fmt.Fprintf(&b, " leader=%d\n", r.Leader)
	}
	return b.String()
}

func showStats(s *State) string {
	var b strings.Builder
	for _, st := range NodeStats(*s) {
		fmt.Fprintf(&b, "n%d: voters=%d learners=%d leaders=%d qps=%.0f\n", st.ID, st.Voters, st.Learners, st.Leaders, st.LeaderQPS)
	}
	return b.String()
}

func showOps(ops []Op) string {
	if len(ops) == 0 {
		return "no ops\n"
	}
	var b strings.Builder
	for _, op := range ops {
		fmt.Fprintf(&b, "%v\n", op)
	}
	return b.String()
}

// summarize counts a step's ops by kind.
func summarize(ops []Op) string {
	count := map[OpKind]int{}
	for _, op := range ops {
		count[op.Kind]++
	}
	var parts []string
	for _, k := range []OpKind{AddLearner, Promote, RemoveReplica, TransferLeader} {
		if count[k] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", count[k], k))
		}
	}
	return strings.Join(parts, ", ")
}
