package k8s

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// TestWatchBelowCompactionWithHubRunning is the etcd-level reproduction of
// TestStorage/WatchFromZero/concord. A node whose watch hub is running
// (another watcher is open on it) keeps recent changes in its ring, with
// the prev_kv read when they were written, and lets a new watcher join
// from the ring without looking at compactions since. So after a
// compaction at rev:
//   - a watch from rev with prev_kv gets the event at rev with the
//     compacted previous version, where etcd sends none (apiserver turns
//     etcd's missing prev_kv into the error WatchFromZero expects);
//   - a watch from below rev gets the compacted events, where etcd cancels
//     it with compact_revision rev.
//
// Both clients talk to one node, so that the watcher that keeps the hub
// running and the new ones meet on it. It compacts, so it lives in a file
// that sorts after storage_test.go (go test runs files in name order):
// TestStorage's cases that watch from revision 1 run first.
func TestWatchBelowCompactionWithHubRunning(t *testing.T) {
	for _, s := range systems {
		t.Run(s.name, func(t *testing.T) {
			cli, err := clientv3.New(clientv3.Config{Endpoints: s.endpoints[:1], DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				t.Fatal(err)
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			key := fmt.Sprintf("/k8s-compact-%06d/key", prefixSeq.Add(1))

			// A watcher of another key keeps the node's hub following.
			hubCtx, hubCancel := context.WithCancel(ctx)
			defer hubCancel()
			cli.Watch(hubCtx, key+"-other", clientv3.WithCreatedNotify())
			time.Sleep(200 * time.Millisecond)

			var revs []int64
			for _, v := range []string{"v1", "v2", "v3"} {
				resp, err := cli.Put(ctx, key, v)
				if err != nil {
					t.Fatal(err)
				}
				revs = append(revs, resp.Header.Revision)
			}
			rev := revs[2]
			if _, err := cli.Compact(ctx, rev); err != nil {
				t.Fatal(err)
			}

			wctx, wcancel := context.WithCancel(ctx)
			defer wcancel()
			wr := <-cli.Watch(wctx, key, clientv3.WithRev(rev), clientv3.WithPrevKV())
			switch {
			case wr.Err() != nil:
				t.Errorf("watch from the compaction revision %d: %v", rev, wr.Err())
			case len(wr.Events) != 1 || wr.Events[0].Kv.ModRevision != rev:
				t.Errorf("watch from the compaction revision %d: events %v, want the put at %d", rev, wr.Events, rev)
			case wr.Events[0].PrevKv != nil:
				t.Errorf("watch from the compaction revision %d: prev_kv %q at %d, want none: it is compacted (etcd sends none)",
					rev, wr.Events[0].PrevKv.Value, wr.Events[0].PrevKv.ModRevision)
			}

			wr = <-cli.Watch(wctx, key, clientv3.WithRev(revs[0]), clientv3.WithPrevKV())
			if !wr.Canceled || wr.CompactRevision != rev {
				t.Errorf("watch from %d, below the compaction at %d: canceled %v, compact revision %d, %d events; want canceled with compact revision %d",
					revs[0], rev, wr.Canceled, wr.CompactRevision, len(wr.Events), rev)
			}
		})
	}
}
