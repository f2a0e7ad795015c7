package eval

import (
	"context"
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// BenchmarkReadOneKey is a linearizable Get of one key, the bench's range
// workload: 100k keys in a compacted table and 10k newer versions in the
// memtable, with a node's block cache.
func BenchmarkReadOneKey(b *testing.B) {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem(), CacheBytes: 128 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const nKeys = 100_000
	value := make([]byte, 256)
	rev := int64(0)
	write := func(from, to int) {
		batch := e.NewBatch()
		defer batch.Close()
		for i := from; i < to; i++ {
			rev++
			if err := batch.MVCCPut(&kvpb.KeyValue{Key: keys.User(fmt.Appendf(nil, "k%07d", i%nKeys)), ModRevision: rev, CreateRevision: rev, Version: 1, Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
	}
	write(0, nKeys)
	if err := e.Compact(context.Background()); err != nil {
		b.Fatal(err)
	}
	write(nKeys, nKeys+10_000)
	for i := 0; b.Loop(); i++ {
		resp, err := Read(e, keys.UserSpan, &kvpb.RangeRequest{Key: fmt.Appendf(nil, "k%07d", (i*7919)%nKeys)}, rev, 0)
		if err != nil || len(resp.GetKvs()) != 1 {
			b.Fatal(resp, err)
		}
	}
}
