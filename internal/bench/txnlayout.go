package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Layout bounds of the txn-put benchmark. maxKeysPerTxn is etcd's and
// Concord's default --max-txn-ops: a txn of more puts is refused by the
// server. maxLayoutRanges bounds the splits one configuration makes at
// setup (each a Raft proposal and a new Raft group); rangeDigits numbers
// a configuration's ranges with a fixed width, so that their key order is
// their number's.
const (
	maxKeysPerTxn   = 128
	maxLayoutRanges = 256
	rangeDigits     = 3
)

// TxnLayout places the keys of the txn-put benchmark so that the
// KeysPerTxn keys of every txn lie in exactly RangesPerTxn ranges.
//
// A txn writes the keys of one group g (of Groups). Slot j of group g is
// the key
//
//	Prefix + t + "/" + g + "/" + j
//
// with t the index of the range it lives in, written in rangeDigits
// digits, and g and j zero-padded. The slots are cut into RangesPerTxn
// classes of consecutive slots, class(j) = j*RangesPerTxn/KeysPerTxn (as
// even as they come: K=8, R=3 gives 3, 3 and 2 slots), and the groups
// into Ranges/RangesPerTxn lanes, lane(g) = g mod that; then
//
//	t = lane(g)*RangesPerTxn + class(j).
//
// The Ranges+1 SplitKeys, Prefix+t for t = 0..Ranges, make range t the
// span [Prefix+t, Prefix+t+1). The "/" after t sorts below every digit,
// so the splits an earlier run left on the prefix (Prefix and digits,
// whatever its range count) never fall among one range's keys. A group's
// keys fall in its lane's RangesPerTxn ranges, one class each, and every
// range takes an equal share of the groups. So configurations of different RangesPerTxn that
// share Ranges write the same number of ranges, and differ only in how
// many of them each txn touches; keys of different txns share ranges.
//
// A TxnLayout is read-only and safe for concurrent use.
type TxnLayout struct {
	// Prefix starts every key; no other configuration's keys start with it.
	Prefix string
	// Groups is the number of distinct txns' key sets.
	Groups int
	// KeysPerTxn is K, the keys a txn writes; RangesPerTxn is R, the
	// ranges they lie in.
	KeysPerTxn, RangesPerTxn int
	// Ranges is the number of ranges the layout's keys are spread over, a
	// multiple of RangesPerTxn.
	Ranges int

	groupDigits, slotDigits int
}

// NewTxnLayout returns the layout of groups groups of keysPerTxn keys in
// rangesPerTxn ranges each, over ranges ranges under prefix, with group
// numbers padded to at least groupDigits digits (--key-size).
func NewTxnLayout(prefix string, groups, keysPerTxn, rangesPerTxn, ranges, groupDigits int) (*TxnLayout, error) {
	switch {
	case prefix == "":
		return nil, fmt.Errorf("bench: txn layout needs a key prefix")
	case groups < 1:
		return nil, fmt.Errorf("bench: key space %d < 1", groups)
	case keysPerTxn < 1 || keysPerTxn > maxKeysPerTxn:
		return nil, fmt.Errorf("bench: keys per txn %d not in [1, %d]", keysPerTxn, maxKeysPerTxn)
	case rangesPerTxn < 1 || rangesPerTxn > keysPerTxn:
		return nil, fmt.Errorf("bench: ranges per txn %d not in [1, keys per txn %d]: a txn touches at most one range per key", rangesPerTxn, keysPerTxn)
	case ranges < rangesPerTxn || ranges%rangesPerTxn != 0 || ranges > maxLayoutRanges:
		return nil, fmt.Errorf("bench: %d ranges is not a multiple of %d ranges per txn in [%d, %d]", ranges, rangesPerTxn, rangesPerTxn, maxLayoutRanges)
	}
	return &TxnLayout{
		Prefix:       prefix,
		Groups:       groups,
		KeysPerTxn:   keysPerTxn,
		RangesPerTxn: rangesPerTxn,
		Ranges:       ranges,
		groupDigits:  max(groupDigits, len(strconv.Itoa(groups-1))),
		slotDigits:   len(strconv.Itoa(keysPerTxn - 1)),
	}, nil
}

// lanes is the number of lanes: groups whose keys share their ranges.
func (l *TxnLayout) lanes() int { return l.Ranges / l.RangesPerTxn }

// class is the class of slot j: the one of a txn's ranges it lies in.
func (l *TxnLayout) class(j int) int { return j * l.RangesPerTxn / l.KeysPerTxn }

