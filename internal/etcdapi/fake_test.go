package etcdapi

import (
	"bytes"
	"context"
	"io"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// fakeBackend is an in-memory Backend with enough etcd semantics to check
// the translation end to end: one global revision, create/mod revisions and
// versions, prev_kv, ranges in key order, single-key compares, nested txns.
// It records the last request it was given.
type fakeBackend struct {
	mu struct {
		sync.Mutex
		rev     int64
		kvs     map[string]*kvpb.KeyValue
		last    *kvpb.RequestOp
		calls   int
		err     error // returned by Do when set
		members []*metapb.NodeRecord
		status  Status
	}
}

const fakeRaftTerm = 7

func newFakeBackend() *fakeBackend {
	f := &fakeBackend{}
	f.mu.rev = 1 // etcd starts at revision 1
	f.mu.kvs = make(map[string]*kvpb.KeyValue)
	return f
}

func (f *fakeBackend) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.err = err
}

func (f *fakeBackend) last() (*kvpb.RequestOp, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.last, f.mu.calls
}

func (f *fakeBackend) Do(_ context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.last = proto.Clone(op).(*kvpb.RequestOp)
	f.mu.calls++
	if f.mu.err != nil {
		return nil, Header{}, f.mu.err
	}
	next := f.mu.rev + 1
	wrote := false
	resp := f.applyLocked(op, next, &wrote)
	if wrote {
		f.mu.rev = next
	}
	return resp, Header{Revision: f.mu.rev, RaftTerm: fakeRaftTerm}, nil
}

func (f *fakeBackend) Members(context.Context) ([]*metapb.NodeRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.members, f.mu.err
}

func (f *fakeBackend) Compact(_ context.Context, rev int64) (Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev > f.mu.rev {
		return Header{}, kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	}
	return Header{Revision: f.mu.rev, RaftTerm: fakeRaftTerm}, f.mu.err
}

func (f *fakeBackend) HashKV(context.Context, int64) (HashKV, error) {
	return HashKV{}, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "fake: no hash")
}

func (f *fakeBackend) Defragment(context.Context) error { return nil }

func (f *fakeBackend) Status(context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.status, f.mu.err
}

func (f *fakeBackend) applyLocked(op *kvpb.RequestOp, rev int64, wrote *bool) *kvpb.ResponseOp {
	switch v := op.GetRequest().(type) {
	case *kvpb.RequestOp_Range:
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: f.rangeLocked(v.Range)}}
	case *kvpb.RequestOp_Put:
		*wrote = true
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Put{Put: f.putLocked(v.Put, rev)}}
	case *kvpb.RequestOp_DeleteRange:
		r := f.deleteLocked(v.DeleteRange)
		if r.Deleted > 0 {
			*wrote = true
		}
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_DeleteRange{DeleteRange: r}}
	case *kvpb.RequestOp_Txn:
		return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Txn{Txn: f.txnLocked(v.Txn, rev, wrote)}}
	}
	panic("fake: empty op")
}

