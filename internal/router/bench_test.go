package router

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"google.golang.org/grpc"
)

// BenchmarkLookup finds the range of a key among 1000 cached ranges, as the
// gateway does for every request.
func BenchmarkLookup(b *testing.B) {
	noDial := func(context.Context, uint64) (*grpc.ClientConn, error) { return nil, errors.New("no network here") }
	r, err := New(Config{NodeID: 9, Local: noLocal{}, Dial: noDial, Meta: &metapb.RangeDescriptor{RangeId: 1}})
	if err != nil {
		b.Fatal(err)
	}
	var ranges []*metapb.RangeDescriptor
	for i := range 1000 {
		start, end := keys.User(fmt.Appendf(nil, "k%04d", i)), keys.User(fmt.Appendf(nil, "k%04d", i+1))
		if i == 0 {
			start = keys.UserSpan.Start
		}
		if i == 999 {
			end = keys.UserSpan.End
		}
		ranges = append(ranges, &metapb.RangeDescriptor{RangeId: uint64(i + 2), StartKey: start, EndKey: end, Replicas: userDesc.Replicas})
	}
	r.mu.ranges = ranges
	ctx := context.Background()
	for i := 0; b.Loop(); i++ {
		k := keys.User(fmt.Appendf(nil, "k%04d/x", i%1000))
		d, err := r.lookup(ctx, keys.Span{Start: k})
		if err != nil || d.GetRangeId() != uint64(i%1000+2) {
			b.Fatal(d, err)
		}
	}
}

// BenchmarkForward round-trips requests over one forward stream from 64
// concurrent callers; the serving side answers at once, so this measures
// the forwarding machinery (batching, the pool, gRPC) alone.
func BenchmarkForward(b *testing.B) {
	s := forwardTo(b, func(context.Context, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) { return ok(1) })
	req := &cmdpb.BatchRequest{RangeId: 2, Op: put("k")}
	b.SetParallelism(32) // 64 callers on 2 CPUs
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := s.call(context.Background(), req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
