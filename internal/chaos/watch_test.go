package chaos

import (
	"strings"
	"testing"
)

func TestCheckWatches(t *testing.T) {
	ops := []Op{
		{Kind: KindWrite, Key: "chaos/r/0/1", Value: "1.1", Result: Ok, Revision: 5},
		{Kind: KindAppend, Key: "chaos/a/0/2", Value: "2.1", Result: Ok, Revision: 6},
		{Kind: KindWrite, Key: "chaos/r/0/1", Value: "1.2", Result: Info}, // may have applied
		{Kind: KindCAS, Key: "chaos/r/0/1", Value: "1.3", Result: Ok, Succeeded: false, Revision: 8},
		{Kind: KindWrite, Key: "chaos/r/0/1", Value: "1.4", Result: Fail},
	}
	good := []WatchedEvent{
		{Key: "chaos/r/0/1", Value: "1.1", Revision: 5},
		{Key: "chaos/a/0/2", Value: "2.0 2.1", Revision: 6},
		{Key: "chaos/r/0/1", Value: "1.2", Revision: 7}, // the info write did apply
	}
	for _, tc := range []struct {
		name string
		evs  []WatchedEvent
		err  string
		want string // a violation must contain it; "" for none
	}{
		{name: "every write once in order", evs: good},
		{name: "missed", evs: good[1:], want: "missed the acknowledged write of chaos/r/0/1=\"1.1\" at revision 5"},
		{name: "duplicate", evs: append(append([]WatchedEvent(nil), good...), good[2]), want: "event at revision 7 after one at 7"},
		{name: "out of order", evs: []WatchedEvent{good[1], good[0], good[2]}, want: "event at revision 5 after one at 6"},
		{name: "phantom", evs: append(append([]WatchedEvent(nil), good...), WatchedEvent{Key: "chaos/r/0/1", Value: "1.4", Revision: 9}), want: "was written by no client"},
		{name: "wrong value", evs: []WatchedEvent{good[0], {Key: "chaos/a/0/2", Value: "2.0 2.9", Revision: 6}, good[2]}, want: "revision 6 is chaos/a/0/2"},
		{name: "ended", evs: good[:1], err: "etcdserver: mvcc: required revision has been compacted", want: "watcher 1 ended"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CheckWatches(ops, [][]WatchedEvent{tc.evs}, []string{tc.err}, 10)
			if tc.want == "" {
				if len(got) != 0 {
					t.Fatalf("violations %v, want none", got)
				}
				return
			}
			if !strings.Contains(strings.Join(got, "\n"), tc.want) {
				t.Fatalf("violations %v, want one with %q", got, tc.want)
			}
		})
	}
}

func TestCheckHolds(t *testing.T) {
	for _, tc := range []struct {
		list, want string
	}{
		{list: "c1.h1.0 c1.h1.1 c1.h1.2 c2.h1.0 c2.h1.1 c1.h2.0"},
		{list: "c1.h1.0 c2.h1.0 c1.h1.1", want: "hold c1.h1 wrote \"c1.h1.1\" after hold c2.h1 wrote in between"},
		{list: "c1.h1.1 c1.h1.0", want: "wrote entry 0 after entry 1"},
	} {
		got := strings.Join(CheckHolds("k", tc.list, 10), "\n")
		if (tc.want == "" && got != "") || !strings.Contains(got, tc.want) {
			t.Errorf("CheckHolds(%q) = %q, want %q", tc.list, got, tc.want)
		}
	}
}
