package replica

import (
	"bytes"
	"slices"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// lockTable mirrors the locks of cross-range txns staged on the range, as
// applied (the engine's lock records, storage.ScanLocks): every replica
// keeps it, so that any replica serving a read knows which keys it must
// not read past. It holds only staged, unresolved txns' locks, so it is
// small; a span query visits every lock.
type lockTable struct {
	// m maps a global key to its lock.
	m map[string]*kvpb.Lock
}

func (t *lockTable) put(key []byte, l *kvpb.Lock) {
	if t.m == nil {
		t.m = make(map[string]*kvpb.Lock)
	}
	t.m[string(key)] = l
}

func (t *lockTable) del(key []byte) { delete(t.m, string(key)) }

func (t *lockTable) len() int { return len(t.m) }

// load replaces the table with the locks stored for span.
func (t *lockTable) load(r storage.Reader, span keys.Span) error {
	t.m = nil
	if len(span.End) == 0 {
		return nil // uninitialized: no span yet
	}
	return storage.ScanLocks(r, span, func(key []byte, l *kvpb.Lock) error {
		t.put(key, l)
		return nil
	})
}

// keepOnly drops the locks outside span (the range split).
func (t *lockTable) keepOnly(span keys.Span) {
	for k := range t.m {
		if !span.Contains([]byte(k)) {
			delete(t.m, k)
		}
	}
}

// first returns the lock, with the lowest commit revision, on a key of fp
// whose commit revision is at most maxTS (0: any) and whose txn is not
// except (0: none); nil if there is none.
func (t *lockTable) first(fp []keys.Span, maxTS int64, except uint64) (key []byte, l *kvpb.Lock) {
	if len(t.m) == 0 {
		return nil, nil
	}
	match := func(k string, c *kvpb.Lock) {
		if (maxTS > 0 && c.GetCommitTs() > maxTS) || (except != 0 && c.GetTxnId() == except) {
			return
		}
		if l == nil || c.GetCommitTs() < l.GetCommitTs() {
			key, l = []byte(k), c
		}
	}
	for _, s := range fp {
		if isPoint(s) {
			if c, ok := t.m[string(s.Start)]; ok {
				match(string(s.Start), c)
			}
			continue
		}
		for k, c := range t.m {
			if s.Contains([]byte(k)) {
				match(k, c)
			}
		}
	}
	return key, l
}

// minTS is the lowest commit revision of a lock on a key of span (0: none).
func (t *lockTable) minTS(span keys.Span) int64 {
	var out int64
	for k, c := range t.m {
		if span.Contains([]byte(k)) && (out == 0 || c.GetCommitTs() < out) {
			out = c.GetCommitTs()
		}
	}
	return out
}

// keysOf returns the keys txn locks in the table, in key order.
func (t *lockTable) keysOf(txn uint64) [][]byte {
	var out [][]byte
	for k, c := range t.m {
		if c.GetTxnId() == txn {
			out = append(out, []byte(k))
		}
	}
	slices.SortFunc(out, bytes.Compare)
	return out
}

// lockInfo describes lock l on key for a LOCKED error.
func lockInfo(key []byte, l *kvpb.Lock) *kvpb.LockInfo {
	return &kvpb.LockInfo{Key: key, TxnId: l.GetTxnId(), CommitTs: l.GetCommitTs(), Record: l.GetRecord(), StagedUnixNanos: l.GetStagedUnixNanos()}
}

// Bounds of the timestamp cache.
const (
	// maxTSCachePoints bounds the single keys remembered, maxTSCacheSpans
	// the spans; past either the cache folds everything into its low
	// water mark (which can only refuse more stagings, never fewer).
	maxTSCachePoints = 1 << 16
	maxTSCacheSpans  = 256
)

// tsCache is the leaseholder's timestamp cache (DESIGN.md, "Time across
// ranges"): for the keys it served reads at, the highest revision read.
// A cross-range txn stages a write at commit revision C only if no read
// of its keys was served at C or above (it would have missed the write),
// so a staging whose C is at or below tsCache.max(key) is refused.
//
// lw is a floor under every key: a new leaseholder does not know what its
// predecessor served, so before it stages anything it takes the cluster's
// current revision (which every read already served was numbered below)
// as lw, for the Raft term in term.
type tsCache struct {
	term   uint64
	lw     int64
	points map[string]int64
	spans  []spanRev
}

type spanRev struct {
	span keys.Span
	rev  int64
}

// bump records reads of every span of fp at rev.
func (c *tsCache) bump(fp []keys.Span, rev int64) {
	for _, s := range fp {
		if rev <= c.lw {
			return
		}
		if isPoint(s) {
			if c.points == nil {
				c.points = make(map[string]int64)
			}
			if c.points[string(s.Start)] < rev {
				if len(c.points) >= maxTSCachePoints {
					c.fold(rev)
					return
				}
				c.points[string(s.Start)] = rev
			}
			continue
		}
		found := false
		for i := range c.spans {
			if bytes.Equal(c.spans[i].span.Start, s.Start) && bytes.Equal(c.spans[i].span.End, s.End) {
				c.spans[i].rev = max(c.spans[i].rev, rev)
				found = true
				break
			}
		}
		if !found {
			if len(c.spans) >= maxTSCacheSpans {
				c.fold(rev)
				return
			}
			c.spans = append(c.spans, spanRev{span: keys.Span{Start: append([]byte(nil), s.Start...), End: append([]byte(nil), s.End...)}, rev: rev})
		}
	}
}

// fold forgets every entry, raising lw to the highest revision any held
// (and rev).
func (c *tsCache) fold(rev int64) {
	c.lw = max(c.lw, rev)
	for _, r := range c.points {
		c.lw = max(c.lw, r)
	}
	for _, s := range c.spans {
		c.lw = max(c.lw, s.rev)
	}
	c.points, c.spans = nil, nil
}

// max is the highest revision a read of key was served at (at least lw).
func (c *tsCache) max(key []byte) int64 {
	out := max(c.lw, c.points[string(key)])
	for _, s := range c.spans {
		if s.span.Contains(key) {
			out = max(out, s.rev)
		}
	}
	return out
}
