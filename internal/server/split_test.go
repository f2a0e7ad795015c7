package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// userRanges is the number of user ranges the meta range indexes, read
// through node i.
func userRanges(t *testing.T, c *LocalCluster, i int) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Node(i).Router().Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	rs, err := c.Node(i).Router().Ranges(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return len(rs)
}

// keysOf renders a Get's keys, for comparisons.
func keysOf(resp *clientv3.GetResponse) string {
	var ks []string
	for _, kv := range resp.Kvs {
		ks = append(ks, string(kv.Key))
	}
	return strings.Join(ks, ",")
}

// A range splits at run time; etcd reads over keys on both sides behave as
// on one range (one revision, limit, count, sort), writes keep going to
// both, revisions stay dense across them, and the split survives restarts.
func TestSplitServesReadsAcrossRanges(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	var all []string
	for ch := 'a'; ch <= 'z'; ch++ {
		k := "k/" + string(ch)
		putRetry(t, clis[0], k, "v-"+string(ch))
		all = append(all, k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, at := range []string{"k/h", "k/p"} {
		left, right, err := c.Node(1).Split(ctx, []byte(at))
		if err != nil {
			t.Fatalf("split at %s: %v", at, err)
		}
		if left == nil || right == nil || right.GetGeneration() != left.GetGeneration() {
			t.Fatalf("split at %s: %v / %v", at, left, right)
		}
	}
	// Splitting at a range boundary again changes nothing.
	if left, right, err := c.Node(2).Split(ctx, []byte("k/h")); err != nil || left != nil || right == nil {
		t.Fatalf("split at an existing boundary: %v %v %v", left, right, err)
	}
	for i := range clis {
		if n := userRanges(t, c, i); n != 3 {
			t.Fatalf("node %d knows %d user ranges, want 3", i+1, n)
		}
	}

	// Writes on both sides, through every node; revisions stay dense.
	r1 := putRetry(t, clis[0], "k/b", "left")
	r2 := putRetry(t, clis[1], "k/x", "right")
	r3 := putRetry(t, clis[2], "k/m", "middle")
	if r2 != r1+1 || r3 != r2+1 {
		t.Fatalf("revisions over three ranges: %d %d %d", r1, r2, r3)
	}

	full := strings.Join(all, ",")
	for i, cli := range clis {
		for _, opts := range [][]clientv3.OpOption{{clientv3.WithPrefix()}, {clientv3.WithPrefix(), clientv3.WithSerializable()}} {
			deadline := time.Now().Add(10 * time.Second)
			for {
				resp := get(t, cli, "k/", opts...)
				if keysOf(resp) == full && resp.Count == 26 && resp.Header.Revision >= r3 && string(resp.Kvs[23].Value) == "right" {
					break
				}
				if time.Now().After(deadline) {
					for j := 0; j < 3; j++ {
						for _, r := range c.Node(j).Store().Replicas() {
							t.Logf("node %d: %+v", j+1, r.Status())
						}
					}
					t.Fatalf("node %d (%d options) read %q count %d at %d", i+1, len(opts), keysOf(resp), resp.Count, resp.Header.Revision)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
	}
	// Limit, more and count over the ranges.
	resp := get(t, clis[0], "k/", clientv3.WithPrefix(), clientv3.WithLimit(9))
	if keysOf(resp) != strings.Join(all[:9], ",") || !resp.More || resp.Count != 26 {
		t.Fatalf("limit 9: %q more=%v count=%d", keysOf(resp), resp.More, resp.Count)
	}
	resp = get(t, clis[1], "k/", clientv3.WithPrefix(), clientv3.WithLimit(3), clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend))
	if keysOf(resp) != "k/z,k/y,k/x" || !resp.More {
		t.Fatalf("descending limit 3: %q more=%v", keysOf(resp), resp.More)
	}
	resp = get(t, clis[2], "k/", clientv3.WithPrefix(), clientv3.WithLimit(3), clientv3.WithSort(clientv3.SortByModRevision, clientv3.SortDescend))
	if keysOf(resp) != "k/m,k/x,k/b" {
		t.Fatalf("newest three by mod revision: %q", keysOf(resp))
	}
	resp = get(t, clis[0], "k/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 26 || len(resp.Kvs) != 0 {
		t.Fatalf("count only: %d, %d kvs", resp.Count, len(resp.Kvs))
	}
	// A read at an earlier revision sees exactly the writes up to it; its
	// header is the current revision, as on etcd.
	resp = get(t, clis[1], "k/", clientv3.WithPrefix(), clientv3.WithRev(r1))
	if resp.Header.Revision != r3 || string(resp.Kvs[1].Value) != "left" || string(resp.Kvs[23].Value) != "v-x" {
		t.Fatalf("at revision %d: header %d, k/b=%s k/x=%s", r1, resp.Header.Revision, resp.Kvs[1].Value, resp.Kvs[23].Value)
	}
	// A revision above the cluster's newest is a future revision; the
	// newest is not, even on a range that has not written at it.
	if _, err := clis[0].Get(ctx, "k/", clientv3.WithPrefix(), clientv3.WithRev(r3+1000)); err == nil || !strings.Contains(err.Error(), "future revision") {
		t.Fatalf("read past the newest revision: %v", err)
	}
	if resp := get(t, clis[0], "k/a", clientv3.WithRev(r3)); len(resp.Kvs) != 1 {
		t.Fatalf("read of an idle range at the cluster's newest revision: %v", resp.Kvs)
	}

	// Compact compacts every range at one revision: an idle range too
	// refuses a read below it, as etcd would.
	if _, err := clis[0].Compact(ctx, r2); err != nil {
		t.Fatalf("compact across ranges at %d: %v", r2, err)
	}
	if _, err := clis[1].Get(ctx, "k/a", clientv3.WithRev(r1)); err == nil || !strings.Contains(err.Error(), "compacted") {
		t.Fatalf("read of an idle range below the compaction: %v", err)
	}
	if resp := get(t, clis[1], "k/", clientv3.WithPrefix(), clientv3.WithRev(r2)); len(resp.Kvs) != 26 {
		t.Fatalf("read at the compaction revision: %d keys", len(resp.Kvs))
	}

	// A txn across ranges commits whole, at one revision; a delete across
	// ranges deletes on every range at one revision.
	tr, err := clis[0].Txn(ctx).If(clientv3.Compare(clientv3.Value("k/b"), "=", "left")).
		Then(clientv3.OpPut("k/a", "txn"), clientv3.OpPut("k/z", "txn"), clientv3.OpGet("k/z")).Commit()
	if err != nil || !tr.Succeeded || len(tr.Responses[2].GetResponseRange().Kvs) != 1 {
		t.Fatalf("txn across ranges: %v %v", tr, err)
	}
	for _, cli := range clis {
		resp := get(t, cli, "k/", clientv3.WithPrefix())
		if a, z := resp.Kvs[0], resp.Kvs[25]; string(a.Value) != "txn" || string(z.Value) != "txn" || a.ModRevision != tr.Header.Revision || z.ModRevision != tr.Header.Revision {
			t.Fatalf("after a txn across ranges at %d: k/a %v, k/z %v", tr.Header.Revision, a, z)
		}
	}
	// Keys under k/d/ (left range) and k/y/ (right range), deleted by one
	// DeleteRange across all three ranges.
	putRetry(t, clis[0], "k/d/a", "gone")
	putRetry(t, clis[1], "k/y/a", "gone")
	dr, err := clis[2].Delete(ctx, "k/d/", clientv3.WithRange("k/y/b"), clientv3.WithPrevKV())
	if err != nil || dr.Deleted != 23 || len(dr.PrevKvs) != 23 || string(dr.PrevKvs[0].Key) != "k/d/a" || string(dr.PrevKvs[22].Key) != "k/y/a" {
		t.Fatalf("delete across ranges: %v %v", dr, err)
	}
	for _, cli := range clis {
		if resp := get(t, cli, "k/", clientv3.WithPrefix()); resp.Count != 5 || resp.Header.Revision < dr.Header.Revision {
			t.Fatalf("after a delete across ranges: %q at %d", keysOf(resp), resp.Header.Revision)
		}
	}
	for _, kv := range dr.PrevKvs {
		if k := string(kv.Key); k != "k/d/a" && k != "k/y/a" {
			putRetry(t, clis[0], k, string(kv.Value))
		}
	}
	if resp := get(t, clis[0], "k/", clientv3.WithPrefix()); keysOf(resp) != full {
		t.Fatalf("after restoring what the delete across ranges deleted: %q", keysOf(resp))
	}

	// A node down during writes catches up on every range; a full restart
	// keeps the ranges.
	c.StopNode(2)
	putRetry(t, clis[0], "k/c", "while-down")
	putRetry(t, clis[1], "k/y", "while-down")
	if err := c.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	restartAll(t, c)
	clis = []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	for i, cli := range clis {
		resp := get(t, cli, "k/", clientv3.WithPrefix())
		if keysOf(resp) != full || string(resp.Kvs[2].Value) != "while-down" || string(resp.Kvs[24].Value) != "while-down" {
			t.Fatalf("node %d after restarts: %q", i+1, keysOf(resp))
		}
		if n := userRanges(t, c, i); n != 3 {
			t.Fatalf("node %d knows %d user ranges after restarts, want 3", i+1, n)
		}
	}
	t.Logf("%s", fmt.Sprint(r1, r2, r3))
}

// A node down while its range splits, and behind far enough that the
// splitting range's log no longer holds the split, catches up on that
// range by snapshot (which shows the lost span), creates the new range's
// replica uninitialized, and receives the new range by snapshot too: the
// new range keeps three replicas and its quorum when another node fails.
func TestNodeThatMissedASplitGetsTheNewRange(t *testing.T) {
	c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.RaftLogTruncateEntries = 5 })
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	putRetry(t, clis[0], "k/a", "before")
	putRetry(t, clis[0], "k/x", "before")
	c.StopNode(2)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, right, err := c.Node(0).Split(ctx, []byte("k/m"))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 30; i++ { // past the left range's log bound
		putRetry(t, clis[0], fmt.Sprintf("k/a%02d", i), "left")
		putRetry(t, clis[1], fmt.Sprintf("k/x%02d", i), "right")
	}
	if err := c.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := c.Node(2).Store().Replica(right.GetRangeId())
		if r != nil && !r.Uninitialized() && r.Status().Applied > 10 {
			// It came as a snapshot, not from a split applied here.
			if n := r.Status().SnapshotsApplied; n == 0 {
				t.Fatalf("node 3's replica of range %d was made without a snapshot", right.GetRangeId())
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 3 never got range %d (replica %v)", right.GetRangeId(), r)
		}
		time.Sleep(50 * time.Millisecond)
	}
	c.StopNode(0)
	putRetry(t, clis[1], "k/x99", "needs node 3")
	// Node 3 has the last write (it was needed for the quorum), but a
	// serializable read may come before it applies it.
	deadline = time.Now().Add(10 * time.Second)
	for {
		resp := get(t, clis[2], "k/x", clientv3.WithPrefix(), clientv3.WithSerializable())
		if len(resp.Kvs) == 32 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("node 3 serves %d keys of the new range, want 32", len(resp.Kvs))
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp := get(t, clis[2], "k/a", clientv3.WithPrefix())
	if len(resp.Kvs) != 31 {
		t.Fatalf("node 3 reads %d keys of the left range, want 31", len(resp.Kvs))
	}
}

// Two ranges merge back into one: the left range takes the right one's
// keys and history in place, writes and reads go on over the whole span,
// revisions stay dense, and the merge survives a full restart. With a
// replica of the right range down, the merge is refused and changes
// nothing.
func TestMergeTakesOverTheRightRange(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := c.Node(0).Split(ctx, []byte("k/m")); err != nil {
		t.Fatal(err)
	}
	putRetry(t, clis[0], "k/a", "1")
	old := putRetry(t, clis[1], "k/x", "1")
	putRetry(t, clis[1], "k/x", "2")

	// A replica down: refused, the right range thawed and writable.
	c.StopNode(2)
	short, cancelShort := context.WithTimeout(ctx, 2*time.Second)
	_, err := c.Node(0).Merge(short, []byte("k/m"))
	cancelShort()
	if err == nil || !strings.Contains(err.Error(), "did not confirm") {
		t.Fatalf("merge with a replica down: %v", err)
	}
	putRetry(t, clis[0], "k/y", "after a refused merge")
	if n := userRanges(t, c, 0); n != 2 {
		t.Fatalf("%d user ranges after a refused merge, want 2", n)
	}
	if err := c.RestartNode(2); err != nil {
		t.Fatal(err)
	}

	merged, err := c.Node(1).Merge(ctx, []byte("k/m"))
	if err != nil {
		t.Fatal(err)
	}
	if n := userRanges(t, c, 2); n != 1 || len(merged.GetEndKey()) != 1 {
		t.Fatalf("%d user ranges after the merge (merged %v), want 1", n, merged)
	}
	r1 := putRetry(t, clis[2], "k/z", "after")
	r2 := putRetry(t, clis[0], "k/b", "after")
	if r2 != r1+1 {
		t.Fatalf("revisions %d, %d after the merge: not dense", r1, r2)
	}
	for i, cli := range clis {
		resp := get(t, cli, "k/", clientv3.WithPrefix())
		if keysOf(resp) != "k/a,k/b,k/x,k/y,k/z" {
			t.Fatalf("node %d reads %q after the merge", i+1, keysOf(resp))
		}
	}
	// The right range's history came along.
	if resp := get(t, clis[1], "k/x", clientv3.WithRev(old)); len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "1" {
		t.Fatalf("k/x at revision %d after the merge: %v", old, resp.Kvs)
	}
	restartAll(t, c)
	clis = []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	for i := range clis {
		if n := len(c.Node(i).Store().Replicas()); n != 2 {
			t.Fatalf("node %d holds %d replicas after a restart, want 2 (meta and the merged range)", i+1, n)
		}
		readsAll(t, c, i, map[string]string{"k/a": "1", "k/b": "after", "k/x": "2", "k/y": "after a refused merge", "k/z": "after"})
	}
}

// With --range-max-bytes a range that grows past it splits by itself at
// its middle key, and with --range-min-bytes ranges that shrink merge back.
func TestRangesSplitAndMergeBySize(t *testing.T) {
	defer func(d time.Duration) { sizeCheckInterval = d }(sizeCheckInterval)
	sizeCheckInterval = 100 * time.Millisecond
	c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.RangeMaxBytes, cfg.RangeMinBytes = 16<<10, 2<<10 })
	cli := client(t, c, 0)
	val := strings.Repeat("v", 1000)
	for i := 0; i < 64; i++ {
		putRetry(t, cli, fmt.Sprintf("big/%03d", i), val)
	}
	deadline := time.Now().Add(20 * time.Second)
	for userRanges(t, c, 0) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("64 KB in a cluster splitting at 16 KB: still %d ranges", userRanges(t, c, 0))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp := get(t, cli, "big/", clientv3.WithPrefix(), clientv3.WithCountOnly()); resp.Count != 64 {
		t.Fatalf("after size splits: %d keys", resp.Count)
	}
	split := userRanges(t, c, 0)
	// Delete nearly everything and compact the history away: the ranges
	// shrink below the minimum and merge back.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var last int64
	for i := 1; i < 64; i++ {
		resp, err := cli.Delete(ctx, fmt.Sprintf("big/%03d", i))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	if _, err := cli.Compact(ctx, last); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(20 * time.Second)
	for userRanges(t, c, 0) > 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after deletes and a compaction: still %d ranges", userRanges(t, c, 0))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if resp := get(t, cli, "big/", clientv3.WithPrefix()); len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != "big/000" {
		t.Fatalf("after size merges: %v", resp.Kvs)
	}
	t.Logf("64 KB split into %d ranges; deleted and compacted, they merged back into 1", split)
}

// With --range-split-qps a range under sustained load splits by itself at
// the median of its recent request keys.
func TestHotRangeSplitsByLoad(t *testing.T) {
	defer func(d time.Duration) { sizeCheckInterval = d }(sizeCheckInterval)
	sizeCheckInterval = 500 * time.Millisecond
	c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.RangeSplitQPS = 20 })
	cli := client(t, c, 0)
	for i := 0; i < 100; i++ {
		putRetry(t, cli, fmt.Sprintf("hot/%03d", i), "v")
	}
	deadline := time.Now().Add(30 * time.Second)
	for i := 0; userRanges(t, c, 0) < 2; i++ {
		if time.Now().After(deadline) {
			t.Fatal("a range under load never split")
		}
		get(t, cli, fmt.Sprintf("hot/%03d", i%100))
	}
	resp := get(t, cli, "hot/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if resp.Count != 100 {
		t.Fatalf("after a load split: %d keys", resp.Count)
	}
	rs, err := c.Node(0).Router().Ranges(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The load is spread over hot/000..hot/099: the split is in the middle.
	if at := string(rs[1].GetStartKey()[1:]); at < "hot/020" || at > "hot/080" {
		t.Fatalf("load split at %q, not near the middle of the load", at)
	}
}

// A merge whose caller gives up at any point never leaves a range frozen:
// once the right range is frozen the merge is driven to an end, merged or
// thawed, and writes on both sides go on either way.
func TestMergeCutShortNeverLeavesARangeFrozen(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	ctx := context.Background()
	merged := 0
	for i := range 12 {
		if _, _, err := c.Node(0).Split(ctx, []byte("m")); err != nil && !strings.Contains(err.Error(), "already starts") {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, time.Duration(i)*time.Millisecond)
		if _, err := c.Node(0).Merge(short, []byte("m")); err == nil {
			merged++
		}
		cancel()
		wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
		for _, k := range []string{"a", "z"} {
			if _, err := cli.Put(wctx, k, fmt.Sprint(i)); err != nil {
				t.Fatalf("round %d: put %q after a merge cut short at %d ms: %v", i, k, i, err)
			}
		}
		wcancel()
	}
	t.Logf("%d of 12 merges cut short still merged", merged)
}
