package replica

import (
	"context"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// loadOne loads a single-replica range of the whole user keyspace.
func loadOne(t *testing.T) *Replica {
	t.Helper()
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	d := &metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End, Replicas: []*metapb.ReplicaDescriptor{{NodeId: 1, ReplicaId: 1}}, Generation: 1}
	b := e.NewBatch()
	if err := Bootstrap(b, d); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	cfg := DefaultConfig()
	cfg.NodeID, cfg.Engine, cfg.Revisions, cfg.Signal = 1, e, noRevisions{}, func(uint64) {}
	r, err := Load(cfg, d)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// register adds a live feed opened at revision openRev, as OpenFeed does.
func register(r *Replica, openRev int64) *Feed {
	f := &Feed{r: r, span: keys.UserSpan, openRev: openRev, from: openRev, catchTo: openRev, returned: openRev, signal: make(chan struct{}, 1)}
	f.mu.resolved = openRev
	r.feeds.mu.Lock()
	if r.feeds.set == nil {
		r.feeds.set = map[*Feed]struct{}{}
	}
	r.feeds.set[f] = struct{}{}
	r.feeds.active.Store(true)
	r.feeds.mu.Unlock()
	return f
}

// An apply round that began before any feed opened did not record its
// changes: a feed that opened meanwhile must not see its resolved revision
// pass them. It ends, so that its reader reads them as history; a round
// that recorded hands the feed its changes.
func TestFeedOpenedDuringAnUnrecordedRound(t *testing.T) {
	r := loadOne(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()

	f := register(r, 10)
	r.mu.Lock()
	r.mu.applied.MaxTS, r.mu.resolvedTS = 11, 11
	r.publishLocked(nil, false /* recorded */, 0)
	r.mu.Unlock()
	if _, err := f.Next(ctx); kvpb.CodeOf(err) != kvpb.ErrorCode_UNAVAILABLE {
		t.Fatalf("feed after an unrecorded round moved past it: %v, want UNAVAILABLE", err)
	}
	if r.feeds.active.Load() {
		t.Fatal("the ended feed is still registered")
	}

	g := register(r, 11)
	ev := &kvpb.Event{Kv: &kvpb.KeyValue{Key: keys.User([]byte("k")), ModRevision: 12, CreateRevision: 12, Version: 1}}
	r.mu.Lock()
	r.mu.applied.MaxTS, r.mu.resolvedTS = 12, 12
	r.publishLocked([]*kvpb.Event{ev}, true /* recorded */, 0)
	r.mu.Unlock()
	b, err := g.Next(ctx)
	if err != nil || len(b.Events) != 1 || b.Resolved != 12 || string(b.Events[0].GetKv().GetKey()) != "k" {
		t.Fatalf("recorded round: %+v %v", b, err)
	}
}
