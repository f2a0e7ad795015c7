package watch

import (
	"testing"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// ringOf returns a hub whose ring holds n changes of the user key k at
// revisions 1..n, each with a previous version.
func ringOf(n int, k string) *Hub {
	h := NewHub(nil, nil)
	var evs []*Event
	for rev := int64(1); rev <= int64(n); rev++ {
		evs = append(evs, &Event{Event: &kvpb.Event{
			Kv:     &kvpb.KeyValue{Key: []byte(k), ModRevision: rev, Value: []byte("v")},
			PrevKv: &kvpb.KeyValue{Key: []byte(k), ModRevision: rev - 1, Value: []byte("p")},
		}})
	}
	h.mu.running = true
	h.appendRingLocked(evs)
	return h
}

func oneKeyWatcher(k string, minRev int64) *watcher {
	return &watcher{span: keys.UserSpanOf([]byte(k), nil), single: true, minRev: minRev}
}

// A one-key watcher gets the key's ring without a copy; what it got stays
// as it was while the ring drops its oldest changes and grows, and the
// prev_kv it loses at a compaction is lost in its own copy, not in the
// ring that later watchers read.
func TestRingForOneKeyIsNotDisturbedByTheRing(t *testing.T) {
	h := ringOf(100, "k")
	w := oneKeyWatcher("k", 41)
	got := h.ringForLocked(w)
	if len(got) != 60 || got[0].GetKv().GetModRevision() != 41 {
		t.Fatalf("ring for minRev 41: %d changes from %d", len(got), got[0].GetKv().GetModRevision())
	}
	h.dropRingLocked(50)
	h.appendRingLocked([]*Event{{Event: &kvpb.Event{Kv: &kvpb.KeyValue{Key: []byte("k"), ModRevision: 101}}}})
	for i, ev := range got {
		if ev == nil || ev.GetKv().GetModRevision() != int64(41+i) {
			t.Fatalf("change %d of what the watcher got became %v", i, ev)
		}
	}
	_ = append(got, &Event{Event: &kvpb.Event{Kv: &kvpb.KeyValue{Key: []byte("k"), ModRevision: 999}}})
	if ring := h.mu.ringByKey["k"]; ring[len(ring)-1].GetKv().GetModRevision() != 101 {
		t.Fatalf("an append to what the watcher got wrote into the ring: its newest change is %v", ring[len(ring)-1])
	}
	h.mu.compacted = 60
	stripped := h.ringForLocked(oneKeyWatcher("k", 51))
	if stripped[0].GetPrevKv() != nil || stripped[10].GetPrevKv() == nil {
		t.Fatalf("at compaction 60, revision 51 keeps prev_kv %v, revision 61 has %v", stripped[0].GetPrevKv(), stripped[10].GetPrevKv())
	}
	if h.mu.ringByKey["k"][0].GetPrevKv() == nil {
		t.Fatal("stripping prev_kv for one watcher stripped it from the ring")
	}
}

// BenchmarkRingForHotKey is one step of a victim's catch-up on a key with
// 10000 changes in the ring (a watcher 10000 revisions behind).
func BenchmarkRingForHotKey(b *testing.B) {
	h := ringOf(10000, "k")
	w := oneKeyWatcher("k", 1)
	b.ReportAllocs()
	for b.Loop() {
		if evs := h.ringForLocked(w); len(evs) != 10000 {
			b.Fatal(len(evs))
		}
	}
}
