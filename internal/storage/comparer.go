package storage

import (
	"bytes"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
)

// comparer orders engine keys bytewise, exactly as pebble's default, and
// adds an MVCC Split: the prefix of an MVCC version key is everything but
// its 8-byte revision suffix. That lets Pebble keep a bloom filter per
// table over MVCC prefixes, so a point read (MVCCGet, which every write
// does for the key's previous version) skips tables that cannot hold the
// key instead of reading a block from each.
//
// Bytewise order and prefix-then-suffix order agree because the escaped
// key with its 0x00 0x01 terminator is prefix-free.
var comparer = func() *pebble.Comparer {
	c := *pebble.DefaultComparer
	c.Name = "concord.mvcc.v1"
	c.Split = splitMVCC
	c.ComparePointSuffixes = bytes.Compare
	c.CompareRangeSuffixes = bytes.Compare
	c.Compare = bytes.Compare
	c.Equal = bytes.Equal
	return &c
}()

// splitMVCC returns the length of k's prefix: for an MVCC version key
// (kind byte, escaped key, 0x00 0x01 terminator, 8-byte revision) all but
// the revision; for any other key, all of it. The terminator can only sit
// where it is checked: inside the escaped key 0x00 is always followed by
// 0xff.
func splitMVCC(k []byte) int {
	n := len(k)
	if n >= 1+2+8 && k[0] == kindMVCC && k[n-10] == 0x00 && k[n-9] == 0x01 {
		return n - 8
	}
	return n
}

// bloomBitsPerKey sizes the per-table bloom filters: 10 bits per key is a
// ~1% false positive rate.
const bloomBitsPerKey = 10

func applyFilters(o *pebble.Options) {
	for i := range o.Levels {
		o.Levels[i].FilterPolicy = bloom.FilterPolicy(bloomBitsPerKey)
		o.Levels[i].FilterType = pebble.TableFilter
	}
}
