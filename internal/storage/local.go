package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

// LoadIdent reads the node's identity; ok is false if none was written yet
// (a fresh node).
func LoadIdent(r Reader) (id Ident, ok bool, err error) {
	v, ok, err := get(r, identKey)
	if err != nil || !ok {
		return Ident{}, false, err
	}
	id, err = decodeIdent(v)
	if err != nil {
		return Ident{}, false, err
	}
	return id, true, nil
}

// PutIdent records the node's identity.
func (b *Batch) PutIdent(id Ident) error {
	if err := b.b.Set(identKey, encodeIdent(id), nil); err != nil {
		return fmt.Errorf("storage: put ident: %w", err)
	}
	return nil
}

// PutLocalDescriptor records the descriptor of a range this node holds a
// replica of, so the node can recreate its replicas on restart.
func (b *Batch) PutLocalDescriptor(d *metapb.RangeDescriptor) error {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return fmt.Errorf("storage: range %d: encode descriptor: %w", d.GetRangeId(), err)
	}
	if err := b.b.Set(rangeLocalKey(d.GetRangeId(), suffixDescriptor), data, nil); err != nil {
		return fmt.Errorf("storage: range %d: put descriptor: %w", d.GetRangeId(), err)
	}
	return nil
}

// LoadLocalDescriptor returns the local descriptor of rangeID; ok is false
// if this node holds no replica of it.
func LoadLocalDescriptor(r Reader, rangeID uint64) (d *metapb.RangeDescriptor, ok bool, err error) {
	v, ok, err := get(r, rangeLocalKey(rangeID, suffixDescriptor))
	if err != nil || !ok {
		return nil, false, err
	}
	d = &metapb.RangeDescriptor{}
	if err := proto.Unmarshal(v, d); err != nil {
		return nil, false, fmt.Errorf("%w: range %d: descriptor: %v", ErrCorrupt, rangeID, err)
	}
	return d, true, nil
}

// LoadLocalDescriptors returns the local descriptor of every range this node
// holds a replica of, by ascending range id. It seeks from range to range, so
// it does not read the ranges' logs.
func LoadLocalDescriptors(r Reader) (out []*metapb.RangeDescriptor, err error) {
	it, err := newIter(r, []byte{kindRangeLocal}, []byte{kindRangeLocal + 1})
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	valid := it.First()
	for valid {
		k := it.Key()
		if len(k) < 10 {
			return nil, fmt.Errorf("%w: short range-local key %x", ErrCorrupt, k)
		}
		rangeID := binary.BigEndian.Uint64(k[1:9])
		want := rangeLocalKey(rangeID, suffixDescriptor)
		switch c := bytes.Compare(k, want); {
		case c < 0:
			valid = it.SeekGE(want)
			continue
		case c == 0:
			d := &metapb.RangeDescriptor{}
			if err := proto.Unmarshal(it.Value(), d); err != nil {
				return nil, fmt.Errorf("%w: range %d: descriptor: %v", ErrCorrupt, rangeID, err)
			}
			out = append(out, d)
		}
		if rangeID == ^uint64(0) {
			break
		}
		valid = it.SeekGE(rangeLocalPrefix(rangeID + 1))
	}
	return out, it.Error()
}

// DestroyReplica deletes every range-local key of rangeID (log, hard,
// truncated and applied state, descriptor) and all system and MVCC data in
// span, with range deletions.
func (b *Batch) DestroyReplica(rangeID uint64, span keys.Span) error {
	lower, upper := rangeLocalSpan(rangeID)
	if err := b.b.DeleteRange(lower, upper, nil); err != nil {
		return fmt.Errorf("storage: range %d: destroy: %w", rangeID, err)
	}
	return b.clearSpan(span)
}

// ClearRangeLocal deletes every range-local key of rangeID (log, hard,
// truncated and applied state, descriptor) and keeps its data: a merge
// hands the data to the left neighbour.
func (b *Batch) ClearRangeLocal(rangeID uint64) error {
	lower, upper := rangeLocalSpan(rangeID)
	if err := b.b.DeleteRange(lower, upper, nil); err != nil {
		return fmt.Errorf("storage: range %d: clear range-local state: %w", rangeID, err)
	}
	return nil
}

