package watch

import (
	"context"
	"runtime"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
)

// oneRange is a keyspace of one range for hub tests.
func oneRange() *fakeSource {
	return &fakeSource{
		feeds:  map[string]*fakeFeed{},
		refuse: map[uint64]string{},
		opened: make(chan struct{}, 100),
		ranges: []*metapb.RangeDescriptor{{RangeId: 1, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End}},
	}
}

// feedOf waits for the hub to open its feed on the range.
func feedOf(t *testing.T, src *fakeSource) *fakeFeed {
	t.Helper()
	select {
	case <-src.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the hub opened no feed")
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	for _, f := range src.feeds {
		return f
	}
	t.Fatal("no feed")
	return nil
}

// A watcher whose stream fills is moved aside and, once its client reads
// again, gets every change once and in order: what it missed comes from
// the hub's ring, without reading any history from the range.
func TestHubVictimCatchesUpFromTheRing(t *testing.T) {
	src := oneRange()
	h := NewHub(src, nil)
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := h.NewStream(ctx)
	defer st.Close()
	if _, err := st.Watch(ctx, Request{Span: keys.Span{Start: keys.User([]byte("k"))}}); err != nil {
		t.Fatal(err)
	}
	if r := <-st.Out(); !r.Created {
		t.Fatalf("first response %+v, want created", r)
	}
	f := feedOf(t, src)
	// One change per message: one response per change, past the stream's
	// queue.
	n := StreamQueueLen + 100
	for i := 1; i <= n; i++ {
		ev := &rpcpb.RangeFeedEvent{Resolved: int64(i), Events: []*kvpb.Event{{Kv: &kvpb.KeyValue{Key: []byte("k"), ModRevision: int64(i), CreateRevision: 1}}}}
		select {
		case f.ch <- ev:
		case <-time.After(10 * time.Second):
			t.Fatalf("the hub stopped reading its feed at change %d", i)
		}
	}
	if h.Victims() == 0 {
		t.Fatal("the full stream's watcher was not moved aside")
	}
	next := int64(1)
	for next <= int64(n) {
		select {
		case r := <-st.Out():
			for _, ev := range r.Events {
				if ev.GetKv().GetModRevision() != next {
					t.Fatalf("change at %d, want %d", ev.GetKv().GetModRevision(), next)
				}
				next++
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("got changes up to %d of %d", next-1, n)
		}
	}
	src.mu.Lock()
	opens := len(src.log)
	src.mu.Unlock()
	if opens != 1 {
		t.Fatalf("%d feeds opened (%v): the victim read the history instead of the ring", opens, src.log)
	}
	if s := h.Stats(); s.Synced != 1 || s.Watchers != 1 {
		t.Fatalf("after catching up: %+v, want the watcher synced again", s)
	}
}

// After a compaction the hub hears of, a watcher starting below it is
// canceled with the compaction's revision, as etcd's.
func TestHubCancelsAWatcherBelowACompaction(t *testing.T) {
	src := oneRange()
	src.current = 10
	h := NewHub(src, nil)
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := h.NewStream(ctx)
	defer st.Close()
	if _, err := st.Watch(ctx, Request{Span: keys.Span{Start: keys.User([]byte("a"))}}); err != nil {
		t.Fatal(err)
	}
	<-st.Out()
	feedOf(t, src)
	h.NoteCompacted(5)
	src.mu.Lock()
	src.refuse[1] = "COMPACTED" // the range refuses history below its compaction
	src.mu.Unlock()
	id, err := st.Watch(ctx, Request{Span: keys.Span{Start: keys.User([]byte("b"))}, StartRevision: 3})
	if err != nil {
		t.Fatal(err)
	}
	for {
		select {
		case r := <-st.Out():
			if r.WatchID != id || r.Created {
				continue
			}
			if !r.Canceled || r.CompactRevision == 0 {
				t.Fatalf("watcher below the compaction got %+v, want canceled with the compaction", r)
			}
			return
		case <-time.After(10 * time.Second):
			t.Fatal("the watcher below the compaction was never canceled")
		}
	}
}

// Progress requests a client sends faster than the hub can answer them
// wait in one set per stream, served by one goroutine: they cost neither
// a goroutine each nor unbounded memory.
func TestProgressRequestsAreBounded(t *testing.T) {
	src := oneRange()
	src.current = 10
	h := NewHub(src, nil)
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := h.NewStream(ctx)
	defer st.Close()
	if _, err := st.Watch(ctx, Request{Span: keys.Span{Start: keys.User([]byte("k"))}}); err != nil {
		t.Fatal(err)
	}
	<-st.Out()
	f := feedOf(t, src)
	// The cluster moves on: progress now waits for the hub to reach 20.
	src.mu.Lock()
	src.current = 20
	src.mu.Unlock()
	before := runtime.NumGoroutine()
	for range 1000 {
		st.RequestProgress()
	}
	if n := runtime.NumGoroutine() - before; n > 20 {
		t.Fatalf("1000 progress requests started %d goroutines", n)
	}
	// Once the range resolves up to 20 the stream hears of it.
	select {
	case f.ch <- &rpcpb.RangeFeedEvent{Resolved: 20}:
	case <-time.After(10 * time.Second):
		t.Fatal("the hub stopped reading its feed")
	}
	for {
		select {
		case r := <-st.Out():
			if r.Progress {
				if r.WatchID != -1 || r.Revision < 20 {
					t.Fatalf("progress %+v, want the stream's at 20 or more", r)
				}
				return
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no progress notification")
		}
	}
}

// A compaction the hub hears of from its gateway before its feed brings
// the change at that revision: a watcher synced before gets the change
// live with its previous version (Kubernetes requires it on every
// update), and a watcher created afterwards from the compacted revision
// gets it from the ring without one (the compaction removed it, etcd sends
// none), the next change with its own.
func TestHubDropsPrevKVAtACompactionItHeardOfFirst(t *testing.T) {
	src := oneRange()
	h := NewHub(src, nil)
	defer h.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st := h.NewStream(ctx)
	defer st.Close()
	if _, err := st.Watch(ctx, Request{Span: keys.Span{Start: keys.User([]byte("k"))}}); err != nil {
		t.Fatal(err)
	}
	<-st.Out()
	f := feedOf(t, src)
	h.NoteCompacted(5)
	put := func(rev int64) *kvpb.Event {
		return &kvpb.Event{
			Kv:     &kvpb.KeyValue{Key: []byte("k"), ModRevision: rev, CreateRevision: 1, Value: []byte{byte(rev)}},
			PrevKv: &kvpb.KeyValue{Key: []byte("k"), ModRevision: rev - 1, CreateRevision: 1, Value: []byte{byte(rev - 1)}},
		}
	}
	f.ch <- &rpcpb.RangeFeedEvent{Resolved: 6, Events: []*kvpb.Event{put(5), put(6)}}
	read := func(st *Stream, id int64) []*kvpb.Event {
		t.Helper()
		var got []*kvpb.Event
		for len(got) < 2 {
			select {
			case r := <-st.Out():
				if r.WatchID != id {
					continue
				}
				for _, ev := range r.Events {
					got = append(got, ev.Event)
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("got %d of 2 changes", len(got))
			}
		}
		return got
	}
	live := read(st, 0)
	if live[0].GetPrevKv().GetModRevision() != 4 || live[1].GetPrevKv().GetModRevision() != 5 {
		t.Fatalf("the synced watcher got prevs %v and %v, want the versions at 4 and 5", live[0].GetPrevKv(), live[1].GetPrevKv())
	}
	id, err := st.Watch(ctx, Request{Span: keys.Span{Start: keys.User([]byte("k"))}, StartRevision: 5})
	if err != nil {
		t.Fatal(err)
	}
	late := read(st, id)
	if late[0].GetPrevKv() != nil {
		t.Fatalf("the change at the compaction came to a new watcher with prev %v, which the compaction removed", late[0].GetPrevKv())
	}
	if late[1].GetPrevKv().GetModRevision() != 5 {
		t.Fatalf("the change above the compaction came with prev %v, want the version at 5", late[1].GetPrevKv())
	}
	if live[0].GetPrevKv() == nil {
		t.Fatal("serving the new watcher took the previous version from the synced one's change")
	}
}
