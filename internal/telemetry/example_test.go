package telemetry_test

import (
	"fmt"
	"time"

	"github.com/concorddb/concord/internal/telemetry"
)

// A node creates one Metrics, hands it to its components, and serves
// m.Handler() at /metrics.
func Example() {
	m := telemetry.New(telemetry.Options{})
	m.ObserveProposals(3)
	m.ObserveBatchCommit(2*time.Millisecond, 4096, true /* sync */)
	m.LeaderChanged(2, 1, 7)
	fams, _ := m.Registry().Gather()
	for _, f := range fams {
		if f.GetName() == "concord_raft_proposals_total" {
			fmt.Println(f.GetName(), f.GetMetric()[0].GetCounter().GetValue())
		}
	}
	fmt.Println(m.Events().Since(0)[0].Message)
	// Output:
	// concord_raft_proposals_total 3
	// range 2: leader is node 1 (term 7)
}
