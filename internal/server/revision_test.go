package server

import (
	"context"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// headerRev is the header revision of a linearizable Get through cli.
func headerRev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	return get(t, cli, "nothing-here").Header.Revision
}

// Revisions are numbered as etcd numbers them, whichever node the writes go
// through: a new cluster is at 1, its first write is 2, every write that
// writes takes the next number (a txn one for all its writes), and reads,
// failed compares, deletes of nothing, compactions and membership changes
// take none.
func TestRevisionsAreDenseAsEtcds(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	if rev := headerRev(t, clis[1]); rev != 1 {
		t.Fatalf("a new cluster is at revision %d, want 1", rev)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	want := int64(1)
	expect := func(what string, got int64, wrote bool) {
		t.Helper()
		if wrote {
			want++
		}
		if got != want {
			t.Fatalf("%s: revision %d, want %d", what, got, want)
		}
	}
	for i := 0; i < 9; i++ {
		expect("put", putRetry(t, clis[i%3], "k", "v"), true)
	}
	tx, err := clis[0].Txn(ctx).Then(clientv3.OpPut("a", "1"), clientv3.OpPut("b", "2"), clientv3.OpDelete("k")).Commit()
	if err != nil {
		t.Fatal(err)
	}
	expect("txn of three writes", tx.Header.Revision, true)
	tx, err = clis[1].Txn(ctx).If(clientv3.Compare(clientv3.Value("a"), "=", "no")).Then(clientv3.OpPut("a", "x")).Commit()
	if err != nil || tx.Succeeded {
		t.Fatalf("failed compare: %v %v", tx, err)
	}
	expect("txn whose compare fails", tx.Header.Revision, false)
	del, err := clis[2].Delete(ctx, "absent", clientv3.WithPrefix())
	if err != nil || del.Deleted != 0 {
		t.Fatalf("delete of nothing: %v %v", del, err)
	}
	expect("delete of nothing", del.Header.Revision, false)
	if _, err := clis[0].Compact(ctx, want-2); err != nil {
		t.Fatal(err)
	}
	expect("range after a compaction", headerRev(t, clis[0]), false)
	if _, err := clis[0].MemberAddAsLearner(ctx, []string{"http://127.0.0.1:1"}); err != nil {
		t.Fatal(err)
	}
	expect("put after a member add", putRetry(t, clis[1], "k", "after"), true)
	g := get(t, clis[2], "a")
	if kv := g.Kvs[0]; kv.CreateRevision != 11 || kv.ModRevision != 11 || kv.Version != 1 {
		t.Fatalf("key a: %+v, want create=mod=11", kv)
	}

	// A failover of the user range's leader and of the TSO may skip
	// numbers, never reuse or reorder them.
	last := want
	leader := leaderOf(t, c, store.UserRangeID)
	c.StopNode(leader)
	other := (leader + 1) % 3
	rev := putRetry(t, clis[other], "k", "failover")
	if rev <= last {
		t.Fatalf("after a failover revision %d, not above %d", rev, last)
	}
	if err := c.RestartNode(leader); err != nil {
		t.Fatal(err)
	}
	// A full restart continues above every revision.
	c.Stop()
	for i := range c.cfgs {
		if err := c.RestartNode(i); err != nil {
			t.Fatal(err)
		}
	}
	clis = []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	if got := headerRev(t, clis[0]); got != rev {
		t.Fatalf("after a full restart the cluster is at revision %d, want %d", got, rev)
	}
	after := putRetry(t, clis[1], "k", "restart")
	if after <= rev {
		t.Fatalf("after a full restart revision %d, not above %d", after, rev)
	}
	next := putRetry(t, clis[2], "k", "dense again")
	if next != after+1 {
		t.Fatalf("revision %d after %d: not dense", next, after)
	}
}
