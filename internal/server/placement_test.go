package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// allRanges is every range as node i's router finds it in the index.
func allRanges(t *testing.T, c *LocalCluster, i int) []*metapb.RangeDescriptor {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	rs, err := c.Node(i).allDescriptors(ctx)
	if err != nil {
		return nil
	}
	return rs
}

// waitRanges waits until ok holds for every range.
func waitRanges(t *testing.T, c *LocalCluster, i int, what string, ok func(d *metapb.RangeDescriptor) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		rs := allRanges(t, c, i)
		good := len(rs) > 0
		for _, d := range rs {
			good = good && ok(d)
		}
		if good {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ranges never %s: %v", what, rs)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func voters(d *metapb.RangeDescriptor) int {
	v := 0
	for _, rd := range d.GetReplicas() {
		if !rd.GetLearner() {
			v++
		}
	}
	return v
}

// The placement driver spreads replicas onto a 4th node, and re-creates
// a dead node's replicas on the others, keeping every range at three
// voters and every key readable.
func TestPlacementSpreadsAndHeals(t *testing.T) {
	c := startCluster(t, 4, func(_ int, cfg *Config) {
		cfg.PlacementInterval = 100 * time.Millisecond
		cfg.DeadNodeTimeout = 2 * time.Second
	})
	cli := client(t, c, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	for _, k := range []string{"c", "f", "i", "l", "o", "r"} {
		if _, _, err := c.Node(0).Split(ctx, []byte(k)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 60 {
		putRetry(t, cli, fmt.Sprintf("%c%02d", 'a'+i%26, i), "v")
	}
	n4 := c.Node(3).ID()
	held := func() int {
		k := 0
		for _, d := range allRanges(t, c, 0) {
			if d.ReplicaOn(n4) != nil {
				k++
			}
		}
		return k
	}
	deadline := time.Now().Add(60 * time.Second)
	for held() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("node 4 holds %d of 8 ranges after a minute", held())
		}
		time.Sleep(100 * time.Millisecond)
	}
	waitRanges(t, c, 0, "at three voters, no learner", func(d *metapb.RangeDescriptor) bool { return voters(d) == 3 && len(d.GetReplicas()) == 3 })

	// A node that holds replicas dies for good: its replicas come back
	// elsewhere.
	victim := 1
	if c.Node(0).router.MetaDescriptor().ReplicaOn(c.Node(1).ID()) == nil {
		victim = 2
	}
	dead := c.Node(victim).ID()
	c.StopNode(victim)
	waitRanges(t, c, 0, "rid of the dead node at three voters", func(d *metapb.RangeDescriptor) bool {
		return d.ReplicaOn(dead) == nil && voters(d) == 3 && len(d.GetReplicas()) == 3
	})
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil || resp.Count < 60 {
		t.Fatalf("keys after the heal: %v %v", resp, err)
	}
	putRetry(t, cli, "after", "1")
}
