package storage

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/cockroachdb/pebble/v2"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/concorddb/concord/internal/concordpb/kvpb"

	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage/encfs"
)

// ErrCorrupt is wrapped by every error that reports undecodable bytes read
// from disk or from a snapshot blob.
var ErrCorrupt = errors.New("storage: corrupt data")

// memTableBytes is the size of one memtable. A node under a steady put load
// writes a few MB/s (each write twice: Raft log and MVCC), so 8 MiB flushes
// every few seconds; a larger one costs resident memory for no throughput
// (32 MiB: +17 MiB peak RSS over three nodes, same ops/s, in concord bench
// compare). The prefix seeks of point reads keep the extra level-0 tables
// cheap (bloom filters).
const memTableBytes = 8 << 20

// Options configures Open.
type Options struct {
	// FS is the file system to use; nil means the real disk. Tests pass
	// vfs.NewMem() or vfs.NewCrashableMem().
	FS vfs.FS
	// CacheBytes is the size of the block cache; 0 means Pebble's default
	// (8 MiB).
	CacheBytes int64
	// Encryption, when set, encrypts every file the engine writes (the
	// Raft log and MVCC data alike: both are Pebble's) with encfs, and FS
	// is the file system beneath the encryption. The data dir records
	// whether it is encrypted (mode.go); Open and Inspect refuse a dir
	// written in the other mode, and a dir holding a file under a key
	// that Encryption lacks.
	Encryption *encfs.Keys
}

// Engine is a node's Pebble engine. It is safe for concurrent use; Batches
// and Snapshots made from it are not.
type Engine struct {
	db *pebble.DB
	// filesByKey counts the engine's files by encryption key at Open (nil
	// if not encrypted).
	filesByKey map[encfs.KeyID]int
}

// Reader is anything storage's read functions can read from: *Engine (newest
// committed state), *Batch (committed state plus the batch's own writes) and
// *Snapshot (a point-in-time view).
type Reader interface {
	pebbleReader() pebble.Reader
}

var (
	_ Reader = (*Engine)(nil)
	_ Reader = (*Batch)(nil)
	_ Reader = (*Snapshot)(nil)
)

// Open opens (creating if needed) the engine in dir.
func Open(dir string, opts Options) (*Engine, error) {
	base, fs, err := opts.fileSystems()
	if err != nil {
		return nil, err
	}
	if err := base.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("storage: create %s: %w", dir, err)
	}
	byKey, err := opts.prepare(base, fs, dir, true /* create */)
	if err != nil {
		return nil, err
	}
	db, err := pebble.Open(dir, opts.pebble(fs))
	if err != nil {
		return nil, fmt.Errorf("storage: open %s: %w", dir, err)
	}
	return &Engine{db: db, filesByKey: byKey}, nil
}

// fileSystems returns the file system beneath the engine and the one the
// engine uses: the same one, or encfs over it.
func (o Options) fileSystems() (base, fs vfs.FS, err error) {
	base = o.FS
	if base == nil {
		base = vfs.Default
	}
	if o.Encryption == nil {
		return base, base, nil
	}
	enc, err := encfs.New(base, *o.Encryption)
	if err != nil {
		return nil, nil, fmt.Errorf("storage: %w", err)
	}
	return base, enc, nil
}

// prepare checks, before Pebble reads anything in dir, that dir's
// encryption mode is o's (recording it, with create, in a new dir) and,
// if encrypted, that every file's key is at hand, so that a missing key
// fails here naming its id instead of at the first read of an old table.
// It returns the engine's files by key (nil if not encrypted).
func (o Options) prepare(base, fs vfs.FS, dir string, create bool) (map[encfs.KeyID]int, error) {
	if err := o.checkMode(base, dir, create); err != nil {
		return nil, err
	}
	enc, ok := fs.(*encfs.FS)
	if !ok {
		return nil, nil
	}
	census, err := enc.CheckDir(dir, modeFileName, modeTempName)
	if err != nil {
		return nil, fmt.Errorf("storage: %s: %w", dir, err)
	}
	return census.ByKey, nil
}

// FilesByKey counts the engine's files by the key they were encrypted
// with when it opened (nil if it is not encrypted): a key that no file
// uses any more can be dropped from the old keys.
func (e *Engine) FilesByKey() map[encfs.KeyID]int { return e.filesByKey }

func (o Options) pebble(fs vfs.FS) *pebble.Options {
	popts := &pebble.Options{
		FS:           fs,
		Logger:       quietLogger{},
		Comparer:     comparer,
		MemTableSize: memTableBytes,
	}
	applyFilters(popts)
	if o.CacheBytes > 0 {
		popts.CacheSize = o.CacheBytes
	}
	return popts
}

