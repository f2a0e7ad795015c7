package ap

import (
	"encoding/binary"
	"fmt"

	"github.com/concorddb/concord/internal/ap/crdt"
)

// keyspaceVersion is the first byte of an encoded Keyspace.
const keyspaceVersion byte = 1

// maxReplicas bounds N: more replicas than this is a typo, not a design.
const maxReplicas = 16

// Encode returns k's record in the meta range: a version byte, then N, R
// and W as uvarints.
func (k Keyspace) Encode() []byte {
	b := []byte{keyspaceVersion}
	for _, v := range []int{k.N, k.R, k.W} {
		b = binary.AppendUvarint(b, uint64(v))
	}
	return b
}

// DecodeKeyspace decodes an Encode'd record and validates it. Errors wrap
// crdt.ErrCorrupt.
func DecodeKeyspace(b []byte) (Keyspace, error) {
	if len(b) == 0 || b[0] != keyspaceVersion {
		return Keyspace{}, fmt.Errorf("%w: keyspace record version", crdt.ErrCorrupt)
	}
	b = b[1:]
	var vs [3]int
	for i := range vs {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > maxReplicas {
			return Keyspace{}, fmt.Errorf("%w: keyspace record field %d", crdt.ErrCorrupt, i)
		}
		vs[i] = int(v)
		b = b[n:]
	}
	if len(b) != 0 {
		return Keyspace{}, fmt.Errorf("%w: %d trailing bytes in a keyspace record", crdt.ErrCorrupt, len(b))
	}
	k := Keyspace{N: vs[0], R: vs[1], W: vs[2]}
	if err := k.Validate(); err != nil {
		return Keyspace{}, fmt.Errorf("%w: %v", crdt.ErrCorrupt, err)
	}
	return k, nil
}
