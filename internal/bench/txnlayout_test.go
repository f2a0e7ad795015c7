package bench

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

// TestTxnLayoutKeys pins which keys a txn writes and where the splits go
// on a small layout: 4 keys in 2 ranges, spread over 4 ranges (2 lanes).
func TestTxnLayoutKeys(t *testing.T) {
	l, err := NewTxnLayout("p/", 10, 4, 2, 4, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		group int
		want  []string
	}{
		// Lane 1 (odd groups): ranges 2 and 3; slots 0-1 in the first,
		// 2-3 in the second.
		{3, []string{"p/002/3/0", "p/002/3/1", "p/003/3/2", "p/003/3/3"}},
		// Lane 0: ranges 0 and 1.
		{4, []string{"p/000/4/0", "p/000/4/1", "p/001/4/2", "p/001/4/3"}},
	} {
		if got := l.AppendKeys(nil, tc.group); !slices.Equal(got, tc.want) {
			t.Errorf("keys of group %d = %q, want %q", tc.group, got, tc.want)
		}
	}
	if got, want := l.SplitKeys(), []string{"p/000", "p/001", "p/002", "p/003", "p/004"}; !slices.Equal(got, want) {
		t.Errorf("split keys %q, want %q", got, want)
	}
	// Group numbers are padded to --key-size digits, and to the key space.
	wide, _ := NewTxnLayout("p/", 1000, 2, 1, 1, 2)
	if got, want := wide.Key(7, 1), "p/000/007/1"; got != want {
		t.Errorf("key (7, 1) of a 1000-group layout = %q, want %q", got, want)
	}
	// Classes are as even as they come: 8 keys in 3 ranges, 3 3 2.
	uneven, _ := NewTxnLayout("p/", 1, 8, 3, 3, 1)
	var perRange [3]int
	for j := range 8 {
		perRange[uneven.Range(0, j)]++
	}
	if perRange != [3]int{3, 3, 2} {
		t.Errorf("8 keys in 3 ranges: %v keys per range, want [3 3 2]", perRange)
	}
}

// TestTxnLayoutRangesPerTxn checks, for many shapes, that splitting at
// SplitKeys, and only there, puts every txn's keys in exactly R ranges of
// the layout's T; that each split is needed; and that a split between two
// keys of a txn that share a range is caught.
func TestTxnLayoutRangesPerTxn(t *testing.T) {
	for _, tc := range []struct{ groups, k, r, ranges int }{
		{1, 1, 1, 1}, {7, 2, 1, 1}, {7, 2, 2, 2}, {100, 2, 1, 2}, {100, 2, 2, 8}, {100, 8, 1, 8}, {100, 8, 2, 8},
		{100, 8, 8, 8}, {50, 8, 3, 6}, {33, 5, 5, 10}, {64, 128, 7, 14},
	} {
		t.Run(fmt.Sprintf("groups=%d,K=%d,R=%d,T=%d", tc.groups, tc.k, tc.r, tc.ranges), func(t *testing.T) {
			l, err := NewTxnLayout("bench/r/", tc.groups, tc.k, tc.r, tc.ranges, 4)
			if err != nil {
				t.Fatal(err)
			}
			splits := l.SplitKeys()
			if len(splits) != tc.ranges+1 {
				t.Fatalf("%d split keys, want %d (T+1)", len(splits), tc.ranges+1)
			}
			// Other keys before and after the layout's, in ranges of their own.
			starts := append([]string{"", "a", "bench/q", "bench/s"}, splits...)
			c := l.Check(starts)
			if !c.OK() || c.Ranges != tc.ranges || c.ByRanges[tc.r] != tc.groups || len(c.ByRanges) != 1 {
				t.Fatalf("after the splits: %+v; want all %d groups in exactly %d of %d ranges", c, tc.groups, tc.r, tc.ranges)
			}
			// Every key is distinct and inside the layout's span, in the
			// range its index names, and rangeKeys lists each exactly once.
			seen := map[string]bool{}
			for g := range tc.groups {
				for j, k := range l.AppendKeys(nil, g) {
					if seen[k] {
						t.Fatalf("key %q twice", k)
					}
					seen[k] = true
					if ri := l.Range(g, j); k < splits[ri] || k >= splits[ri+1] {
						t.Fatalf("key %q of range %d outside [%q, %q)", k, ri, splits[ri], splits[ri+1])
					}
					if gg, jj := l.slotOf(k); gg != g || jj != j {
						t.Fatalf("slotOf(%q) = %d, %d; want %d, %d", k, gg, jj, g, j)
					}
				}
			}
			listed := map[string]bool{}
			for ri := range tc.ranges {
				for _, k := range l.rangeKeys(ri) {
					if listed[k] || k < splits[ri] || k >= splits[ri+1] {
						t.Fatalf("rangeKeys(%d) lists %q twice or outside its range", ri, k)
					}
					listed[k] = true
				}
			}
			if !maps.Equal(seen, listed) {
				t.Fatalf("rangeKeys lists %d keys, the txns have %d", len(listed), len(seen))
			}
			// Each split between the first and the last (which fence the
			// layout off from other keys) is needed: without one, some
			// txns' keys share a range they should not, or the layout
			// has fewer ranges.
			for i := 1; i < len(splits)-1; i++ {
				c := l.Check(slices.Delete(slices.Clone(starts), 4+i, 5+i))
				if c.OK() && c.Ranges == tc.ranges {
					t.Errorf("without split %q the layout still holds: %+v", splits[i], c)
				}
			}
			// A stray split between two keys of one txn in one range.
			if tc.k > tc.r {
				j := 0 // the first slot that shares its range with the next
				for l.class(j) != l.class(j+1) {
					j++
				}
				c := l.Check(append(slices.Clone(starts), l.Key(0, j+1)))
				if c.OK() || c.ByRanges[tc.r+1] != 1 || c.Exact != tc.groups-1 {
					t.Errorf("a split at %q, inside group 0's range: %+v; want group 0 in %d ranges", l.Key(0, j+1), c, tc.r+1)
				}
			}
		})
	}
}

