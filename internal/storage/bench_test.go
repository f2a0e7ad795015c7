package storage

import (
	"fmt"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb"
)

func memFS() vfs.FS { return vfs.NewMem() }

// BenchmarkMVCCGet reads the newest version of keys with 10 versions each,
// after a flush-free load (memtable-resident, so this measures the read path
// rather than disk).
func BenchmarkMVCCGet(b *testing.B) {
	e := openMem(b)
	const nKeys, nVersions = 1000, 10
	batch := e.NewBatch()
	for i := range nKeys {
		for v := int64(1); v <= nVersions; v++ {
			if err := batch.MVCCPut(&concordpb.KeyValue{Key: fmt.Appendf(nil, "\x02key%06d", i), ModRevision: v, CreateRevision: 1, Version: v, Value: make([]byte, 100)}); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := batch.Commit(false); err != nil {
		b.Fatal(err)
	}
	batch.Close()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		kv, err := MVCCGet(e, fmt.Appendf(nil, "\x02key%06d", i%nKeys), int64(i%nVersions)+1)
		if err != nil || kv == nil {
			b.Fatal(kv, err)
		}
	}
}

// BenchmarkBatchCommit commits batches of 10 100-byte puts without fsync.
func BenchmarkBatchCommit(b *testing.B) {
	e := openMem(b)
	value := make([]byte, 100)
	for i := 0; b.Loop(); i++ {
		batch := e.NewBatch()
		for j := range 10 {
			if err := batch.MVCCPut(&concordpb.KeyValue{Key: fmt.Appendf(nil, "\x02key%d", j), ModRevision: int64(i + 1), Version: 1, CreateRevision: 1, Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
}
