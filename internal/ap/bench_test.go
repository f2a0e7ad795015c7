package ap

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/concorddb/concord/internal/storage"
)

// BenchmarkUpdateSolo is one node's write path on a real disk: read,
// apply, fsync (no peers), from parallel clients on distinct keys.
func BenchmarkUpdateSolo(b *testing.B) {
	eng, err := storage.Open(b.TempDir(), storage.Options{})
	if err != nil {
		b.Fatal(err)
	}
	n, err := New(Config{ID: 1, Local: NewLocal(eng), Members: Solo(1), Peers: NoPeers{}, Keyspace: DefaultKeyspace(), AntiEntropyInterval: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		n.Close()
		_ = eng.Close()
	}()
	var next atomic.Int64
	b.SetParallelism(25)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			k := []byte(fmt.Sprint("k", next.Add(1)%100000))
			if err := n.Update(context.Background(), 0, k, incr(1)); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
