package crdt_test

import (
	"fmt"

	"github.com/concorddb/concord/internal/ap/crdt"
)

// Two replicas increment and add on both sides of a partition; merging
// their states in either order gives the same answer.
func Example() {
	a, b := &crdt.Object{}, &crdt.Object{}
	if _, err := a.Str.IncrBy(1 /* actor */, 2); err != nil {
		panic(err)
	}
	if _, err := b.Str.IncrBy(2 /* actor */, 3); err != nil {
		panic(err)
	}
	a.Set.Add(1, "x")
	b.Set.Add(2, "y")

	ab := a.Clone()
	ab.Merge(b)
	ba := b.Clone()
	ba.Merge(a)
	v, _ := ab.Str.Get()
	fmt.Println(string(v), ab.Set.Members(), string(ab.Encode()) == string(ba.Encode()))
	// Output: 5 [x y] true
}
