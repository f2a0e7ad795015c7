package storage

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/storage/encfs"
)

func testKeys(t *testing.T, active byte, old ...byte) *encfs.Keys {
	t.Helper()
	mk := func(b byte) *encfs.Key {
		k, err := encfs.NewKey(bytes.Repeat([]byte{b}, encfs.KeyBytes))
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	ks := &encfs.Keys{Active: mk(active)}
	for _, b := range old {
		ks.Old = append(ks.Old, mk(b))
	}
	return ks
}

// writeIdent opens dir with opts, records an identity and closes.
func writeIdent(t *testing.T, opts Options, dir string) {
	t.Helper()
	e, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	b := e.NewBatch()
	if err := b.PutIdent(Ident{ClusterID: 7, NodeID: 9, Name: "plaintext-canary-name"}); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(true); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestEncryptedEngine(t *testing.T) {
	mem := vfs.NewMem()
	enc := Options{FS: mem, Encryption: testKeys(t, 1)}
	writeIdent(t, enc, "db")
	id, ok, err := Inspect("db", enc)
	if err != nil || !ok || id.NodeID != 9 {
		t.Fatalf("Inspect = %+v, %v, %v", id, ok, err)
	}
	names, err := mem.List("db")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		f, err := mem.Open(mem.PathJoin("db", name))
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Contains(raw, []byte("plaintext-canary")) {
			t.Fatalf("%s holds the plaintext", name)
		}
	}

	// Without the key, with another key, and after a rotation.
	if _, _, err := Inspect("db", Options{FS: mem}); !errors.Is(err, ErrEncryptionMode) {
		t.Fatalf("Inspect without encryption: %v", err)
	}
	if _, err := Open("db", Options{FS: mem}); !errors.Is(err, ErrEncryptionMode) || !strings.Contains(err.Error(), "--encryption-key-file") {
		t.Fatalf("Open without encryption: %v", err)
	}
	wrong := testKeys(t, 2)
	if _, err := Open("db", Options{FS: mem, Encryption: wrong}); !errors.Is(err, encfs.ErrUnknownKey) ||
		!strings.Contains(err.Error(), testKeys(t, 1).Active.ID().String()) {
		t.Fatalf("Open with another key: %v; want ErrUnknownKey naming key %s", err, testKeys(t, 1).Active.ID())
	}
	if _, _, err := Inspect("db", Options{FS: mem, Encryption: wrong}); !errors.Is(err, encfs.ErrUnknownKey) {
		t.Fatalf("Inspect with another key: %v", err)
	}
	rotated := Options{FS: mem, Encryption: testKeys(t, 2, 1)}
	e, err := Open("db", rotated)
	if err != nil {
		t.Fatal(err)
	}
	if got, ok, err := LoadIdent(e); err != nil || !ok || got.Name != "plaintext-canary-name" {
		t.Fatalf("after rotation: %+v, %v, %v", got, ok, err)
	}
	if by := e.FilesByKey(); by[testKeys(t, 1).Active.ID()] == 0 {
		t.Fatalf("files by key %v: none under the old key", by)
	}
	if err := e.Close(); err != nil {
		t.Fatal(err)
	}

	// A removed marker is recovered from the files.
	if err := mem.Remove(mem.PathJoin("db", modeFileName)); err != nil {
		t.Fatal(err)
	}
	if _, err := Open("db", Options{FS: mem}); !errors.Is(err, ErrEncryptionMode) {
		t.Fatalf("Open without encryption and marker: %v", err)
	}
}

func TestPlaintextEngineRefusesEncryption(t *testing.T) {
	mem := vfs.NewMem()
	writeIdent(t, Options{FS: mem}, "db")
	enc := Options{FS: mem, Encryption: testKeys(t, 1)}
	if _, err := Open("db", enc); !errors.Is(err, ErrEncryptionMode) || !strings.Contains(err.Error(), "without encryption") {
		t.Fatalf("Open with encryption: %v", err)
	}
	// A dir from before markers: the files tell.
	if err := mem.Remove(mem.PathJoin("db", modeFileName)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := Inspect("db", enc); !errors.Is(err, ErrEncryptionMode) {
		t.Fatalf("Inspect with encryption, no marker: %v", err)
	}
	writeIdent(t, Options{FS: mem}, "db")
	if _, err := mem.Stat(mem.PathJoin("db", modeFileName)); err != nil {
		t.Fatalf("Open did not record the mode of an old dir: %v", err)
	}
	// A damaged marker.
	f, err := mem.Create(mem.PathJoin("db", modeFileName), vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte("encryption: rot13\n"))
	f.Close()
	if _, err := Open("db", Options{FS: mem}); !errors.Is(err, ErrEncryptionMode) || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("Open with a damaged marker: %v", err)
	}
}
