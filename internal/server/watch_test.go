package server

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
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
