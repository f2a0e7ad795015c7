package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// An idle cluster of many ranges goes quiet: once nothing is asked, every
// range quiesces, but for the two that each node's health check reads every
// second (the meta range and the one holding the key "health"). A write or
// a read through etcd's API afterwards is served as before, and wakes only
// the range it touches.
func TestIdleRangesQuiesce(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := context.Background()
	const ranges = 12
	for i := 1; i < ranges; i++ {
		if _, _, err := c.Node(0).Split(ctx, []byte(fmt.Sprintf("q/%02d", i))); err != nil {
			t.Fatalf("split %d: %v", i, err)
		}
	}
	cli := client(t, c, 1)
	if _, err := cli.Put(ctx, "q/05x", "v"); err != nil {
		t.Fatal(err)
	}
	// Every node's router learns the ranges (a read across all of them),
	// so that a read below goes straight to its range.
	for i := range c.Size() {
		if _, err := client(t, c, i).Get(ctx, "q/", clientv3.WithPrefix()); err != nil {
			t.Fatal(err)
		}
	}
	health := keys.User([]byte("health"))
	// awake lists the replicas that tick, but for the health check's.
	awake := func() (out []string) {
		for i := range c.Size() {
			for _, r := range c.Node(i).store.Replicas() {
				d := r.Descriptor()
				if r.Quiesced() || r.RangeID == store.MetaRangeID || (keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}).Contains(health) {
					continue
				}
				out = append(out, fmt.Sprintf("node %d range %d", i+1, r.RangeID))
			}
		}
		return out
	}
	// Quiescing takes 10 idle ticks (1 s) after the last request.
	deadline := time.Now().Add(20 * time.Second)
	for len(awake()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("replicas still awake after 20 s of idleness: %v", awake())
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 20 {
		time.Sleep(100 * time.Millisecond)
		if a := awake(); len(a) > 0 {
			t.Fatalf("idle, and yet these woke up: %v", a)
		}
	}

	// A read and a write through another node are served, and wake the
	// one range they touch (on each of its three replicas).
	resp, err := client(t, c, 2).Get(ctx, "q/05x")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get after quiescing: %v, %v", resp, err)
	}
	if _, err := cli.Put(ctx, "q/07x", "w"); err != nil {
		t.Fatal(err)
	}
	if a := awake(); len(a) != 2*3 {
		t.Fatalf("after a read and a write on two ranges, awake: %v; want their 6 replicas", a)
	}
	resp, err = cli.Get(ctx, "q/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 2 {
		t.Fatalf("prefix get across quiesced ranges: %v, %v", resp, err)
	}
}
