package meta

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"google.golang.org/protobuf/proto"
)

// System requests operate on the meta range's raw (non-MVCC) keys.

func checkSysKey(span keys.Span, key []byte) error {
	if !keys.MetaSpan.Contains(key) || !span.Contains(key) {
		return kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "meta: system key %q outside range %v", key, span)
	}
	return nil
}

// IsRead reports whether a system request only reads.
func IsRead(req *cmdpb.SysRequest) bool {
	return req.GetGet() != nil || req.GetScan() != nil
}

// EvalRead serves a system read (Get, Scan) of the meta range, whose span
// is span, from r.
func EvalRead(r storage.Reader, span keys.Span, req *cmdpb.SysRequest) (*cmdpb.SysResponse, error) {
	switch {
	case req.GetGet() != nil:
		key := req.GetGet().GetKey()
		if err := checkSysKey(span, key); err != nil {
			return nil, err
		}
		v, ok, err := storage.SysGet(r, key)
		if err != nil || !ok {
			return &cmdpb.SysResponse{}, err
		}
		return &cmdpb.SysResponse{Kvs: []*cmdpb.SysKV{{Key: key, Value: v}}}, nil
	case req.GetScan() != nil:
		s := keys.Span{Start: req.GetScan().GetStart(), End: req.GetScan().GetEnd()}
		if !span.ContainsSpan(s) {
			return nil, kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "meta: scan %v outside range %v", s, span)
		}
		out := &cmdpb.SysResponse{}
		err := storage.SysScan(r, s, func(k, v []byte) error {
			out.Kvs = append(out.Kvs, &cmdpb.SysKV{Key: append([]byte(nil), k...), Value: append([]byte(nil), v...)})
			return nil
		})
		return out, err
	}
	return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "meta: not a system read")
}

// EvalWrite applies a system write to the meta range, whose span is span,
// into b. On error nothing of it may be kept: the caller discards b.
func EvalWrite(b *storage.Batch, span keys.Span, req *cmdpb.SysRequest) (*cmdpb.SysResponse, error) {
	switch {
	case req.GetPut() != nil:
		p := req.GetPut()
		if err := checkSysKey(span, p.GetKey()); err != nil {
			return nil, err
		}
		return &cmdpb.SysResponse{}, b.SysPut(p.GetKey(), p.GetValue())
	case req.GetDelete() != nil:
		k := req.GetDelete().GetKey()
		if err := checkSysKey(span, k); err != nil {
			return nil, err
		}
		return &cmdpb.SysResponse{}, b.SysDelete(k)
	case req.GetAdvance() != nil:
		a := req.GetAdvance()
		if err := checkSysKey(span, a.GetKey()); err != nil {
			return nil, err
		}
		cur, err := sysInt(b, a.GetKey())
		if err != nil {
			return nil, err
		}
		if a.GetValue() > cur || a.GetLower() {
			cur = a.GetValue()
			if err := b.SysPut(a.GetKey(), binary.BigEndian.AppendUint64(nil, uint64(cur))); err != nil {
				return nil, err
			}
		}
		return &cmdpb.SysResponse{Value: cur}, nil
	case req.GetCas() != nil:
		c := req.GetCas()
		if err := checkSysKey(span, c.GetKey()); err != nil {
			return nil, err
		}
		cur, ok, err := storage.SysGet(b, c.GetKey())
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(cur, c.GetExpect()) || (!ok && len(c.GetExpect()) > 0) {
			out := &cmdpb.SysResponse{}
			if ok {
				out.Kvs = []*cmdpb.SysKV{{Key: c.GetKey(), Value: append([]byte(nil), cur...)}}
			}
			return out, nil
		}
		return &cmdpb.SysResponse{Value: 1}, b.SysPut(c.GetKey(), c.GetValue())
	case req.GetAddNode() != nil:
		return addNode(b, span, req.GetAddNode().GetNode())
	case req.GetChangeNode() != nil:
		return changeNode(b, span, req.GetChangeNode())
	case req.GetAllocRangeId() != nil:
		return allocRangeID(b, span)
	case req.GetUpdateRanges() != nil:
		return updateRanges(b, span, req.GetUpdateRanges().GetDescriptors())
	case req.GetBatch() != nil:
		return batch(b, span, req.GetBatch())
	}
	return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "meta: not a system write")
}

// sysInt reads a big-endian int64 system value (0 if absent).
func sysInt(r storage.Reader, key []byte) (int64, error) {
	v, ok, err := storage.SysGet(r, key)
	if err != nil || !ok {
		return 0, err
	}
	if len(v) != 8 {
		return 0, fmt.Errorf("meta: system value %q has %d bytes, want 8", key, len(v))
	}
	return int64(binary.BigEndian.Uint64(v)), nil
}

