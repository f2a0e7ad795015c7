// Package meta owns the cluster's schema, kept in the meta range: the range
// descriptors (span, replicas with their ids, generation), the node records,
// range id and node id allocation, and the bootstrap of a new cluster.
//
// The meta range holds raw (not MVCC) system keys (internal/keys: Range,
// Node, NodeSeq, RangeSeq). EvalRead and EvalWrite serve the system
// requests (cmdpb.SysRequest) that read and change them, on the meta
// range's replicas; Bootstrap makes a new cluster's first state; Decode*
// read what a scan returned.
package meta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sort"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"google.golang.org/protobuf/proto"
)

// MetaRangeID is the id of the meta range; UserRangeID that of the first
// user range, which holds the whole user keyspace until it splits.
const (
	MetaRangeID uint64 = 1
	UserRangeID uint64 = 2
)

// Member is one initial member of a cluster, as --initial-cluster names it.
type Member struct {
	Name, PeerURL string
}

// Initial is a new cluster's first state: the meta and user ranges'
// descriptors, the node records, and the system keys that hold them (the
// meta range's first content).
type Initial struct {
	Ranges  []*metapb.RangeDescriptor
	Records []*metapb.NodeRecord
	Sys     map[string][]byte
}

// Bootstrap returns the first state of a cluster of members, in order:
// member i is node i+1, and the first rf members hold a replica of each
// range, with replica ids 1 to rf (as CockroachDB's; they match node ids
// only here, at the start). Every initial member computes the same.
func Bootstrap(members []Member, rf int) (Initial, error) {
	rf = min(rf, len(members))
	if rf < 1 {
		return Initial{}, fmt.Errorf("meta: a cluster needs a member")
	}
	var reps []*metapb.ReplicaDescriptor
	for i := range rf {
		reps = append(reps, &metapb.ReplicaDescriptor{NodeId: uint64(i + 1), ReplicaId: uint64(i + 1)})
	}
	next := uint64(rf + 1)
	out := Initial{Sys: map[string][]byte{}}
	out.Ranges = []*metapb.RangeDescriptor{
		{RangeId: MetaRangeID, StartKey: keys.MetaSpan.Start, EndKey: keys.MetaSpan.End, Replicas: reps, Generation: 1, NextReplicaId: next},
		{RangeId: UserRangeID, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End, Replicas: reps, Generation: 1, NextReplicaId: next},
	}
	for _, d := range out.Ranges {
		data, err := proto.Marshal(d)
		if err != nil {
			return Initial{}, err
		}
		out.Sys[string(keys.Range(d.GetRangeId()))] = data
	}
	for _, rec := range Records(members) {
		data, err := proto.Marshal(rec)
		if err != nil {
			return Initial{}, err
		}
		out.Records = append(out.Records, rec)
		out.Sys[string(keys.Node(rec.GetNodeId()))] = data
	}
	out.Sys[string(keys.NodeSeq)] = binary.BigEndian.AppendUint64(nil, uint64(len(members)))
	return out, nil
}

// Records returns the node records of a new cluster's members: member i
// is node i+1.
func Records(members []Member) []*metapb.NodeRecord {
	out := make([]*metapb.NodeRecord, len(members))
	for i, m := range members {
		out[i] = &metapb.NodeRecord{NodeId: uint64(i + 1), Name: m.Name, PeerUrls: []string{m.PeerURL}, Generation: 1}
	}
	return out
}

// DecodeRanges decodes the range descriptors a scan of keys.RangeSpan()
// returned: the meta range's (nil if absent) and the user ranges', in key
// order.
func DecodeRanges(kvs []*cmdpb.SysKV) (metaRange *metapb.RangeDescriptor, user []*metapb.RangeDescriptor, _ error) {
	for _, kv := range kvs {
		d := &metapb.RangeDescriptor{}
		if err := proto.Unmarshal(kv.GetValue(), d); err != nil {
			return nil, nil, fmt.Errorf("meta: bad range descriptor at %q: %w", kv.GetKey(), err)
		}
		if keys.MetaSpan.Contains(d.GetStartKey()) {
			metaRange = d
			continue
		}
		user = append(user, d)
	}
	sort.Slice(user, func(i, j int) bool { return bytes.Compare(user[i].GetStartKey(), user[j].GetStartKey()) < 0 })
	return metaRange, user, nil
}
