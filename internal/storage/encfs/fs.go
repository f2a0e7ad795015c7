package encfs

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// FS is a vfs.FS that encrypts every regular file it writes and decrypts
// what it reads (see the package doc). It is safe for concurrent use as
// far as the FS beneath is.
type FS struct {
	base vfs.FS
	keys Keys
}

var _ vfs.FS = (*FS)(nil)

// New returns an FS over base that encrypts new files with keys.Active and
// reads files written under keys.Active or any of keys.Old.
func New(base vfs.FS, keys Keys) (*FS, error) {
	if err := keys.validate(); err != nil {
		return nil, err
	}
	return &FS{base: base, keys: keys}, nil
}

// Create creates name (replacing a file of that name) and writes its header
// under the active key.
func (fs *FS) Create(name string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.base.Create(name, category)
	if err != nil {
		return nil, err
	}
	return fs.start(name, f)
}

// ReuseForWrite renames oldname to newname and writes a new header, with a
// new IV, over the old one: the file's blocks are reused (what Pebble
// recycles WAL files for: a sync that need not allocate), its keystream
// never is.
func (fs *FS) ReuseForWrite(oldname, newname string, category vfs.DiskWriteCategory) (vfs.File, error) {
	f, err := fs.base.ReuseForWrite(oldname, newname, category)
	if err != nil {
		return nil, err
	}
	return fs.start(newname, f)
}

// start writes a fresh header at the start of f, whose offset must be 0,
// and returns f wrapped. On error it closes f.
func (fs *FS) start(name string, f vfs.File) (vfs.File, error) {
	h := header{keyID: fs.keys.Active.id}
	rand.Read(h.iv[:]) // never fails (crypto/rand)
	b := h.encode()
	if _, err := f.Write(b[:]); err != nil {
		return nil, errors.Join(fmt.Errorf("encfs: %s: write header: %w", name, err), f.Close())
	}
	return newFile(f, fs.keys.Active, h.iv), nil
}

// Open opens name for reading.
func (fs *FS) Open(name string, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.base.Open(name, opts...)
	if err != nil {
		return nil, err
	}
	// Read, not ReadAt: the file's offset must end up at plaintext 0.
	var b [HeaderBytes]byte
	n, err := io.ReadFull(f, b[:])
	if err != nil && err != io.EOF && err != io.ErrUnexpectedEOF {
		return nil, errors.Join(fmt.Errorf("encfs: %s: read header: %w", name, err), f.Close())
	}
	if allZero(b[:n]) {
		// Created but never synced (package doc, step 3).
		return &file{base: f}, nil
	}
	k, h, err := fs.decode(name, b[:n])
	if errors.Is(err, ErrUnknownKey) && isHeaderOnly(f) {
		// Nothing to decrypt, so no key is needed: Pebble's marker files
		// (their names are their contents) stay readable after the key
		// they were created under is dropped.
		return &file{base: f}, nil
	}
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return newFile(f, k, h.iv), nil
}

// isHeaderOnly reports whether f holds a header and nothing else.
func isHeaderOnly(f vfs.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Size() == HeaderBytes
}

// OpenReadWrite opens name for reading and writing, creating it if it does
// not exist; an empty file gets a header under the active key.
func (fs *FS) OpenReadWrite(name string, category vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	f, err := fs.base.OpenReadWrite(name, category, opts...)
	if err != nil {
		return nil, err
	}
	// The header is read with Read so that the file's offset, which Write
	// continues from, ends up at plaintext offset 0.
	var b [HeaderBytes]byte
	n, err := io.ReadFull(f, b[:])
	switch {
	case n == 0 && (err == io.EOF || err == nil):
		return fs.start(name, f)
	case err != nil && err != io.ErrUnexpectedEOF:
		return nil, errors.Join(fmt.Errorf("encfs: %s: read header: %w", name, err), f.Close())
	}
	k, h, err := fs.decode(name, b[:n])
	if err != nil {
		return nil, errors.Join(err, f.Close())
	}
	return newFile(f, k, h.iv), nil
}

// decode decodes the header b read from name and finds its key.
func (fs *FS) decode(name string, b []byte) (*Key, header, error) {
	h, err := decodeHeader(b)
	if err != nil {
		return nil, header{}, fmt.Errorf("encfs: %s: %w", name, err)
	}
	k, ok := fs.keys.lookup(h.keyID)
	if !ok {
		return nil, header{}, fmt.Errorf("%w: %s is encrypted with key id %s, which is neither the active key (%s) nor one of the %d old keys given",
			ErrUnknownKey, name, h.keyID, fs.keys.Active.id, len(fs.keys.Old))
	}
	return k, h, nil
}