// nodeRecords reads every node record.
func nodeRecords(r storage.Reader) ([]*metapb.NodeRecord, error) {
	var out []*metapb.NodeRecord
	err := storage.SysScan(r, keys.NodeSpan(), func(_, v []byte) error {
		rec := &metapb.NodeRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return err
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

func putNode(b *storage.Batch, rec *metapb.NodeRecord) error {
	data, err := proto.Marshal(rec)
	if err != nil {
		return err
	}
	return b.SysPut(keys.Node(rec.GetNodeId()), data)
}

func sharesURL(a, b []string) bool {
	for _, x := range a {
		for _, y := range b {
			if x == y {
				return true
			}
		}
	}
	return false
}

// ErrMemberRemoved is what a member removed from the cluster is told when
// it registers again (etcd's words).
const ErrMemberRemoved = "etcdserver: the member has been permanently removed from the cluster"

// addNode registers a node. A named node that is already known keeps its id
// (its record is refreshed); a named node whose peer URLs match an unnamed,
// pre-registered member takes over that member; any other named node gets
// the next id. An unnamed record pre-registers a member, whose peer URLs
// must be new. A record with a node id re-registers that member, whose
// record must exist (MEMBER_NOT_FOUND, ErrMemberRemoved, if it was removed).
func addNode(b *storage.Batch, span keys.Span, n *metapb.NodeRecord) (*cmdpb.SysResponse, error) {
	if err := checkSysKey(span, keys.NodeSeq); err != nil {
		return nil, err
	}
	if n.GetName() == "" && len(n.GetPeerUrls()) == 0 {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "meta: a node needs a name or peer URLs")
	}
	recs, err := nodeRecords(b)
	if err != nil {
		return nil, err
	}
	rec := proto.Clone(n).(*metapb.NodeRecord)
	rec.Generation = 1
	if id := n.GetNodeId(); id != 0 {
		// A member re-registering under the id it already has (a node's
		// registration at every start): its record must still be there.
		// A member removed while it was down would otherwise come back
		// under a new id, with the data of the old one.
		i := slices.IndexFunc(recs, func(r *metapb.NodeRecord) bool { return r.GetNodeId() == id })
		if i < 0 {
			return nil, kvpb.Errorf(kvpb.ErrorCode_MEMBER_NOT_FOUND, "%s", ErrMemberRemoved)
		}
		rec.IsLearner, rec.Generation = recs[i].GetIsLearner(), recs[i].GetGeneration()+1
		if err := putNode(b, rec); err != nil {
			return nil, err
		}
		return &cmdpb.SysResponse{Node: rec}, nil
	}
	for _, r := range recs {
		switch {
		case n.GetName() == "" && sharesURL(r.GetPeerUrls(), n.GetPeerUrls()):
			return nil, kvpb.Errorf(kvpb.ErrorCode_PEER_URL_EXISTS, "etcdserver: Peer URLs already exists")
		case n.GetName() != "" && r.GetName() == n.GetName():
			rec.NodeId, rec.IsLearner, rec.Generation = r.GetNodeId(), r.GetIsLearner(), r.GetGeneration()+1
		case n.GetName() != "" && r.GetName() == "" && rec.GetNodeId() == 0 && sharesURL(r.GetPeerUrls(), n.GetPeerUrls()):
			rec.NodeId, rec.IsLearner, rec.Generation = r.GetNodeId(), r.GetIsLearner(), r.GetGeneration()+1
		}
	}
	if rec.GetNodeId() == 0 {
		seq, err := sysInt(b, keys.NodeSeq)
		if err != nil {
			return nil, err
		}
		rec.NodeId = uint64(seq) + 1
		if err := b.SysPut(keys.NodeSeq, binary.BigEndian.AppendUint64(nil, rec.NodeId)); err != nil {
			return nil, err
		}
	}
	if err := putNode(b, rec); err != nil {
		return nil, err
	}
	return &cmdpb.SysResponse{Node: rec}, nil
}

// changeNode updates, promotes or removes a node record.
func changeNode(b *storage.Batch, span keys.Span, c *cmdpb.SysChangeNode) (*cmdpb.SysResponse, error) {
	if err := checkSysKey(span, keys.Node(c.GetNodeId())); err != nil {
		return nil, err
	}
	v, ok, err := storage.SysGet(b, keys.Node(c.GetNodeId()))
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, kvpb.Errorf(kvpb.ErrorCode_MEMBER_NOT_FOUND, "etcdserver: member not found")
	}
	rec := &metapb.NodeRecord{}
	if err := proto.Unmarshal(v, rec); err != nil {
		return nil, err
	}
	switch {
	case c.GetRemove():
		var held []uint64
		err := storage.SysScan(b, keys.RangeSpan(), func(_, v []byte) error {
			d := &metapb.RangeDescriptor{}
			if err := proto.Unmarshal(v, d); err != nil {
				return err
			}
			for _, r := range d.GetReplicas() {
				if r.GetNodeId() == c.GetNodeId() {
					held = append(held, d.GetRangeId())
				}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
		if len(held) > 0 {
			return nil, kvpb.Errorf(kvpb.ErrorCode_FAILED_PRECONDITION, "concord: member %x still holds replicas of ranges %v; member remove moves them off first: retry it", c.GetNodeId(), held)
		}
		return &cmdpb.SysResponse{Node: rec}, b.SysDelete(keys.Node(c.GetNodeId()))
	case c.GetPromote():
		if !rec.GetIsLearner() {
			return nil, kvpb.Errorf(kvpb.ErrorCode_MEMBER_NOT_LEARNER, "etcdserver: can only promote a learner member")
		}
		rec.IsLearner = false
	case len(c.GetPeerUrls()) > 0:
		recs, err := nodeRecords(b)
		if err != nil {
			return nil, err
		}
		for _, r := range recs {
			if r.GetNodeId() != rec.GetNodeId() && sharesURL(r.GetPeerUrls(), c.GetPeerUrls()) {
				return nil, kvpb.Errorf(kvpb.ErrorCode_PEER_URL_EXISTS, "etcdserver: Peer URLs already exists")
			}
		}
		rec.PeerUrls = c.GetPeerUrls()
	}
	rec.Generation++
	return &cmdpb.SysResponse{Node: rec}, putNode(b, rec)
}

// overlappedByNewer reports whether another range's recorded descriptor
// overlaps d with a higher generation: d is older than a merge that took
// its keys.
func overlappedByNewer(r storage.Reader, d *metapb.RangeDescriptor) (bool, error) {
	descs, err := rangeDescriptors(r)
	if err != nil {
		return false, err
	}
	for _, o := range descs {
		if o.GetRangeId() != d.GetRangeId() && o.GetGeneration() > d.GetGeneration() &&
			bytes.Compare(o.GetStartKey(), d.GetEndKey()) < 0 && bytes.Compare(d.GetStartKey(), o.GetEndKey()) < 0 {
			return true, nil
		}
	}
	return false, nil
}

// rangeDescriptors reads every range descriptor of the meta range.
func rangeDescriptors(r storage.Reader) ([]*metapb.RangeDescriptor, error) {
	var out []*metapb.RangeDescriptor
	err := storage.SysScan(r, keys.RangeSpan(), func(k, v []byte) error {
		d := &metapb.RangeDescriptor{}
		if err := proto.Unmarshal(v, d); err != nil {
			return fmt.Errorf("meta: range descriptor %q: %w", k, err)
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

// allocRangeID assigns the next range id: above the last one assigned and
// above every descriptor's (clusters bootstrapped before ids were counted
// hold descriptors only).
func allocRangeID(b *storage.Batch, span keys.Span) (*cmdpb.SysResponse, error) {
	if err := checkSysKey(span, keys.RangeSeq); err != nil {
		return nil, err
	}
	seq, err := sysInt(b, keys.RangeSeq)
	if err != nil {
		return nil, err
	}
	descs, err := rangeDescriptors(b)
	if err != nil {
		return nil, err
	}
	next := uint64(seq)
	for _, d := range descs {
		next = max(next, d.GetRangeId())
	}
	next++
	if err := b.SysPut(keys.RangeSeq, binary.BigEndian.AppendUint64(nil, next)); err != nil {
		return nil, err
	}
	return &cmdpb.SysResponse{Value: int64(next)}, nil
}

// updateRanges records each descriptor that is newer than the recorded one
// of its range (or the first of it). SysResponse.value counts those it
// recorded.
func updateRanges(b *storage.Batch, span keys.Span, descs []*metapb.RangeDescriptor) (*cmdpb.SysResponse, error) {
	var n int64
	for _, d := range descs {
		key := keys.Range(d.GetRangeId())
		if err := checkSysKey(span, key); err != nil {
			return nil, err
		}
		if d.GetRangeId() == 0 || len(d.GetReplicas()) == 0 {
			return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "meta: descriptor %v has no id or no replicas", d)
		}
		v, ok, err := storage.SysGet(b, key)
		if err != nil {
			return nil, err
		}
		if ok {
			cur := &metapb.RangeDescriptor{}
			if err := proto.Unmarshal(v, cur); err != nil {
				return nil, fmt.Errorf("meta: range descriptor %q: %w", key, err)
			}
			if cur.GetGeneration() >= d.GetGeneration() {
				continue
			}
		}
		if newer, err := overlappedByNewer(b, d); err != nil {
			return nil, err
		} else if newer {
			continue // a range merged away, indexed late
		}
		data, err := proto.MarshalOptions{Deterministic: true}.Marshal(d)
		if err != nil {
			return nil, err
		}
		if err := b.SysPut(key, data); err != nil {
			return nil, err
		}
		n++
	}
	return &cmdpb.SysResponse{Value: n}, nil
}

// batch applies a SysBatch: its puts, then its deletes. Every key is checked
// before anything is written.
func batch(b *storage.Batch, span keys.Span, sb *cmdpb.SysBatch) (*cmdpb.SysResponse, error) {
	for _, kv := range sb.GetPuts() {
		if err := checkSysKey(span, kv.GetKey()); err != nil {
			return nil, err
		}
	}
	for _, k := range sb.GetDeletes() {
		if err := checkSysKey(span, k); err != nil {
			return nil, err
		}
	}
	for _, kv := range sb.GetPuts() {
		if err := b.SysPut(kv.GetKey(), kv.GetValue()); err != nil {
			return nil, err
		}
	}
	for _, k := range sb.GetDeletes() {
		if err := b.SysDelete(k); err != nil {
			return nil, err
		}
	}
	return &cmdpb.SysResponse{}, nil
}
