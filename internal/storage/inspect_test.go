package storage

import (
	"crypto/sha256"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

// dirDigest hashes every file's name, size, mode, mtime and contents under
// dir, so a test can tell whether anything there changed. The mtime of
// Pebble's empty LOCK file is left out: taking the lock sets it, whoever
// opens the engine.
func dirDigest(t *testing.T, dir string) [32]byte {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		h.Write([]byte(path + info.Mode().String()))
		if d.Name() != "LOCK" {
			h.Write([]byte(info.ModTime().String()))
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// writeNode makes a data dir the way a node does on its first start: the
// identity, the address book and a replica's descriptor.
func writeNode(t *testing.T, dir string, id Ident) {
	t.Helper()
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, func(b *Batch) error {
		if err := b.PutIdent(id); err != nil {
			return err
		}
		if err := b.PutNodeBook([]*metapb.NodeRecord{{NodeId: 1, Name: "n1", PeerUrls: []string{"http://a:2380"}}}); err != nil {
			return err
		}
		return b.PutLocalDescriptor(&metapb.RangeDescriptor{RangeId: 1, Generation: 1})
	})
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestInspectFreshDirs(t *testing.T) {
	base := t.TempDir()
	empty := filepath.Join(base, "empty")
	lostFound := filepath.Join(base, "mounted")
	for _, d := range []string{empty, filepath.Join(lostFound, "lost+found")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, dir := range []string{filepath.Join(base, "absent"), empty, lostFound} {
		if id, ok, err := Inspect(dir, Options{}); err != nil || ok {
			t.Errorf("Inspect(%s) = %+v, %v, %v; want a fresh dir", dir, id, ok, err)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "absent")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Inspect created the absent dir: %v", err)
	}
}

func TestInspectReadsTheIdentityAndTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	want := Ident{ClusterID: 0xc0ffee, NodeID: 3, Name: "n3", Token: "concord-cluster"}
	writeNode(t, dir, want)
	before := dirDigest(t, dir)
	got, ok, err := Inspect(dir, Options{})
	if err != nil || !ok || got != want {
		t.Fatalf("Inspect = %+v, %v, %v; want %+v", got, ok, err, want)
	}
	if dirDigest(t, dir) != before {
		t.Fatal("Inspect changed the data dir")
	}
	// The engine still opens for writing and holds what was written.
	e, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	book, err := LoadNodeBook(e)
	if err != nil || len(book) != 1 || book[0].GetName() != "n1" {
		t.Fatalf("address book = %v, %v", book, err)
	}
}

func TestInspectRefusesWhatIsNotASoundEngine(t *testing.T) {
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes.txt"), []byte("mine"), 0o600); err != nil {
		t.Fatal(err)
	}

	damaged := t.TempDir()
	writeNode(t, damaged, Ident{ClusterID: 1, NodeID: 1, Name: "n1"})
	manifests, _ := filepath.Glob(filepath.Join(damaged, "MANIFEST-*"))
	if len(manifests) == 0 {
		t.Fatal("no MANIFEST written")
	}
	for _, m := range manifests {
		if err := os.WriteFile(m, []byte(strings.Repeat("garbage", 100)), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	noIdent := t.TempDir()
	e, err := Open(noIdent, Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, func(b *Batch) error { return b.PutLocalDescriptor(&metapb.RangeDescriptor{RangeId: 2}) })
	e.Close()

	badBook := t.TempDir()
	e, err = Open(badBook, Options{})
	if err != nil {
		t.Fatal(err)
	}
	write(t, e, func(b *Batch) error {
		if err := b.PutIdent(Ident{ClusterID: 1, NodeID: 1}); err != nil {
			return err
		}
		data, _ := proto.Marshal(&metapb.NodeRecord{NodeId: 9})
		return b.b.Set(bookKey(2), data, nil) // node 9's record under node 2's key
	})
	e.Close()

	for name, dir := range map[string]string{"foreign files": foreign, "damaged manifest": damaged, "replicas without identity": noIdent, "bad address book": badBook} {
		before := dirDigest(t, dir)
		_, ok, err := Inspect(dir, Options{})
		if !errors.Is(err, ErrDataDir) || ok {
			t.Errorf("%s: Inspect = %v, %v; want ErrDataDir", name, ok, err)
		}
		if dirDigest(t, dir) != before {
			t.Errorf("%s: Inspect changed the data dir", name)
		}
	}
}

func TestIdentKeepsNameAndToken(t *testing.T) {
	e := openMem(t)
	for _, id := range []Ident{{ClusterID: 7, NodeID: 2}, {ClusterID: 7, NodeID: 2, Name: "n2", Token: "t"}} {
		write(t, e, func(b *Batch) error { return b.PutIdent(id) })
		got, ok, err := LoadIdent(e)
		if err != nil || !ok || got != id {
			t.Fatalf("LoadIdent = %+v, %v, %v; want %+v", got, ok, err, id)
		}
	}
	// The ids-only form older data dirs hold still reads.
	if id, err := decodeIdent(make([]byte, 16)); err != nil || id != (Ident{}) {
		t.Fatalf("16-byte ident = %+v, %v", id, err)
	}
}

func TestMVCCMidKey(t *testing.T) {
	e := openMem(t)
	span := keys.Span{Start: []byte("\x02"), End: []byte("\x03")}
	if mid, err := MVCCMidKey(e, span); err != nil || mid != nil {
		t.Fatalf("empty span: %q %v", mid, err)
	}
	write(t, e, func(b *Batch) error { return put("\x02a", 1, 1, 1, "v")(b) })
	if mid, err := MVCCMidKey(e, span); err != nil || mid != nil {
		t.Fatalf("one key: %q %v", mid, err)
	}
	write(t, e, func(b *Batch) error {
		for i, k := range []string{"b", "c", "d", "e", "f", "g", "h", "i", "j"} {
			if err := put("\x02"+k, int64(i+2), int64(i+2), 1, "v")(b); err != nil {
				return err
			}
		}
		return nil
	})
	if mid, err := MVCCMidKey(e, span); err != nil || string(mid) != "\x02f" {
		t.Fatalf("ten keys of one size: mid %q, %v; want \\x02f", mid, err)
	}
	// Versions count: many versions of a weigh a as much as all the rest.
	write(t, e, func(b *Batch) error {
		for rev := int64(20); rev < 30; rev++ {
			if err := put("\x02a", rev, 1, rev-18, "v")(b); err != nil {
				return err
			}
		}
		return nil
	})
	if mid, err := MVCCMidKey(e, span); err != nil || string(mid) != "\x02b" {
		t.Fatalf("a with eleven versions: mid %q, %v; want \\x02b", mid, err)
	}
}
