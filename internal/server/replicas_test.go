package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// A range moves to a node that held none of it: a learner there catches
// up by snapshot and is promoted, a replica elsewhere is removed, and the
// new replica then leads and serves every key written before and after.
func TestMoveAReplicaToANewNode(t *testing.T) {
	c := startCluster(t, 4, func(_ int, cfg *Config) { cfg.ReplicationFactor = 3 })
	cli := client(t, c, 0)
	for i := range 50 {
		putRetry(t, cli, fmt.Sprintf("k%02d", i), "before")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	n := c.Node(0)
	ranges, err := n.router.Ranges(ctx)
	if err != nil || len(ranges) != 1 {
		t.Fatalf("ranges: %v %v", ranges, err)
	}
	d := ranges[0]
	newNode := c.Node(3).ID()
	if d.ReplicaOn(newNode) != nil {
		t.Fatalf("node 4 already holds %v", d)
	}
	nd, err := n.addReplica(ctx, d, newNode)
	if err != nil {
		t.Fatal(err)
	}
	if rd := nd.ReplicaOn(newNode); rd == nil || rd.GetLearner() || len(nd.GetReplicas()) != 4 {
		t.Fatalf("after the add: %v", nd)
	}
	old := c.Node(1).ID()
	nd, err = n.removeReplicaRetry(ctx, nd, old)
	if err != nil {
		t.Fatal(err)
	}
	if nd.ReplicaOn(old) != nil || len(nd.GetReplicas()) != 3 {
		t.Fatalf("after the remove: %v", nd)
	}
	putRetry(t, cli, "k50", "after")
	// The new replica leads and answers.
	rep := c.Node(3).store.Replica(d.GetRangeId())
	if rep == nil {
		t.Fatal("node 4 holds no replica")
	}
	for _, r := range []int{0, 2} {
		if lr := c.Node(r).store.Replica(d.GetRangeId()); lr != nil && lr.Status().IsLeader {
			if err := lr.TransferLeadershipTo(ctx, nd.ReplicaOn(newNode).ID()); err != nil {
				t.Fatal(err)
			}
		}
	}
	deadline := time.Now().Add(20 * time.Second)
	for !rep.Status().IsLeader {
		if time.Now().After(deadline) {
			t.Fatal("the new replica never led")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cli4 := client(t, c, 3)
	resp, err := cli4.Get(ctx, "k", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || resp.Count != 51 {
		t.Fatalf("keys through the new leader: %v %v", resp, err)
	}
	// Its own descriptor agrees, and the index does.
	if got := rep.Descriptor(); got.ReplicaOn(old) != nil || got.ReplicaOn(newNode) == nil {
		t.Fatalf("the new replica's descriptor: %v", got)
	}
	if err := n.router.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ranges, _ = n.router.Ranges(ctx)
	if !sameReplicaNodes(ranges[0], nd) {
		t.Fatalf("index %v, range %v", ranges[0], nd)
	}
}

func sameReplicaNodes(a, b *metapb.RangeDescriptor) bool {
	if len(a.GetReplicas()) != len(b.GetReplicas()) {
		return false
	}
	for _, rd := range a.GetReplicas() {
		if b.ReplicaOn(rd.GetNodeId()) == nil {
			return false
		}
	}
	return true
}