// clearSpan deletes all system, MVCC and txn data in span.
func (b *Batch) clearSpan(span keys.Span) error {
	for _, bounds := range blobSpans(span) {
		if err := b.b.DeleteRange(bounds[0], bounds[1], nil); err != nil {
			return fmt.Errorf("storage: clear %s: %w", span, err)
		}
	}
	return nil
}

// SysGet reads a raw system value. ok is false if the key is absent.
func SysGet(r Reader, key []byte) (value []byte, ok bool, err error) {
	return get(r, sysKey(key))
}

// SysScan calls fn on every system key in span, ascending, with the global
// key and value. fn must not retain its arguments (copy them). An error from
// fn stops the scan and is returned unchanged.
func SysScan(r Reader, span keys.Span, fn func(key, value []byte) error) (err error) {
	lower, upper := sysSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			return fmt.Errorf("storage: sys scan: %w", err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			return err
		}
	}
	return it.Error()
}

// SysPut writes a raw system value.
func (b *Batch) SysPut(key, value []byte) error {
	if err := b.b.Set(sysKey(key), value, nil); err != nil {
		return fmt.Errorf("storage: sys put: %w", err)
	}
	return nil
}

// SysDelete deletes a raw system value.
func (b *Batch) SysDelete(key []byte) error {
	if err := b.b.Delete(sysKey(key), nil); err != nil {
		return fmt.Errorf("storage: sys delete: %w", err)
	}
	return nil
}

// LoadNodeBook returns the node's address book as last saved: one record per
// node, by ascending node id.
func LoadNodeBook(r Reader) (out []*metapb.NodeRecord, err error) {
	it, err := newIter(r, bookPrefix, prefixEnd(bookPrefix))
	if err != nil {
		return nil, err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		rec := &metapb.NodeRecord{}
		if err := proto.Unmarshal(it.Value(), rec); err != nil {
			return nil, fmt.Errorf("%w: address book entry %x: %v", ErrCorrupt, it.Key(), err)
		}
		if want := bookKey(rec.GetNodeId()); !bytes.Equal(it.Key(), want) {
			return nil, fmt.Errorf("%w: address book entry %x holds node %d", ErrCorrupt, it.Key(), rec.GetNodeId())
		}
		out = append(out, rec)
	}
	return out, it.Error()
}

// PutNodeBook replaces the node's address book with recs.
func (b *Batch) PutNodeBook(recs []*metapb.NodeRecord) error {
	if err := b.b.DeleteRange(bookPrefix, prefixEnd(bookPrefix), nil); err != nil {
		return fmt.Errorf("storage: clear address book: %w", err)
	}
	for _, rec := range recs {
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
		if err != nil {
			return fmt.Errorf("storage: node %d: encode record: %w", rec.GetNodeId(), err)
		}
		if err := b.b.Set(bookKey(rec.GetNodeId()), data, nil); err != nil {
			return fmt.Errorf("storage: node %d: put record: %w", rec.GetNodeId(), err)
		}
	}
	return nil
}

func bookKey(nodeID uint64) []byte {
	return binary.BigEndian.AppendUint64(append([]byte(nil), bookPrefix...), nodeID)
}

// LoadMetaHint returns the meta range's descriptor as this node last saved
// it; ok is false if none was saved.
func LoadMetaHint(r Reader) (d *metapb.RangeDescriptor, ok bool, err error) {
	v, ok, err := get(r, metaHintKey)
	if err != nil || !ok {
		return nil, false, err
	}
	d = &metapb.RangeDescriptor{}
	if err := proto.Unmarshal(v, d); err != nil {
		return nil, false, fmt.Errorf("%w: meta descriptor hint: %v", ErrCorrupt, err)
	}
	return d, true, nil
}

// PutMetaHint saves the meta range's descriptor as this node knows it, so
// that a node without a meta replica finds the meta range on restart
// without asking a peer.
func (b *Batch) PutMetaHint(d *metapb.RangeDescriptor) error {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
	if err != nil {
		return fmt.Errorf("storage: encode meta descriptor hint: %w", err)
	}
	if err := b.b.Set(metaHintKey, data, nil); err != nil {
		return fmt.Errorf("storage: put meta descriptor hint: %w", err)
	}
	return nil
}
