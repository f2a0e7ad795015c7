package encfs

import (
	"crypto/aes"
	"crypto/rand"
	"fmt"
	"os"
)

// TempFile is a scratch file on the disk whose contents are encrypted
// under a random key that only this process holds, in memory: what it
// spools (a backup on its way to a client) is unreadable on the disk, and
// forever after the process ends. Write appends; ReadAt reads back. Not
// safe for concurrent use.
type TempFile struct {
	f    *os.File
	key  *Key
	iv   [16]byte
	size int64
}

// CreateTemp creates a TempFile in dir named by pattern, as os.CreateTemp.
// Close removes it.
func CreateTemp(dir, pattern string) (*TempFile, error) {
	var raw [KeyBytes]byte
	rand.Read(raw[:]) // never fails (crypto/rand)
	block, err := aes.NewCipher(raw[:])
	if err != nil {
		return nil, fmt.Errorf("encfs: %w", err)
	}
	f, err := os.CreateTemp(dir, pattern)
	if err != nil {
		return nil, err
	}
	t := &TempFile{f: f, key: &Key{block: block}}
	rand.Read(t.iv[:])
	return t, nil
}

func (t *TempFile) file() *file { return &file{key: t.key, iv: t.iv} }

// Write appends the ciphertext of p.
func (t *TempFile) Write(p []byte) (int, error) {
	buf := make([]byte, len(p))
	t.file().streamAt(t.size).XORKeyStream(buf, p)
	n, err := t.f.WriteAt(buf, t.size)
	t.size += int64(n)
	return n, err
}

// ReadAt reads plaintext at off.
func (t *TempFile) ReadAt(p []byte, off int64) (int, error) {
	n, err := t.f.ReadAt(p, off)
	t.file().streamAt(off).XORKeyStream(p[:n], p[:n])
	return n, err
}

// Size is the number of bytes written.
func (t *TempFile) Size() int64 { return t.size }

// Close closes and removes the file.
func (t *TempFile) Close() error {
	err := t.f.Close()
	if rerr := os.Remove(t.f.Name()); err == nil {
		err = rerr
	}
	return err
}
