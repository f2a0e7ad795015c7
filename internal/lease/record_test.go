package lease

import (
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

func TestRecordRoundTrip(t *testing.T) {
	for _, rec := range []*metapb.LeaseRecord{
		{Id: 1, Ttl: 5},
		{Id: -7, Ttl: MaxTTL, RemainingTtl: 3, Revoking: true},
	} {
		k, v := EncodeRecord(rec)
		got, err := DecodeRecord(k, v)
		if err != nil || !proto.Equal(got, rec) {
			t.Fatalf("round trip of %v: %v %v", rec, got, err)
		}
	}
	_, v := EncodeRecord(&metapb.LeaseRecord{Id: 1, Ttl: 5})
	if _, err := DecodeRecord(keys.Lease(2), v); err == nil {
		t.Fatal("a record stored under another lease's key decoded")
	}
	bad, _ := proto.Marshal(&metapb.LeaseRecord{Id: 3, Ttl: 5, RemainingTtl: 6})
	if _, err := DecodeRecord(keys.Lease(3), bad); err == nil {
		t.Fatal("a remaining TTL above the TTL decoded")
	}
}

// FuzzDecodeRecord: whatever the bytes, DecodeRecord returns an error or a
// record that encodes back to the same key.
func FuzzDecodeRecord(f *testing.F) {
	k, v := EncodeRecord(&metapb.LeaseRecord{Id: 9, Ttl: 60, RemainingTtl: 30})
	f.Add(k, v)
	f.Add(keys.Lease(1), []byte{0x08})
	f.Fuzz(func(t *testing.T, key, value []byte) {
		rec, err := DecodeRecord(key, value)
		if err != nil {
			return
		}
		k2, _ := EncodeRecord(rec)
		if string(k2) != string(key) {
			t.Fatalf("record %v decoded at %q encodes at %q", rec, key, k2)
		}
	})
}
