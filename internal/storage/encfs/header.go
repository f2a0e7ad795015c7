package encfs

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
)

// HeaderBytes is the size of the header every encrypted file starts with.
const HeaderBytes = 64

const (
	magic         = "CNCDENC\x00"
	formatVersion = 1
	cipherAESCTR  = 1
)

// ErrNotEncrypted is wrapped by the errors about a file that holds no
// encfs header: a plaintext file where an encrypted one was expected.
var ErrNotEncrypted = errors.New("encfs: file is not encrypted")

// ErrCorruptHeader is wrapped by the errors about a header that has the
// magic but does not decode.
var ErrCorruptHeader = errors.New("encfs: corrupt header")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// header is what a file's first HeaderBytes say.
type header struct {
	keyID KeyID
	iv    [16]byte
}

func (h header) encode() [HeaderBytes]byte {
	var b [HeaderBytes]byte
	copy(b[0:8], magic)
	b[8] = formatVersion
	b[9] = cipherAESCTR
	copy(b[16:24], h.keyID[:])
	copy(b[24:40], h.iv[:])
	binary.BigEndian.PutUint32(b[60:64], crc32.Checksum(b[:60], castagnoli))
	return b
}

// decodeHeader decodes b, which must be HeaderBytes long. Its checks run
// in the order that gives the most useful error: no magic is a plaintext
// file, a bad checksum a damaged header, then an unknown version or
// cipher.
func decodeHeader(b []byte) (header, error) {
	if len(b) != HeaderBytes {
		return header{}, fmt.Errorf("%w: %d bytes, want %d", ErrCorruptHeader, len(b), HeaderBytes)
	}
	if string(b[0:8]) != magic {
		return header{}, ErrNotEncrypted
	}
	if got, want := binary.BigEndian.Uint32(b[60:64]), crc32.Checksum(b[:60], castagnoli); got != want {
		return header{}, fmt.Errorf("%w: checksum %08x, want %08x", ErrCorruptHeader, got, want)
	}
	if b[8] != formatVersion {
		return header{}, fmt.Errorf("%w: format version %d (this binary reads %d)", ErrCorruptHeader, b[8], formatVersion)
	}
	if b[9] != cipherAESCTR {
		return header{}, fmt.Errorf("%w: cipher %d (this binary knows %d, AES-256-CTR)", ErrCorruptHeader, b[9], cipherAESCTR)
	}
	if !allZero(b[10:16]) || !allZero(b[40:60]) {
		return header{}, fmt.Errorf("%w: reserved bytes are not zero", ErrCorruptHeader)
	}
	var h header
	copy(h.keyID[:], b[16:24])
	copy(h.iv[:], b[24:40])
	return h, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
