package server

import (
	"context"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// collect reads events from wch until it has n or the deadline passes, and
// renders them as "PUT k=v@rev" strings.
func collect(t *testing.T, wch clientv3.WatchChan, n int) []string {
	t.Helper()
	var out []string
	timeout := time.After(20 * time.Second)
	for len(out) < n {
		select {
		case resp, ok := <-wch:
			if !ok {
				t.Fatalf("watch channel closed after %d events: %v", len(out), out)
			}
			if err := resp.Err(); err != nil {
				t.Fatalf("watch: %v (after %v)", err, out)
			}
			for _, ev := range resp.Events {
				s := fmt.Sprintf("%s %s=%s@%d", ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision)
				if ev.PrevKv != nil {
					s += fmt.Sprintf(" prev=%s", ev.PrevKv.Value)
				}
				out = append(out, s)
			}
		case <-timeout:
			t.Fatalf("got %d of %d events: %v", len(out), n, out)
		}
	}
	return out
}

func TestWatchSeesWritesInOrderOnEveryNode(t *testing.T) {
	c := startCluster(t, 3, nil)
	w0, w2 := client(t, c, 0), client(t, c, 2)
	writer := client(t, c, 1)
	base := putRetry(t, writer, "w/base", "0")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	prefix := w0.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	single := w2.Watch(ctx, "w/a")
	past := w2.Watch(ctx, "w/", clientv3.WithPrefix(), clientv3.WithRev(base))
	var want []string
	for i := range 5 {
		rev := putRetry(t, writer, "w/a", fmt.Sprint(i))
		want = append(want, fmt.Sprintf("PUT w/a=%d@%d", i, rev))
	}
	resp, err := writer.Delete(ctx, "w/a")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, fmt.Sprintf("DELETE w/a=@%d", resp.Header.Revision))

	got := collect(t, single, len(want))
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("single-key watch got %v, want %v", got, want)
	}
	got = collect(t, prefix, len(want))
	for i := range want {
		w := want[i]
		if i > 0 {
			w += fmt.Sprintf(" prev=%d", i-1)
		}
		if i == len(want)-1 {
			w = want[i] + " prev=4"
		}
		if got[i] != w {
			t.Fatalf("prefix watch with prev_kv event %d: %q, want %q (all %v)", i, got[i], w, got)
		}
	}
	got = collect(t, past, len(want)+1)
	if got[0] != fmt.Sprintf("PUT w/base=0@%d", base) || fmt.Sprint(got[1:]) != fmt.Sprint(want) {
		t.Fatalf("watch from revision %d got %v, want the base put then %v", base, got, want)
	}
}

// watchedWrites runs n writes of keys "<prefix>00".."<prefix>19" through
// writers (round robin), calling before(i) before the i-th, and returns the
// revision of every acknowledged write with the value it wrote.
func watchedWrites(t *testing.T, writers []*clientv3.Client, prefix string, n int, before func(i int)) map[int64]string {
	t.Helper()
	acked := map[int64]string{}
	func() {
		for i := range n {
			before(i)
			key := fmt.Sprintf("%s%02d", prefix, i%20)
			val := fmt.Sprintf("v%d", i)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			resp, err := writers[i%len(writers)].Put(ctx, key, val)
			cancel()
			if err == nil {
				acked[resp.Header.Revision] = key + "=" + val
			}
		}
	}()
	return acked
}

// checkWatched reads wch until it has seen every acknowledged write and
// checks what a client must see: revisions strictly increasing (no
// duplicate, no reordering), each event one the cluster committed, every
// acknowledged write among them.
func checkWatched(t *testing.T, wch clientv3.WatchChan, acked map[int64]string) {
	t.Helper()
	var maxAcked int64
	for rev := range acked {
		maxAcked = max(maxAcked, rev)
	}
	seen := map[int64]string{}
	last := int64(0)
	timeout := time.After(30 * time.Second)
	for last < maxAcked {
		select {
		case resp, ok := <-wch:
			if !ok || resp.Err() != nil {
				t.Fatalf("watch ended at revision %d of %d: %v", last, maxAcked, resp.Err())
			}
			for _, ev := range resp.Events {
				rev := ev.Kv.ModRevision
				if rev <= last {
					t.Fatalf("event at revision %d after one at %d", rev, last)
				}
				last = rev
				seen[rev] = string(ev.Kv.Key) + "=" + string(ev.Kv.Value)
			}
		case <-timeout:
			t.Fatalf("watch reached revision %d of %d in 30s", last, maxAcked)
		}
	}
	for rev, w := range acked {
		if seen[rev] != w {
			t.Errorf("acknowledged write %s at revision %d: the watch saw %q", w, rev, seen[rev])
		}
	}
}

