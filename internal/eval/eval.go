// Package eval evaluates etcd v3 KV requests (Range, Put, DeleteRange, Txn)
// against one range's MVCC data in storage, with etcd's exact semantics. The
// replica's apply loop calls Write for every write command, in log order, at
// the command's revision; reads call Read or ReadOp on any storage.Reader.
//
// Requests carry etcd (user) keys; eval maps them onto global keys with
// package keys and strips them again in responses.
//
// A write is evaluated in three steps, as etcd does:
//
//  1. Every compare of the txn and its nested txns on the taken branches is
//     evaluated against the state BEFORE the txn: this fixes the txn's path.
//  2. Every op on the path is checked (range revisions, ignore_value /
//     ignore_lease needing an existing key, keys inside the range's span).
//     Any failure returns an error and writes NOTHING. Leases are not
//     checked here: they live in the meta range, and the gateway checks a
//     put's lease with the lessor before sending it (internal/lease).
//  3. The ops run in order at the single revision ts; reads inside the txn
//     see the txn's earlier writes.
//
// Errors are *kvpb.Error with etcd's messages, or storage errors (which
// leave the batch in an unknown state: the caller must discard it).
package eval

import (
	"bytes"
	"errors"
	"sort"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// etcd's error messages, which clients match on.
var (
	errFutureRev = kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	errCompacted = kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")
	errNoKey     = kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "etcdserver: key not found")
	errNoLease   = kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "lease not found")
)

// IsReadOnly reports whether op only reads: a Range, or a Txn whose branches
// (recursively) hold only Ranges. Such ops go to ReadOp, not through Raft.
func IsReadOnly(op *kvpb.RequestOp) bool { return kvpb.IsReadOnly(op) }

// Write evaluates a write (Put, DeleteRange or Txn) at revision ts into b.
// span is the range's span of global keys; an op with any key outside it
// fails with KEY_MISMATCH. It returns the response and whether anything was
// written. On a *kvpb.Error nothing was written to b. Ranges inside a
// Txn are checked as if the range's history was never compacted; callers
// that compact use WriteCompacted.
func Write(b *storage.Batch, span keys.Span, ts int64, op *kvpb.RequestOp) (resp *kvpb.ResponseOp, wrote bool, err error) {
	return WriteCompacted(b, span, ts, 0, op)
}

// WriteCompacted is Write for a range whose history is compacted at
// compacted: a Range inside the Txn at a revision below it fails with
// COMPACTED, as in etcd.
func WriteCompacted(b *storage.Batch, span keys.Span, ts, compacted int64, op *kvpb.RequestOp) (resp *kvpb.ResponseOp, wrote bool, err error) {
	return WriteFrom(b, span, ts, ts-1, compacted, op)
}

// WriteFrom is WriteCompacted for a range whose newest revision before the
// write is prev: as in etcd, a Range inside the txn at a revision above prev
// is a future revision until the txn first writes, and ops before that first
// write report prev in their header (ResponseOp.header_revision).
func WriteFrom(b *storage.Batch, span keys.Span, ts, prev, compacted int64, op *kvpb.RequestOp) (resp *kvpb.ResponseOp, wrote bool, err error) {
	return WriteIndexed(b, span, ts, prev, compacted, nil, op)
}

// WriteIndexed is WriteFrom with the range's Index (nil: none), which it
// consults for a Put's previous version and keeps up to date with every
// write.
func WriteIndexed(b *storage.Batch, span keys.Span, ts, prev, compacted int64, idx *Index, op *kvpb.RequestOp) (resp *kvpb.ResponseOp, wrote bool, err error) {
	if ts <= 0 || prev >= ts {
		return nil, false, kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "eval: write at revision %d after %d", ts, prev)
	}
	e := &evaluator{r: b, b: b, span: span, ts: ts, prev: max(prev, 1), current: prev, compacted: compacted, readRev: ts, idx: idx}
	resp, err = e.evaluate(op)
	if err != nil {
		return nil, false, err
	}
	return resp, e.wrote, nil
}

