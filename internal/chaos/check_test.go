package chaos

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/anishathalye/porcupine"
)

// op builds one register op on key "k" for the tests.
func op(process int, kind Kind, start, end int64, res Result, args ...string) Op {
	o := Op{Process: process, Workload: WorkloadRegister, Key: "k", Kind: kind, Start: start, End: end, Result: res}
	switch kind {
	case KindRead:
		o.Out = args[0]
	case KindWrite:
		o.Value = args[0]
	case KindCAS:
		o.Old, o.Value = args[0], args[1]
	}
	return o
}

func cas(process int, start, end int64, res Result, old, v string, ok bool) Op {
	o := op(process, KindCAS, start, end, res, old, v)
	o.Succeeded = ok
	return o
}

func TestRegisterModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"read of absent key", []Op{op(0, KindRead, 0, 1, Ok, "")}, porcupine.Ok},
		{"write then read", []Op{op(0, KindWrite, 0, 1, Ok, "a"), op(1, KindRead, 2, 3, Ok, "a")}, porcupine.Ok},
		{"stale read", []Op{op(0, KindWrite, 0, 1, Ok, "a"), op(0, KindWrite, 2, 3, Ok, "b"), op(1, KindRead, 4, 5, Ok, "a")}, porcupine.Illegal},
		{"concurrent read may see either", []Op{op(0, KindWrite, 0, 1, Ok, "a"), op(0, KindWrite, 2, 5, Ok, "b"), op(1, KindRead, 3, 4, Ok, "a")}, porcupine.Ok},
		{"read of a value never written", []Op{op(0, KindRead, 0, 1, Ok, "z")}, porcupine.Illegal},
		// An info write may apply any time after its invocation...
		{"info write applies late", []Op{op(0, KindWrite, 0, 1, Info, "a"), op(1, KindRead, 2, 3, Ok, ""), op(1, KindRead, 4, 5, Ok, "a")}, porcupine.Ok},
		// ...or never, but not before its invocation.
		{"info write never applies", []Op{op(0, KindWrite, 0, 1, Info, "a"), op(1, KindRead, 2, 3, Ok, "")}, porcupine.Ok},
		{"read before info write's invocation", []Op{op(1, KindRead, 0, 1, Ok, "a"), op(0, KindWrite, 2, 3, Info, "a")}, porcupine.Illegal},
		// A fail had no effect: a read must not see it.
		{"failed write seen", []Op{op(0, KindWrite, 0, 1, Fail, "a"), op(1, KindRead, 2, 3, Ok, "a")}, porcupine.Illegal},
		{"cas succeeds on match", []Op{op(0, KindWrite, 0, 1, Ok, "a"), cas(0, 2, 3, Ok, "a", "b", true), op(1, KindRead, 4, 5, Ok, "b")}, porcupine.Ok},
		{"cas cannot succeed on mismatch", []Op{op(0, KindWrite, 0, 1, Ok, "a"), cas(0, 2, 3, Ok, "x", "b", true)}, porcupine.Illegal},
		{"cas cannot fail on match", []Op{op(0, KindWrite, 0, 1, Ok, "a"), cas(0, 2, 3, Ok, "a", "b", false)}, porcupine.Illegal},
		// etcd fails a value comparison on a missing key, even against "".
		{"cas on absent key fails", []Op{cas(0, 0, 1, Ok, "", "b", false)}, porcupine.Ok},
		{"info cas applies only on match", []Op{op(0, KindWrite, 0, 1, Ok, "a"), cas(1, 2, 3, Info, "x", "b", false), op(2, KindRead, 4, 5, Ok, "b")}, porcupine.Illegal},
		{"info cas applies on match", []Op{op(0, KindWrite, 0, 1, Ok, "a"), cas(1, 2, 3, Info, "a", "b", false), op(2, KindRead, 4, 5, Ok, "b")}, porcupine.Ok},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Check(tc.ops, CheckOptions{Timeout: 0})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Keys) != 1 || rep.Keys[0].Result != tc.want {
				t.Fatalf("got %+v, want %s", rep.Keys, tc.want)
			}
		})
	}
}

func app(process int, kind Kind, start, end int64, res Result, arg string) Op {
	o := Op{Process: process, Workload: WorkloadAppend, Key: "l", Kind: kind, Start: start, End: end, Result: res}
	if kind == KindRead {
		o.Out = arg
	} else {
		o.Value = arg
	}
	return o
}

