package encfs

import (
	"bytes"
	"errors"
	"testing"
)

// FuzzDecodeHeader: any bytes either decode to a header that encodes back
// to exactly those bytes, or fail with one of the package's errors; never
// a panic.
func FuzzDecodeHeader(f *testing.F) {
	valid := header{keyID: KeyID{1, 2, 3, 4, 5, 6, 7, 8}, iv: [16]byte{9, 10, 11}}.encode()
	f.Add(valid[:])
	f.Add(make([]byte, HeaderBytes))
	f.Add([]byte(magic))
	damaged := valid
	damaged[8] = 2
	f.Add(damaged[:])
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := decodeHeader(b)
		if err != nil {
			if !errors.Is(err, ErrNotEncrypted) && !errors.Is(err, ErrCorruptHeader) {
				t.Fatalf("unexpected error %v", err)
			}
			return
		}
		if enc := h.encode(); !bytes.Equal(enc[:], b) {
			t.Fatalf("decoded %x to %+v, which encodes to %x", b, h, enc)
		}
	})
}
