package ap

import (
	"encoding/binary"
	"slices"

	"github.com/cespare/xxhash/v2"
)

// Member is one node the membership knows, alive or not.
type Member struct {
	ID    uint64
	Alive bool
}

// order returns the members in rendezvous (highest random weight) order
// for key: each node's score is a hash of the key and its id, highest
// first. The first N are the key's preference list. Adding a node moves
// only the keys it now scores highest for, about 1/(n+1) of them, as
// DESIGN.md's placement does for ranges.
func order(members []Member, ks uint32, key []byte) []Member {
	type scored struct {
		m     Member
		score uint64
	}
	buf := make([]byte, 0, 4+len(key)+8)
	buf = binary.BigEndian.AppendUint32(buf, ks)
	buf = append(buf, key...)
	n := len(buf)
	s := make([]scored, len(members))
	for i, m := range members {
		buf = binary.BigEndian.AppendUint64(buf[:n], m.ID)
		s[i] = scored{m: m, score: xxhash.Sum64(buf)}
	}
	slices.SortFunc(s, func(a, b scored) int {
		if a.score != b.score {
			if a.score > b.score {
				return -1
			}
			return 1
		}
		if a.m.ID < b.m.ID {
			return -1
		}
		return 1
	})
	out := make([]Member, len(s))
	for i := range s {
		out[i] = s[i].m
	}
	return out
}
