package storage

import (
	"fmt"
	"strings"
	"testing"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// describe renders events as "rev:PUT k=v (prev p)" lines.
func describe(evs []*kvpb.Event) string {
	var out []string
	for _, ev := range evs {
		s := fmt.Sprintf("%d:%s %s", ev.GetKv().GetModRevision(), ev.GetType(), ev.GetKv().GetKey())
		if ev.GetType() == kvpb.Event_PUT {
			s += "=" + string(ev.GetKv().GetValue())
		}
		if p := ev.GetPrevKv(); p != nil {
			s += fmt.Sprintf(" (prev %s@%d)", p.GetValue(), p.GetModRevision())
		}
		out = append(out, s)
	}
	return strings.Join(out, "; ")
}

func TestMVCCHistory(t *testing.T) {
	e := openMem(t)
	write(t, e, put("a", 2, 2, 1, "a2"))
	write(t, e, put("b", 3, 3, 1, "b3"))
	write(t, e, put("a", 4, 2, 2, "a4"))
	write(t, e, func(b *Batch) error { return b.MVCCDelete([]byte("b"), 5) })
	write(t, e, put("c", 6, 6, 1, "c6"))
	write(t, e, put("a", 6, 2, 3, "a6")) // one txn at revision 6
	write(t, e, put("b", 7, 7, 1, "b7"))
	all := keys.Span{Start: []byte("a"), End: []byte("z")}
	for _, tc := range []struct {
		name     string
		span     keys.Span
		from, to int64
		prev     bool
		limit    int
		want     string
		wantUpTo int64
	}{
		{name: "everything", span: all, from: 0, to: 10, want: "2:PUT a=a2; 3:PUT b=b3; 4:PUT a=a4; 5:DELETE b; 6:PUT a=a6; 6:PUT c=c6; 7:PUT b=b7", wantUpTo: 10},
		{name: "with prev", span: all, from: 3, to: 10, prev: true, want: "4:PUT a=a4 (prev a2@2); 5:DELETE b (prev b3@3); 6:PUT a=a6 (prev a4@4); 6:PUT c=c6; 7:PUT b=b7", wantUpTo: 10},
		{name: "bounded above", span: all, from: 3, to: 5, want: "4:PUT a=a4; 5:DELETE b", wantUpTo: 5},
		{name: "one key", span: keys.Span{Start: []byte("b"), End: []byte("b\x00")}, from: 0, to: 10, want: "3:PUT b=b3; 5:DELETE b; 7:PUT b=b7", wantUpTo: 10},
		{name: "nothing", span: all, from: 7, to: 10, want: "", wantUpTo: 10},
		{name: "empty interval", span: all, from: 5, to: 5, want: "", wantUpTo: 5},
		// A limit cuts at a revision boundary: revision 6 stays whole.
		{name: "limit", span: all, from: 3, to: 10, limit: 3, want: "4:PUT a=a4; 5:DELETE b; 6:PUT a=a6; 6:PUT c=c6", wantUpTo: 6},
		{name: "limit 1", span: all, from: 0, to: 10, limit: 1, want: "2:PUT a=a2", wantUpTo: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, upTo, err := MVCCHistory(e, tc.span, tc.from, tc.to, tc.prev, tc.limit)
			if err != nil {
				t.Fatal(err)
			}
			if got := describe(evs); got != tc.want || upTo != tc.wantUpTo {
				t.Errorf("got %q up to %d, want %q up to %d", got, upTo, tc.want, tc.wantUpTo)
			}
		})
	}
	// Pages of a small limit read in a loop give the whole history once.
	var pages []*kvpb.Event
	for from := int64(0); from < 10; {
		evs, upTo, err := MVCCHistory(e, all, from, 10, false, 1)
		if err != nil {
			t.Fatal(err)
		}
		pages, from = append(pages, evs...), upTo
	}
	if got, want := describe(pages), "2:PUT a=a2; 3:PUT b=b3; 4:PUT a=a4; 5:DELETE b; 6:PUT a=a6; 6:PUT c=c6; 7:PUT b=b7"; got != want {
		t.Errorf("paged: %q, want %q", got, want)
	}
}