// Read evaluates a RangeRequest against r. current is the range's newest
// applied revision (what revision 0 reads), compacted its compacted
// revision.
func Read(r storage.Reader, span keys.Span, req *kvpb.RangeRequest, current, compacted int64) (*kvpb.RangeResponse, error) {
	resp, err := ReadOp(r, span, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: req}}, current, compacted, false /* uncounted */)
	if err != nil {
		return nil, err
	}
	return resp.GetRange(), nil
}

// ReadOp evaluates a Range or a read-only Txn (see IsReadOnly) against r,
// like Read.
//
// uncounted (cmdpb.BatchRequest.uncounted) stops a limited Range's scan at
// its limit: its count and more then cover only what was read.
func ReadOp(r storage.Reader, span keys.Span, op *kvpb.RequestOp, current, compacted int64, uncounted bool) (*kvpb.ResponseOp, error) {
	if !IsReadOnly(op) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "eval: ReadOp of an op that writes")
	}
	e := &evaluator{r: r, span: span, current: current, compacted: compacted, readRev: current, uncounted: uncounted}
	return e.evaluate(op)
}

// evaluator holds one op's evaluation.
type evaluator struct {
	r storage.Reader
	// b is nil for reads.
	b    *storage.Batch
	span keys.Span
	// ts is the revision of every write; 0 for reads.
	ts int64
	// current is the newest revision: Range.revision above it is a future
	// revision. For a write, the range's newest before it until it first
	// writes, then ts.
	current int64
	// prev is, for a write, the range's newest revision before it (at
	// least 1): what ops before the first write report in their header.
	prev      int64
	compacted int64
	// uncounted: a limited Range stops at its limit (see ReadOp).
	uncounted bool
	// readRev is what Range.revision 0 reads at: current for reads, ts for
	// writes (so a txn's reads see its earlier writes).
	readRev int64
	wrote   bool
	// idx, for writes, is the range's Index (nil: none).
	idx *Index
	// clip is set for a part of a cross-range txn (StagePart): span is
	// the part's clip, and key ops outside it are skipped.
	clip bool
}

// evaluate runs the three steps of the package doc.
func (e *evaluator) evaluate(op *kvpb.RequestOp) (*kvpb.ResponseOp, error) {
	if op.GetRequest() == nil {
		return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "eval: empty request")
	}
	if err := e.checkSpan(op); err != nil {
		return nil, err
	}
	var p path
	if err := e.comparePath(op, &p); err != nil {
		return nil, err
	}
	var effects []effect
	if err := e.check(op, p.cursor(), &effects); err != nil {
		return nil, err
	}
	return e.exec(op, p.cursor())
}

// path is the branch taken by every txn on the path, in pre-order (etcd's
// txnPath).
type path struct {
	taken []bool
	next  int
}

func (p *path) cursor() *path { return &path{taken: p.taken} }

func (p *path) pop() bool {
	b := p.taken[p.next]
	p.next++
	return b
}

func branch(t *kvpb.TxnRequest, succeeded bool) []*kvpb.RequestOp {
	if succeeded {
		return t.GetSuccess()
	}
	return t.GetFailure()
}

