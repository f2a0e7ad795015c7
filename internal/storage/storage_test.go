package storage

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"math/rand"
	randv2 "math/rand/v2"
	"sort"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

func openMem(t testing.TB) *Engine {
	t.Helper()
	e, err := Open("db", Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.Close(); err != nil {
			t.Error(err)
		}
	})
	return e
}

// write runs fn in a batch and commits it.
func write(t testing.TB, e *Engine, fn func(b *Batch) error) {
	t.Helper()
	b := e.NewBatch()
	defer b.Close()
	if err := fn(b); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
}

func put(key string, rev, create, version int64, value string) func(b *Batch) error {
	return func(b *Batch) error {
		return b.MVCCPut(&kvpb.KeyValue{Key: []byte(key), ModRevision: rev, CreateRevision: create, Version: version, Value: []byte(value)})
	}
}

func TestEscapeOrder(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	alphabet := []byte{0x00, 0x01, 0x02, 0xFE, 0xFF, 'a'}
	randKey := func() []byte {
		k := make([]byte, rng.Intn(6))
		for i := range k {
			k[i] = alphabet[rng.Intn(len(alphabet))]
		}
		return k
	}
	for range 20000 {
		a, b := randKey(), randKey()
		checkEscapeOrder(t, a, b, int64(rng.Intn(5)+1), int64(rng.Intn(5)+1))
	}
}

func checkEscapeOrder(t testing.TB, a, b []byte, ra, rb int64) {
	ea, eb := mvccKey(a, ra), mvccKey(b, rb)
	raw := bytes.Compare(a, b)
	enc := bytes.Compare(ea, eb)
	switch {
	case raw != 0 && raw != enc:
		t.Fatalf("order of %x, %x is %d but encoded %d", a, b, raw, enc)
	case raw == 0 && ra > 0 && rb > 0 && ra != rb && (enc < 0) != (ra > rb):
		// Revisions are positive; the order of others is unspecified.
		t.Fatalf("versions %d, %d of %x not newest first", ra, rb, a)
	}
	for _, c := range []struct {
		k   []byte
		rev int64
		e   []byte
	}{{a, ra, ea}, {b, rb, eb}} {
		k, rev, plen, err := decodeMVCCKey(c.e)
		if err != nil || !bytes.Equal(k, c.k) || rev != c.rev || plen != len(mvccPrefix(c.k)) {
			t.Fatalf("decode(%x) = %x, %d, %d, %v; want %x, %d", c.e, k, rev, plen, err, c.k, c.rev)
		}
	}
}

func TestMVCCGetAtRevision(t *testing.T) {
	e := openMem(t)
	write(t, e, put("k", 10, 10, 1, "v10"))
	write(t, e, put("k", 20, 10, 2, "v20"))
	write(t, e, func(b *Batch) error { return b.MVCCDelete([]byte("k"), 30) })
	write(t, e, put("k", 40, 40, 1, "v40"))
	write(t, e, put("k\x00", 15, 15, 1, "nul"))
	write(t, e, put("j", 25, 25, 1, "j"))
	for _, tc := range []struct {
		rev              int64
		want             string // "" = nil
		create, modRev   int64
		version          int64
		key, description string
	}{
		{rev: 5, description: "before first version"},
		{rev: 10, want: "v10", create: 10, modRev: 10, version: 1},
		{rev: 15, want: "v10", create: 10, modRev: 10, version: 1, description: "between versions"},
		{rev: 20, want: "v20", create: 10, modRev: 20, version: 2},
		{rev: 29, want: "v20", create: 10, modRev: 20, version: 2},
		{rev: 30, description: "tombstone"},
		{rev: 35, description: "after tombstone"},
		{rev: 40, want: "v40", create: 40, modRev: 40, version: 1},
		{rev: 0, want: "v40", create: 40, modRev: 40, version: 1, description: "newest"},
		{rev: 1000, want: "v40", create: 40, modRev: 40, version: 1},
		{rev: 20, key: "k\x00", want: "nul", create: 15, modRev: 15, version: 1, description: "nul byte key"},
		{rev: 14, key: "k\x00", description: "nul byte key before"},
		{rev: 0, key: "absent"},
	} {
		key := tc.key
		if key == "" {
			key = "k"
		}
		kv, err := MVCCGet(e, []byte(key), tc.rev)
		if err != nil {
			t.Fatal(err)
		}
		if tc.want == "" {
			if kv != nil {
				t.Errorf("%s: get(%q, %d) = %v, want nil", tc.description, key, tc.rev, kv)
			}
			continue
		}
		want := &kvpb.KeyValue{Key: []byte(key), Value: []byte(tc.want), CreateRevision: tc.create, ModRevision: tc.modRev, Version: tc.version}
		if !proto.Equal(kv, want) {
			t.Errorf("%s: get(%q, %d) = %v, want %v", tc.description, key, tc.rev, kv, want)
		}
	}
}

