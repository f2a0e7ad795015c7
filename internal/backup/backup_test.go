package backup

import (
	"bytes"
	"errors"
	"fmt"
	"testing"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"google.golang.org/protobuf/proto"
)

func sample(t testing.TB, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		kv := &kvpb.KeyValue{Key: []byte(fmt.Sprintf("k%03d", i)), Value: []byte("v"), CreateRevision: int64(10 + i), ModRevision: int64(20 + i), Version: 2}
		if err := w.Add(kv); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestRoundTrip(t *testing.T) {
	data := sample(t, 50)
	var got []*kvpb.KeyValue
	info, err := Read(bytes.NewReader(data), func(kv *kvpb.KeyValue) error {
		got = append(got, kv)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if info.Revision != 1000 || info.Keys != 50 || info.MaxRevision != 69 || len(got) != 50 {
		t.Fatalf("info %+v, %d records", info, len(got))
	}
	if string(got[7].GetKey()) != "k007" || got[7].GetCreateRevision() != 17 {
		t.Fatalf("record 7: %v", got[7])
	}
}

func TestEveryCorruptionIsCaught(t *testing.T) {
	data := sample(t, 5)
	for i := range data {
		bad := bytes.Clone(data)
		bad[i] ^= 0x40
		if _, err := Read(bytes.NewReader(bad), func(*kvpb.KeyValue) error { return nil }); err == nil {
			t.Fatalf("flipping byte %d went unnoticed", i)
		}
	}
	for n := 0; n < len(data); n++ {
		if _, err := Read(bytes.NewReader(data[:n]), func(*kvpb.KeyValue) error { return nil }); !errors.Is(err, ErrCorrupt) {
			t.Fatalf("truncated to %d bytes: %v", n, err)
		}
	}
	if _, err := Read(bytes.NewReader(append(bytes.Clone(data), 0)), func(*kvpb.KeyValue) error { return nil }); err == nil {
		t.Fatal("trailing garbage accepted")
	}
}

func TestWriterRefusesDisorder(t *testing.T) {
	w, _ := NewWriter(&bytes.Buffer{}, 1)
	kv := &kvpb.KeyValue{Key: []byte("b"), CreateRevision: 1, ModRevision: 1, Version: 1}
	if err := w.Add(kv); err != nil {
		t.Fatal(err)
	}
	if err := w.Add(proto.CloneOf(kv)); err == nil {
		t.Fatal("duplicate key accepted")
	}
}

func FuzzRead(f *testing.F) {
	f.Add(sample(f, 3))
	f.Add([]byte("CONCORDB"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		var n int64
		info, err := Read(bytes.NewReader(data), func(*kvpb.KeyValue) error { n++; return nil })
		if err == nil && info.Keys != n {
			t.Fatalf("info says %d keys, callback saw %d", info.Keys, n)
		}
	})
}

func TestEtcdSnapshotShape(t *testing.T) {
	for _, n := range []int{0, 1, 7, 100} {
		data := sample(t, n)
		// etcdctl snapshot save keeps a download only if its size is a
		// multiple of 512 plus a SHA-256 trailer.
		if len(data)%512 != 32 {
			t.Fatalf("%d keys: %d bytes, not 512k+32", n, len(data))
		}
	}
}