// checkSpan fails with KEY_MISMATCH if any key of op (compares and both
// branches of txns included) lies outside the range's span.
func (e *evaluator) checkSpan(op *kvpb.RequestOp) error {
	check := func(key, end []byte) error {
		s := keys.UserSpanOf(key, end)
		if !e.span.ContainsSpan(s) {
			return kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "eval: keys %s outside the range %s", s, e.span)
		}
		return nil
	}
	switch req := op.GetRequest().(type) {
	case *kvpb.RequestOp_Range:
		return check(req.Range.GetKey(), req.Range.GetRangeEnd())
	case *kvpb.RequestOp_Put:
		return check(req.Put.GetKey(), nil)
	case *kvpb.RequestOp_DeleteRange:
		return check(req.DeleteRange.GetKey(), req.DeleteRange.GetRangeEnd())
	case *kvpb.RequestOp_Txn:
		for _, c := range req.Txn.GetCompare() {
			if err := check(c.GetKey(), c.GetRangeEnd()); err != nil {
				return err
			}
		}
		for _, ops := range [][]*kvpb.RequestOp{req.Txn.GetSuccess(), req.Txn.GetFailure()} {
			for _, o := range ops {
				if err := e.checkSpan(o); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// comparePath evaluates the compares of op's txns on the taken branches,
// against the state before op, appending each txn's outcome to p.
func (e *evaluator) comparePath(op *kvpb.RequestOp, p *path) error {
	t := op.GetTxn()
	if t == nil {
		return nil
	}
	ok := true
	for _, c := range t.GetCompare() {
		var err error
		if ok, err = e.compare(c); err != nil {
			return err
		}
		if !ok {
			break
		}
	}
	p.taken = append(p.taken, ok)
	for _, o := range branch(t, ok) {
		if err := e.comparePath(o, p); err != nil {
			return err
		}
	}
	return nil
}

// compare evaluates one Compare with etcd's rule: with no key in its range, a
// VALUE compare is false and the others compare against zero values;
// otherwise every key must satisfy it.
func (e *evaluator) compare(c *kvpb.Compare) (bool, error) {
	result := true
	n := 0
	err := storage.MVCCScan(e.r, keys.UserSpanOf(c.GetKey(), c.GetRangeEnd()), e.readRev, func(kv *kvpb.KeyValue) error {
		n++
		if !compareKV(c, kv) {
			result = false
			return errStop
		}
		return nil
	})
	if err != nil && err != errStop {
		return false, err
	}
	if n == 0 {
		if c.GetTarget() == kvpb.CompareTarget_COMPARE_VALUE {
			return false, nil
		}
		return compareKV(c, &kvpb.KeyValue{}), nil
	}
	return result, nil
}

// errStop stops a scan early; it never leaves this package.
var errStop = kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "eval: stop")

// errLimitReached stops an uncounted Range's scan at its limit; it never
// leaves this package.
var errLimitReached = kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "eval: limit reached")

func compareKV(c *kvpb.Compare, kv *kvpb.KeyValue) bool {
	var result int
	switch c.GetTarget() {
	case kvpb.CompareTarget_COMPARE_VALUE:
		result = bytes.Compare(kv.GetValue(), c.GetValue())
	case kvpb.CompareTarget_COMPARE_CREATE:
		result = compareInt64(kv.GetCreateRevision(), c.GetCreateRevision())
	case kvpb.CompareTarget_COMPARE_MOD:
		result = compareInt64(kv.GetModRevision(), c.GetModRevision())
	case kvpb.CompareTarget_COMPARE_VERSION:
		result = compareInt64(kv.GetVersion(), c.GetVersion())
	case kvpb.CompareTarget_COMPARE_LEASE:
		result = compareInt64(kv.GetLease(), c.GetLease())
	}
	switch c.GetResult() {
	case kvpb.CompareResult_COMPARE_EQUAL:
		return result == 0
	case kvpb.CompareResult_COMPARE_NOT_EQUAL:
		return result != 0
	case kvpb.CompareResult_COMPARE_GREATER:
		return result > 0
	case kvpb.CompareResult_COMPARE_LESS:
		return result < 0
	}
	return true
}

func compareInt64(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// effect is a write an earlier op of the txn will have made, for checking
// later ops before anything is written.
type effect struct {
	span keys.Span
	put  bool
}

// check validates every op on the path (step 2), so that exec cannot fail
// with a request error after it has written.
func (e *evaluator) check(op *kvpb.RequestOp, p *path, effects *[]effect) error {
	switch req := op.GetRequest().(type) {
	case *kvpb.RequestOp_Range:
		return e.checkRevision(req.Range.GetRevision())
	case *kvpb.RequestOp_Put:
		put := req.Put
		key := keys.User(put.GetKey())
		if put.GetLeaseUnknown() {
			return errNoLease
		}
		if _, ok := e.inClip(keys.Span{Start: key}); !ok {
			return nil
		}
		if put.GetIgnoreValue() || put.GetIgnoreLease() {
			exists, err := e.existsAfter(key, *effects)
			if err != nil {
				return err
			}
			if !exists {
				return errNoKey
			}
		}
		*effects = append(*effects, effect{span: keys.Span{Start: key}, put: true})
	case *kvpb.RequestOp_DeleteRange:
		if s, ok := e.inClip(keys.UserSpanOf(req.DeleteRange.GetKey(), req.DeleteRange.GetRangeEnd())); ok {
			*effects = append(*effects, effect{span: s})
		}
	case *kvpb.RequestOp_Txn:
		for _, o := range branch(req.Txn, p.pop()) {
			if err := e.check(o, p, effects); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkRevision checks a Range's revision as etcd's rangeKeys does: a
// revision <= 0 reads the current revision, whatever its sign.
func (e *evaluator) checkRevision(rev int64) error {
	switch {
	case rev <= 0:
		return nil
	case rev > e.current:
		return errFutureRev
	case rev < e.compacted:
		return errCompacted
	}
	return nil
}

// existsAfter reports whether key will be live after effects: the last
// effect covering key decides; with none, the stored state does.
func (e *evaluator) existsAfter(key []byte, effects []effect) (bool, error) {
	for i := len(effects) - 1; i >= 0; i-- {
		s := effects[i].span
		if (len(s.End) == 0 && bytes.Equal(s.Start, key)) || (len(s.End) > 0 && s.Contains(key)) {
			return effects[i].put, nil
		}
	}
	kv, err := storage.MVCCGet(e.r, key, e.readRev)
	return kv != nil, err
}

// exec runs op (step 3).
func (e *evaluator) exec(op *kvpb.RequestOp, p *path) (*kvpb.ResponseOp, error) {
	switch req := op.GetRequest().(type) {
	case *kvpb.RequestOp_Range:
		rr, ok := e.clippedRange(req.Range)
		if !ok {
			return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: &kvpb.RangeResponse{}}}, nil
		}
		r, err := e.rangeOp(rr)
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: r}}, err
	case *kvpb.RequestOp_Put:
		if _, ok := e.inClip(keys.UserSpanOf(req.Put.GetKey(), nil)); !ok {
			return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Put{Put: &kvpb.PutResponse{}}}, nil
		}
		r, err := e.put(req.Put)
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Put{Put: r}}, err
	case *kvpb.RequestOp_DeleteRange:
		s, ok := e.inClip(keys.UserSpanOf(req.DeleteRange.GetKey(), req.DeleteRange.GetRangeEnd()))
		if !ok {
			return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeResponse{}}}, nil
		}
		r, err := e.deleteRange(req.DeleteRange, s)
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: r}}, err
	case *kvpb.RequestOp_Txn:
		succeeded := p.pop()
		ops := branch(req.Txn, succeeded)
		r := &kvpb.TxnResponse{Succeeded: succeeded, Responses: make([]*kvpb.ResponseOp, 0, len(ops))}
		for _, o := range ops {
			resp, err := e.exec(o, p)
			if err != nil {
				return nil, err
			}
			if e.b != nil && o.GetTxn() == nil {
				resp.HeaderRevision = e.prev
				if e.wrote {
					resp.HeaderRevision = e.ts
				}
			}
			r.Responses = append(r.Responses, resp)
		}
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Txn{Txn: r}}, nil
	}
	// An empty op inside a txn: etcd answers it with an empty response.
	return &kvpb.ResponseOp{}, nil
}

