package encfs

import (
	"crypto/cipher"
	"encoding/binary"
	"errors"
	"io"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// file is an encrypted vfs.File. Offsets it takes and returns are
// plaintext offsets; the file beneath holds the header and then, at
// HeaderBytes+i, the ciphertext of plaintext byte i.
//
// Like an os.File's, Read and Write move one offset and are not for
// concurrent use; ReadAt touches no shared state and may run concurrently
// with anything.
type file struct {
	base vfs.File
	// key is nil for a file whose header is absent or all zeros: it reads
	// as empty (package doc, step 3) and cannot be written.
	key *Key
	iv  [16]byte
	// pos is the plaintext offset of the next Read or Write.
	// Invariant: the offset of base is HeaderBytes+pos.
	pos int64
	// stream, if not nil, is the keystream positioned at plaintext offset
	// streamPos: sequential Reads and Writes continue it instead of
	// starting one per call.
	stream    cipher.Stream
	streamPos int64
}

var _ vfs.File = (*file)(nil)

func newFile(base vfs.File, key *Key, iv [16]byte) *file {
	return &file{base: base, key: key, iv: iv}
}

// errHollow is returned by writes to a file Open showed as empty.
var errHollow = errors.New("encfs: file has no header and was opened for reading")

// streamAt returns a keystream positioned at plaintext offset off.
func (f *file) streamAt(off int64) cipher.Stream {
	var ctr [16]byte
	hi := binary.BigEndian.Uint64(f.iv[0:8])
	lo := binary.BigEndian.Uint64(f.iv[8:16])
	blocks := uint64(off) / 16
	sum := lo + blocks
	if sum < lo {
		hi++ // the 128-bit counter carries, as cipher.NewCTR's does
	}
	binary.BigEndian.PutUint64(ctr[0:8], hi)
	binary.BigEndian.PutUint64(ctr[8:16], sum)
	s := cipher.NewCTR(f.key.block, ctr[:])
	if skip := off % 16; skip > 0 {
		var junk [16]byte
		s.XORKeyStream(junk[:skip], junk[:skip])
	}
	return s
}

// xorSeq XORs src into dst with the keystream at off, reusing the
// sequential stream when it is there.
func (f *file) xorSeq(dst, src []byte, off int64) {
	if f.stream == nil || f.streamPos != off {
		f.stream = f.streamAt(off)
	}
	f.stream.XORKeyStream(dst, src)
	f.streamPos = off + int64(len(src))
}

// Write encrypts p in place (vfs.File.Write may modify p) and appends it
// at the file's offset.
func (f *file) Write(p []byte) (int, error) {
	if f.key == nil {
		return 0, errHollow
	}
	f.xorSeq(p, p, f.pos)
	n, err := f.base.Write(p)
	f.pos += int64(n)
	return n, err
}

// WriteAt encrypts a copy of p (io.WriterAt must not modify p) and writes
// it at plaintext offset off.
func (f *file) WriteAt(p []byte, off int64) (int, error) {
	if f.key == nil {
		return 0, errHollow
	}
	buf := make([]byte, len(p))
	f.streamAt(off).XORKeyStream(buf, p)
	return f.base.WriteAt(buf, off+HeaderBytes)
}

func (f *file) Read(p []byte) (int, error) {
	if f.key == nil {
		return 0, io.EOF
	}
	n, err := f.base.Read(p)
	f.xorSeq(p[:n], p[:n], f.pos)
	f.pos += int64(n)
	return n, err
}

func (f *file) ReadAt(p []byte, off int64) (int, error) {
	if f.key == nil {
		return 0, io.EOF
	}
	n, err := f.base.ReadAt(p, off+HeaderBytes)
	f.streamAt(off).XORKeyStream(p[:n], p[:n])
	return n, err
}

func (f *file) Stat() (vfs.FileInfo, error) {
	fi, err := f.base.Stat()
	if err != nil {
		return nil, err
	}
	if f.key == nil {
		return hollowInfo{fi}, nil
	}
	return plainInfo{fi}, nil
}

func (f *file) Preallocate(off, length int64) error {
	return f.base.Preallocate(off+HeaderBytes, length)
}

func (f *file) SyncTo(length int64) (fullSync bool, err error) {
	return f.base.SyncTo(length + HeaderBytes)
}

func (f *file) Prefetch(off, length int64) error { return f.base.Prefetch(off+HeaderBytes, length) }

func (f *file) Close() error    { return f.base.Close() }
func (f *file) Sync() error     { return f.base.Sync() }
func (f *file) SyncData() error { return f.base.SyncData() }

// Fd returns the descriptor beneath: Pebble uses it only to decide whether
// to preallocate and sync ranges, which it then does through Preallocate
// and SyncTo, so no byte bypasses the encryption.
func (f *file) Fd() uintptr { return f.base.Fd() }

// hollowInfo is the FileInfo of a file that reads as empty.
type hollowInfo struct{ vfs.FileInfo }

func (hollowInfo) Size() int64 { return 0 }