// ErrDataDir is wrapped by Inspect's errors about a data dir that holds
// something other than a sound Concord engine.
var ErrDataDir = errors.New("storage: unusable data dir")

// Inspect reads the identity of the node whose engine is in dir without
// changing any file there (the engine is opened read-only and closed), so
// that a node can check what its data dir holds against its flags before it
// writes anything. ok is false for a fresh node: dir is absent, empty (but
// for lost+found), or an engine that holds no replica and no identity yet
// (a first start that stopped before it got one). A dir that holds files
// but no engine, an engine Pebble cannot open, or an engine whose own
// records do not decode or contradict each other gives an error wrapping
// ErrDataDir.
func Inspect(dir string, opts Options) (id Ident, ok bool, err error) {
	base, fs, err := opts.fileSystems()
	if err != nil {
		return Ident{}, false, err
	}
	names, err := base.List(dir)
	if errors.Is(err, os.ErrNotExist) {
		return Ident{}, false, nil
	}
	if err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s: %v", ErrDataDir, dir, err)
	}
	var files []string
	for _, name := range names {
		if name != "lost+found" && !isModeFile(name) {
			files = append(files, name)
		}
	}
	if len(files) == 0 {
		return Ident{}, false, nil
	}
	if _, err := opts.prepare(base, fs, dir, false /* create */); err != nil {
		return Ident{}, false, err
	}
	desc, err := pebble.Peek(dir, fs)
	if err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: %v", ErrDataDir, dir, err)
	}
	if !desc.Exists {
		sort.Strings(files)
		return Ident{}, false, fmt.Errorf("%w: %s is not empty (%d files: %s) but holds no Concord data; refusing to write into it",
			ErrDataDir, dir, len(files), strings.Join(files[:min(len(files), 5)], ", "))
	}
	popts := opts.pebble(fs)
	popts.ReadOnly = true
	db, err := pebble.Open(dir, popts)
	if err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s cannot be opened (damaged, or in use by another process): %v", ErrDataDir, dir, err)
	}
	e := &Engine{db: db}
	defer func() {
		if cerr := e.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("%w: %s: close: %v", ErrDataDir, dir, cerr)
		}
	}()
	id, ok, err = LoadIdent(e)
	if err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: %v", ErrDataDir, dir, err)
	}
	descs, err := LoadLocalDescriptors(e)
	if err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: %v", ErrDataDir, dir, err)
	}
	if _, err := LoadNodeBook(e); err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: %v", ErrDataDir, dir, err)
	}
	if _, _, err := LoadMetaHint(e); err != nil {
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: %v", ErrDataDir, dir, err)
	}
	switch {
	case !ok && len(descs) > 0:
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: it holds replicas of %d ranges but no node identity", ErrDataDir, dir, len(descs))
	case ok && (id.ClusterID == 0 || id.NodeID == 0):
		return Ident{}, false, fmt.Errorf("%w: %s is damaged: node identity %+v has a zero id", ErrDataDir, dir, id)
	}
	return id, ok, nil
}

// Close closes the engine. Every Batch and Snapshot must be closed first.
func (e *Engine) Close() error { return e.db.Close() }

func (e *Engine) pebbleReader() pebble.Reader { return e.db }

// DiskUsageBytes is the engine's current on-disk size, for metrics and the
// placement driver.
func (e *Engine) DiskUsageBytes() int64 { return int64(e.db.Metrics().DiskSpaceUsage()) }

// ApproximateBytes estimates the disk space the system and MVCC data of
// span take (Pebble's EstimateDiskUsage: whole tables, so small spans read
// high).
func (e *Engine) ApproximateBytes(span keys.Span) (int64, error) {
	var total uint64
	for _, b := range blobSpans(span) {
		n, err := e.db.EstimateDiskUsage(b[0], b[1])
		if err != nil {
			return 0, fmt.Errorf("storage: estimate %v: %w", span, err)
		}
		total += n
	}
	return int64(total), nil
}

// EngineStats are the storage engine's figures that metrics report.
type EngineStats struct {
	DiskUsageBytes int64
	// Compactions counts compactions since the engine opened.
	Compactions int64
	// L0Files is the number of tables in level 0: a growing count means
	// compactions fall behind writes.
	L0Files int64
}

