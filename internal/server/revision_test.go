package server

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/meta"
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
	leader := leaderOf(t, c, meta.UserRangeID)
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
	restartAll(t, c)
	clis = []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	for i, cli := range clis {
		if got := headerRev(t, cli); got != rev {
			t.Fatalf("after a full restart node %d reads revision %d, want %d", i+1, got, rev)
		}
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

// Compare-and-swap increments of one key from many clients through every
// node: each success takes exactly the next revision, failures take none,
// and the counter ends at the number of successes. This is the proposer's
// hard case: every txn reads the key the one before it writes, so each
// waits for the previous one to apply before it is judged.
func TestConcurrentCompareAndSwapIsDenseAndExact(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	start := putRetry(t, clis[0], "counter", "0")
	const workers, attempts = 12, 15
	revs := make(chan int64, workers*attempts)
	errs := make(chan error, workers)
	for w := 0; w < workers; w++ {
		go func() {
			cli := clis[w%3]
			for i := 0; i < attempts; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				g, err := cli.Get(ctx, "counter")
				if err != nil {
					cancel()
					errs <- err
					return
				}
				var n int
				fmt.Sscan(string(g.Kvs[0].Value), &n)
				tx, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision("counter"), "=", g.Kvs[0].ModRevision)).
					Then(clientv3.OpPut("counter", fmt.Sprint(n+1))).Commit()
				cancel()
				if err != nil {
					errs <- err
					return
				}
				if tx.Succeeded {
					revs <- tx.Header.Revision
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < workers; w++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	close(revs)
	var got []int64
	for r := range revs {
		got = append(got, r)
	}
	slices.Sort(got)
	for i, r := range got {
		if r != start+1+int64(i) {
			t.Fatalf("successful swaps at revisions %v: not start+1..start+%d (start %d)", got, len(got), start)
		}
	}
	g := get(t, clis[1], "counter")
	if string(g.Kvs[0].Value) != fmt.Sprint(len(got)) || g.Header.Revision != start+int64(len(got)) {
		t.Fatalf("counter %s at revision %d after %d successful swaps from revision %d", g.Kvs[0].Value, g.Header.Revision, len(got), start)
	}
	t.Logf("%d of %d swaps succeeded, at revisions %d..%d", len(got), workers*attempts, start+1, start+int64(len(got)))
}
