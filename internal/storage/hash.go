package storage

import (
	"context"
	"hash/crc32"

	"github.com/concorddb/concord/internal/keys"
)

// MVCCHash returns a CRC-32C over every MVCC version in span with revision
// <= rev (engine key and value bytes, in engine order). Replicas that applied
// the same commands, compactions included, hash alike: this is the
// consistency check behind etcd's HashKV.
func MVCCHash(r Reader, span keys.Span, rev int64) (sum uint32, err error) {
	lower, upper := mvccSpan(span)
	it, err := newIter(r, lower, upper)
	if err != nil {
		return 0, err
	}
	defer closeIter(it, &err)
	h := crc32.New(castagnoli)
	for valid := it.First(); valid; valid = it.Next() {
		_, v, _, err := decodeMVCCKey(it.Key())
		if err != nil {
			return 0, err
		}
		if v > rev {
			continue
		}
		h.Write(it.Key())
		val, err := it.ValueAndErr()
		if err != nil {
			return 0, err
		}
		h.Write(val)
	}
	return h.Sum32(), it.Error()
}

// Compact asks the engine to compact all its files now, reclaiming the space
// of deleted and overwritten data (what etcd's Defragment does for bbolt).
func (e *Engine) Compact(ctx context.Context) error {
	return e.db.Compact(ctx, []byte{0}, []byte{0xff, 0xff, 0xff, 0xff}, true /* parallelize */)
}