// Stat returns name's FileInfo, with the size of its plaintext. (A file
// Open shows as empty because its header is all zeros reports here the
// size beyond the header; Pebble never stats such a file: it was never
// synced.)
func (fs *FS) Stat(name string) (vfs.FileInfo, error) {
	fi, err := fs.base.Stat(name)
	if err != nil || fi.IsDir() {
		return fi, err
	}
	return plainInfo{fi}, nil
}

// The rest of vfs.FS passes through: names, directories, links and locks
// are not encrypted, and a rename or link keeps the header, which is all a
// file needs to be read.

func (fs *FS) Link(oldname, newname string) error          { return fs.base.Link(oldname, newname) }
func (fs *FS) OpenDir(name string) (vfs.File, error)       { return fs.base.OpenDir(name) }
func (fs *FS) Remove(name string) error                    { return fs.base.Remove(name) }
func (fs *FS) RemoveAll(name string) error                 { return fs.base.RemoveAll(name) }
func (fs *FS) Rename(oldname, newname string) error        { return fs.base.Rename(oldname, newname) }
func (fs *FS) MkdirAll(dir string, perm os.FileMode) error { return fs.base.MkdirAll(dir, perm) }
func (fs *FS) Lock(name string) (io.Closer, error)         { return fs.base.Lock(name) }
func (fs *FS) List(dir string) ([]string, error)           { return fs.base.List(dir) }
func (fs *FS) PathBase(path string) string                 { return fs.base.PathBase(path) }
func (fs *FS) PathJoin(elem ...string) string              { return fs.base.PathJoin(elem...) }
func (fs *FS) PathDir(path string) string                  { return fs.base.PathDir(path) }

func (fs *FS) GetDiskUsage(path string) (vfs.DiskUsage, error) { return fs.base.GetDiskUsage(path) }

// Unwrap returns nil: FS changes what files hold, so nothing may reach
// the file system beneath it through vfs.Root and write plaintext there.
func (fs *FS) Unwrap() vfs.FS { return nil }

// plainInfo is a file's FileInfo with the plaintext size.
type plainInfo struct{ vfs.FileInfo }

func (fi plainInfo) Size() int64 { return max(0, fi.FileInfo.Size()-HeaderBytes) }

// Census counts the files CheckDir found, by the key they are encrypted
// with.
type Census struct {
	ByKey map[KeyID]int
	// Empty counts the files with no plaintext whose key is not given (so
	// it is not needed) or that have no header (lock files, files created
	// but never synced).
	Empty int
}

// CheckDir reads the header of every regular file under dir (recursively)
// except those named in plaintext (base names), and fails if one is not
// encrypted, has a damaged header or is under a key the FS was not given,
// so that a missing key fails a node's start instead of its first read
// of an old file.
func (fs *FS) CheckDir(dir string, plaintext ...string) (Census, error) {
	c := Census{ByKey: map[KeyID]int{}}
	err := fs.checkDir(dir, plaintext, &c)
	return c, err
}

func (fs *FS) checkDir(dir string, plaintext []string, c *Census) error {
	names, err := fs.base.List(dir)
	if err != nil {
		return fmt.Errorf("encfs: %w", err)
	}
	for _, name := range names {
		path := fs.base.PathJoin(dir, name)
		fi, err := fs.base.Stat(path)
		if err != nil {
			return fmt.Errorf("encfs: %w", err)
		}
		switch {
		case fi.IsDir():
			if err := fs.checkDir(path, plaintext, c); err != nil {
				return err
			}
			continue
		case !fi.Mode().IsRegular() || isPlaintext(name, plaintext):
			continue
		}
		f, err := fs.Open(path)
		if err != nil {
			return err
		}
		if ef := f.(*file); ef.key == nil {
			c.Empty++
		} else {
			c.ByKey[ef.key.id]++
		}
		if err := f.Close(); err != nil {
			return fmt.Errorf("encfs: %w", err)
		}
	}
	return nil
}

func isPlaintext(name string, plaintext []string) bool {
	for _, p := range plaintext {
		if name == p {
			return true
		}
	}
	return false
}

// IsEncrypted reports whether the file at path on fs (the file system
// beneath any FS) starts with an encfs header's magic.
func IsEncrypted(fs vfs.FS, path string) (bool, error) {
	f, err := fs.Open(path)
	if err != nil {
		return false, err
	}
	var b [len(magic)]byte
	n, err := io.ReadFull(f, b[:])
	if cerr := f.Close(); err == nil || err == io.ErrUnexpectedEOF || err == io.EOF {
		err = cerr
	}
	return n == len(b) && string(b[:]) == magic, err
}
