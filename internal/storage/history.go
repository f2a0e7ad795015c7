package storage

import (
	"sort"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// MVCCHistory returns the changes to the global keys of span with
// revisions in (from, to], in revision order (the changes of one revision
// in key order), read from the versions the history still holds: a put
// for each version, a delete for each tombstone (its Kv has the key and
// the revision). With prevKV each change carries the version before it,
// if that is live and still held. Keys in the events are global keys.
//
// At most about limit events are returned (limit > 0): when there are
// more, the result ends at a revision boundary and upTo tells the
// revision through which it is complete; otherwise upTo is to. Memory is
// bounded by twice limit events whatever the history holds. The caller
// owns the result.
func MVCCHistory(r Reader, span keys.Span, from, to int64, prevKV bool, limit int) (evs []*kvpb.Event, upTo int64, err error) {
	upTo = to
	if to <= from {
		return nil, upTo, nil
	}
	lower, upper := mvccSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return nil, 0, err
	}
	defer closeIter(it, &err)
	// trim keeps the oldest revisions, whole, once evs holds too many.
	trim := func() {
		sortEvents(evs)
		cut := evs[limit-1].GetKv().GetModRevision()
		n := sort.Search(len(evs), func(i int) bool { return evs[i].GetKv().GetModRevision() > cut })
		clear(evs[n:])
		evs, upTo = evs[:n], cut
	}
	var last *kvpb.Event // the key's oldest event so far, waiting for its prev
	valid := it.First()
	for valid {
		key, vrev, plen, err := decodeMVCCKey(it.Key())
		if err != nil {
			return nil, 0, err
		}
		if last != nil && string(last.GetKv().GetKey()) != string(key) {
			last = nil
		}
		if vrev > upTo {
			valid = it.SeekGE(mvccKey(key, upTo))
			continue
		}
		raw, err := it.ValueAndErr()
		if err != nil {
			return nil, 0, err
		}
		v, err := decodeMVCCValue(raw)
		if err != nil {
			return nil, 0, err
		}
		var kv *kvpb.KeyValue
		if !v.tombstone {
			kv = &kvpb.KeyValue{Key: key, CreateRevision: v.createRevision, ModRevision: vrev, Version: v.version, Lease: v.lease, Value: append([]byte(nil), v.value...)}
		}
		if last != nil && prevKV && kv != nil {
			// Its own copy: kv may be an event's too, and callers rewrite
			// events' keys in place.
			last.PrevKv = &kvpb.KeyValue{Key: kv.GetKey(), CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion(), Lease: kv.GetLease(), Value: kv.GetValue()}
		}
		if vrev <= from {
			// Older than the history asked for: this version was only
			// needed as the prev of the key's oldest change.
			last = nil
			valid = skipVersions(it, append([]byte(nil), it.Key()[:plen]...))
			continue
		}
		ev := &kvpb.Event{Type: kvpb.Event_PUT, Kv: kv}
		if kv == nil {
			ev = &kvpb.Event{Type: kvpb.Event_DELETE, Kv: &kvpb.KeyValue{Key: key, ModRevision: vrev}}
		}
		evs = append(evs, ev)
		last = ev
		if limit > 0 && len(evs) >= 2*limit {
			trim()
		}
		valid = it.Next()
	}
	if err := it.Error(); err != nil {
		return nil, 0, err
	}
	if limit > 0 && len(evs) > limit {
		trim()
	}
	sortEvents(evs)
	return evs, upTo, nil
}

// sortEvents orders events by revision, keeping key order within one.
func sortEvents(evs []*kvpb.Event) {
	sort.SliceStable(evs, func(i, j int) bool {
		return evs[i].GetKv().GetModRevision() < evs[j].GetKv().GetModRevision()
	})
}