func (e *evaluator) put(req *kvpb.PutRequest) (*kvpb.PutResponse, error) {
	key := keys.User(req.GetKey())
	// The index answers unless the previous value itself is needed.
	prev, known := (*kvpb.KeyValue)(nil), false
	if !req.GetPrevKv() && !req.GetIgnoreValue() && !req.GetIgnoreLease() {
		prev, known = e.idx.get(key)
	}
	if !known {
		var err error
		if prev, err = storage.MVCCGet(e.r, key, e.readRev); err != nil {
			return nil, err
		}
	}
	kv := &kvpb.KeyValue{Key: key, Value: req.GetValue(), Lease: req.GetLease(), ModRevision: e.ts, CreateRevision: e.ts, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.GetCreateRevision(), prev.GetVersion()+1
	}
	if req.GetIgnoreValue() || req.GetIgnoreLease() {
		if prev == nil {
			// check guarantees the key exists; reaching here is a bug.
			return nil, kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "eval: ignore_value put of missing key %q", req.GetKey())
		}
		if req.GetIgnoreValue() {
			kv.Value = prev.GetValue()
		}
		if req.GetIgnoreLease() {
			kv.Lease = prev.GetLease()
		}
	}
	if err := e.b.MVCCPut(kv); err != nil {
		return nil, err
	}
	e.idx.put(kv)
	e.wrote, e.current = true, e.ts
	resp := &kvpb.PutResponse{}
	if req.GetPrevKv() && prev != nil {
		resp.PrevKv = userKV(prev)
	}
	return resp, nil
}