func scanAll(t testing.TB, r Reader, span keys.Span, rev int64) []string {
	t.Helper()
	var out []string
	if err := MVCCScan(r, span, rev, func(kv *kvpb.KeyValue) error {
		out = append(out, fmt.Sprintf("%s@%d=%s", kv.Key, kv.ModRevision, kv.Value))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestMVCCScan(t *testing.T) {
	e := openMem(t)
	// "a": 20 versions; "b": deleted at 15; "c": created at 12; "d": one
	// version; "a\x00": between "a" and "b".
	write(t, e, func(b *Batch) error {
		for rev := int64(1); rev <= 20; rev++ {
			if err := put("a", rev, 1, rev, fmt.Sprint(rev))(b); err != nil {
				return err
			}
		}
		if err := put("b", 5, 5, 1, "b5")(b); err != nil {
			return err
		}
		if err := b.MVCCDelete([]byte("b"), 15); err != nil {
			return err
		}
		if err := put("c", 12, 12, 1, "c12")(b); err != nil {
			return err
		}
		if err := put("a\x00", 3, 3, 1, "nul")(b); err != nil {
			return err
		}
		return put("d", 7, 7, 1, "d7")(b)
	})
	all := keys.Span{Start: []byte("a"), End: []byte("z")}
	for _, tc := range []struct {
		span keys.Span
		rev  int64
		want []string
	}{
		{all, 0, []string{"a@20=20", "a\x00@3=nul", "c@12=c12", "d@7=d7"}},
		{all, 10, []string{"a@10=10", "a\x00@3=nul", "b@5=b5", "d@7=d7"}},
		{all, 2, []string{"a@2=2"}},
		{all, 14, []string{"a@14=14", "a\x00@3=nul", "b@5=b5", "c@12=c12", "d@7=d7"}},
		{keys.Span{Start: []byte("a\x00"), End: []byte("d")}, 0, []string{"a\x00@3=nul", "c@12=c12"}},
		{keys.Span{Start: []byte("a")}, 5, []string{"a@5=5"}},
		{keys.Span{Start: []byte("b")}, 0, nil},
		{keys.Span{Start: []byte("d"), End: []byte("a")}, 0, nil},
	} {
		got := scanAll(t, e, tc.span, tc.rev)
		if fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("scan %s at %d = %q, want %q", tc.span, tc.rev, got, tc.want)
		}
	}
	stop := errors.New("stop")
	n := 0
	err := MVCCScan(e, all, 0, func(*kvpb.KeyValue) error { n++; return stop })
	if err != stop || n != 1 {
		t.Fatalf("scan stop: err %v after %d calls", err, n)
	}
}

// TestMVCCScanCount checks that the count of every live key at a revision
// is the same whether fn gets all of the keys, the first few or none: the
// keys it does not get are counted from their kind byte alone, through
// many versions, tombstones and versions newer than the read.
func TestMVCCScanCount(t *testing.T) {
	e := openMem(t)
	rng := randv2.New(randv2.NewPCG(7, 7))
	write(t, e, func(b *Batch) error {
		for rev := int64(1); rev <= 2000; rev++ {
			k := []byte(fmt.Sprintf("k%03d", rng.IntN(300)))
			if rng.IntN(5) == 0 {
				if err := b.MVCCDelete(k, rev); err != nil {
					return err
				}
				continue
			}
			if err := put(string(k), rev, 1, 1, fmt.Sprint(rev))(b); err != nil {
				return err
			}
		}
		return nil
	})
	all := keys.Span{Start: []byte("k"), End: []byte("l")}
	for _, rev := range []int64{0, 1, 17, 500, 1999, 5000} {
		want := scanAll(t, e, all, rev)
		for _, fetch := range []int64{0, -1, 1, 10, int64(len(want)), int64(len(want)) + 5} {
			var got []string
			count, err := MVCCScanCount(e, all, rev, fetch, func(kv *kvpb.KeyValue) error {
				got = append(got, fmt.Sprintf("%s@%d=%s", kv.GetKey(), kv.GetModRevision(), kv.GetValue()))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if count != int64(len(want)) {
				t.Errorf("rev %d fetch %d: count %d, want %d", rev, fetch, count, len(want))
			}
			n := len(want)
			switch {
			case fetch < 0:
				n = 0
			case fetch > 0:
				n = min(n, int(fetch))
			}
			if fmt.Sprint(got) != fmt.Sprint(want[:n]) {
				t.Errorf("rev %d fetch %d: fn got %q, want %q", rev, fetch, got, want[:n])
			}
		}
	}
}

func TestMVCCReadsThroughBatchAndSnapshot(t *testing.T) {
	e := openMem(t)
	write(t, e, put("k", 1, 1, 1, "one"))
	snap := e.NewSnapshot()
	defer snap.Close()
	b := e.NewBatch()
	defer b.Close()
	if err := put("k", 2, 1, 2, "two")(b); err != nil {
		t.Fatal(err)
	}
	check := func(r Reader, want string) {
		t.Helper()
		kv, err := MVCCGet(r, []byte("k"), 0)
		if err != nil || string(kv.GetValue()) != want {
			t.Fatalf("get = %v, %v; want %q", kv, err, want)
		}
	}
	check(b, "two")
	check(e, "one")
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	check(e, "two")
	check(snap, "one")
}

func TestMVCCCompact(t *testing.T) {
	e := openMem(t)
	write(t, e, func(b *Batch) error {
		for _, f := range []func(*Batch) error{
			put("a", 1, 1, 1, "a1"), put("a", 3, 1, 2, "a3"), put("a", 6, 1, 3, "a6"),
			put("b", 2, 2, 1, "b2"), func(b *Batch) error { return b.MVCCDelete([]byte("b"), 4) },
			put("c", 2, 2, 1, "c2"), func(b *Batch) error { return b.MVCCDelete([]byte("c"), 5) }, put("c", 7, 7, 1, "c7"),
			put("z", 1, 1, 1, "outside"),
		} {
			if err := f(b); err != nil {
				return err
			}
		}
		return nil
	})
	write(t, e, func(b *Batch) error {
		return MVCCCompact(b, keys.Span{Start: []byte("a"), End: []byte("y")}, 5)
	})
	var versions []string
	it, err := newIter(e, []byte{kindMVCC}, []byte{kindMVCC + 1})
	if err != nil {
		t.Fatal(err)
	}
	for valid := it.First(); valid; valid = it.Next() {
		k, rev, _, err := decodeMVCCKey(it.Key())
		if err != nil {
			t.Fatal(err)
		}
		versions = append(versions, fmt.Sprintf("%s@%d", k, rev))
	}
	if err := it.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"a@6", "a@3", "c@7", "z@1"}
	if fmt.Sprint(versions) != fmt.Sprint(want) {
		t.Fatalf("after compact at 5: %v, want %v", versions, want)
	}
	if got := scanAll(t, e, keys.Span{Start: []byte("a"), End: []byte("y")}, 5); fmt.Sprint(got) != "[a@3=a3]" {
		t.Fatalf("scan at compacted rev = %v", got)
	}
}

func entry(index, term uint64, data string) *raftpb.Entry {
	return &raftpb.Entry{Index: proto.Uint64(index), Term: proto.Uint64(term), Type: raftpb.EntryNormal.Enum(), Data: []byte(data)}
}

func entriesString(ents []*raftpb.Entry) string {
	var s []string
	for _, e := range ents {
		s = append(s, fmt.Sprintf("%d/%d:%s", e.GetIndex(), e.GetTerm(), e.GetData()))
	}
	return fmt.Sprint(s)
}

func TestRaftState(t *testing.T) {
	e := openMem(t)
	rs, err := LoadRaftState(e, 7)
	if err != nil || rs.HardState == nil || len(rs.Entries) != 0 || rs.Truncated != (TruncatedState{}) {
		t.Fatalf("empty state = %+v, %v", rs, err)
	}
	write(t, e, func(b *Batch) error {
		return b.AppendEntries(7, []*raftpb.Entry{entry(1, 1, "a"), entry(2, 1, "b"), entry(3, 1, "c"), entry(4, 1, "d")})
	})
	// Another range's log must not be touched by range 7's overwrites.
	write(t, e, func(b *Batch) error { return b.AppendEntries(8, []*raftpb.Entry{entry(1, 1, "x")}) })
	// A new leader overwrites from index 3: 4 must go.
	write(t, e, func(b *Batch) error {
		if err := b.AppendEntries(7, []*raftpb.Entry{entry(3, 2, "C")}); err != nil {
			return err
		}
		return b.PutHardState(7, &raftpb.HardState{Term: proto.Uint64(2), Vote: proto.Uint64(3), Commit: proto.Uint64(2)})
	})
	rs, err = LoadRaftState(e, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := entriesString(rs.Entries); got != "[1/1:a 2/1:b 3/2:C]" {
		t.Fatalf("entries after overwrite = %s", got)
	}
	if rs.HardState.GetTerm() != 2 || rs.HardState.GetVote() != 3 || rs.HardState.GetCommit() != 2 {
		t.Fatalf("hard state = %v", rs.HardState)
	}
	write(t, e, func(b *Batch) error {
		if err := b.AppendEntries(7, []*raftpb.Entry{entry(4, 2, "D"), entry(5, 2, "E")}); err != nil {
			return err
		}
		return b.TruncateLog(7, TruncatedState{Index: 2, Term: 1})
	})
	rs, err = LoadRaftState(e, 7)
	if err != nil {
		t.Fatal(err)
	}
	if got := entriesString(rs.Entries); got != "[3/2:C 4/2:D 5/2:E]" || rs.Truncated != (TruncatedState{2, 1}) {
		t.Fatalf("after truncation: %s, %+v", got, rs.Truncated)
	}
	rs8, err := LoadRaftState(e, 8)
	if err != nil || entriesString(rs8.Entries) != "[1/1:x]" {
		t.Fatalf("range 8: %v, %v", rs8.Entries, err)
	}
	// Non-contiguous appends are refused.
	b := e.NewBatch()
	defer b.Close()
	if err := b.AppendEntries(7, []*raftpb.Entry{entry(6, 2, ""), entry(8, 2, "")}); err == nil {
		t.Fatal("non-contiguous append accepted")
	}
}

func TestLocalState(t *testing.T) {
	e := openMem(t)
	if _, ok, err := LoadIdent(e); ok || err != nil {
		t.Fatalf("fresh ident: %v %v", ok, err)
	}
	as := AppliedState{Index: 9, Term: 2, ConfState: &raftpb.ConfState{Voters: []uint64{1, 2, 3}}, MaxTS: 1 << 40, CompactedRev: 5}
	descs := []*metapb.RangeDescriptor{
		{RangeId: 3, StartKey: []byte("\x02a"), EndKey: []byte("\x02m"), Generation: 1},
		{RangeId: 1, StartKey: []byte("\x01"), EndKey: []byte("\x02")},
		{RangeId: 2, StartKey: []byte("\x02m"), EndKey: []byte("\x03")},
	}
	write(t, e, func(b *Batch) error {
		if err := b.PutIdent(Ident{ClusterID: 11, NodeID: 4}); err != nil {
			return err
		}
		for _, d := range descs {
			if err := b.PutLocalDescriptor(d); err != nil {
				return err
			}
			// Logs and other state around the descriptors must be skipped.
			if err := b.AppendEntries(d.GetRangeId(), []*raftpb.Entry{entry(1, 1, "x"), entry(2, 1, "y")}); err != nil {
				return err
			}
			if err := b.PutHardState(d.GetRangeId(), &raftpb.HardState{}); err != nil {
				return err
			}
		}
		return b.PutAppliedState(2, as)
	})
	id, ok, err := LoadIdent(e)
	if err != nil || !ok || id != (Ident{ClusterID: 11, NodeID: 4}) {
		t.Fatalf("ident = %v %v %v", id, ok, err)
	}
	got, err := LoadAppliedState(e, 2)
	if err != nil || got.Index != 9 || got.Term != 2 || got.MaxTS != 1<<40 || got.CompactedRev != 5 || !proto.Equal(got.ConfState, as.ConfState) {
		t.Fatalf("applied state = %+v, %v", got, err)
	}
	if got, err := LoadAppliedState(e, 1); err != nil || got.Index != 0 || got.ConfState != nil {
		t.Fatalf("absent applied state = %+v, %v", got, err)
	}
	loaded, err := LoadLocalDescriptors(e)
	if err != nil || len(loaded) != 3 {
		t.Fatalf("descriptors = %v, %v", loaded, err)
	}
	for i, d := range loaded {
		if d.GetRangeId() != uint64(i+1) {
			t.Fatalf("descriptor %d is range %d", i, d.GetRangeId())
		}
	}
	// Destroying range 3 removes its local state and its span's data only.
	span3 := keys.Span{Start: []byte("\x02a"), End: []byte("\x02m")}
	write(t, e, func(b *Batch) error {
		for _, k := range []string{"\x02b", "\x02n"} {
			if err := put(k, 5, 5, 1, "v")(b); err != nil {
				return err
			}
		}
		return b.SysPut([]byte("\x02c"), []byte("sys"))
	})
	write(t, e, func(b *Batch) error { return b.DestroyReplica(3, span3) })
	loaded, err = LoadLocalDescriptors(e)
	if err != nil || len(loaded) != 2 {
		t.Fatalf("after destroy: %v, %v", loaded, err)
	}
	if rs, err := LoadRaftState(e, 3); err != nil || len(rs.Entries) != 0 {
		t.Fatalf("range 3 log after destroy: %v %v", rs.Entries, err)
	}
	if rs, err := LoadRaftState(e, 2); err != nil || len(rs.Entries) != 2 {
		t.Fatalf("range 2 log after destroy of 3: %v %v", rs.Entries, err)
	}
	if got := scanAll(t, e, keys.UserSpan, 0); fmt.Sprint(got) != "[\x02n@5=v]" {
		t.Fatalf("data after destroy: %q", got)
	}
	if _, ok, _ := SysGet(e, []byte("\x02c")); ok {
		t.Fatal("sys key survived destroy")
	}
}

func TestSys(t *testing.T) {
	e := openMem(t)
	write(t, e, func(b *Batch) error {
		for _, k := range []string{"\x01node/a", "\x01node/b", "\x01nodeseq", "\x01tso"} {
			if err := b.SysPut([]byte(k), []byte("v"+k)); err != nil {
				return err
			}
		}
		return b.SysDelete([]byte("\x01node/b"))
	})
	v, ok, err := SysGet(e, []byte("\x01tso"))
	if err != nil || !ok || string(v) != "v\x01tso" {
		t.Fatalf("get = %q %v %v", v, ok, err)
	}
	var got []string
	if err := SysScan(e, keys.MetaSpan, func(k, v []byte) error {
		got = append(got, string(k))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%q", got) != `["\x01node/a" "\x01nodeseq" "\x01tso"]` {
		t.Fatalf("scan = %q", got)
	}
	got = nil
	if err := SysScan(e, keys.Span{Start: []byte("\x01nodeseq")}, func(k, v []byte) error {
		got = append(got, string(k))
		return nil
	}); err != nil || len(got) != 1 {
		t.Fatalf("single-key scan = %q, %v", got, err)
	}
}

func TestCrashSafety(t *testing.T) {
	for seed := int64(0); seed < 8; seed++ {
		fs := vfs.NewCrashableMem()
		e, err := Open("db", Options{FS: fs})
		if err != nil {
			t.Fatal(err)
		}
		write := func(prefix string, sync bool) {
			b := e.NewBatch()
			defer b.Close()
			for i := range 50 {
				if err := b.SysPut(fmt.Appendf(nil, "\x01%s%03d", prefix, i), []byte(prefix)); err != nil {
					t.Fatal(err)
				}
			}
			if err := b.Commit(sync); err != nil {
				t.Fatal(err)
			}
		}
		write("A", true)
		write("B", false)
		cfg := vfs.CrashCloneCfg{}
		if seed > 0 {
			cfg = vfs.CrashCloneCfg{UnsyncedDataPercent: int(seed * 14), RNG: randv2.New(randv2.NewPCG(uint64(seed), 0))}
		}
		crashed := fs.CrashClone(cfg)
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		e, err = Open("db", Options{FS: crashed})
		if err != nil {
			t.Fatalf("seed %d: reopen: %v", seed, err)
		}
		count := map[string]int{}
		if err := SysScan(e, keys.MetaSpan, func(k, v []byte) error {
			count[string(v)]++
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if count["A"] != 50 {
			t.Fatalf("seed %d: synced batch A has %d of 50 keys", seed, count["A"])
		}
		if seed == 0 && count["B"] != 0 {
			t.Fatalf("unsynced batch B survived a crash that kept only synced data")
		}
		if count["B"] != 0 && count["B"] != 50 {
			t.Fatalf("seed %d: unsynced batch B partially present: %d keys", seed, count["B"])
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestExportImport(t *testing.T) {
	src := openMem(t)
	span := keys.Span{Start: []byte("\x02b"), End: []byte("\x02y")}
	as := AppliedState{Index: 42, Term: 3, ConfState: &raftpb.ConfState{Voters: []uint64{1}}, MaxTS: 99}
	desc := &metapb.RangeDescriptor{RangeId: 5, StartKey: span.Start, EndKey: span.End, Replicas: []*metapb.ReplicaDescriptor{{NodeId: 1}}, Generation: 2}
	write(t, src, func(b *Batch) error {
		for _, f := range []func(*Batch) error{
			put("\x02a", 1, 1, 1, "outside"), put("\x02b", 1, 1, 1, "b1"), put("\x02b", 5, 1, 2, "b5"),
			func(b *Batch) error { return b.MVCCDelete([]byte("\x02c"), 6) }, put("\x02x\x00", 2, 2, 1, "x"),
			put("\x02y", 1, 1, 1, "outside"),
			func(b *Batch) error { return b.SysPut([]byte("\x02s"), []byte("sys")) },
			func(b *Batch) error { return b.PutAppliedState(5, as) },
			func(b *Batch) error { return b.PutLocalDescriptor(desc) },
		} {
			if err := f(b); err != nil {
				return err
			}
		}
		return nil
	})
	snap := src.NewSnapshot()
	blob, err := ExportRange(snap, 5)
	snap.Close()
	if err != nil {
		t.Fatal(err)
	}
	dst := openMem(t)
	write(t, dst, func(b *Batch) error {
		// Old data in the span must go; data outside must stay.
		if err := put("\x02d", 1, 1, 1, "stale")(b); err != nil {
			return err
		}
		return put("\x02z", 1, 1, 1, "keep")(b)
	})
	write(t, dst, func(b *Batch) error {
		// The receiver's own span is wider (it missed a split): the blob's
		// descriptor decides what is replaced.
		wider := keys.Span{Start: span.Start, End: []byte("\x02zz")}
		got, gotDesc, err := b.ImportRange(5, wider, blob)
		if err == nil && (got.Index != 42 || got.MaxTS != 99 || !proto.Equal(gotDesc, desc)) {
			err = fmt.Errorf("imported applied state %+v, descriptor %v", got, gotDesc)
		}
		return err
	})
	if d, ok, err := LoadLocalDescriptor(dst, 5); err != nil || !ok || !proto.Equal(d, desc) {
		t.Fatalf("descriptor after import: %v %v %v", d, ok, err)
	}
	for _, rev := range []int64{0, 1, 2, 5} {
		if a, b := scanAll(t, src, span, rev), scanAll(t, dst, span, rev); fmt.Sprint(a) != fmt.Sprint(b) {
			t.Fatalf("at %d: source %q, imported %q", rev, a, b)
		}
	}
	if got := scanAll(t, dst, keys.Span{Start: []byte("\x02y"), End: []byte("\x03")}, 0); fmt.Sprint(got) != "[\x02z@1=keep]" {
		t.Fatalf("outside span after import: %q", got)
	}
	if v, ok, err := SysGet(dst, []byte("\x02s")); err != nil || !ok || string(v) != "sys" {
		t.Fatalf("sys after import: %q %v %v", v, ok, err)
	}
	if got, err := LoadAppliedState(dst, 5); err != nil || got.Index != 42 {
		t.Fatalf("applied state after import: %+v %v", got, err)
	}

	reject := func(name string, rangeID uint64, span keys.Span, data []byte) {
		t.Helper()
		b := dst.NewBatch()
		defer b.Close()
		if _, _, err := b.ImportRange(rangeID, span, data); err == nil {
			t.Fatalf("%s: import accepted", name)
		}
		if !b.Empty() {
			t.Fatalf("%s: rejected import wrote to the batch", name)
		}
	}
	for i := range blob {
		bad := append([]byte(nil), blob...)
		bad[i] ^= 0x40
		reject(fmt.Sprintf("flipped byte %d", i), 5, span, bad)
	}
	reject("truncated", 5, span, blob[:len(blob)-1])
	reject("wrong range", 6, span, blob)
}

func TestDecodersRejectGarbage(t *testing.T) {
	for _, b := range [][]byte{nil, {0}, {3}, {1}, {1, 0x80}, {2, 0, 0, 0, 'x'}} {
		if _, err := decodeMVCCValue(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeMVCCValue(%x) err = %v", b, err)
		}
	}
	for _, b := range [][]byte{nil, {3}, {3, 'a', 0, 1}, {3, 'a', 0, 2, 0, 0, 0, 0, 0, 0, 0, 0}} {
		if _, _, _, err := decodeMVCCKey(b); !errors.Is(err, ErrCorrupt) {
			t.Errorf("decodeMVCCKey(%x) err = %v", b, err)
		}
	}
}

func TestSortedKeysStaySorted(t *testing.T) {
	// A span of engine keys built from sorted global keys is itself sorted:
	// the property range deletions and scans rely on.
	rng := rand.New(rand.NewSource(2))
	var ks [][]byte
	for range 500 {
		k := make([]byte, rng.Intn(4))
		rng.Read(k)
		ks = append(ks, k)
	}
	sort.Slice(ks, func(i, j int) bool { return bytes.Compare(ks[i], ks[j]) < 0 })
	for i := 1; i < len(ks); i++ {
		if bytes.Compare(mvccPrefix(ks[i-1]), mvccPrefix(ks[i])) > 0 {
			t.Fatalf("%x sorts after %x", ks[i-1], ks[i])
		}
	}
}

func TestComparerIsConsistent(t *testing.T) {
	// Pebble requires bytewise order to equal prefix-then-suffix order, and
	// a prefix to split to itself. (pebble.CheckComparer also strips leading
	// bytes for synthetic prefixes, a feature Concord does not use.)
	var ks [][]byte
	for _, k := range []string{"", "a", "a\x00", "a\x00b", "\xff\x00", "ab", "\x00\x01"} {
		for _, rev := range []int64{1, 2, 1 << 40, math.MaxInt64} {
			ks = append(ks, mvccKey([]byte(k), rev))
		}
		ks = append(ks, mvccPrefix([]byte(k)), mvccPrefixEnd(mvccPrefix([]byte(k))), sysKey([]byte(k)))
	}
	ks = append(ks, logKey(1, 5), rangeLocalKey(7, suffixHardState), []byte{kindMVCC})
	for _, a := range ks {
		if n := splitMVCC(a); splitMVCC(a[:n]) != n {
			t.Fatalf("prefix of %x does not split to itself", a)
		}
		for _, b := range ks {
			an, bn := splitMVCC(a), splitMVCC(b)
			want := bytes.Compare(a[:an], b[:bn])
			if want == 0 {
				want = bytes.Compare(a[an:], b[bn:])
			}
			if got := comparer.Compare(a, b); got != want {
				t.Fatalf("compare(%x, %x) = %d, prefix-then-suffix says %d", a, b, got, want)
			}
		}
	}
	for _, k := range [][]byte{mvccPrefixEnd(mvccPrefix([]byte("a"))), {kindMVCC}, {kindMVCC, 0, 1}} {
		if n := splitMVCC(k); n != len(k) {
			t.Fatalf("split(%x) = %d, want the whole key", k, n)
		}
	}
}
