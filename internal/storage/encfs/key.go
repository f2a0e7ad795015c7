package encfs

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
)

// KeyBytes is the size of an AES-256 key.
const KeyBytes = 32

// KeyID names a key in file headers without revealing it: the first 8
// bytes of a SHA-256 of the key. Its String is 16 hex digits.
type KeyID [8]byte

func (id KeyID) String() string { return hex.EncodeToString(id[:]) }

// Key is one AES-256 key, ready to use. It is safe for concurrent use.
type Key struct {
	id    KeyID
	block cipher.Block
}

// ID returns the key's id.
func (k *Key) ID() KeyID { return k.id }

// NewKey makes a Key of raw, which must be KeyBytes long.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeyBytes {
		return nil, fmt.Errorf("encfs: an AES-256 key is %d bytes, not %d", KeyBytes, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, fmt.Errorf("encfs: %w", err)
	}
	h := sha256.New()
	h.Write([]byte("concord encfs key id\x00"))
	h.Write(raw)
	var k Key
	copy(k.id[:], h.Sum(nil))
	k.block = block
	return &k, nil
}

// ParseKey reads a key file's contents: exactly 32 raw bytes, or (with
// surrounding white space ignored) 64 hex digits or the standard base64
// encoding (44 characters, padded) of 32 bytes. `openssl rand -hex 32`,
// `openssl rand -base64 32` and `head -c 32 /dev/urandom` all make one.
func ParseKey(data []byte) (*Key, error) {
	if len(data) == KeyBytes {
		return NewKey(data)
	}
	text := bytes.TrimSpace(data)
	if len(text) == 2*KeyBytes {
		if raw, err := hex.DecodeString(string(text)); err == nil {
			return NewKey(raw)
		}
	}
	if raw, err := base64.StdEncoding.DecodeString(string(text)); err == nil && len(raw) == KeyBytes {
		return NewKey(raw)
	}
	return nil, fmt.Errorf("encfs: a key file must hold a %d-byte AES-256 key: %d raw bytes, %d hex digits or %d base64 characters; this one holds %d bytes",
		KeyBytes, KeyBytes, 2*KeyBytes, base64.StdEncoding.EncodedLen(KeyBytes), len(data))
}

// LoadKeyFile reads and parses the key file at path (see ParseKey).
func LoadKeyFile(path string) (*Key, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("encfs: key file: %w", err)
	}
	k, err := ParseKey(data)
	if err != nil {
		return nil, fmt.Errorf("%w (%s)", err, path)
	}
	return k, nil
}

// Keys are the keys an FS uses: Active encrypts every new file; Active and
// Old decrypt.
type Keys struct {
	Active *Key
	Old    []*Key
}

// ErrUnknownKey is wrapped by the errors about a file encrypted under a key
// that is not among the FS's keys.
var ErrUnknownKey = errors.New("encfs: file encrypted with a key that was not given")

func (ks Keys) validate() error {
	if ks.Active == nil {
		return errors.New("encfs: no active key")
	}
	for _, k := range ks.Old {
		if k == nil {
			return errors.New("encfs: nil old key")
		}
	}
	return nil
}

func (ks Keys) lookup(id KeyID) (*Key, bool) {
	if ks.Active.id == id {
		return ks.Active, true
	}
	for _, k := range ks.Old {
		if k.id == id {
			return k, true
		}
	}
	return nil, false
}
