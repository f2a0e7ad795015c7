package eval

import (
	"sync"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// Index remembers, for one range or for all of a node's ranges (keys are
// global, and ranges on a node are disjoint), the metadata of the newest
// version of keys that were written (create and mod revision, version, lease, live or
// deleted), so that a Put need not read its key's previous version from the
// engine: etcd keeps all of this in memory (its treeIndex), and without it
// every write pays a disk read. The engine stays the truth: a key the index
// does not know is read from it, and a Put that needs the previous value
// (prev_kv, ignore_value, ignore_lease) always reads it.
//
// The replicas that share an Index pass it every write they apply, in log
// order, and call Reset when one's state is replaced (a snapshot). It is
// safe for concurrent use, though only the apply path uses it.
type Index struct {
	mu struct {
		sync.Mutex
		// m is bounded by max entries: when full it starts over.
		m map[string]indexEntry
	}
	max int
}

type indexEntry struct {
	live                    bool
	create, mod, ver, lease int64
}

// NewIndex returns an empty Index of at most maxKeys keys.
func NewIndex(maxKeys int) *Index {
	x := &Index{max: maxKeys}
	x.mu.m = make(map[string]indexEntry)
	return x
}

// Reset forgets every key.
func (x *Index) Reset() {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.mu.m = make(map[string]indexEntry)
}

// Len is the number of keys known.
func (x *Index) Len() int {
	if x == nil {
		return 0
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return len(x.mu.m)
}

// get returns the newest version of the global key (nil if deleted) and
// whether the index knows the key.
func (x *Index) get(key []byte) (*kvpb.KeyValue, bool) {
	if x == nil {
		return nil, false
	}
	x.mu.Lock()
	e, ok := x.mu.m[string(key)]
	x.mu.Unlock()
	if !ok || !e.live {
		return nil, ok
	}
	return &kvpb.KeyValue{Key: key, CreateRevision: e.create, ModRevision: e.mod, Version: e.ver, Lease: e.lease}, true
}

func (x *Index) set(key []byte, e indexEntry) {
	if x == nil {
		return
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if _, ok := x.mu.m[string(key)]; !ok && len(x.mu.m) >= x.max {
		x.mu.m = make(map[string]indexEntry)
	}
	x.mu.m[string(key)] = e
}

func (x *Index) put(kv *kvpb.KeyValue) {
	x.set(kv.GetKey(), indexEntry{live: true, create: kv.GetCreateRevision(), mod: kv.GetModRevision(), ver: kv.GetVersion(), lease: kv.GetLease()})
}

func (x *Index) del(key []byte, rev int64) { x.set(key, indexEntry{mod: rev}) }