// deleteRange deletes the live keys of span, req's keys (or their part in
// the clip).
func (e *evaluator) deleteRange(req *kvpb.DeleteRangeRequest, span keys.Span) (*kvpb.DeleteRangeResponse, error) {
	var live []*kvpb.KeyValue
	err := storage.MVCCScan(e.r, span, e.readRev, func(kv *kvpb.KeyValue) error {
		if !req.GetPrevKv() {
			kv.Value = nil
		}
		live = append(live, kv)
		return nil
	})
	if err != nil {
		return nil, err
	}
	resp := &kvpb.DeleteRangeResponse{Deleted: int64(len(live))}
	for _, kv := range live {
		if err := e.b.MVCCDelete(kv.GetKey(), e.ts); err != nil {
			return nil, err
		}
		e.idx.del(kv.GetKey(), e.ts)
		e.wrote, e.current = true, e.ts
		if req.GetPrevKv() {
			resp.PrevKvs = append(resp.PrevKvs, userKV(kv))
		}
	}
	return resp, nil
}

// userKV strips the global prefix from kv's key, in place.
func userKV(kv *kvpb.KeyValue) *kvpb.KeyValue {
	kv.Key = keys.StripUser(kv.GetKey())
	return kv
}

// rangeOp evaluates a RangeRequest already validated by check, as etcd's
// executeRange: fetch (limit+1 when results need no sorting or filtering),
// count every match, filter by revisions, sort, truncate to limit.
func (e *evaluator) rangeOp(req *kvpb.RangeRequest) (*kvpb.RangeResponse, error) {
	rev := req.GetRevision()
	if rev <= 0 {
		rev = e.readRev
	}
	fetch := rangeLimit(req)
	var kvs []*kvpb.KeyValue
	var count int64
	collect := func(kv *kvpb.KeyValue) error {
		kvs = append(kvs, userKV(kv))
		if e.uncounted && fetch > 0 && int64(len(kvs)) >= fetch {
			return errLimitReached
		}
		return nil
	}
	span := keys.UserSpanOf(req.GetKey(), req.GetRangeEnd())
	var err error
	if len(req.GetRangeEnd()) == 0 {
		// One key: a prefix seek, which skips the tables whose bloom
		// filters rule the key out, instead of a scan that opens them all.
		var kv *kvpb.KeyValue
		if kv, err = storage.MVCCGet(e.r, span.Start, rev); err == nil && kv != nil {
			count = 1
			if !req.GetCountOnly() {
				err = collect(kv)
			}
		}
	} else {
		// Every key of the span is counted, as etcd counts them; only the
		// first fetch are decoded (all of them when fetch is 0 or
		// negative: etcd reads a negative limit as none).
		want := max(fetch, 0)
		if req.GetCountOnly() {
			want = -1
		}
		count, err = storage.MVCCScanCount(e.r, span, rev, want, collect)
	}
	if errors.Is(err, errLimitReached) {
		err = nil
	}
	if err != nil {
		return nil, err
	}
	kvs = filterKVs(kvs, req)
	sortKVs(kvs, req)
	resp := &kvpb.RangeResponse{Count: count}
	if l := req.GetLimit(); l > 0 && int64(len(kvs)) > l {
		kvs = kvs[:l]
		resp.More = true
	}
	if req.GetKeysOnly() {
		for _, kv := range kvs {
			kv.Value = nil
			// etcd serves keys_only from its index, which has no leases,
			// unless it must read values to sort by them.
			if req.GetSortTarget() != kvpb.SortTarget_SORT_BY_VALUE {
				kv.Lease = 0
			}
		}
	}
	resp.Kvs = kvs
	return resp, nil
}

