package storage

import (
	"fmt"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// AppendEntries writes ents, which must be contiguous and ascending, to
// rangeID's log, and deletes every stored entry with an index above the last
// of ents: a leader's append overwrites the conflicting suffix of the log
// (Raft's log matching rule). An empty ents writes nothing.
func (b *Batch) AppendEntries(rangeID uint64, ents []*raftpb.Entry) (err error) {
	if len(ents) == 0 {
		return nil
	}
	// Each entry is encoded straight into the batch: no key or value
	// buffer per entry on the Ready loop's path.
	enc := proto.MarshalOptions{Deterministic: true, UseCachedSize: true}
	for i, e := range ents {
		if i > 0 && e.GetIndex() != ents[i-1].GetIndex()+1 {
			return fmt.Errorf("storage: range %d: append of non-contiguous entries %d after %d",
				rangeID, e.GetIndex(), ents[i-1].GetIndex())
		}
		size := proto.Size(e) // caches the size that enc then uses
		op := b.b.SetDeferred(logKeyLen, size)
		putLogKey(op.Key, rangeID, e.GetIndex())
		data, err := enc.MarshalAppend(op.Value[:0], e)
		if err != nil || len(data) != size {
			return fmt.Errorf("storage: range %d: encode entry %d (%d bytes, %d expected): %v", rangeID, e.GetIndex(), len(data), size, err)
		}
		if err := op.Finish(); err != nil {
			return fmt.Errorf("storage: range %d: append: %w", rangeID, err)
		}
	}
	// Point-delete the stale tail rather than lay a range tombstone on every
	// append: the tail is almost always empty, so this costs one seek.
	last := ents[len(ents)-1].GetIndex()
	_, upper := logSpan(rangeID)
	it, err := newIter(b, logKey(rangeID, last+1), upper)
	if err != nil {
		return err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		if err := b.b.Delete(it.Key(), nil); err != nil {
			return fmt.Errorf("storage: range %d: delete stale entry: %w", rangeID, err)
		}
	}
	return it.Error()
}

// PutHardState records rangeID's Raft hard state.
func (b *Batch) PutHardState(rangeID uint64, hs *raftpb.HardState) error {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(hs)
	if err != nil {
		return fmt.Errorf("storage: range %d: encode hard state: %w", rangeID, err)
	}
	if err := b.b.Set(rangeLocalKey(rangeID, suffixHardState), data, nil); err != nil {
		return fmt.Errorf("storage: range %d: put hard state: %w", rangeID, err)
	}
	return nil
}

// TruncateLog deletes rangeID's log entries with index <= ts.Index (with one
// range deletion) and records ts.
func (b *Batch) TruncateLog(rangeID uint64, ts TruncatedState) error {
	lower, _ := logSpan(rangeID)
	if err := b.b.DeleteRange(lower, logKey(rangeID, ts.Index+1), nil); err != nil {
		return fmt.Errorf("storage: range %d: truncate log: %w", rangeID, err)
	}
	if err := b.b.Set(rangeLocalKey(rangeID, suffixTruncated), encodeTruncatedState(ts), nil); err != nil {
		return fmt.Errorf("storage: range %d: put truncated state: %w", rangeID, err)
	}
	return nil
}

// RaftState is a replica's persisted Raft state, as LoadRaftState finds it.
type RaftState struct {
	// HardState is never nil: an empty HardState if none was stored.
	HardState *raftpb.HardState
	// Truncated is the zero value if the log was never truncated.
	Truncated TruncatedState
	// Entries is every stored entry with index > Truncated.Index, ascending
	// and contiguous.
	Entries []*raftpb.Entry
}

// LoadRaftState reads rangeID's Raft state. It returns an error wrapping
// ErrCorrupt if a stored value does not decode or the log has a gap.
func LoadRaftState(r Reader, rangeID uint64) (rs RaftState, err error) {
	rs.HardState = &raftpb.HardState{}
	v, ok, err := get(r, rangeLocalKey(rangeID, suffixHardState))
	if err != nil {
		return rs, err
	}
	if ok {
		if err := proto.Unmarshal(v, rs.HardState); err != nil {
			return rs, fmt.Errorf("%w: range %d: hard state: %v", ErrCorrupt, rangeID, err)
		}
	}
	v, ok, err = get(r, rangeLocalKey(rangeID, suffixTruncated))
	if err != nil {
		return rs, err
	}
	if ok {
		if rs.Truncated, err = decodeTruncatedState(v); err != nil {
			return rs, fmt.Errorf("range %d: %w", rangeID, err)
		}
	}
	_, upper := logSpan(rangeID)
	it, err := newIter(r, logKey(rangeID, rs.Truncated.Index+1), upper)
	if err != nil {
		return rs, err
	}
	defer closeIter(it, &err)
	for valid := it.First(); valid; valid = it.Next() {
		idx, err := decodeLogIndex(it.Key())
		if err != nil {
			return rs, err
		}
		e := &raftpb.Entry{}
		if err := proto.Unmarshal(it.Value(), e); err != nil {
			return rs, fmt.Errorf("%w: range %d: entry %d: %v", ErrCorrupt, rangeID, idx, err)
		}
		want := rs.Truncated.Index + 1
		if n := len(rs.Entries); n > 0 {
			want = rs.Entries[n-1].GetIndex() + 1
		}
		if e.GetIndex() != idx || (len(rs.Entries) > 0 && idx != want) {
			return rs, fmt.Errorf("%w: range %d: log entry %d (key index %d) where %d was expected",
				ErrCorrupt, rangeID, e.GetIndex(), idx, want)
		}
		rs.Entries = append(rs.Entries, e)
	}
	return rs, it.Error()
}

// PutAppliedState records rangeID's applied state. Write it in the batch that
// holds the applied data.
func (b *Batch) PutAppliedState(rangeID uint64, s AppliedState) error {
	data, err := encodeAppliedState(s)
	if err != nil {
		return err
	}
	if err := b.b.Set(rangeLocalKey(rangeID, suffixApplied), data, nil); err != nil {
		return fmt.Errorf("storage: range %d: put applied state: %w", rangeID, err)
	}
	return nil
}

// LoadAppliedState reads rangeID's applied state: the zero value if none was
// stored.
func LoadAppliedState(r Reader, rangeID uint64) (AppliedState, error) {
	v, ok, err := get(r, rangeLocalKey(rangeID, suffixApplied))
	if err != nil || !ok {
		return AppliedState{}, err
	}
	s, err := decodeAppliedState(v)
	if err != nil {
		return AppliedState{}, fmt.Errorf("range %d: %w", rangeID, err)
	}
	return s, nil
}