// keysLocked returns the keys in [key, end) in order, with etcd's range_end
// conventions.
func (f *fakeBackend) keysLocked(key, end []byte) []string {
	var out []string
	for k := range f.mu.kvs {
		switch {
		case len(end) == 0:
			if k == string(key) {
				out = append(out, k)
			}
		case bytes.Equal(end, []byte{0}):
			if k >= string(key) {
				out = append(out, k)
			}
		default:
			if k >= string(key) && k < string(end) {
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func (f *fakeBackend) rangeLocked(r *kvpb.RangeRequest) *kvpb.RangeResponse {
	keys := f.keysLocked(r.Key, r.RangeEnd)
	if r.SortOrder == kvpb.SortOrder_SORT_DESCEND {
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	}
	resp := &kvpb.RangeResponse{Count: int64(len(keys))}
	if r.CountOnly {
		return resp
	}
	if r.Limit > 0 && int64(len(keys)) > r.Limit {
		keys = keys[:r.Limit]
		resp.More = true
	}
	for _, k := range keys {
		kv := proto.Clone(f.mu.kvs[k]).(*kvpb.KeyValue)
		if r.KeysOnly {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return resp
}

func (f *fakeBackend) putLocked(p *kvpb.PutRequest, rev int64) *kvpb.PutResponse {
	resp := &kvpb.PutResponse{}
	prev := f.mu.kvs[string(p.Key)]
	if p.PrevKv && prev != nil {
		resp.PrevKv = proto.Clone(prev).(*kvpb.KeyValue)
	}
	kv := &kvpb.KeyValue{Key: p.Key, Value: p.Value, Lease: p.Lease, CreateRevision: rev, ModRevision: rev, Version: 1}
	if prev != nil {
		kv.CreateRevision = prev.CreateRevision
		kv.Version = prev.Version + 1
		if p.IgnoreValue {
			kv.Value = prev.Value
		}
		if p.IgnoreLease {
			kv.Lease = prev.Lease
		}
	}
	f.mu.kvs[string(p.Key)] = kv
	return resp
}

func (f *fakeBackend) deleteLocked(d *kvpb.DeleteRangeRequest) *kvpb.DeleteRangeResponse {
	resp := &kvpb.DeleteRangeResponse{}
	for _, k := range f.keysLocked(d.Key, d.RangeEnd) {
		if d.PrevKv {
			resp.PrevKvs = append(resp.PrevKvs, f.mu.kvs[k])
		}
		delete(f.mu.kvs, k)
		resp.Deleted++
	}
	return resp
}

func (f *fakeBackend) txnLocked(t *kvpb.TxnRequest, rev int64, wrote *bool) *kvpb.TxnResponse {
	ok := true
	for _, c := range t.Compare {
		ok = ok && f.compareLocked(c)
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	resp := &kvpb.TxnResponse{Succeeded: ok}
	for _, op := range ops {
		resp.Responses = append(resp.Responses, f.applyLocked(op, rev, wrote))
	}
	return resp
}

// compareLocked evaluates a compare on its key alone (range_end ignored).
func (f *fakeBackend) compareLocked(c *kvpb.Compare) bool {
	kv := f.mu.kvs[string(c.Key)]
	if kv == nil {
		kv = &kvpb.KeyValue{}
	}
	var r int
	switch c.Target {
	case kvpb.CompareTarget_COMPARE_VERSION:
		r = cmpInt(kv.Version, c.GetVersion())
	case kvpb.CompareTarget_COMPARE_CREATE:
		r = cmpInt(kv.CreateRevision, c.GetCreateRevision())
	case kvpb.CompareTarget_COMPARE_MOD:
		r = cmpInt(kv.ModRevision, c.GetModRevision())
	case kvpb.CompareTarget_COMPARE_VALUE:
		r = bytes.Compare(kv.Value, c.GetValue())
	case kvpb.CompareTarget_COMPARE_LEASE:
		r = cmpInt(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case kvpb.CompareResult_COMPARE_EQUAL:
		return r == 0
	case kvpb.CompareResult_COMPARE_NOT_EQUAL:
		return r != 0
	case kvpb.CompareResult_COMPARE_GREATER:
		return r > 0
	case kvpb.CompareResult_COMPARE_LESS:
		return r < 0
	}
	return false
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (f *fakeBackend) Snapshot(context.Context, io.Writer) error { return nil }

func (f *fakeBackend) AddMember(context.Context, []string, bool) (*metapb.NodeRecord, error) {
	return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "no members here")
}

func (f *fakeBackend) ChangeMember(context.Context, *cmdpb.SysChangeNode) (*metapb.NodeRecord, error) {
	return nil, kvpb.Errorf(kvpb.ErrorCode_MEMBER_NOT_FOUND, "etcdserver: member not found")
}
