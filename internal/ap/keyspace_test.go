package ap

import (
	"bytes"
	"context"
	"fmt"
	"testing"
)

func TestKeyspaceRecord(t *testing.T) {
	k := Keyspace{N: 5, R: 1, W: 3}
	got, err := DecodeKeyspace(k.Encode())
	if err != nil || got != k {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	for _, bad := range [][]byte{nil, {2, 3, 2, 2}, {1, 3, 4, 2}, {1, 3, 2}, {1, 3, 2, 2, 0}, {1, 17, 1, 1}} {
		if _, err := DecodeKeyspace(bad); err == nil {
			t.Errorf("decoded %x", bad)
		}
	}
}

func FuzzDecodeKeyspace(f *testing.F) {
	f.Add(DefaultKeyspace().Encode())
	f.Add([]byte{1, 0x80, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		k, err := DecodeKeyspace(b)
		if err != nil {
			return
		}
		if err := k.Validate(); err != nil {
			t.Fatalf("decoded an invalid keyspace %+v", k)
		}
		if k2, err := DecodeKeyspace(k.Encode()); err != nil || k2 != k {
			t.Fatalf("re-encoding changed %+v", k)
		}
	})
}

// TestPerKeyspaceReplication: a keyspace with N=1 keeps each key on one
// preferred node (plus the coordinator's copy), keyspace 0 on three.
func TestPerKeyspaceReplication(t *testing.T) {
	_, nodes := testCluster(t, 5, DefaultKeyspace(), fastHandoff)
	one := func(ks uint32) (Keyspace, bool) { return Keyspace{N: 1, R: 1, W: 1}, ks == 7 }
	for _, n := range nodes {
		n.cfg.Keyspaces = one
	}
	ctx := context.Background()
	for _, ks := range []uint32{0, 7} {
		key := []byte("k")
		slots, _ := nodes[0].plan(ks, key)
		coord := nodes[0]
		for _, n := range nodes {
			if n.ID() != slots[0].pref {
				coord = n // a coordinator outside the list
				break
			}
		}
		if err := coord.Update(ctx, ks, key, incr(1)); err != nil {
			t.Fatal(err)
		}
		want := map[uint32]int{0: 3 + 1, 7: 1 + 1}[ks]
		if slots0Has(slots, coord.ID()) {
			want--
		}
		if len(slots) != map[uint32]int{0: 3, 7: 1}[ks] {
			t.Fatalf("keyspace %d: %d slots", ks, len(slots))
		}
		// The slots after the quorum land in the background.
		eventually(t, fmt.Sprint("the copies in keyspace ", ks), func() error {
			holders := 0
			for _, n := range nodes {
				o, err := n.cfg.Local.Get(ks, key)
				if err != nil {
					return err
				}
				if v, _ := o.Str.Get(); bytes.Equal(v, []byte("1")) {
					holders++
				}
			}
			if holders != want {
				return fmt.Errorf("%d nodes hold the key, want %d", holders, want)
			}
			return nil
		})
	}
}

func slots0Has(slots []slot, id uint64) bool {
	for _, s := range slots {
		if s.pref == id {
			return true
		}
	}
	return false
}