// Stats returns the engine's current figures.
func (e *Engine) Stats() EngineStats {
	m := e.db.Metrics()
	return EngineStats{DiskUsageBytes: int64(m.DiskSpaceUsage()), Compactions: m.Compact.Count, L0Files: m.Levels[0].TablesCount}
}

// Batch is an indexed write batch: reads through it see its own writes. Not
// safe for concurrent use. Close it after Commit, or instead of Commit to
// discard it.
type Batch struct {
	b *pebble.Batch
	// events, once RecordEvents is called, collects the batch's MVCC
	// writes in the order they were made (see RecordEvents).
	events    []*kvpb.Event
	recording bool
}

// NewBatch returns an empty indexed batch.
func (e *Engine) NewBatch() *Batch { return &Batch{b: e.db.NewIndexedBatch()} }

func (b *Batch) pebbleReader() pebble.Reader { return b.b }

// Commit applies the batch atomically. With sync it returns only after the
// write-ahead log is fsynced, so the batch survives a crash; without, a crash
// may lose the batch, but never part of it.
func (b *Batch) Commit(sync bool) error {
	wo := pebble.NoSync
	if sync {
		wo = pebble.Sync
	}
	if err := b.b.Commit(wo); err != nil {
		return fmt.Errorf("storage: commit: %w", err)
	}
	return nil
}

// RecordEvents makes the batch remember its MVCC writes, in order, as
// change events (a put's version, a delete's key and revision; no
// prev_kv), for a range's change feed. TakeEvents returns them.
func (b *Batch) RecordEvents() { b.recording = true }

// TakeEvents returns the events recorded since the last call and forgets
// them; the caller owns them. An event's KeyValue may share the value
// bytes of what was written.
func (b *Batch) TakeEvents() []*kvpb.Event {
	out := b.events
	b.events = nil
	return out
}

// DropEventsAfter forgets the events recorded after the first n (what a
// failed command recorded before it failed).
func (b *Batch) DropEventsAfter(n int) {
	if n < len(b.events) {
		clear(b.events[n:])
		b.events = b.events[:n]
	}
}

// EventCount is the number of events recorded and not yet taken.
func (b *Batch) EventCount() int { return len(b.events) }

// Close releases the batch, discarding it if it was not committed.
func (b *Batch) Close() { _ = b.b.Close() }

// Empty reports whether the batch holds no writes.
func (b *Batch) Empty() bool { return b.b.Empty() }

// Len is the batch's encoded size in bytes, for metrics and size limits.
func (b *Batch) Len() int { return b.b.Len() }

// Snapshot is a consistent point-in-time view of the engine. Close it when
// done: an open snapshot pins old data.
type Snapshot struct {
	s *pebble.Snapshot
}

// NewSnapshot returns a view of the engine's current committed state.
func (e *Engine) NewSnapshot() *Snapshot { return &Snapshot{s: e.db.NewSnapshot()} }

func (s *Snapshot) pebbleReader() pebble.Reader { return s.s }

// Close releases the snapshot.
func (s *Snapshot) Close() { _ = s.s.Close() }

// quietLogger drops Pebble's informational messages (they would flood test
// output and the node's log), logs its errors and keeps fatal errors fatal.
type quietLogger struct{}

func (quietLogger) Infof(string, ...any) {}
func (quietLogger) Errorf(format string, args ...any) {
	slog.Error("pebble: " + fmt.Sprintf(format, args...))
}
func (quietLogger) Fatalf(format string, args ...any) {
	panic(fmt.Sprintf("storage: pebble: "+format, args...))
}

// get reads one engine key. ok is false if it is absent. The caller owns the
// returned value.
func get(r Reader, key []byte) (value []byte, ok bool, err error) {
	v, closer, err := r.pebbleReader().Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("storage: get: %w", err)
	}
	out := append([]byte(nil), v...)
	if err := closer.Close(); err != nil {
		return nil, false, fmt.Errorf("storage: get: %w", err)
	}
	return out, true, nil
}

// newIter returns an iterator over engine keys in [lower, upper).
func newIter(r Reader, lower, upper []byte) (*pebble.Iterator, error) {
	it, err := r.pebbleReader().NewIter(&pebble.IterOptions{LowerBound: lower, UpperBound: upper})
	if err != nil {
		return nil, fmt.Errorf("storage: new iterator: %w", err)
	}
	return it, nil
}

// closeIter closes it, keeping the first error.
func closeIter(it *pebble.Iterator, err *error) {
	if cerr := it.Close(); cerr != nil && *err == nil {
		*err = fmt.Errorf("storage: iterator: %w", cerr)
	}
}
