package server

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// etcd's member remove of a member that holds replicas: every range
// drops its replica there (the meta range too, here the member leads it),
// the member leaves the member list, and the cluster keeps every key and
// takes writes with dense revisions.
func TestMemberRemoveMovesReplicasOff(t *testing.T) {
	c := startCluster(t, 3, nil)
	victim := metaLeader(t, c)
	keep := (victim + 1) % 3
	cli := client(t, c, keep)
	for _, k := range []string{"m", "t"} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		if _, _, err := c.Node(keep).Split(ctx, []byte(k)); err != nil {
			t.Fatal(err)
		}
		cancel()
	}
	var last int64
	for i := range 30 {
		last = putRetry(t, cli, fmt.Sprintf("%c%02d", 'a'+i%26, i), "v")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	id := c.Node(victim).ID()
	rm, err := cli.MemberRemove(ctx, id)
	if err != nil {
		t.Fatalf("member remove of the meta leader: %v", err)
	}
	if len(rm.Members) != 2 {
		t.Fatalf("members after the remove: %v", rm.Members)
	}
	if err := c.Node(keep).router.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ranges, err := c.Node(keep).router.Ranges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ranges = append(ranges, c.Node(keep).router.MetaDescriptor())
	if len(ranges) < 4 {
		t.Fatalf("%d ranges after two splits", len(ranges))
	}
	// The ranges' own descriptors say so too.
	for _, r := range c.Node(keep).store.Replicas() {
		if d := r.Descriptor(); d.ReplicaOn(id) != nil {
			t.Errorf("range %d's own descriptor still lists member %x: %v", d.GetRangeId(), id, d.GetReplicas())
		}
	}
	for _, d := range ranges {
		if d.ReplicaOn(id) != nil || len(d.GetReplicas()) != 2 {
			t.Errorf("range %d after the remove: replicas %v", d.GetRangeId(), d.GetReplicas())
		}
	}
	c.StopNode(victim)
	// Two members left, both needed: every key is there and writes go on,
	// the next one at the next revision.
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil || resp.Count < 30 {
		t.Fatalf("keys after the remove: %v %v", resp, err)
	}
	if next := putRetry(t, cli, "after", "1"); next != last+1 {
		t.Fatalf("revision %d after %d across the remove", next, last)
	}
}

// With strict reconfig checks, a removal that leaves fewer answering
// voters than a quorum is refused, as on etcd.
func TestMemberRemoveRefusedWithoutQuorum(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	putRetry(t, cli, "k", "v")
	c.StopNode(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.MemberRemove(ctx, c.Node(1).ID()); !errors.Is(err, rpctypes.ErrMemberNotEnoughStarted) {
		t.Fatalf("removing an up member with another down: %v, want %v", err, rpctypes.ErrMemberNotEnoughStarted)
	}
}

// With a member to spare, member remove keeps every range at its
// replication factor: each replica on the member removed is re-created on
// the spare member (caught up and promoted) before it goes.
func TestMemberRemoveKeepsTheReplicationFactor(t *testing.T) {
	c := startCluster(t, 4, nil)
	cli := client(t, c, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if _, _, err := c.Node(3).Split(ctx, []byte("m")); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		putRetry(t, cli, fmt.Sprintf("%c%02d", 'a'+i%26, i), "v")
	}
	victim := c.Node(1).ID()
	if _, err := cli.MemberRemove(ctx, victim); err != nil {
		t.Fatalf("member remove: %v", err)
	}
	n := c.Node(3)
	if err := n.router.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	ranges, err := n.router.Ranges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ranges = append(ranges, n.router.MetaDescriptor())
	for _, d := range ranges {
		voters := 0
		for _, rd := range d.GetReplicas() {
			if !rd.GetLearner() {
				voters++
			}
		}
		if d.ReplicaOn(victim) != nil || voters != 3 || d.ReplicaOn(c.Node(3).ID()) == nil {
			t.Errorf("range %d after the remove: %v", d.GetRangeId(), d.GetReplicas())
		}
	}
	c.StopNode(1)
	// Any one more member may fail now: every range has 3 replicas.
	c.StopNode(0)
	resp, err := cli.Get(ctx, "", clientv3.WithFromKey(), clientv3.WithCountOnly())
	if err != nil || resp.Count < 40 {
		t.Fatalf("keys with the removed member and one more down: %v %v", resp, err)
	}
}

// A removed member stops, as etcd's does, and started again on its data
// dir (an operator's restart, a supervisor's) it is refused and stops
// again, instead of coming back as a new member with the old one's data.
func TestRemovedMemberStops(t *testing.T) {
	c := startCluster(t, 3, nil)
	victim := (metaLeader(t, c) + 1) % 3
	keep := (victim + 1) % 3
	cli := client(t, c, keep)
	putRetry(t, cli, "k", "v")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	removed := c.Node(victim)
	if _, err := cli.MemberRemove(ctx, removed.ID()); err != nil {
		t.Fatal(err)
	}
	waitRemoved := func(n *Node) {
		t.Helper()
		select {
		case <-n.Removed():
		case <-time.After(20 * time.Second):
			t.Fatalf("member %x does not learn it was removed", n.ID())
		}
		n.Stop() // returns once the node has stopped
	}
	waitRemoved(removed)
	c.StopNode(victim)
	if err := c.RestartNode(victim); err != nil {
		t.Fatal(err)
	}
	waitRemoved(c.Node(victim))
	c.StopNode(victim)
	ml, err := cli.MemberList(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 2 {
		t.Fatalf("member list after the removed member restarted: %v", ml.Members)
	}
	for _, m := range ml.Members {
		if m.Name == removed.cfg.Name {
			t.Fatalf("the removed member is back in the member list: %v", ml.Members)
		}
	}
	if next := putRetry(t, cli, "after", "1"); next <= 0 {
		t.Fatalf("put after the remove: revision %d", next)
	}
}
