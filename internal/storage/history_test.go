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
