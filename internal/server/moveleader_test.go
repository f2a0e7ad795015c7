package server

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// metaLeader returns the index of the node leading the meta range.
func metaLeader(t *testing.T, c *LocalCluster) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		cli := client(t, c, 0)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		st, err := cli.Status(ctx, c.ClientAddrs()[0])
		cancel()
		if err == nil && st.Leader != 0 {
			for i := range c.cfgs {
				if c.Node(i) != nil && c.Node(i).ID() == st.Leader {
					return i
				}
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("no meta leader")
	return -1
}

// etcd's move-leader: the member Status names leader hands its
// leaderships to the target, revisions stay dense across the move, and
// the request is refused elsewhere or for a target that is no member.
func TestMoveLeader(t *testing.T) {
	c := startCluster(t, 3, nil)
	from := metaLeader(t, c)
	to := (from + 1) % 3
	other := (from + 2) % 3
	target := c.Node(to).ID()
	lcli, ocli := client(t, c, from), client(t, c, other)
	before := putRetry(t, lcli, "move/a", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := ocli.MoveLeader(ctx, target); !errors.Is(err, rpctypes.ErrNotLeader) {
		t.Fatalf("move-leader on a node that does not lead: %v, want %v", err, rpctypes.ErrNotLeader)
	}
	if _, err := lcli.MoveLeader(ctx, 99); !errors.Is(err, rpctypes.ErrBadLeaderTransferee) {
		t.Fatalf("move-leader to no member: %v, want %v", err, rpctypes.ErrBadLeaderTransferee)
	}
	if _, err := lcli.MoveLeader(ctx, target); err != nil {
		t.Fatalf("move-leader: %v", err)
	}
	if got := metaLeader(t, c); got != to {
		t.Fatalf("meta leader is node %d after moving it to node %d", got, to)
	}
	// Every range that node from led and node to holds is now led by to.
	for _, r := range c.Node(from).store.Replicas() {
		if st := r.Status(); st.IsLeader {
			t.Errorf("node %d still leads range %d", from, st.RangeID)
		}
	}
	// The TSO moved with the meta range, settled: the next write takes the
	// next revision.
	after := putRetry(t, ocli, "move/b", "2")
	if after != before+1 {
		t.Fatalf("revisions %d then %d across the move: a gap", before, after)
	}
	if resp, err := ocli.Get(ctx, "move/", clientv3.WithPrefix()); err != nil || len(resp.Kvs) != 2 {
		t.Fatalf("reads after the move: %v %v", resp, err)
	}

	// etcdctl finds the leader among its endpoints and asks it.
	bin, err := exec.LookPath("etcdctl")
	if err != nil {
		t.Skip("etcdctl not on PATH")
	}
	back := c.Node(from).ID()
	out, err := exec.CommandContext(ctx, bin, "--endpoints", strings.Join(c.ClientAddrs(), ","), "move-leader", fmt.Sprintf("%x", back)).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Leadership transferred") {
		t.Fatalf("etcdctl move-leader: %v\n%s", err, out)
	}
	if got := metaLeader(t, c); got != from {
		t.Fatalf("meta leader is node %d after etcdctl moved it to node %d", got, from)
	}
}
