package storage

import (
	"context"
	"fmt"
	"math/rand/v2"
	"syscall"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/storage/encfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
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
			if err := batch.MVCCPut(&kvpb.KeyValue{Key: fmt.Appendf(nil, "\x02key%06d", i), ModRevision: v, CreateRevision: 1, Version: v, Value: make([]byte, 100)}); err != nil {
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
			if err := batch.MVCCPut(&kvpb.KeyValue{Key: fmt.Appendf(nil, "\x02key%d", j), ModRevision: int64(i + 1), Version: 1, CreateRevision: 1, Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
}

// BenchmarkReadyBatch is the Ready loop's write for one round: 64 Raft
// entries of a 300-byte command and the hard state in one batch, committed
// without fsync (the fsync is the disk's, not the code's).
func BenchmarkReadyBatch(b *testing.B) {
	e := openMem(b)
	data := make([]byte, 300)
	ents := make([]*raftpb.Entry, 64)
	for i := range ents {
		ents[i] = &raftpb.Entry{Term: proto.Uint64(1), Index: proto.Uint64(0), Data: data}
	}
	index := uint64(0)
	for b.Loop() {
		for _, e := range ents {
			index++
			*e.Index = index
		}
		batch := e.NewBatch()
		if err := batch.AppendEntries(2, ents); err != nil {
			b.Fatal(err)
		}
		if err := batch.PutHardState(2, &raftpb.HardState{Term: proto.Uint64(1), Commit: proto.Uint64(index)}); err != nil {
			b.Fatal(err)
		}
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	b.ReportMetric(float64(b.N*len(ents))/b.Elapsed().Seconds(), "entries/s")
}

// BenchmarkMVCCValueCodec encodes and decodes a 256-byte value's MVCC
// encoding, as every put and every read does.
func BenchmarkMVCCValueCodec(b *testing.B) {
	v := mvccValue{createRevision: 1 << 40, version: 7, lease: 0, value: make([]byte, 256)}
	for b.Loop() {
		enc := encodeMVCCValue(v)
		if _, err := decodeMVCCValue(enc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkMVCCKeyCodec encodes and decodes an 8-byte user key's MVCC key.
func BenchmarkMVCCKeyCodec(b *testing.B) {
	key := []byte("\x02key00042")
	for i := 0; b.Loop(); i++ {
		if _, _, _, err := decodeMVCCKey(mvccKey(key, int64(i+1))); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncryption compares the engine on a real disk with and without
// encryption at rest, side by side: write commits batches of 10 100-byte
// puts without fsync (memtable flushes and compactions write encrypted
// tables in the background), read gets random keys of a flushed 20 MB
// data set through a 1 MiB block cache, so most reads decrypt a block
// read from the OS page cache: the worst case for encryption, with no
// fsync or device latency to hide its cost.
func BenchmarkEncryption(b *testing.B) {
	for _, mode := range []struct {
		name string
		enc  *encfs.Keys
	}{{"plain", nil}, {"aes-256-ctr", benchKeys(b)}} {
		opts := Options{Encryption: mode.enc, CacheBytes: 1 << 20}
		b.Run("write/"+mode.name, func(b *testing.B) {
			e, err := Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			value := make([]byte, 100)
			b.SetBytes(10 * 100)
			for i := 0; b.Loop(); i++ {
				batch := e.NewBatch()
				for j := range 10 {
					if err := batch.MVCCPut(&kvpb.KeyValue{Key: fmt.Appendf(nil, "\x02key%09d", i*10+j), ModRevision: int64(i + 1), Version: 1, CreateRevision: 1, Value: value}); err != nil {
						b.Fatal(err)
					}
				}
				if err := batch.Commit(false); err != nil {
					b.Fatal(err)
				}
				batch.Close()
			}
		})
		b.Run("read/"+mode.name, func(b *testing.B) {
			e, err := Open(b.TempDir(), opts)
			if err != nil {
				b.Fatal(err)
			}
			defer e.Close()
			const nKeys = 100_000
			value := make([]byte, 200)
			batch := e.NewBatch()
			for i := range nKeys {
				if err := batch.MVCCPut(&kvpb.KeyValue{Key: fmt.Appendf(nil, "\x02key%09d", i), ModRevision: 1, Version: 1, CreateRevision: 1, Value: value}); err != nil {
					b.Fatal(err)
				}
			}
			if err := batch.Commit(false); err != nil {
				b.Fatal(err)
			}
			batch.Close()
			if err := e.Compact(context.Background()); err != nil {
				b.Fatal(err)
			}
			r := rand.New(rand.NewPCG(1, 2))
			for b.Loop() {
				kv, err := MVCCGet(e, fmt.Appendf(nil, "\x02key%09d", r.IntN(nKeys)), 1)
				if err != nil || kv == nil {
					b.Fatal(kv, err)
				}
			}
		})
	}
}

func benchKeys(b *testing.B) *encfs.Keys {
	k, err := encfs.NewKey(make([]byte, encfs.KeyBytes))
	if err != nil {
		b.Fatal(err)
	}
	return &encfs.Keys{Active: k}
}

// BenchmarkMVCCGetFlushed reads random keys of 100k, 256-byte values, one
// version each, from tables (flushed and compacted, as after `concord
// bench`'s preload) through a block cache that holds them all: the
// table-read path a linearizable Range takes.
func BenchmarkMVCCGetFlushed(b *testing.B) {
	e, err := Open(b.TempDir(), Options{CacheBytes: 128 << 20})
	if err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	const nKeys = 100_000
	value := make([]byte, 256)
	for start := 0; start < nKeys; start += 1000 {
		batch := e.NewBatch()
		for i := start; i < start+1000; i++ {
			if err := batch.MVCCPut(&kvpb.KeyValue{Key: fmt.Appendf(nil, "\x02%08d", i), ModRevision: int64(i + 1), CreateRevision: int64(i + 1), Version: 1, Value: value}); err != nil {
				b.Fatal(err)
			}
		}
		if err := batch.Commit(false); err != nil {
			b.Fatal(err)
		}
		batch.Close()
	}
	if err := e.db.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := e.db.Compact(context.Background(), []byte{0}, []byte{0xff}, false); err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	for range nKeys { // warm the block cache
		if _, err := MVCCGet(e, fmt.Appendf(nil, "\x02%08d", rng.IntN(nKeys)), 0); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	cpu0 := processCPU(b)
	n := 0
	for b.Loop() {
		kv, err := MVCCGet(e, fmt.Appendf(nil, "\x02%08d", rng.IntN(nKeys)), 0)
		if err != nil || kv == nil {
			b.Fatal(kv, err)
		}
		n++
	}
	// CPU time, not wall time: on a shared machine it is the figure that
	// holds still.
	b.ReportMetric(float64(processCPU(b)-cpu0)/float64(n), "cpu-ns/op")
}

// processCPU is this process's user+system CPU time so far, in ns.
func processCPU(b *testing.B) int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
