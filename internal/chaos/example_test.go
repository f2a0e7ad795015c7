package chaos_test

import (
	"fmt"

	"github.com/concorddb/concord/internal/chaos"
)

// Checking a recorded history offline: client 1 reads "a" after client 0's
// write of "b" completed, a stale read.
func ExampleCheck() {
	ops := []chaos.Op{
		{Process: 0, Workload: chaos.WorkloadRegister, Key: "k", Kind: chaos.KindWrite, Value: "a", Start: 0, End: 10, Result: chaos.Ok},
		{Process: 0, Workload: chaos.WorkloadRegister, Key: "k", Kind: chaos.KindWrite, Value: "b", Start: 20, End: 30, Result: chaos.Ok},
		{Process: 1, Workload: chaos.WorkloadRegister, Key: "k", Kind: chaos.KindRead, Out: "a", Start: 40, End: 50, Result: chaos.Ok},
		// A write that timed out stays open: it may apply later, or never.
		{Process: 2, Workload: chaos.WorkloadRegister, Key: "j", Kind: chaos.KindWrite, Value: "c", Start: 0, End: 10, Result: chaos.Info},
		{Process: 3, Workload: chaos.WorkloadRegister, Key: "j", Kind: chaos.KindRead, Out: "", Start: 20, End: 30, Result: chaos.Ok},
	}
	rep, err := chaos.Check(ops, chaos.CheckOptions{})
	if err != nil {
		panic(err)
	}
	for _, k := range rep.Keys {
		fmt.Println(k.Key, k.Result)
	}
	// Output:
	// j Ok
	// k Illegal
}
