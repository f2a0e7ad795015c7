package replica

import (
	"bytes"

	"github.com/concorddb/concord/internal/keys"
)

// inflight is the set of key footprints (eval.Footprint) of the writes a
// leader proposed that have not applied yet. The proposer decides whether
// a write writes by evaluating it against the applied state; that answer
// holds only if no write that touches the same keys is still on its way
// through Raft, so a write that overlaps one in flight waits for it.
//
// Single keys (the common case: puts) are counted in a map, so checking a
// key against them is one lookup; spans are kept in a list.
type inflight struct {
	// points counts the in-flight writes that touch each single key.
	points map[string]int
	// wide holds the spans that cover more than one key, by command id.
	wide map[uint64][]keys.Span
	// byID is every in-flight write's footprint.
	byID map[uint64][]keys.Span
}

func isPoint(s keys.Span) bool { return len(s.End) == 0 }

// overlapsSpans reports whether two spans share a key. A point span holds
// exactly its Start.
func overlapsSpans(a, b keys.Span) bool {
	switch {
	case isPoint(a) && isPoint(b):
		return bytes.Equal(a.Start, b.Start)
	case isPoint(a):
		return b.Contains(a.Start)
	case isPoint(b):
		return a.Contains(b.Start)
	}
	return bytes.Compare(a.Start, b.End) < 0 && bytes.Compare(b.Start, a.End) < 0
}

// overlaps reports whether any span of fp shares a key with a write in
// flight.
func (f *inflight) overlaps(fp []keys.Span) bool {
	for _, s := range fp {
		if isPoint(s) && f.points[string(s.Start)] > 0 {
			return true
		}
		if !isPoint(s) {
			for k := range f.points {
				if s.Contains([]byte(k)) {
					return true
				}
			}
		}
		for _, ws := range f.wide {
			for _, w := range ws {
				if overlapsSpans(s, w) {
					return true
				}
			}
		}
	}
	return false
}

// add records the footprint of command id.
func (f *inflight) add(id uint64, fp []keys.Span) {
	if f.byID == nil {
		f.points, f.wide, f.byID = make(map[string]int), make(map[uint64][]keys.Span), make(map[uint64][]keys.Span)
	}
	f.byID[id] = fp
	for _, s := range fp {
		if isPoint(s) {
			f.points[string(s.Start)]++
		} else {
			f.wide[id] = append(f.wide[id], s)
		}
	}
}

// remove forgets command id (applied, or known never to apply); unknown
// ids are ignored.
func (f *inflight) remove(id uint64) {
	fp, ok := f.byID[id]
	if !ok {
		return
	}
	delete(f.byID, id)
	delete(f.wide, id)
	for _, s := range fp {
		if isPoint(s) {
			k := string(s.Start)
			if f.points[k]--; f.points[k] <= 0 {
				delete(f.points, k)
			}
		}
	}
}

// clear forgets every write (leadership lost: this replica evaluates
// nothing until it leads again and has applied its predecessors' log).
func (f *inflight) clear() {
	clear(f.points)
	clear(f.wide)
	clear(f.byID)
}

// empty reports whether no write is in flight.
func (f *inflight) empty() bool { return len(f.byID) == 0 }
