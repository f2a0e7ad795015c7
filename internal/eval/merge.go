package eval

import (
	"bytes"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// A Range over several ranges is served part by part (SplitRange), each
// part by its own range at one revision, and the parts' answers are merged
// (MergeRanges) into exactly the answer one range holding every key would
// give: rangeOp's fetch, count, filter, sort and limit, done across parts.

// SplitRange returns the request for one part of req: the keys of req that
// lie in part (global keys), read at rev, in key order and unsorted. fetch
// bounds the kvs the part returns (0: all; see PartFetch); countOnly asks
// it only to count (a part past the limit still counts toward count). A
// part whose sort needs values (SORT_BY_VALUE with keys_only) returns them,
// and MergeRanges drops them after sorting.
func SplitRange(req *kvpb.RangeRequest, part keys.Span, rev, fetch int64, countOnly bool) *kvpb.RangeRequest {
	span := keys.UserSpanOf(req.GetKey(), req.GetRangeEnd())
	start, end := span.Start, span.End
	if bytes.Compare(part.Start, start) > 0 {
		start = part.Start
	}
	if bytes.Compare(part.End, end) < 0 {
		end = part.End
	}
	out := &kvpb.RangeRequest{
		Key:               keys.StripUser(start),
		RangeEnd:          userEnd(end),
		Limit:             fetch,
		Revision:          rev,
		KeysOnly:          req.GetKeysOnly() && req.GetSortTarget() != kvpb.SortTarget_SORT_BY_VALUE,
		CountOnly:         req.GetCountOnly() || countOnly,
		MinModRevision:    req.GetMinModRevision(),
		MaxModRevision:    req.GetMaxModRevision(),
		MinCreateRevision: req.GetMinCreateRevision(),
		MaxCreateRevision: req.GetMaxCreateRevision(),
		Serializable:      req.GetSerializable(),
	}
	return out
}

// userEnd maps the end of a global span of user keys back to an etcd
// range_end: the end of the user keyspace is "\x00" (from the key on).
func userEnd(end []byte) []byte {
	if bytes.Equal(end, keys.UserSpan.End) {
		return []byte{0}
	}
	return keys.StripUser(end)
}

// PartFetch is how many kvs the next part must fetch given have fetched so
// far, and whether the parts after it need only count: with results that
// need no sorting or filtering, one more than the limit overall (to know
// "more"); otherwise every kv.
func PartFetch(req *kvpb.RangeRequest, have int) (fetch int64, countOnly bool) {
	f := rangeLimit(req)
	if f <= 0 { // no limit (etcd reads a negative limit as none)
		return 0, false
	}
	if int64(have) >= f {
		return 0, true
	}
	return f - int64(have), false
}

// MergeRanges merges the answers of req's parts, given in key order, into
// req's answer: counts add up, kvs are sorted and cut to the limit as
// rangeOp does for one range.
func MergeRanges(req *kvpb.RangeRequest, parts []*kvpb.RangeResponse) *kvpb.RangeResponse {
	resp := &kvpb.RangeResponse{}
	var kvs []*kvpb.KeyValue
	for _, p := range parts {
		resp.Count += p.GetCount()
		kvs = append(kvs, p.GetKvs()...)
	}
	sortKVs(kvs, req)
	if l := req.GetLimit(); l > 0 && int64(len(kvs)) > l {
		kvs = kvs[:l]
		resp.More = true
	}
	if req.GetKeysOnly() && req.GetSortTarget() == kvpb.SortTarget_SORT_BY_VALUE {
		for _, kv := range kvs {
			kv.Value = nil
		}
	}
	resp.Kvs = kvs
	return resp
}

// CompareKVs evaluates a Compare against kvs, the keys of its key or range
// as of the txn's revision, with etcd's rule (as a txn on one range does):
// with no key, a VALUE compare is false and the others compare against zero
// values; otherwise every key must satisfy it.
func CompareKVs(c *kvpb.Compare, kvs []*kvpb.KeyValue) bool {
	if len(kvs) == 0 {
		return c.GetTarget() != kvpb.CompareTarget_COMPARE_VALUE && compareKV(c, &kvpb.KeyValue{})
	}
	for _, kv := range kvs {
		if !compareKV(c, kv) {
			return false
		}
	}
	return true
}