// rangeLimit is how many kvs to fetch: 0 for all, when they must be sorted
// or filtered first; otherwise one more than the limit, to know "more".
func rangeLimit(req *kvpb.RangeRequest) int64 {
	if !isDefaultOrdering(req.GetSortTarget(), req.GetSortOrder()) || hasRevisionFilters(req) {
		return 0
	}
	if l := req.GetLimit(); l > 0 && l < 1<<62 {
		return l + 1
	}
	return req.GetLimit()
}

// isDefaultOrdering: results come in ascending key order, so no sort is
// needed for no order or ascending by key.
func isDefaultOrdering(target kvpb.SortTarget, order kvpb.SortOrder) bool {
	return order == kvpb.SortOrder_SORT_NONE ||
		(target == kvpb.SortTarget_SORT_BY_KEY && order == kvpb.SortOrder_SORT_ASCEND)
}

func hasRevisionFilters(req *kvpb.RangeRequest) bool {
	return req.GetMinModRevision() != 0 || req.GetMaxModRevision() != 0 ||
		req.GetMinCreateRevision() != 0 || req.GetMaxCreateRevision() != 0
}

func filterKVs(kvs []*kvpb.KeyValue, req *kvpb.RangeRequest) []*kvpb.KeyValue {
	if !hasRevisionFilters(req) {
		return kvs
	}
	out := kvs[:0]
	for _, kv := range kvs {
		switch {
		case req.GetMaxModRevision() != 0 && kv.GetModRevision() > req.GetMaxModRevision():
		case req.GetMinModRevision() != 0 && kv.GetModRevision() < req.GetMinModRevision():
		case req.GetMaxCreateRevision() != 0 && kv.GetCreateRevision() > req.GetMaxCreateRevision():
		case req.GetMinCreateRevision() != 0 && kv.GetCreateRevision() < req.GetMinCreateRevision():
		default:
			out = append(out, kv)
		}
	}
	return out
}

// sortKVs sorts like etcd: SORT_NONE with a target other than the key means
// ascending. The sort is stable, so ties stay in key order.
func sortKVs(kvs []*kvpb.KeyValue, req *kvpb.RangeRequest) {
	order, target := req.GetSortOrder(), req.GetSortTarget()
	if target != kvpb.SortTarget_SORT_BY_KEY && order == kvpb.SortOrder_SORT_NONE {
		order = kvpb.SortOrder_SORT_ASCEND
	}
	if isDefaultOrdering(target, order) {
		return
	}
	cmp := func(a, b *kvpb.KeyValue) int {
		switch target {
		case kvpb.SortTarget_SORT_BY_VERSION:
			return compareInt64(a.GetVersion(), b.GetVersion())
		case kvpb.SortTarget_SORT_BY_CREATE:
			return compareInt64(a.GetCreateRevision(), b.GetCreateRevision())
		case kvpb.SortTarget_SORT_BY_MOD:
			return compareInt64(a.GetModRevision(), b.GetModRevision())
		case kvpb.SortTarget_SORT_BY_VALUE:
			return bytes.Compare(a.GetValue(), b.GetValue())
		}
		return bytes.Compare(a.GetKey(), b.GetKey())
	}
	descend := order == kvpb.SortOrder_SORT_DESCEND
	sort.SliceStable(kvs, func(i, j int) bool {
		if descend {
			return cmp(kvs[i], kvs[j]) > 0
		}
		return cmp(kvs[i], kvs[j]) < 0
	})
}
