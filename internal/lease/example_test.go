package lease

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// A lessor's life on the meta leader: promoted in a term, it grants,
// attaches a key, and expires the lease at its TTL, deleting the key.
// (The records and keys here are in memory; a node keeps them in the
// meta range and the user ranges.)
func Example() {
	clock := &fakeClock{t: time.Unix(0, 0)}
	userKeys := &fakeKeys{kv: map[string]int64{}}
	l, err := New(Config{
		Records: &fakeRecords{recs: map[int64]*metapb.LeaseRecord{}},
		Keys:    userKeys,
		Clock:   clock,
		MinTTL:  2,
		Logger:  slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	if err := l.Promote(ctx, 1); err != nil {
		panic(err)
	}
	l.Tick() // the first sweep: the index is built
	id, ttl, err := l.Grant(ctx, 42, 1)
	fmt.Println("granted", id, "ttl", ttl, err)
	if err := l.Attach(id, [][]byte{[]byte("service/a")}); err != nil {
		panic(err)
	}
	userKeys.put("service/a", id) // the put the attach was for
	clock.advance(3 * time.Second)
	l.Tick()
	_, err = l.TimeToLive(id, false)
	fmt.Println("after 3 s:", err, "- key kept:", userKeys.has("service/a"))
	// Output:
	// granted 42 ttl 2 <nil>
	// after 3 s: etcdserver: requested lease not found - key kept: false
}