// TestTxnLayoutOldSplits: splits left on the prefix by a run with another
// range count never fall among one range's keys (they are the prefix and
// digits, and a range's keys go on with "/"), so they never cut a txn's
// range.
func TestTxnLayoutOldSplits(t *testing.T) {
	for _, old := range []int{1, 2, 8, 16, 24} {
		for _, now := range []struct{ k, r, ranges int }{{2, 1, 1}, {2, 2, 2}, {8, 8, 8}, {8, 1, 16}, {4, 2, 12}} {
			oldL, err := NewTxnLayout("p/", 10, 8, 1, old, 1)
			if err != nil {
				t.Fatal(err)
			}
			l, err := NewTxnLayout("p/", 100, now.k, now.r, now.ranges, 1)
			if err != nil {
				t.Fatal(err)
			}
			if c := l.Check(append(oldL.SplitKeys(), l.SplitKeys()...)); !c.OK() || c.Ranges != now.ranges {
				t.Errorf("layout %+v after a run over %d ranges: %+v", now, old, c)
			}
		}
	}
}

func TestNewTxnLayoutRefuses(t *testing.T) {
	for _, tc := range []struct {
		name                         string
		prefix                       string
		groups, k, r, ranges, digits int
		want                         string
	}{
		{"no prefix", "", 10, 2, 1, 1, 1, "prefix"},
		{"no groups", "p/", 0, 2, 1, 1, 1, "key space"},
		{"no keys", "p/", 10, 0, 1, 1, 1, "keys per txn"},
		{"over max txn ops", "p/", 10, 129, 1, 1, 1, "keys per txn"},
		{"more ranges than keys", "p/", 10, 2, 3, 3, 1, "at most one range per key"},
		{"no ranges per txn", "p/", 10, 2, 0, 1, 1, "ranges per txn"},
		{"ranges not a multiple", "p/", 10, 4, 3, 4, 1, "multiple"},
		{"too many ranges", "p/", 10, 2, 2, 258, 1, "multiple"},
	} {
		if _, err := NewTxnLayout(tc.prefix, tc.groups, tc.k, tc.r, tc.ranges, tc.digits); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err %v, want one saying %q", tc.name, err, tc.want)
		}
	}
}
