package ap

import (
	"bytes"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/concorddb/concord/internal/ap/crdt"
	"github.com/concorddb/concord/internal/storage"
)

// numStripes is the number of key locks of a Local: enough that unrelated
// keys rarely wait for each other, few enough to be a fixed array.
const numStripes = 256

// Local is this node's AP data in its Pebble engine: replicas, and states
// held for other nodes (hints). Every write is an fsync'd batch: a method
// that returns nil has made its write durable.
type Local struct {
	eng  *storage.Engine
	seed maphash.Seed
	// stripes serialise the read-merge-write of each key (a key uses
	// stripes[hash(keyspace, key) % numStripes]). Held only around one
	// engine read and one batch commit, never across a network call.
	stripes [numStripes]sync.Mutex
}

// NewLocal returns the AP store over eng. The caller keeps eng open while
// the Local is in use.
func NewLocal(eng *storage.Engine) *Local { return &Local{eng: eng, seed: maphash.MakeSeed()} }

func (l *Local) lock(ks uint32, key []byte) func() {
	var h maphash.Hash
	h.SetSeed(l.seed)
	h.Write([]byte{byte(ks >> 24), byte(ks >> 16), byte(ks >> 8), byte(ks)})
	h.Write(key)
	m := &l.stripes[h.Sum64()%numStripes]
	m.Lock()
	return m.Unlock
}

func decodeState(b []byte, ok bool, what string) (*crdt.Object, error) {
	if !ok {
		return &crdt.Object{}, nil
	}
	o, err := crdt.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("ap: %s: %w", what, err)
	}
	return o, nil
}

// Get returns this node's replica of key (an empty object if it holds
// none). The caller owns the result.
func (l *Local) Get(ks uint32, key []byte) (*crdt.Object, error) {
	b, ok, err := storage.APGet(l.eng, ks, key)
	if err != nil {
		return nil, err
	}
	return decodeState(b, ok, "replica")
}

// Fetch returns this node's replica of key merged with every state it
// holds for other nodes under key: what a read that falls back to this
// node must see.
func (l *Local) Fetch(ks uint32, key []byte) (*crdt.Object, error) {
	o, err := l.Get(ks, key)
	if err != nil {
		return nil, err
	}
	hs, err := storage.APHintsOf(l.eng, ks, key)
	if err != nil {
		return nil, err
	}
	for _, h := range hs {
		p, err := decodeState(h.State, true, "hint")
		if err != nil {
			return nil, err
		}
		o.Merge(p)
	}
	return o, nil
}

// Update reads key's replica, lets fn change it and, if fn reports a
// change, writes it durably. It returns the object as stored (or as read,
// when unchanged); fn's error is returned unchanged and nothing is
// written.
func (l *Local) Update(ks uint32, key []byte, fn func(o *crdt.Object) (changed bool, err error)) (*crdt.Object, bool, error) {
	unlock := l.lock(ks, key)
	defer unlock()
	o, err := l.Get(ks, key)
	if err != nil {
		return nil, false, err
	}
	changed, err := fn(o)
	if err != nil || !changed {
		return o, false, err
	}
	b := l.eng.NewBatch()
	defer b.Close()
	if err := b.APPut(ks, key, o.Encode()); err != nil {
		return nil, false, err
	}
	if err := b.Commit(true /* sync */); err != nil {
		return nil, false, err
	}
	return o, true, nil
}

// Merge merges state into key's replica, or, when hintFor is another
// node, into the state held for that node; durably.
func (l *Local) Merge(ks uint32, key []byte, state *crdt.Object, hintFor uint64) error {
	if hintFor == 0 {
		_, _, err := l.Update(ks, key, func(o *crdt.Object) (bool, error) {
			before := o.Encode()
			o.Merge(state)
			return !bytes.Equal(before, o.Encode()), nil
		})
		return err
	}
	unlock := l.lock(ks, key)
	defer unlock()
	b, ok, err := storage.APGetHint(l.eng, ks, key, hintFor)
	if err != nil {
		return err
	}
	o, err := decodeState(b, ok, "hint")
	if err != nil {
		return err
	}
	o.Merge(state)
	enc := o.Encode()
	if ok && bytes.Equal(enc, b) {
		return nil
	}
	batch := l.eng.NewBatch()
	defer batch.Close()
	if err := batch.APPutHint(storage.APHint{Keyspace: ks, Key: key, Target: hintFor, State: enc}); err != nil {
		return err
	}
	return batch.Commit(true /* sync */)
}

// Scan returns up to limit keys of keyspace at or after start whose
// replica here is live at nowMs, in order, and whether it reached the end.
func (l *Local) Scan(ks uint32, start []byte, limit int, nowMs int64) (keys [][]byte, done bool, err error) {
	done = true
	err = storage.APScan(l.eng, ks, start, func(k, state []byte) (bool, error) {
		if len(keys) == limit {
			done = false
			return false, nil
		}
		o, err := crdt.Decode(state)
		if err != nil {
			return false, fmt.Errorf("ap: replica %q: %w", k, err)
		}
		if o.Kind(nowMs) != crdt.KindNone {
			keys = append(keys, append([]byte(nil), k...))
		}
		return true, nil
	})
	return keys, done, err
}

// Hints returns up to limit of the states held for other nodes.
func (l *Local) Hints(limit int) ([]storage.APHint, error) {
	var out []storage.APHint
	err := storage.APScanHints(l.eng, func(h storage.APHint) (bool, error) {
		out = append(out, h)
		return len(out) < limit, nil
	})
	return out, err
}

// DropHint deletes the hint h if it still holds h.State (a hint that
// grew since it was read is kept, to be handed off again), durably.
func (l *Local) DropHint(h storage.APHint) error {
	unlock := l.lock(h.Keyspace, h.Key)
	defer unlock()
	cur, ok, err := storage.APGetHint(l.eng, h.Keyspace, h.Key, h.Target)
	if err != nil || !ok || !bytes.Equal(cur, h.State) {
		return err
	}
	b := l.eng.NewBatch()
	defer b.Close()
	if err := b.APDeleteHint(h.Keyspace, h.Key, h.Target); err != nil {
		return err
	}
	return b.Commit(true /* sync */)
}