func TestBatchRecordsEvents(t *testing.T) {
	e := openMem(t)
	b := e.NewBatch()
	defer b.Close()
	b.RecordEvents()
	if err := put("x", 2, 2, 1, "v")(b); err != nil {
		t.Fatal(err)
	}
	if err := b.MVCCDelete([]byte("y"), 2); err != nil {
		t.Fatal(err)
	}
	n := b.EventCount()
	if err := put("z", 3, 3, 1, "w")(b); err != nil {
		t.Fatal(err)
	}
	b.DropEventsAfter(n)
	if got, want := describe(b.TakeEvents()), "2:PUT x=v; 2:DELETE y"; got != want {
		t.Errorf("recorded %q, want %q", got, want)
	}
	if len(b.TakeEvents()) != 0 {
		t.Error("TakeEvents twice returned events again")
	}
}

// FuzzMVCCHistory writes a history from the input (each byte: a key of
// four, put or delete, one revision each) and checks that reading it back
// in pages of any size gives exactly the versions in (from, to], in
// revision order, each with the version before it as prev_kv.
func FuzzMVCCHistory(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 4, 5, 6, 7}, uint8(0), uint8(8), uint8(2))
	f.Add([]byte{0, 0, 0, 4, 0}, uint8(1), uint8(4), uint8(1))
	f.Fuzz(func(t *testing.T, ops []byte, from, to, limit uint8) {
		if len(ops) > 200 {
			ops = ops[:200]
		}
		e := openMem(t)
		type version struct {
			key     string
			deleted bool
		}
		var all []version // all[i] is revision i+2
		last := map[string]int64{}
		for i, op := range ops {
			rev := int64(i + 2)
			key := string(rune('a' + op%4))
			if op&4 != 0 && last[key] != 0 {
				write(t, e, func(b *Batch) error { return b.MVCCDelete([]byte(key), rev) })
				all = append(all, version{key, true})
				last[key] = 0
				continue
			}
			write(t, e, put(key, rev, rev, 1, fmt.Sprint(rev)))
			all = append(all, version{key, false})
			last[key] = rev
		}
		f0, t0 := int64(from), int64(to)
		span := keys.Span{Start: []byte("a"), End: []byte("z")}
		var got []*kvpb.Event
		for cur := f0; cur < t0; {
			evs, upTo, err := MVCCHistory(e, span, cur, t0, true, int(limit%8)+1)
			if err != nil {
				t.Fatal(err)
			}
			if upTo <= cur {
				t.Fatalf("no progress from %d", cur)
			}
			got, cur = append(got, evs...), upTo
		}
		var want []string
		prevOf := map[string]string{}
		for i, v := range all {
			rev := int64(i + 2)
			if rev > f0 && rev <= t0 {
				s := fmt.Sprintf("%d %s %v prev=%s", rev, v.key, v.deleted, prevOf[v.key])
				want = append(want, s)
			}
			if v.deleted {
				prevOf[v.key] = ""
			} else {
				prevOf[v.key] = fmt.Sprint(rev)
			}
		}
		var have []string
		for _, ev := range got {
			prev := ""
			if ev.GetPrevKv() != nil {
				prev = string(ev.GetPrevKv().GetValue())
			}
			have = append(have, fmt.Sprintf("%d %s %v prev=%s", ev.GetKv().GetModRevision(), ev.GetKv().GetKey(), ev.GetType() == kvpb.Event_DELETE, prev))
		}
		if strings.Join(have, "\n") != strings.Join(want, "\n") {
			t.Fatalf("history (%d, %d]:\n%s\nwant\n%s", f0, t0, strings.Join(have, "\n"), strings.Join(want, "\n"))
		}
	})
}
