package encfs

import (
	"bytes"
	"crypto/cipher"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
)

func testKey(t testing.TB, seed byte) *Key {
	t.Helper()
	raw := bytes.Repeat([]byte{seed}, KeyBytes)
	k, err := NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newFS(t testing.TB, base vfs.FS, active *Key, old ...*Key) *FS {
	t.Helper()
	fs, err := New(base, Keys{Active: active, Old: old})
	if err != nil {
		t.Fatal(err)
	}
	return fs
}

func writeFile(t testing.TB, fs vfs.FS, name string, data []byte) {
	t.Helper()
	f, err := fs.Create(name, vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	// Write may modify its argument, so write a copy, in uneven pieces.
	rest := append([]byte(nil), data...)
	for len(rest) > 0 {
		n := min(len(rest), 1+len(rest)%4093)
		if _, err := f.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readAll(t testing.TB, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func randBytes(r *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestRoundTripSizesAndRandomReadAt(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	mem := vfs.NewMem()
	fs := newFS(t, mem, testKey(t, 1))
	plain := randBytes(r, 200_003)
	copy(plain[1000:], "a very recognisable plaintext marker")
	writeFile(t, fs, "f", plain)

	raw := readAll(t, mem, "f")
	if len(raw) != len(plain)+HeaderBytes {
		t.Fatalf("raw size %d, want %d", len(raw), len(plain)+HeaderBytes)
	}
	if bytes.Contains(raw, []byte("recognisable plaintext")) {
		t.Fatal("the plaintext is on the disk")
	}
	if got := readAll(t, fs, "f"); !bytes.Equal(got, plain) {
		t.Fatal("Read does not give back what was written")
	}
	fi, err := fs.Stat("f")
	if err != nil || fi.Size() != int64(len(plain)) {
		t.Fatalf("FS.Stat size %v (%v), want %d", fi.Size(), err, len(plain))
	}
	f, err := fs.Open("f")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(plain)) {
		t.Fatalf("File.Stat size %v (%v), want %d", fi.Size(), err, len(plain))
	}
	for range 2000 {
		off := r.IntN(len(plain) + 10)
		n := r.IntN(5000)
		buf := make([]byte, n)
		got, err := f.ReadAt(buf, int64(off))
		want := max(0, min(n, len(plain)-off))
		if got != want || (got < n && err != io.EOF) || (got == n && err != nil) {
			t.Fatalf("ReadAt(%d bytes, %d) = %d, %v; want %d", n, off, got, err, want)
		}
		if !bytes.Equal(buf[:got], plain[off:off+got]) {
			t.Fatalf("ReadAt(%d bytes, %d) read wrong bytes", n, off)
		}
	}
}

// A keystream at any offset is the one a single CTR stream from offset 0
// gives there, even where the 128-bit counter carries out of its low half.
func TestStreamAtCarries(t *testing.T) {
	k := testKey(t, 2)
	var iv [16]byte
	for i := 8; i < 16; i++ {
		iv[i] = 0xff
	}
	iv[15] = 0xf0 // wraps after 16 blocks
	whole := make([]byte, 4096)
	cipher.NewCTR(k.block, iv[:]).XORKeyStream(whole, whole)
	f := newFile(nil, k, iv)
	for off := 0; off < 4000; off += 7 {
		got := make([]byte, 96)
		f.streamAt(int64(off)).XORKeyStream(got, got)
		if !bytes.Equal(got, whole[off:off+96]) {
			t.Fatalf("keystream at %d differs from the whole stream's", off)
		}
	}
}

func TestRenameAndLinkKeepFilesReadable(t *testing.T) {
	mem := vfs.NewMem()
	fs := newFS(t, mem, testKey(t, 1))
	writeFile(t, fs, "a", []byte("hello, world"))
	if err := fs.Rename("a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := fs.Link("b", "c"); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"b", "c"} {
		if got := string(readAll(t, fs, name)); got != "hello, world" {
			t.Fatalf("%s reads %q", name, got)
		}
	}
}

// ReuseForWrite keeps the old file's blocks (and so its size, as Pebble's
// WAL recycling expects) but never its keystream.
func TestReuseForWriteDrawsANewIV(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	mem := vfs.NewMem()
	fs := newFS(t, mem, testKey(t, 1))
	oldPlain := randBytes(r, 10_000)
	writeFile(t, fs, "old.log", oldPlain)
	oldRaw := readAll(t, mem, "old.log")

	f, err := fs.ReuseForWrite("old.log", "new.log", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	newPlain := randBytes(r, 100)
	if _, err := f.Write(append([]byte(nil), newPlain...)); err != nil {
		t.Fatal(err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != int64(len(oldPlain)) {
		t.Fatalf("reused file's size %v (%v), want the old %d", fi.Size(), err, len(oldPlain))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := mem.Stat("old.log"); err == nil {
		t.Fatal("old.log still exists")
	}
	newRaw := readAll(t, mem, "new.log")
	if bytes.Equal(oldRaw[24:40], newRaw[24:40]) {
		t.Fatal("the reused file kept its IV")
	}
	// With a reused keystream, ciphertext XOR ciphertext would equal
	// plaintext XOR plaintext.
	same := 0
	for i := range newPlain {
		if oldRaw[HeaderBytes+i]^newRaw[HeaderBytes+i] == oldPlain[i]^newPlain[i] {
			same++
		}
	}
	if same > 10 {
		t.Fatalf("%d of %d bytes show a reused keystream", same, len(newPlain))
	}
	got := readAll(t, fs, "new.log")
	if len(got) != len(oldPlain) || !bytes.Equal(got[:100], newPlain) {
		t.Fatalf("new.log reads %d bytes starting %x", len(got), got[:min(len(got), 8)])
	}
}

func TestOpenReadWrite(t *testing.T) {
	mem := vfs.NewMem()
	fs := newFS(t, mem, testKey(t, 1))
	f, err := fs.OpenReadWrite("rw", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("0123456789")); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("abc"), 4); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err = fs.OpenReadWrite("rw", vfs.WriteCategoryUnspecified)
	if err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 10)
	if _, err := f.ReadAt(buf, 0); err != nil || string(buf) != "0123abc789" {
		t.Fatalf("ReadAt = %q, %v", buf, err)
	}
	// The offset starts at plaintext 0, as an os.File's does.
	if _, err := f.Write([]byte("XY")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := string(readAll(t, fs, "rw")); got != "XY23abc789" {
		t.Fatalf("rw reads %q", got)
	}
}

func TestKeysAndRotation(t *testing.T) {
	mem := vfs.NewMem()
	k1, k2, k3 := testKey(t, 1), testKey(t, 2), testKey(t, 3)
	writeFile(t, newFS(t, mem, k1), "one", []byte("under key one"))

	_, err := newFS(t, mem, k2).Open("one")
	if !errors.Is(err, ErrUnknownKey) || !strings.Contains(err.Error(), k1.ID().String()) {
		t.Fatalf("opening a file under a key not given: %v; want ErrUnknownKey naming %s", err, k1.ID())
	}
	if _, err := newFS(t, mem, k2, k3).CheckDir(""); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("CheckDir without the file's key: %v", err)
	}

	// An empty file needs no key.
	writeFile(t, newFS(t, mem, k1), "marker.empty", nil)
	if got := readAll(t, newFS(t, mem, k2), "marker.empty"); len(got) != 0 {
		t.Fatalf("an empty file under a key not given reads %q", got)
	}

	rotated := newFS(t, mem, k2, k1)
	if got := string(readAll(t, rotated, "one")); got != "under key one" {
		t.Fatalf("old file reads %q after rotation", got)
	}
	writeFile(t, rotated, "two", []byte("under key two"))
	census, err := rotated.CheckDir("")
	if err != nil {
		t.Fatal(err)
	}
	if census.ByKey[k1.ID()] != 2 || census.ByKey[k2.ID()] != 1 {
		t.Fatalf("census %v; want two files under the old key and one under the new", census.ByKey)
	}
	if _, err := newFS(t, mem, k1).Open("two"); !errors.Is(err, ErrUnknownKey) {
		t.Fatalf("the new file is not under the new key: %v", err)
	}
}

func TestUnencryptedAndHollowFiles(t *testing.T) {
	mem := vfs.NewMem()
	fs := newFS(t, mem, testKey(t, 1))
	writeFile(t, mem, "plain", bytes.Repeat([]byte("plaintext "), 10))
	if _, err := fs.Open("plain"); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("opening a plaintext file: %v", err)
	}
	if _, err := fs.CheckDir(""); !errors.Is(err, ErrNotEncrypted) {
		t.Fatalf("CheckDir over a plaintext file: %v", err)
	}
	if _, err := fs.CheckDir("", "plain"); err != nil {
		t.Fatalf("CheckDir told plain is plaintext: %v", err)
	}
	// A header that is damaged but has the magic.
	writeFile(t, fs, "damaged", []byte("x"))
	raw := readAll(t, mem, "damaged")
	raw[30] ^= 1
	writeFile(t, mem, "damaged", raw)
	if _, err := fs.Open("damaged"); !errors.Is(err, ErrCorruptHeader) {
		t.Fatalf("opening a damaged header: %v", err)
	}
	// Never-synced files: empty, or a zeroed header.
	writeFile(t, mem, "empty", nil)
	writeFile(t, mem, "zeroed", make([]byte, 300))
	for _, name := range []string{"empty", "zeroed"} {
		f, err := fs.Open(name)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if n, err := f.ReadAt(make([]byte, 10), 0); n != 0 || err != io.EOF {
			t.Fatalf("%s: ReadAt = %d, %v; want 0, EOF", name, n, err)
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != 0 {
			t.Fatalf("%s: size %v, %v", name, fi.Size(), err)
		}
		if _, err := f.Write([]byte("x")); err == nil {
			t.Fatalf("%s: write to a hollow file succeeded", name)
		}
		f.Close()
	}
}

func TestParseKey(t *testing.T) {
	raw := []byte("0123456789abcdef0123456789ABCDEF")
	want, err := NewKey(raw)
	if err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{
		"raw":    string(raw),
		"hex":    "3031323334353637383961626364656630313233343536373839414243444546\n",
		"base64": "  MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlBQkNERUY=\n",
	} {
		k, err := ParseKey([]byte(data))
		if err != nil || k.ID() != want.ID() {
			t.Errorf("%s: %v, id %v; want %v", name, err, k, want.ID())
		}
	}
	for name, data := range map[string]string{
		"short raw":       "0123456789abcdef",
		"long raw":        string(raw) + "x",
		"hex of 16 bytes": "30313233343536373839616263646566\n",
		"bad hex":         strings.Repeat("zz", 32),
		"empty":           "",
	} {
		if _, err := ParseKey([]byte(data)); err == nil || !strings.Contains(err.Error(), "32-byte") {
			t.Errorf("%s: %v; want an error about the size", name, err)
		}
	}
}

// recordingFile records the offsets the encrypted file passes beneath it.
type recordingFile struct {
	vfs.File
	calls []string
}

func (f *recordingFile) Preallocate(off, n int64) error {
	f.calls = append(f.calls, "preallocate "+itoa(off)+" "+itoa(n))
	return nil
}

func (f *recordingFile) SyncTo(n int64) (bool, error) {
	f.calls = append(f.calls, "syncto "+itoa(n))
	return false, nil
}

func (f *recordingFile) Prefetch(off, n int64) error {
	f.calls = append(f.calls, "prefetch "+itoa(off)+" "+itoa(n))
	return nil
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func TestOffsetsPassedBeneathSkipTheHeader(t *testing.T) {
	rf := &recordingFile{}
	f := newFile(rf, testKey(t, 1), [16]byte{})
	_ = f.Preallocate(0, 4096)
	_, _ = f.SyncTo(1000)
	_ = f.Prefetch(100, 50)
	want := "preallocate 64 4096|syncto 1064|prefetch 164 50"
	if got := strings.Join(rf.calls, "|"); got != want {
		t.Fatalf("calls beneath: %s; want %s", got, want)
	}
}

func TestTempFile(t *testing.T) {
	dir := t.TempDir()
	f, err := CreateTemp(dir, "spool-*")
	if err != nil {
		t.Fatal(err)
	}
	want := bytes.Repeat([]byte("spooled plaintext "), 5000)
	for rest := want; len(rest) > 0; {
		n := min(len(rest), 7777)
		if _, err := f.Write(rest[:n]); err != nil {
			t.Fatal(err)
		}
		rest = rest[n:]
	}
	if f.Size() != int64(len(want)) {
		t.Fatalf("size %d, want %d", f.Size(), len(want))
	}
	raw, err := vfs.Default.List(dir)
	if err != nil || len(raw) != 1 {
		t.Fatalf("dir holds %v (%v)", raw, err)
	}
	onDisk := readAll(t, vfs.Default, dir+"/"+raw[0])
	if bytes.Contains(onDisk, []byte("spooled plaintext")) {
		t.Fatal("the spool holds plaintext")
	}
	got, err := io.ReadAll(io.NewSectionReader(f, 0, f.Size()))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(want))
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := vfs.Default.List(dir); len(left) != 0 {
		t.Fatalf("Close left %v", left)
	}
}

// BenchmarkReadAt reads 4 KiB blocks (a Pebble data block) at random
// offsets of a 4 MiB file on MemFS, plain and through FS: the CPU cost of
// decryption alone.
func BenchmarkReadAt(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	data := randBytes(r, 4<<20)
	for _, mode := range []string{"plain", "aes-256-ctr"} {
		b.Run(mode, func(b *testing.B) {
			var fs vfs.FS = vfs.NewMem()
			if mode != "plain" {
				fs = newFS(b, fs, testKey(b, 1))
			}
			writeFile(b, fs, "f", data)
			f, err := fs.Open("f")
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			buf := make([]byte, 4096)
			b.SetBytes(int64(len(buf)))
			for b.Loop() {
				if _, err := f.ReadAt(buf, int64(r.IntN(len(data)-len(buf)))); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
