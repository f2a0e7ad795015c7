package pd_test

import (
	"fmt"

	"github.com/concorddb/concord/internal/pd"
)

// A fourth node joins a 3-node cluster: the range whose target now
// includes it gains a learner there; once promoted, the replica the
// hashing ranks lowest is removed.
func ExampleDecide() {
	s := pd.State{ReplicationFactor: 3}
	for id := uint64(1); id <= 4; id++ {
		s.Nodes = append(s.Nodes, pd.Node{ID: id, Live: true})
	}
	s.Ranges = []pd.Range{{ID: 1, Generation: 7, Voters: []uint64{1, 2, 3}, Leader: 2}}
	fmt.Println("targets:", pd.Targets(s, 1))
	for _, op := range pd.Decide(s, pd.DefaultLimits()) {
		fmt.Println(op)
	}
	s.Ranges[0].Voters = []uint64{1, 2, 3, 4} // the executor added and promoted n4
	s.Ranges[0].Generation = 9
	for _, op := range pd.Decide(s, pd.DefaultLimits()) {
		fmt.Println(op, "at generation", op.Generation)
	}
	fmt.Println("under-replicated:", pd.UnderReplicated(s))
	// Output:
	// targets: [4 2 3]
	// r1: add-learner n4 (rebalance: replace n1: not a target)
	// r1: remove n1 (finish: 4 voters > 3; n1 not a target) at generation 9
	// under-replicated: 0
}
