package server

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// mountTmpfs mounts a tmpfs of size under a new dir and unmounts it in
// t.Cleanup (after the cleanups registered later, such as a cluster's
// Stop). The test is skipped when not root.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// On a data dir that really fills (a 64 MiB tmpfs, far below the quota),
// the free-space reserve refuses writes with NOSPACE before Pebble meets
// ENOSPC: the node stays up, keeps every acknowledged write, and once
// space is freed (delete, compact, defragment) and the alarm disarmed, it
// takes writes again and keeps them across a restart.
func TestFullDiskRefusesWritesAndRecovers(t *testing.T) {
	dir := mountTmpfs(t, "64m")
	c, err := StartLocalCluster(1, dir, LocalOptions{Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	cli := client(t, c, 0)
	acked := fillUntilNoSpace(t, cli, "fill", 2000)
	du, err := vfs.Default.GetDiskUsage(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d puts of 64 KiB acknowledged; %d of %d bytes free at NOSPACE", len(acked), du.AvailBytes, du.TotalBytes)
	if len(acked) < 10 {
		t.Fatalf("only %d puts before NOSPACE: the reserve refuses far too early", len(acked))
	}
	readsAll(t, c, 0, acked)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	resp, err := cli.Delete(ctx, "fill/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("delete on a full disk: %v", err)
	}
	if _, err := cli.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact on a full disk: %v", err)
	}
	if _, err := cli.Defragment(ctx, c.ClientURLs()[0]); err != nil {
		t.Fatalf("defragment on a full disk: %v", err)
	}
	// Space comes back as Pebble deletes obsolete files and the Raft log
	// is truncated; disarm until the node no longer raises it again.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * spaceCheckInterval)
		pctx, pcancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := cli.Put(pctx, "after", "freeing")
		pcancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			du, _ := vfs.Default.GetDiskUsage(dir)
			t.Fatalf("writes still refused 30 s after freeing space (%v; %d of %d bytes free)", err, du.AvailBytes, du.TotalBytes)
		}
	}
	after := map[string]string{"after": "freeing"}
	putN(t, cli, "again", 20, after)
	c.StopNode(0)
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	readsAll(t, c, 0, after)
}

// A node whose disk is nearly full takes no Raft appends from other
// leaders (its own writes are refused by the reserve): the others go on
// with a quorum, and it catches up once space is back.
func TestNearlyFullFollowerDropsAppends(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	putRetry(t, cli, "k", "0")
	full := 1
	if c.Node(1).store.Replica(2).Status().IsLeader {
		full = 2
	}
	leaderCommit := func() uint64 {
		for i := range 3 {
			if st := c.Node(i).store.Replica(2).Status(); st.IsLeader {
				return st.Commit
			}
		}
		return 0
	}
	// Everything written so far is applied there first: what the guard
	// must hold back is only what comes after it.
	deadline := time.Now().Add(20 * time.Second)
	for c.Node(full).store.Replica(2).Status().Applied < leaderCommit() {
		if time.Now().After(deadline) {
			t.Fatal("the follower never caught up before the test")
		}
		time.Sleep(10 * time.Millisecond)
	}
	var critical atomic.Bool
	critical.Store(true)
	c.Node(full).store.SetAppendGuard(critical.Load)
	before := c.Node(full).store.Replica(2).Status().Applied
	for i := range 20 {
		putRetry(t, cli, "k", fmt.Sprint(i))
	}
	// An entry it had appended before the guard may still apply when its
	// commit is heard; the 20 writes after it must not.
	if got, commit := c.Node(full).store.Replica(2).Status().Applied, leaderCommit(); got > before+2 || commit < before+20 {
		t.Fatalf("the nearly full node applied up to %d from %d while the leader committed %d: it took appends", got, before, commit)
	}
	if c.Node(full).store.DroppedAppends() == 0 {
		t.Fatal("no append dropped")
	}
	critical.Store(false)
	lead := leaderCommit()
	deadline = time.Now().Add(20 * time.Second)
	for c.Node(full).store.Replica(2).Status().Applied < lead {
		if time.Now().After(deadline) {
			t.Fatalf("the node never caught up once space was back: applied %d, commit %d", c.Node(full).store.Replica(2).Status().Applied, lead)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
