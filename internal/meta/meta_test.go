package meta

import (
	"testing"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"google.golang.org/protobuf/proto"
)

// A new cluster of five members with three replicas: the meta and user
// ranges on nodes 1-3 with replica ids 1-3 (the next one 4), a record per
// member, and the system keys that hold them, which decode back.
func TestBootstrap(t *testing.T) {
	ms := []Member{{"a", "http://a"}, {"b", "http://b"}, {"c", "http://c"}, {"d", "http://d"}, {"e", "http://e"}}
	init, err := Bootstrap(ms, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(init.Ranges) != 2 || init.Ranges[0].GetRangeId() != MetaRangeID || init.Ranges[1].GetRangeId() != UserRangeID {
		t.Fatalf("ranges %v", init.Ranges)
	}
	for _, d := range init.Ranges {
		if len(d.GetReplicas()) != 3 || d.GetNextReplicaId() != 4 {
			t.Fatalf("range %d: replicas %v, next id %d", d.GetRangeId(), d.GetReplicas(), d.GetNextReplicaId())
		}
		for i, rd := range d.GetReplicas() {
			if rd.GetNodeId() != uint64(i+1) || rd.ID() != uint64(i+1) {
				t.Fatalf("range %d replica %d: %v", d.GetRangeId(), i, rd)
			}
		}
	}
	if len(init.Records) != 5 || init.Records[4].GetNodeId() != 5 || init.Records[4].GetName() != "e" {
		t.Fatalf("records %v", init.Records)
	}
	var kvs []*cmdpb.SysKV
	for _, id := range []uint64{UserRangeID, MetaRangeID} {
		kvs = append(kvs, &cmdpb.SysKV{Key: keys.Range(id), Value: init.Sys[string(keys.Range(id))]})
	}
	mr, user, err := DecodeRanges(kvs)
	if err != nil || !proto.Equal(mr, init.Ranges[0]) || len(user) != 1 || !proto.Equal(user[0], init.Ranges[1]) {
		t.Fatalf("decoded %v %v %v", mr, user, err)
	}
	if _, err := Bootstrap(nil, 3); err == nil {
		t.Fatal("a cluster of no members bootstrapped")
	}
}

// DecodeRanges refuses bytes that are no descriptor, naming the key, and
// sorts user ranges by start key.
func TestDecodeRanges(t *testing.T) {
	a := &metapb.RangeDescriptor{RangeId: 3, StartKey: keys.User([]byte("m")), EndKey: keys.UserSpan.End}
	b := &metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.User([]byte("m"))}
	enc := func(d *metapb.RangeDescriptor) []byte { v, _ := proto.Marshal(d); return v }
	_, user, err := DecodeRanges([]*cmdpb.SysKV{{Key: keys.Range(3), Value: enc(a)}, {Key: keys.Range(2), Value: enc(b)}})
	if err != nil || len(user) != 2 || user[0].GetRangeId() != 2 {
		t.Fatalf("decoded %v, %v", user, err)
	}
	if _, _, err := DecodeRanges([]*cmdpb.SysKV{{Key: keys.Range(9), Value: []byte{0xff, 0xff}}}); err == nil {
		t.Fatal("garbage decoded as a descriptor")
	}
}

// FuzzDecodeRanges: whatever bytes a scan returns, decoding fails cleanly
// or yields descriptors, never panics.
func FuzzDecodeRanges(f *testing.F) {
	d, _ := proto.Marshal(&metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End})
	f.Add(d)
	f.Add([]byte{0x0a, 0xff})
	f.Fuzz(func(t *testing.T, v []byte) {
		_, _, _ = DecodeRanges([]*cmdpb.SysKV{{Key: keys.Range(2), Value: v}})
	})
}
