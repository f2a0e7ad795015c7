package meta

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// The meta range's index keeps only newer descriptors: a split's two sides
// replace the range they came from, and a late update of a range merged
// away (overlapped by a newer descriptor) is refused, so it cannot come
// back into the index.
func TestUpdateRangesKeepsOnlyNewerDescriptors(t *testing.T) {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	reps := []*metapb.ReplicaDescriptor{{NodeId: 1}}
	desc := func(id uint64, start, end string, gen uint64) *metapb.RangeDescriptor {
		s, en := keys.UserSpan.Start, keys.UserSpan.End
		if start != "" {
			s = keys.User([]byte(start))
		}
		if end != "" {
			en = keys.User([]byte(end))
		}
		return &metapb.RangeDescriptor{RangeId: id, StartKey: s, EndKey: en, Replicas: reps, Generation: gen}
	}
	update := func(ds ...*metapb.RangeDescriptor) int64 {
		t.Helper()
		b := e.NewBatch()
		defer b.Close()
		resp, err := updateRanges(b, keys.MetaSpan, ds)
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		return resp.GetValue()
	}
	if n := update(desc(2, "", "", 1)); n != 1 {
		t.Fatalf("first descriptor: recorded %d", n)
	}
	if n := update(desc(2, "", "m", 2), desc(3, "m", "", 2)); n != 2 {
		t.Fatalf("a split's two sides: recorded %d, want 2", n)
	}
	if n := update(desc(2, "", "m", 2)); n != 0 {
		t.Fatalf("the same generation again: recorded %d, want 0", n)
	}
	// Range 2 takes range 3 over (a merge), then range 3's leader, late,
	// indexes its old descriptor again.
	if n := update(desc(2, "", "", 3)); n != 1 {
		t.Fatalf("the merged range: recorded %d", n)
	}
	b := e.NewBatch()
	if err := b.SysDelete(keys.Range(3)); err != nil {
		t.Fatal(err)
	}
	if err := b.Commit(false); err != nil {
		t.Fatal(err)
	}
	b.Close()
	if n := update(desc(3, "m", "", 2)); n != 0 {
		t.Fatalf("a range merged away, indexed late: recorded %d, want 0", n)
	}
	ds, err := rangeDescriptors(e)
	if err != nil || len(ds) != 1 || ds[0].GetGeneration() != 3 {
		t.Fatalf("index after all: %v %v", ds, err)
	}
}

// A SysBatch writes all of its puts and deletes, or nothing when one key
// lies outside the meta range.
func TestSysBatch(t *testing.T) {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	apply := func(sb *cmdpb.SysBatch) error {
		b := e.NewBatch()
		defer b.Close()
		if _, err := EvalWrite(b, keys.MetaSpan, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Batch{Batch: sb}}); err != nil {
			return err
		}
		return b.Commit(false)
	}
	if err := apply(&cmdpb.SysBatch{Puts: []*cmdpb.SysKV{{Key: keys.Lease(1), Value: []byte("a")}, {Key: keys.Lease(2), Value: []byte("b")}}}); err != nil {
		t.Fatal(err)
	}
	err = apply(&cmdpb.SysBatch{Puts: []*cmdpb.SysKV{{Key: keys.Lease(3), Value: []byte("c")}}, Deletes: [][]byte{keys.User([]byte("x"))}})
	if kvpb.CodeOf(err) != kvpb.ErrorCode_KEY_MISMATCH {
		t.Fatalf("a user key in a system batch: %v, want KEY_MISMATCH", err)
	}
	if err := apply(&cmdpb.SysBatch{Deletes: [][]byte{keys.Lease(1)}}); err != nil {
		t.Fatal(err)
	}
	resp, err := EvalRead(e, keys.MetaSpan, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: keys.LeaseSpan().Start, End: keys.LeaseSpan().End}}})
	if err != nil {
		t.Fatal(err)
	}
	if kvs := resp.GetKvs(); len(kvs) != 1 || string(kvs[0].GetValue()) != "b" {
		t.Fatalf("lease records after the batches: %v, want only lease 2", kvs)
	}
}