func TestAppendModel(t *testing.T) {
	cases := []struct {
		name string
		ops  []Op
		want porcupine.CheckResult
	}{
		{"appends in order", []Op{app(0, KindAppend, 0, 1, Ok, "1"), app(0, KindAppend, 2, 3, Ok, "2"), app(1, KindRead, 4, 5, Ok, "1 2")}, porcupine.Ok},
		{"lost append", []Op{app(0, KindAppend, 0, 1, Ok, "1"), app(0, KindAppend, 2, 3, Ok, "2"), app(1, KindRead, 4, 5, Ok, "1")}, porcupine.Illegal},
		{"reordered appends", []Op{app(0, KindAppend, 0, 1, Ok, "1"), app(0, KindAppend, 2, 3, Ok, "2"), app(1, KindRead, 4, 5, Ok, "2 1")}, porcupine.Illegal},
		{"concurrent appends either order", []Op{app(0, KindAppend, 0, 3, Ok, "1"), app(1, KindAppend, 1, 2, Ok, "2"), app(2, KindRead, 4, 5, Ok, "2 1")}, porcupine.Ok},
		{"info append later or never", []Op{app(0, KindAppend, 0, 1, Info, "1"), app(1, KindAppend, 2, 3, Ok, "2"), app(2, KindRead, 4, 5, Ok, "2"), app(2, KindRead, 6, 7, Ok, "2 1")}, porcupine.Ok},
		{"list shrinks", []Op{app(0, KindAppend, 0, 1, Ok, "1"), app(1, KindRead, 2, 3, Ok, "1"), app(1, KindRead, 4, 5, Ok, "")}, porcupine.Illegal},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := Check(tc.ops, CheckOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Keys) != 1 || rep.Keys[0].Result != tc.want {
				t.Fatalf("got %+v, want %s", rep.Keys, tc.want)
			}
		})
	}
}

// TestCheckWritesVisualisation checks that a violation leaves an HTML
// file, and that the history round-trips through its file.
func TestCheckWritesVisualisation(t *testing.T) {
	dir := t.TempDir()
	ops := []Op{op(0, KindWrite, 0, 1, Ok, "a"), op(0, KindWrite, 2, 3, Ok, "b"), op(1, KindRead, 4, 5, Ok, "a"),
		{Process: 2, Workload: WorkloadRegister, Key: "other", Kind: KindRead, Start: 0, End: 1, Result: Ok}}
	path := filepath.Join(dir, "history.jsonl")
	if err := WriteHistory(path, ops); err != nil {
		t.Fatal(err)
	}
	back, err := ReadHistory(path)
	if err != nil || len(back) != len(ops) || back[2] != ops[2] {
		t.Fatalf("read back %v, %v", back, err)
	}
	rep, err := Check(back, CheckOptions{OutDir: dir, Annotations: annotations([]Event{{Kind: FaultKillNode, Start: 1, End: 3, Desc: "n1"}})})
	if err != nil {
		t.Fatal(err)
	}
	an := rep.Anomalies()
	if len(rep.Keys) != 2 || len(an) != 1 || an[0].Key != "k" {
		t.Fatalf("report %+v", rep)
	}
	if fi, err := os.Stat(an[0].HTML); err != nil || fi.Size() == 0 {
		t.Fatalf("visualisation %s: %v", an[0].HTML, err)
	}
}

func TestCheckRevisionOrder(t *testing.T) {
	w := func(key string, start, end, rev int64) Op {
		return Op{Kind: KindWrite, Key: key, Result: Ok, Start: start, End: end, Revision: rev}
	}
	ok := []Op{
		w("a", 0, 10, 5),
		w("b", 5, 20, 4), // concurrent with a: any order is fine
		w("a", 21, 30, 9),
		{Kind: KindRead, Key: "a", Result: Ok, Start: 31, End: 40},
		{Kind: KindWrite, Key: "c", Result: Info, Start: 31, End: 40},
	}
	if v := CheckRevisionOrder(ok, 10); len(v) != 0 {
		t.Fatalf("violations in a good history: %+v", v)
	}
	bad := append(ok, w("c", 41, 50, 7)) // began after revision 9 was acknowledged
	v := CheckRevisionOrder(bad, 10)
	if len(v) != 1 || v[0].Later.Revision != 7 || v[0].Earlier.Revision != 9 {
		t.Fatalf("want one violation 9 -> 7, got %+v", v)
	}
}
