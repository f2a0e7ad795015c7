package encfs

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
)

// countingFS counts the WAL files Pebble recycles.
type countingFS struct {
	vfs.FS
	reused atomic.Int64
}

func (fs *countingFS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	fs.reused.Add(1)
	return fs.FS.ReuseForWrite(oldname, newname, category)
}

func openPebble(t *testing.T, fs vfs.FS) *pebble.DB {
	t.Helper()
	db, err := pebble.Open("db", &pebble.Options{FS: fs, MemTableSize: 64 << 10, L0CompactionThreshold: 2})
	if err != nil {
		t.Fatal(err)
	}
	return db
}

func value(i int) []byte {
	return fmt.Appendf(nil, "secret-value-%06d-%s", i, bytes.Repeat([]byte("v"), 100))
}

// Pebble runs on FS as on a plain disk: flushes, compactions, recycled
// WALs (whose old tails decrypt to noise under the new IV), a reopen and
// a crash that keeps only what was synced; and no value is on the disk in
// the clear.
func TestPebbleOnFS(t *testing.T) {
	mem := vfs.NewCrashableMem()
	counting := &countingFS{FS: mem}
	fs := newFS(t, counting, testKey(t, 7))
	db := openPebble(t, fs)
	const n = 20000
	for i := range n {
		if err := db.Set(fmt.Appendf(nil, "key-%06d", i), value(i), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Compact(context.Background(), []byte("key-"), []byte("key-z"), true); err != nil {
		t.Fatal(err)
	}
	// Writes after the compaction go to recycled WALs; the crash below
	// keeps only what was synced.
	for i := n; i < n+2000; i++ {
		if err := db.Set(fmt.Appendf(nil, "key-%06d", i), value(i), pebble.Sync); err != nil {
			t.Fatal(err)
		}
	}
	if counting.reused.Load() == 0 {
		t.Fatal("Pebble recycled no WAL file; the test does not cover ReuseForWrite")
	}
	crashed := mem.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: 50, RNG: rand.New(rand.NewPCG(5, 6))})
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	for _, fsys := range []vfs.FS{mem, crashed} {
		db := openPebble(t, newFS(t, fsys, testKey(t, 7)))
		for i := range n + 2000 {
			v, closer, err := db.Get(fmt.Appendf(nil, "key-%06d", i))
			if err != nil {
				t.Fatalf("key %d: %v", i, err)
			}
			if !bytes.Equal(v, value(i)) {
				t.Fatalf("key %d reads %q", i, v)
			}
			closer.Close()
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
	}

	names, err := mem.List("db")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		raw := readAll(t, mem, mem.PathJoin("db", name))
		if bytes.Contains(raw, []byte("secret-value")) || bytes.Contains(raw, []byte("key-0")) {
			t.Fatalf("%s holds plaintext", name)
		}
	}
}