// classSlots returns the slots of class c, [from, to).
func (l *TxnLayout) classSlots(c int) (from, to int) {
	ceilDiv := func(a, b int) int { return (a + b - 1) / b }
	return ceilDiv(c*l.KeysPerTxn, l.RangesPerTxn), ceilDiv((c+1)*l.KeysPerTxn, l.RangesPerTxn)
}

// Range is the index, in [0, Ranges), of the range slot j of group g lies
// in.
func (l *TxnLayout) Range(g, j int) int { return (g%l.lanes())*l.RangesPerTxn + l.class(j) }

// rangeStart is the key range t starts at; rangeStart(Ranges) ends the
// last one.
func (l *TxnLayout) rangeStart(t int) string { return l.Prefix + pad(t, rangeDigits) }

// Key is slot j of group g.
func (l *TxnLayout) Key(g, j int) string {
	var b strings.Builder
	b.Grow(len(l.Prefix) + rangeDigits + l.groupDigits + l.slotDigits + 2)
	b.WriteString(l.Prefix)
	b.WriteString(pad(l.Range(g, j), rangeDigits))
	b.WriteByte('/')
	b.WriteString(pad(g, l.groupDigits))
	b.WriteByte('/')
	b.WriteString(pad(j, l.slotDigits))
	return b.String()
}

// AppendKeys appends the KeysPerTxn keys of group g's txn, in slot order,
// to dst and returns it.
func (l *TxnLayout) AppendKeys(dst []string, g int) []string {
	for j := range l.KeysPerTxn {
		dst = append(dst, l.Key(g, j))
	}
	return dst
}

// SplitKeys are the keys a range must start at for the layout to hold:
// Ranges+1 of them, the first and the last fencing the layout's keys off
// from any other key. A split at each gives the layout's keys exactly
// Ranges ranges of their own.
func (l *TxnLayout) SplitKeys() []string {
	out := make([]string, l.Ranges+1)
	for t := range out {
		out[t] = l.rangeStart(t)
	}
	return out
}

// rangeKeys returns the keys that lie in range t, in key order: the
// preload writes a range's keys together, in txns that each stay in one
// range.
func (l *TxnLayout) rangeKeys(t int) []string {
	lane, c := t/l.RangesPerTxn, t%l.RangesPerTxn
	from, to := l.classSlots(c)
	var out []string
	for g := lane; g < l.Groups; g += l.lanes() {
		for j := from; j < to; j++ {
			out = append(out, l.Key(g, j))
		}
	}
	return out
}

// LayoutCheck counts, against a cluster's actual ranges, how many ranges
// each txn's keys lie in.
type LayoutCheck struct {
	// Groups is the number of txns' key sets checked (all of them);
	// Exact those whose keys lie in exactly RangesPerTxn ranges.
	Groups int `json:"groups"`
	Exact  int `json:"groups_exact"`
	// ByRanges counts the groups by the number of ranges their keys lie in.
	ByRanges map[int]int `json:"groups_by_ranges"`
	// Ranges is the number of distinct ranges holding the layout's keys.
	Ranges int `json:"ranges"`
}

// OK reports whether every txn's keys lie in exactly the layout's ranges
// per txn.
func (c *LayoutCheck) OK() bool { return c.Exact == c.Groups }

// Check finds, for every group, the ranges its keys lie in, given the
// start key of every range of the cluster (in any order; the empty key
// starts the keyspace and is assumed when missing).
func (l *TxnLayout) Check(starts []string) *LayoutCheck {
	starts = slices.Clone(starts)
	slices.Sort(starts)
	starts = slices.Compact(starts)
	if len(starts) == 0 || starts[0] != "" {
		starts = slices.Insert(starts, 0, "")
	}
	rangeOf := func(key string) int {
		i, found := slices.BinarySearch(starts, key)
		if !found {
			i-- // key lies in the range starting before it
		}
		return i
	}
	c := &LayoutCheck{Groups: l.Groups, ByRanges: map[int]int{}}
	used := map[int]bool{}
	touched := make([]int, 0, l.KeysPerTxn)
	for g := range l.Groups {
		touched = touched[:0]
		for j := range l.KeysPerTxn {
			r := rangeOf(l.Key(g, j))
			used[r] = true
			if !slices.Contains(touched, r) {
				touched = append(touched, r)
			}
		}
		c.ByRanges[len(touched)]++
		if len(touched) == l.RangesPerTxn {
			c.Exact++
		}
	}
	c.Ranges = len(used)
	return c
}

// pad writes i in decimal, zero-padded on the left to at least n digits.
func pad(i, n int) string {
	s := strconv.Itoa(i)
	if len(s) >= n {
		return s
	}
	return strings.Repeat("0", n-len(s)) + s
}