// A compare-and-swap puts only over the value it expects: the first write
// of a key expects it absent, a second writer holding the same old value
// loses and is told the current one.
func TestSysCAS(t *testing.T) {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	cas := func(expect, value string) *cmdpb.SysResponse {
		t.Helper()
		b := e.NewBatch()
		defer b.Close()
		resp, err := EvalWrite(b, keys.MetaSpan, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Cas{Cas: &cmdpb.SysCAS{Key: keys.Auth, Expect: []byte(expect), Value: []byte(value)}}})
		if err != nil {
			t.Fatal(err)
		}
		if err := b.Commit(false); err != nil {
			t.Fatal(err)
		}
		return resp
	}
	if r := cas("x", "a"); r.GetValue() != 0 || len(r.GetKvs()) != 0 {
		t.Fatalf("expecting a value of an absent key: %v, want refused with no current value", r)
	}
	if r := cas("", "a"); r.GetValue() != 1 {
		t.Fatalf("first write expecting absence: %v, want put", r)
	}
	if r := cas("", "b"); r.GetValue() != 0 || string(r.GetKvs()[0].GetValue()) != "a" {
		t.Fatalf("second write expecting absence: %v, want refused with a", r)
	}
	if r := cas("a", "c"); r.GetValue() != 1 {
		t.Fatalf("write over the expected value: %v, want put", r)
	}
	if r := cas("a", "d"); r.GetValue() != 0 || string(r.GetKvs()[0].GetValue()) != "c" {
		t.Fatalf("stale writer: %v, want refused with c", r)
	}
	if _, err := EvalWrite(e.NewBatch(), keys.MetaSpan, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Cas{Cas: &cmdpb.SysCAS{Key: keys.User([]byte("k"))}}}); kvpb.CodeOf(err) != kvpb.ErrorCode_KEY_MISMATCH {
		t.Fatalf("a user key: %v, want KEY_MISMATCH", err)
	}
}

// A node re-registering under its own id (every start) refreshes its
// record, generation and learner flag kept; once its record is removed it
// is refused with etcd's words instead of being added under a new id.
func TestAddNodeUnderItsOwnID(t *testing.T) {
	e, err := storage.Open("db", storage.Options{FS: vfs.NewMem()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	eval := func(req *cmdpb.SysRequest) (*cmdpb.SysResponse, error) {
		t.Helper()
		b := e.NewBatch()
		defer b.Close()
		resp, err := EvalWrite(b, keys.MetaSpan, req)
		if err == nil {
			if err := b.Commit(false); err != nil {
				t.Fatal(err)
			}
		}
		return resp, err
	}
	add := func(rec *metapb.NodeRecord) (*cmdpb.SysResponse, error) {
		return eval(&cmdpb.SysRequest{Request: &cmdpb.SysRequest_AddNode{AddNode: &cmdpb.SysAddNode{Node: rec}}})
	}
	first, err := add(&metapb.NodeRecord{Name: "n1", PeerUrls: []string{"http://a:2380"}})
	if err != nil {
		t.Fatal(err)
	}
	id := first.GetNode().GetNodeId()
	again, err := add(&metapb.NodeRecord{NodeId: id, Name: "n1", PeerUrls: []string{"http://a:2380"}, ClientUrls: []string{"http://a:2379"}})
	if err != nil {
		t.Fatal(err)
	}
	if n := again.GetNode(); n.GetNodeId() != id || n.GetGeneration() != first.GetNode().GetGeneration()+1 || len(n.GetClientUrls()) != 1 {
		t.Fatalf("re-registration: %v after %v", n, first.GetNode())
	}
	if _, err := eval(&cmdpb.SysRequest{Request: &cmdpb.SysRequest_ChangeNode{ChangeNode: &cmdpb.SysChangeNode{NodeId: id, Remove: true}}}); err != nil {
		t.Fatal(err)
	}
	_, err = add(&metapb.NodeRecord{NodeId: id, Name: "n1", PeerUrls: []string{"http://a:2380"}})
	if kvpb.CodeOf(err) != kvpb.ErrorCode_MEMBER_NOT_FOUND || !strings.Contains(err.Error(), ErrMemberRemoved) {
		t.Fatalf("re-registration after removal: %v, want MEMBER_NOT_FOUND with %q", err, ErrMemberRemoved)
	}
	resp, err := EvalRead(e, keys.MetaSpan, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: keys.NodeSpan().Start, End: keys.NodeSpan().End}}})
	if err != nil || len(resp.GetKvs()) != 0 {
		t.Fatalf("node records after the refused re-registration: %v %v", resp, err)
	}
}
