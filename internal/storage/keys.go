package storage

import (
	"encoding/binary"
	"fmt"

	"github.com/concorddb/concord/internal/keys"
)

// Engine key kinds: the first byte of every engine key.
const (
	kindRangeLocal byte = 0x01
	kindSys        byte = 0x02
	kindMVCC       byte = 0x03
	kindNodeLocal  byte = 0x04
	// 0x05: txn locks and records (txn.go); 0x06: AP keyspaces (ap.go).
)

// Range-local suffixes.
const (
	suffixApplied    byte = 'a'
	suffixDescriptor byte = 'd'
	suffixHardState  byte = 'h'
	suffixLog        byte = 'l'
	suffixTruncated  byte = 't'
)

// Node-local keys. identKey holds the node's Ident; bookPrefix + node id
// (8 bytes BE) holds one NodeRecord of the node's address book; metaHintKey
// holds the meta range's descriptor as this node last knew it.
var (
	identKey    = []byte{kindNodeLocal, 'i', 'd', 'e', 'n', 't'}
	bookPrefix  = []byte{kindNodeLocal, 'b', 'o', 'o', 'k'}
	metaHintKey = []byte{kindNodeLocal, 'm', 'e', 't', 'a'}
)

// rangeLocalPrefix is 0x01 + rangeID.
func rangeLocalPrefix(rangeID uint64) []byte {
	k := make([]byte, 0, 1+8+1+8)
	k = append(k, kindRangeLocal)
	return binary.BigEndian.AppendUint64(k, rangeID)
}

func rangeLocalKey(rangeID uint64, suffix byte) []byte {
	return append(rangeLocalPrefix(rangeID), suffix)
}

// rangeLocalSpan covers every range-local key of rangeID.
func rangeLocalSpan(rangeID uint64) (lower, upper []byte) {
	return rangeLocalPrefix(rangeID), prefixEnd(rangeLocalPrefix(rangeID))
}

func logKey(rangeID, index uint64) []byte {
	k := make([]byte, logKeyLen)
	putLogKey(k, rangeID, index)
	return k
}

// logKeyLen is the length of every log key: kind, range id, suffix, index.
const logKeyLen = 1 + 8 + 1 + 8

// putLogKey writes the log key of (rangeID, index) into k[:logKeyLen], for
// callers that own the key's memory (a deferred batch op).
func putLogKey(k []byte, rangeID, index uint64) {
	k[0] = kindRangeLocal
	binary.BigEndian.PutUint64(k[1:9], rangeID)
	k[9] = suffixLog
	binary.BigEndian.PutUint64(k[10:logKeyLen], index)
}

// logSpan covers every log key of rangeID.
func logSpan(rangeID uint64) (lower, upper []byte) {
	return rangeLocalKey(rangeID, suffixLog), rangeLocalKey(rangeID, suffixLog+1)
}

// decodeLogIndex returns the index of a log key.
func decodeLogIndex(k []byte) (uint64, error) {
	if len(k) != logKeyLen || k[0] != kindRangeLocal || k[9] != suffixLog {
		return 0, fmt.Errorf("%w: bad log key %x", ErrCorrupt, k)
	}
	return binary.BigEndian.Uint64(k[10:]), nil
}

func sysKey(key []byte) []byte {
	k := make([]byte, 0, 1+len(key))
	k = append(k, kindSys)
	return append(k, key...)
}

// sysSpan maps a span of global keys to its span of system engine keys.
func sysSpan(span keys.Span) (lower, upper []byte) {
	lower = sysKey(span.Start)
	if len(span.End) == 0 {
		return lower, append(sysKey(span.Start), 0x00)
	}
	return lower, sysKey(span.End)
}

// appendEscaped appends the order-preserving, prefix-free escaping of key:
// 0x00 becomes 0x00 0xFF, and 0x00 0x01 terminates.
func appendEscaped(dst, key []byte) []byte {
	for _, c := range key {
		if c == 0x00 {
			dst = append(dst, 0x00, 0xFF)
			continue
		}
		dst = append(dst, c)
	}
	return append(dst, 0x00, 0x01)
}

// mvccPrefix is 0x03 + escaped(key): the common prefix of key's versions.
func mvccPrefix(key []byte) []byte {
	k := make([]byte, 0, 1+len(key)+2+8)
	k = append(k, kindMVCC)
	return appendEscaped(k, key)
}

// mvccKey is the engine key of key's version at rev.
func mvccKey(key []byte, rev int64) []byte {
	return binary.BigEndian.AppendUint64(mvccPrefix(key), ^uint64(rev))
}

// mvccPrefixEnd is the first engine key after every version of the key whose
// mvccPrefix is p: the terminator 0x00 0x01 becomes 0x00 0x02.
func mvccPrefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	end[len(end)-1]++
	return end
}

// mvccSpan maps a span of global keys to its span of MVCC engine keys. The
// escaping is order-preserving and prefix-free, so the version keys of every
// global key in span, and no others, fall inside.
func mvccSpan(span keys.Span) (lower, upper []byte) {
	lower = mvccPrefix(span.Start)
	if len(span.End) == 0 {
		return lower, mvccPrefixEnd(lower)
	}
	return lower, mvccPrefix(span.End)
}

// decodeMVCCKey splits an MVCC engine key into its global key and revision.
// prefixLen is the length of the engine key's mvccPrefix.
func decodeMVCCKey(k []byte) (key []byte, rev int64, prefixLen int, err error) {
	if len(k) < 1+2+8 || k[0] != kindMVCC {
		return nil, 0, 0, fmt.Errorf("%w: bad mvcc key %x", ErrCorrupt, k)
	}
	body := k[1 : len(k)-8]
	key, n, err := unescape(body)
	if err != nil {
		return nil, 0, 0, err
	}
	if n != len(body) {
		return nil, 0, 0, fmt.Errorf("%w: trailing bytes in mvcc key %x", ErrCorrupt, k)
	}
	rev = int64(^binary.BigEndian.Uint64(k[len(k)-8:]))
	return key, rev, 1 + n, nil
}

// unescape decodes one escaped key from the front of b and returns it and the
// number of bytes consumed (terminator included).
func unescape(b []byte) (key []byte, n int, err error) {
	key = make([]byte, 0, len(b))
	for i := 0; i < len(b); i++ {
		c := b[i]
		if c != 0x00 {
			key = append(key, c)
			continue
		}
		if i+1 >= len(b) {
			return nil, 0, fmt.Errorf("%w: unterminated escaped key", ErrCorrupt)
		}
		switch b[i+1] {
		case 0xFF:
			key = append(key, 0x00)
			i++
		case 0x01:
			return key, i + 2, nil
		default:
			return nil, 0, fmt.Errorf("%w: bad escape 0x00 0x%02x", ErrCorrupt, b[i+1])
		}
	}
	return nil, 0, fmt.Errorf("%w: unterminated escaped key", ErrCorrupt)
}

// prefixEnd returns the smallest key greater than every key with prefix p,
// or nil if there is none.
func prefixEnd(p []byte) []byte {
	end := append([]byte(nil), p...)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}