func TestWatchAcrossSplitsAndMerges(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	putRetry(t, clis[0], "s/ready", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := clis[2].Watch(ctx, "s/", clientv3.WithPrefix())
	// Let the watch start before the writes.
	if _, err := clis[2].Put(ctx, "t/sync", "x"); err != nil {
		t.Fatal(err)
	}
	// Splits and a merge while a background writer writes too, so that
	// changes apply while feeds end and open again.
	splits := map[int]string{50: "s/05", 100: "s/10", 150: "s/15"}
	acked := watchedWrites(t, clis, "s/", 400, func(i int) {
		sctx, scancel := context.WithTimeout(ctx, time.Minute)
		defer scancel()
		if at, ok := splits[i]; ok {
			if _, _, err := c.Node(i/50%3).Split(sctx, []byte(at)); err != nil {
				t.Errorf("split at %s: %v", at, err)
			}
		}
		if i == 250 {
			if _, err := c.Node(1).Merge(sctx, []byte("s/10")); err != nil {
				t.Errorf("merge at s/10: %v", err)
			}
		}
	})
	if n := userRanges(t, c, 2); n != 3 {
		t.Fatalf("%d user ranges after 3 splits and a merge, want 3", n)
	}
	if len(acked) < 300 {
		t.Fatalf("only %d of 400 writes acknowledged", len(acked))
	}
	checkWatched(t, wch, acked)
	// A watch from the first revision reads the same history back from
	// the ranges, now four of them.
	var first int64 = -1
	for rev := range acked {
		if first < 0 || rev < first {
			first = rev
		}
	}
	checkWatched(t, clis[1].Watch(ctx, "s/", clientv3.WithPrefix(), clientv3.WithRev(first)), acked)
}

func TestWatchResumesOnAnotherNodeAfterAKill(t *testing.T) {
	c := startCluster(t, 3, nil)
	writer := client(t, c, 1)
	putRetry(t, writer, "f/ready", "1")
	// The watcher's client knows every node, as clientv3 users configure it,
	// but talks to node 1 first.
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{c.ClientAddrs()[0], c.ClientAddrs()[2]}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	wch := cli.Watch(clientv3.WithRequireLeader(ctx), "f/", clientv3.WithPrefix())
	if _, err := cli.Put(ctx, "g/sync", "x"); err != nil {
		t.Fatal(err)
	}
	acked := watchedWrites(t, []*clientv3.Client{writer}, "f/", 300, func(i int) {
		if i == 100 {
			c.StopNode(0)
		}
	})
	checkWatched(t, wch, acked)
}

func TestSlowWatcherHoldsUpNothing(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	putRetry(t, cli, "slow/ready", "1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// A raw stream whose client does not read: its gRPC window fills, then
	// its queue on the server.
	slow, err := pb.NewWatchClient(cli.ActiveConnection()).Watch(ctx, grpc.MaxCallRecvMsgSize(math.MaxInt32))
	if err != nil {
		t.Fatal(err)
	}
	if err := slow.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: &pb.WatchCreateRequest{Key: []byte("slow/"), RangeEnd: []byte("slow0")}}}); err != nil {
		t.Fatal(err)
	}
	created, err := slow.Recv()
	if err != nil || !created.Created {
		t.Fatalf("create: %v %v", created, err)
	}
	// A fast watcher on another node keeps up meanwhile.
	fast := client(t, c, 1).Watch(ctx, "slow/", clientv3.WithPrefix())
	val := strings.Repeat("x", 4096)
	const n = 2000
	var last int64
	start := time.Now()
	for i := range n {
		resp, err := cli.Put(ctx, fmt.Sprintf("slow/%04d", i%100), val)
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	t.Logf("%d writes of 4 KiB in %v with a watcher not reading", n, time.Since(start))
	got := 0
	for got < n {
		select {
		case resp := <-fast:
			got += len(resp.Events)
		case <-time.After(20 * time.Second):
			t.Fatalf("fast watcher got %d of %d events", got, n)
		}
	}
	if v := c.Node(0).watchHub.Victims(); v == 0 {
		t.Fatalf("the slow watcher was never moved aside")
	}
	// The slow one, read at last, gets every event once and in order.
	prev := created.Header.Revision
	for prev < last {
		resp, err := slow.Recv()
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range resp.Events {
			if ev.Kv.ModRevision != prev+1 {
				t.Fatalf("slow watcher: event at %d after %d", ev.Kv.ModRevision, prev)
			}
			prev = ev.Kv.ModRevision
		}
	}
}

// A node whose range cache missed a split (the split went through another
// node) still watches every key: a feed opened by a stale descriptor is
// refused, not silently clipped to what the range still holds.
func TestWatchWithAStaleRangeCache(t *testing.T) {
	c := startCluster(t, 3, nil)
	w, writer := client(t, c, 0), client(t, c, 1)
	putRetry(t, writer, "s/a", "0")
	get(t, w, "s/a") // node 1 caches the one user range
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := c.Node(1).Split(ctx, []byte("s/m")); err != nil {
		t.Fatal(err)
	}
	wch := w.Watch(ctx, "s/", clientv3.WithPrefix())
	if _, err := w.Put(ctx, "t/sync", "x"); err != nil { // the watch is created
		t.Fatal(err)
	}
	rev := putRetry(t, writer, "s/z", "right of the split")
	select {
	case resp := <-wch:
		if len(resp.Events) != 1 || resp.Events[0].Kv.ModRevision != rev {
			t.Fatalf("got %v, want the put at %d", resp.Events, rev)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the put right of the split never reached the watch")
	}
}
