package etcdapi

import (
	"bytes"
	"context"
	"io"
	"sort"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb"
)

// fakeBackend is an in-memory Backend with enough etcd semantics to check
// the translation end to end: one global revision, create/mod revisions and
// versions, prev_kv, ranges in key order, single-key compares, nested txns.
// It records the last request it was given.
type fakeBackend struct {
	mu struct {
		sync.Mutex
		rev     int64
		kvs     map[string]*concordpb.KeyValue
		last    *concordpb.RequestOp
		calls   int
		err     error // returned by Do when set
		members []*concordpb.NodeRecord
		status  Status
	}
}

const fakeRaftTerm = 7

func newFakeBackend() *fakeBackend {
	f := &fakeBackend{}
	f.mu.rev = 1 // etcd starts at revision 1
	f.mu.kvs = make(map[string]*concordpb.KeyValue)
	return f
}

func (f *fakeBackend) setErr(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.err = err
}

func (f *fakeBackend) last() (*concordpb.RequestOp, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.last, f.mu.calls
}

func (f *fakeBackend) Do(_ context.Context, op *concordpb.RequestOp) (*concordpb.ResponseOp, Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.mu.last = proto.Clone(op).(*concordpb.RequestOp)
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

func (f *fakeBackend) Members(context.Context) ([]*concordpb.NodeRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.members, f.mu.err
}

func (f *fakeBackend) Compact(_ context.Context, rev int64) (Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if rev > f.mu.rev {
		return Header{}, concordpb.Errorf(concordpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
	}
	return Header{Revision: f.mu.rev, RaftTerm: fakeRaftTerm}, f.mu.err
}

func (f *fakeBackend) HashKV(context.Context, int64) (HashKV, error) {
	return HashKV{}, concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "fake: no hash")
}

func (f *fakeBackend) Defragment(context.Context) error { return nil }

func (f *fakeBackend) Status(context.Context) (Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.mu.status, f.mu.err
}

func (f *fakeBackend) applyLocked(op *concordpb.RequestOp, rev int64, wrote *bool) *concordpb.ResponseOp {
	switch v := op.GetRequest().(type) {
	case *concordpb.RequestOp_Range:
		return &concordpb.ResponseOp{Response: &concordpb.ResponseOp_Range{Range: f.rangeLocked(v.Range)}}
	case *concordpb.RequestOp_Put:
		*wrote = true
		return &concordpb.ResponseOp{Response: &concordpb.ResponseOp_Put{Put: f.putLocked(v.Put, rev)}}
	case *concordpb.RequestOp_DeleteRange:
		r := f.deleteLocked(v.DeleteRange)
		if r.Deleted > 0 {
			*wrote = true
		}
		return &concordpb.ResponseOp{Response: &concordpb.ResponseOp_DeleteRange{DeleteRange: r}}
	case *concordpb.RequestOp_Txn:
		return &concordpb.ResponseOp{Response: &concordpb.ResponseOp_Txn{Txn: f.txnLocked(v.Txn, rev, wrote)}}
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

func (f *fakeBackend) rangeLocked(r *concordpb.RangeRequest) *concordpb.RangeResponse {
	keys := f.keysLocked(r.Key, r.RangeEnd)
	if r.SortOrder == concordpb.SortOrder_SORT_DESCEND {
		sort.Sort(sort.Reverse(sort.StringSlice(keys)))
	}
	resp := &concordpb.RangeResponse{Count: int64(len(keys))}
	if r.CountOnly {
		return resp
	}
	if r.Limit > 0 && int64(len(keys)) > r.Limit {
		keys = keys[:r.Limit]
		resp.More = true
	}
	for _, k := range keys {
		kv := proto.Clone(f.mu.kvs[k]).(*concordpb.KeyValue)
		if r.KeysOnly {
			kv.Value = nil
		}
		resp.Kvs = append(resp.Kvs, kv)
	}
	return resp
}

func (f *fakeBackend) putLocked(p *concordpb.PutRequest, rev int64) *concordpb.PutResponse {
	resp := &concordpb.PutResponse{}
	prev := f.mu.kvs[string(p.Key)]
	if p.PrevKv && prev != nil {
		resp.PrevKv = proto.Clone(prev).(*concordpb.KeyValue)
	}
	kv := &concordpb.KeyValue{Key: p.Key, Value: p.Value, Lease: p.Lease, CreateRevision: rev, ModRevision: rev, Version: 1}
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

func (f *fakeBackend) deleteLocked(d *concordpb.DeleteRangeRequest) *concordpb.DeleteRangeResponse {
	resp := &concordpb.DeleteRangeResponse{}
	for _, k := range f.keysLocked(d.Key, d.RangeEnd) {
		if d.PrevKv {
			resp.PrevKvs = append(resp.PrevKvs, f.mu.kvs[k])
		}
		delete(f.mu.kvs, k)
		resp.Deleted++
	}
	return resp
}

func (f *fakeBackend) txnLocked(t *concordpb.TxnRequest, rev int64, wrote *bool) *concordpb.TxnResponse {
	ok := true
	for _, c := range t.Compare {
		ok = ok && f.compareLocked(c)
	}
	ops := t.Success
	if !ok {
		ops = t.Failure
	}
	resp := &concordpb.TxnResponse{Succeeded: ok}
	for _, op := range ops {
		resp.Responses = append(resp.Responses, f.applyLocked(op, rev, wrote))
	}
	return resp
}

// compareLocked evaluates a compare on its key alone (range_end ignored).
func (f *fakeBackend) compareLocked(c *concordpb.Compare) bool {
	kv := f.mu.kvs[string(c.Key)]
	if kv == nil {
		kv = &concordpb.KeyValue{}
	}
	var r int
	switch c.Target {
	case concordpb.CompareTarget_COMPARE_VERSION:
		r = cmpInt(kv.Version, c.GetVersion())
	case concordpb.CompareTarget_COMPARE_CREATE:
		r = cmpInt(kv.CreateRevision, c.GetCreateRevision())
	case concordpb.CompareTarget_COMPARE_MOD:
		r = cmpInt(kv.ModRevision, c.GetModRevision())
	case concordpb.CompareTarget_COMPARE_VALUE:
		r = bytes.Compare(kv.Value, c.GetValue())
	case concordpb.CompareTarget_COMPARE_LEASE:
		r = cmpInt(kv.Lease, c.GetLease())
	}
	switch c.Result {
	case concordpb.CompareResult_COMPARE_EQUAL:
		return r == 0
	case concordpb.CompareResult_COMPARE_NOT_EQUAL:
		return r != 0
	case concordpb.CompareResult_COMPARE_GREATER:
		return r > 0
	case concordpb.CompareResult_COMPARE_LESS:
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

func (f *fakeBackend) AddMember(context.Context, []string, bool) (*concordpb.NodeRecord, error) {
	return nil, concordpb.Errorf(concordpb.ErrorCode_INVALID_ARGUMENT, "no members here")
}

func (f *fakeBackend) ChangeMember(context.Context, *concordpb.SysChangeNode) (*concordpb.NodeRecord, error) {
	return nil, concordpb.Errorf(concordpb.ErrorCode_MEMBER_NOT_FOUND, "etcdserver: member not found")
}
