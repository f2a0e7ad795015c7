package etcdapi

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/watch"
)

// appendEventsResponse writes the bytes proto.Marshal writes for the same
// WatchResponse, for every mix of events, prev_kv, filters, watch ids and
// headers, and they decode to the same message.
func TestAppendEventsResponseIsProtoMarshal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for i := 0; i < 500; i++ {
		var evs []*watch.Event
		for j := rng.IntN(5); j >= 0; j-- {
			rev := int64(rng.IntN(1 << 40))
			ev := &kvpb.Event{Kv: &kvpb.KeyValue{Key: []byte(fmt.Sprintf("k%d", rng.IntN(100))), ModRevision: rev, CreateRevision: rev / 2, Version: int64(rng.IntN(3)), Lease: int64(rng.IntN(2)) * 77}}
			if rng.IntN(2) == 0 {
				ev.Kv.Value = bytes.Repeat([]byte("v"), rng.IntN(300))
			}
			if rng.IntN(3) == 0 {
				ev.Type = kvpb.Event_DELETE
			}
			if rng.IntN(2) == 0 {
				ev.PrevKv = &kvpb.KeyValue{Key: ev.Kv.Key, ModRevision: rev - 1, Value: []byte("prev")}
			}
			evs = append(evs, &watch.Event{Event: ev})
		}
		opts := &watchOptions{prevKV: rng.IntN(2) == 0, noDelete: rng.IntN(4) == 0}
		tevs := fromEvents(evs, opts)
		watchID := []int64{0, 1, int64(rng.IntN(1 << 20)), 1<<62 + 5}[rng.IntN(4)]
		h := &pb.ResponseHeader{ClusterId: rng.Uint64(), MemberId: uint64(rng.IntN(9)), Revision: int64(rng.IntN(1 << 30)), RaftTerm: uint64(rng.IntN(3))}
		hdr, err := proto.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		want := &pb.WatchResponse{Header: h, WatchId: watchID, Events: etcdEvents(tevs)}
		wantBytes, err := proto.Marshal(want)
		if err != nil {
			t.Fatal(err)
		}
		got := appendEventsResponse(hdr, watchID, tevs)
		if !bytes.Equal(got, wantBytes) {
			t.Fatalf("case %d: appendEventsResponse\n%x\nproto.Marshal\n%x", i, got, wantBytes)
		}
		decoded := &pb.WatchResponse{}
		if err := proto.Unmarshal(got, decoded); err != nil || !proto.Equal(decoded, want) {
			t.Fatalf("case %d: decodes to %v (%v), want %v", i, decoded, err, want)
		}
	}
}

// BenchmarkWatchResponseFanOut is one change sent to 1000 watchers of a
// stream: each watcher's response is encoded from the change's shared
// encoding.
func BenchmarkWatchResponseFanOut(b *testing.B) {
	ev := &watch.Event{Event: &kvpb.Event{Kv: &kvpb.KeyValue{Key: []byte("key00001"), ModRevision: 100, CreateRevision: 5, Version: 3, Value: make([]byte, 256)}}}
	opts := &watchOptions{}
	hdr, _ := proto.Marshal(&pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 100})
	// shared: what the stream sends now; marshal: a proto.Marshal of each
	// watcher's response, as gRPC's codec did before.
	b.Run("shared", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for id := int64(1); id <= 1000; id++ {
				if len(appendEventsResponse(hdr, id, fromEvents([]*watch.Event{ev}, opts))) == 0 {
					b.Fatal("empty")
				}
			}
		}
	})
	b.Run("marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for id := int64(1); id <= 1000; id++ {
				wr := &pb.WatchResponse{Header: &pb.ResponseHeader{ClusterId: 1, MemberId: 2, Revision: 100}, WatchId: id, Events: etcdEvents(fromEvents([]*watch.Event{ev}, opts))}
				if out, err := proto.Marshal(wr); err != nil || len(out) == 0 {
					b.Fatal(err)
				}
			}
		}
	})
}
