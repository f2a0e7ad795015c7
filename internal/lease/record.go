package lease

import (
	"bytes"
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
)

// EncodeRecord returns the meta range's key and value of a lease record.
// It panics on a record that DecodeRecord would refuse: only the lessor
// writes records, and a bad one is a bug in it.
func EncodeRecord(rec *metapb.LeaseRecord) (key, value []byte) {
	if err := checkRecord(rec); err != nil {
		panic(err)
	}
	value, err := proto.MarshalOptions{Deterministic: true}.Marshal(rec)
	if err != nil {
		panic(fmt.Sprintf("lease: marshal record %d: %v", rec.GetId(), err))
	}
	return keys.Lease(rec.GetId()), value
}

// DecodeRecord decodes the lease record stored at key (a key in
// keys.LeaseSpan) and checks it: its id matches the key, its TTL is
// within [1, MaxTTL] and its remaining TTL within [0, TTL].
func DecodeRecord(key, value []byte) (*metapb.LeaseRecord, error) {
	rec := &metapb.LeaseRecord{}
	if err := proto.Unmarshal(value, rec); err != nil {
		return nil, fmt.Errorf("lease: bad record at %q: %w", key, err)
	}
	if !bytes.Equal(key, keys.Lease(rec.GetId())) {
		return nil, fmt.Errorf("lease: record of lease %d stored at %q", rec.GetId(), key)
	}
	if err := checkRecord(rec); err != nil {
		return nil, err
	}
	return rec, nil
}

func checkRecord(rec *metapb.LeaseRecord) error {
	switch {
	case rec.GetId() == 0:
		return fmt.Errorf("lease: record with lease id 0")
	case rec.GetTtl() < 1 || rec.GetTtl() > MaxTTL:
		return fmt.Errorf("lease: record of lease %d has TTL %d outside [1, %d]", rec.GetId(), rec.GetTtl(), MaxTTL)
	case rec.GetRemainingTtl() < 0 || rec.GetRemainingTtl() > rec.GetTtl():
		return fmt.Errorf("lease: record of lease %d has remaining TTL %d outside [0, %d]", rec.GetId(), rec.GetRemainingTtl(), rec.GetTtl())
	}
	return nil
}
