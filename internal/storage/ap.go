package storage

import (
	"encoding/binary"
	"fmt"
)

// kindAP is the engine key kind of AP keyspace data (internal/ap). It lies
// outside every range: AP data is replicated leaderless by internal/ap,
// not by Raft, and no range's snapshot, clear or hash touches it.
//
//	0x06 'r' <keyspace, 4 BE> <escaped key>                the node's replica
//	0x06 'h' <keyspace, 4 BE> <escaped key> <node, 8 BE>  a hinted state held
//	                                                      for another node
//
// The value is an encoded CRDT state that storage does not interpret.
const kindAP byte = 0x06

const (
	apReplica byte = 'r'
	apHint    byte = 'h'
)

func apPrefix(sub byte, keyspace uint32) []byte {
	k := make([]byte, 0, 2+4+16)
	k = append(k, kindAP, sub)
	return binary.BigEndian.AppendUint32(k, keyspace)
}

func apReplicaKey(keyspace uint32, key []byte) []byte {
	return appendEscaped(apPrefix(apReplica, keyspace), key)
}

func apHintKey(keyspace uint32, key []byte, target uint64) []byte {
	return binary.BigEndian.AppendUint64(appendEscaped(apPrefix(apHint, keyspace), key), target)
}

// APGet reads the replica state of key in keyspace; ok is false if this
// node holds none.
func APGet(r Reader, keyspace uint32, key []byte) (state []byte, ok bool, err error) {
	return get(r, apReplicaKey(keyspace, key))
}

// APPut writes the replica state of key in keyspace.
func (b *Batch) APPut(keyspace uint32, key, state []byte) error {
	if err := b.b.Set(apReplicaKey(keyspace, key), state, nil); err != nil {
		return fmt.Errorf("storage: ap put: %w", err)
	}
	return nil
}

// APScan calls fn with every replica of keyspace whose key is at or after
// start, in key order, until fn returns false or an error. key and state
// are valid only during the call.
func APScan(r Reader, keyspace uint32, start []byte, fn func(key, state []byte) (bool, error)) (err error) {
	p := apPrefix(apReplica, keyspace)
	it, err := newIter(r, appendEscaped(append([]byte(nil), p...), start), prefixEnd(p))
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		key, n, err := unescape(k[len(p):])
		if err != nil {
			return err
		}
		if len(p)+n != len(k) {
			return fmt.Errorf("%w: trailing bytes in ap key %x", ErrCorrupt, k)
		}
		more, err := fn(key, it.Value())
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

// APHint is a state held for another node (hinted handoff).
type APHint struct {
	Keyspace uint32
	Key      []byte
	Target   uint64
	State    []byte
}

// APPutHint writes the state held for target.
func (b *Batch) APPutHint(h APHint) error {
	if err := b.b.Set(apHintKey(h.Keyspace, h.Key, h.Target), h.State, nil); err != nil {
		return fmt.Errorf("storage: ap put hint: %w", err)
	}
	return nil
}

// APDeleteHint deletes the state held for target.
func (b *Batch) APDeleteHint(keyspace uint32, key []byte, target uint64) error {
	if err := b.b.Delete(apHintKey(keyspace, key, target), nil); err != nil {
		return fmt.Errorf("storage: ap delete hint: %w", err)
	}
	return nil
}

// APGetHint reads the state held for target; ok is false if there is none.
func APGetHint(r Reader, keyspace uint32, key []byte, target uint64) ([]byte, bool, error) {
	return get(r, apHintKey(keyspace, key, target))
}

// APHintsOf returns every state held for another node under key.
func APHintsOf(r Reader, keyspace uint32, key []byte) ([]APHint, error) {
	p := appendEscaped(apPrefix(apHint, keyspace), key)
	var out []APHint
	err := scanHints(r, p, prefixEnd(p), func(h APHint) (bool, error) {
		out = append(out, h)
		return true, nil
	})
	return out, err
}

// APScanHints calls fn with every hint of every keyspace in key order,
// until fn returns false or an error; the hints are the caller's.
func APScanHints(r Reader, fn func(APHint) (bool, error)) error {
	p := []byte{kindAP, apHint}
	return scanHints(r, p, prefixEnd(p), fn)
}

func scanHints(r Reader, lower, upper []byte, fn func(APHint) (bool, error)) (err error) {
	it, err := newIter(r, lower, upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for ok := it.First(); ok; ok = it.Next() {
		h, err := decodeHintKey(it.Key())
		if err != nil {
			return err
		}
		h.State = append([]byte(nil), it.Value()...)
		more, err := fn(h)
		if err != nil || !more {
			return err
		}
	}
	return it.Error()
}

func decodeHintKey(k []byte) (APHint, error) {
	const head = 2 + 4
	if len(k) < head+2+8 || k[0] != kindAP || k[1] != apHint {
		return APHint{}, fmt.Errorf("%w: bad ap hint key %x", ErrCorrupt, k)
	}
	key, n, err := unescape(k[head : len(k)-8])
	if err != nil {
		return APHint{}, err
	}
	if head+n != len(k)-8 {
		return APHint{}, fmt.Errorf("%w: trailing bytes in ap hint key %x", ErrCorrupt, k)
	}
	return APHint{
		Keyspace: binary.BigEndian.Uint32(k[2:6]),
		Key:      key,
		Target:   binary.BigEndian.Uint64(k[len(k)-8:]),
	}, nil
}
