package eval

import (
	"fmt"
	"math/rand"
	"sort"
	"testing"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// model is a reference etcd keyspace: live keys only, plus a snapshot of the
// keyspace after every revision for reads in the past.
type model struct {
	live    map[string]*kvpb.KeyValue
	history []map[string]*kvpb.KeyValue // history[rev-1]
}

func (m *model) put(k, val string, rev int64) *kvpb.KeyValue {
	prev := m.live[k]
	kv := &kvpb.KeyValue{Key: []byte(k), Value: []byte(val), ModRevision: rev, CreateRevision: rev, Version: 1}
	if prev != nil {
		kv.CreateRevision, kv.Version = prev.CreateRevision, prev.Version+1
	}
	m.live[k] = kv
	return prev
}

func (m *model) deleteRange(from, to string) int64 {
	var n int64
	for k := range m.live {
		if k >= from && k < to {
			delete(m.live, k)
			n++
		}
	}
	return n
}

func (m *model) commit() {
	snap := map[string]*kvpb.KeyValue{}
	for k, v := range m.live {
		snap[k] = v
	}
	m.history = append(m.history, snap)
}

func (m *model) dump(state map[string]*kvpb.KeyValue) string {
	var list []*kvpb.KeyValue
	for _, kv := range state {
		list = append(list, kv)
	}
	sort.Slice(list, func(i, j int) bool { return string(list[i].Key) < string(list[j].Key) })
	return kvs(list)
}

// TestRandomAgainstModel runs seeded random puts, range deletes and
// compare-and-put txns and checks every response and the whole keyspace, at
// the current and at random past revisions, against the model.
func TestRandomAgainstModel(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		rng := rand.New(rand.NewSource(seed))
		v := newEnv(t)
		m := &model{live: map[string]*kvpb.KeyValue{}}
		key := func() string { return string(rune('a' + rng.Intn(8))) }
		for step := 0; step < 200; step++ {
			rev := v.rev + 1
			switch rng.Intn(3) {
			case 0:
				k, val := key(), fmt.Sprint(rng.Intn(100))
				resp := v.mustWrite(putReq(&kvpb.PutRequest{Key: []byte(k), Value: []byte(val), PrevKv: true}))
				prev := m.put(k, val, rev)
				if got, want := kvs([]*kvpb.KeyValue{resp.GetPut().GetPrevKv()}), kvs([]*kvpb.KeyValue{prev}); prev != nil && got != want {
					t.Fatalf("seed %d step %d: prev_kv %s, want %s", seed, step, got, want)
				}
			case 1:
				from, to := key(), key()
				resp, _, err := v.write(delOp(from, to, false))
				if err != nil {
					t.Fatal(err)
				}
				n := m.deleteRange(from, to)
				if resp.GetDeleteRange().Deleted != n {
					t.Fatalf("seed %d step %d: deleted %d, want %d", seed, step, resp.GetDeleteRange().Deleted, n)
				}
			case 2:
				k, k2 := key(), key()
				ver := int64(rng.Intn(3))
				resp := v.mustWrite(txnOp(
					[]*kvpb.Compare{cmp(k, kvpb.CompareTarget_COMPARE_VERSION, kvpb.CompareResult_COMPARE_EQUAL, int(ver))},
					[]*kvpb.RequestOp{putOp(k2, "t"), delOp(k, "", false)},
					[]*kvpb.RequestOp{putOp(k, "f")}))
				var cur int64
				if kv := m.live[k]; kv != nil {
					cur = kv.Version
				}
				want := cur == ver
				if resp.GetTxn().Succeeded != want {
					t.Fatalf("seed %d step %d: succeeded %v, want %v", seed, step, resp.GetTxn().Succeeded, want)
				}
				if want {
					m.put(k2, "t", rev)
					m.deleteRange(k, k+"\x00")
				} else {
					m.put(k, "f", rev)
				}
			}
			m.commit()
			if v.rev != int64(len(m.history)) {
				t.Fatalf("seed %d: revision %d, model %d", seed, v.rev, len(m.history))
			}
			at := int64(rng.Intn(int(v.rev))) + 1
			for _, rev := range []int64{0, at} {
				r, err := v.read(&kvpb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
				if err != nil {
					t.Fatal(err)
				}
				state := m.live
				if rev != 0 {
					state = m.history[rev-1]
				}
				if got, want := kvs(r.Kvs), m.dump(state); got != want || r.Count != int64(len(state)) {
					t.Fatalf("seed %d step %d at %d:\n got %s\nwant %s", seed, step, rev, got, want)
				}
			}
		}
	}
}
