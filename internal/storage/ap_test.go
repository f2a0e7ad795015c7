package storage

import (
	"bytes"
	"testing"
)

func TestAPReplicasAndHints(t *testing.T) {
	e := openMem(t)
	b := e.NewBatch()
	for _, k := range []string{"b", "a\x00z", "a", "c"} {
		if err := b.APPut(1, []byte(k), []byte("state-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.APPut(2, []byte("other"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	for _, h := range []APHint{{1, []byte("a"), 7, []byte("h7")}, {1, []byte("a"), 3, []byte("h3")}, {1, []byte("a\x00z"), 3, []byte("hz")}} {
		if err := b.APPutHint(h); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if v, ok, err := APGet(e, 1, []byte("a")); err != nil || !ok || string(v) != "state-a" {
		t.Fatalf("get: %q %v %v", v, ok, err)
	}
	if _, ok, _ := APGet(e, 2, []byte("a")); ok {
		t.Fatal("keyspaces are not apart")
	}
	var got []string
	if err := APScan(e, 1, []byte("a\x00"), func(k, _ []byte) (bool, error) {
		got = append(got, string(k))
		return len(got) < 2, nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != "a\x00z" || got[1] != "b" {
		t.Fatalf("scan from a\\x00 with a limit of 2: %q", got)
	}
	hs, err := APHintsOf(e, 1, []byte("a"))
	if err != nil || len(hs) != 2 || hs[0].Target != 3 || hs[1].Target != 7 || string(hs[1].State) != "h7" {
		t.Fatalf("hints of a: %+v %v", hs, err)
	}
	var all []APHint
	if err := APScanHints(e, func(h APHint) (bool, error) { all = append(all, h); return true, nil }); err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || !bytes.Equal(all[2].Key, []byte("a\x00z")) {
		t.Fatalf("all hints: %+v", all)
	}
	b = e.NewBatch()
	if err := b.APDeleteHint(1, []byte("a"), 7); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if _, ok, _ := APGetHint(e, 1, []byte("a"), 7); ok {
		t.Fatal("hint not deleted")
	}
}

func FuzzDecodeAPHintKey(f *testing.F) {
	f.Add(apHintKey(1, []byte("a\x00b"), 9))
	f.Add([]byte{kindAP, apHint, 0, 0, 0, 1, 0, 1})
	f.Fuzz(func(t *testing.T, k []byte) {
		h, err := decodeHintKey(k)
		if err != nil {
			return
		}
		if !bytes.Equal(apHintKey(h.Keyspace, h.Key, h.Target), k) {
			t.Fatalf("%x does not re-encode", k)
		}
	})
}
