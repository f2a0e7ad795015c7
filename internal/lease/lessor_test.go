package lease

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sort"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// fakeRecords is the meta range's lease records in memory.
type fakeRecords struct {
	mu     sync.Mutex
	recs   map[int64]*metapb.LeaseRecord
	writes int
	fail   error
}

func (f *fakeRecords) Load(context.Context) ([]*metapb.LeaseRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []*metapb.LeaseRecord
	for _, r := range f.recs {
		out = append(out, proto.CloneOf(r))
	}
	return out, nil
}

func (f *fakeRecords) Write(_ context.Context, puts []*metapb.LeaseRecord, deletes []int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.writes++
	for _, r := range puts {
		EncodeRecord(r) // panics on a record the decoder would refuse
		f.recs[r.GetId()] = proto.CloneOf(r)
	}
	for _, id := range deletes {
		delete(f.recs, id)
	}
	return nil
}

func (f *fakeRecords) get(id int64) *metapb.LeaseRecord {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recs[id]
}

// fakeKeys is the user keyspace: key -> lease (0: no lease).
type fakeKeys struct {
	mu      sync.Mutex
	kv      map[string]int64
	deletes int
}

func (f *fakeKeys) Delete(_ context.Context, id int64, keys [][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes++
	for _, k := range keys {
		if l, ok := f.kv[string(k)]; ok && l == id {
			delete(f.kv, string(k))
		}
	}
	return nil
}

func (f *fakeKeys) Scan(_ context.Context, fn func([]byte, int64) error) error {
	f.mu.Lock()
	var ks []string
	for k, l := range f.kv {
		if l != 0 {
			ks = append(ks, k)
		}
	}
	sort.Strings(ks)
	snap := map[string]int64{}
	for _, k := range ks {
		snap[k] = f.kv[k]
	}
	f.mu.Unlock()
	for _, k := range ks {
		if err := fn([]byte(k), snap[k]); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeKeys) put(k string, lease int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.kv[k] = lease
}

func (f *fakeKeys) has(k string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.kv[k]
	return ok
}

type env struct {
	t     *testing.T
	clock *fakeClock
	recs  *fakeRecords
	keys  *fakeKeys
	cfg   Config
}

func newEnv(t *testing.T, tune func(*Config)) *env {
	e := &env{t: t, clock: &fakeClock{t: time.Unix(1000, 0)}, recs: &fakeRecords{recs: map[int64]*metapb.LeaseRecord{}}, keys: &fakeKeys{kv: map[string]int64{}}}
	e.cfg = Config{Records: e.recs, Keys: e.keys, Clock: e.clock, MinTTL: 2, Extend: 2 * time.Second, CheckpointInterval: time.Minute, RevokeGrace: 10 * time.Second,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tune != nil {
		tune(&e.cfg)
	}
	return e
}

// lessor returns a lessor promoted in term and indexed (its first Tick).
func (e *env) lessor(term uint64) *Lessor {
	e.t.Helper()
	l, err := New(e.cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	if err := l.Promote(context.Background(), term); err != nil {
		e.t.Fatal(err)
	}
	l.Tick()
	if !l.Stats().Indexed {
		e.t.Fatal("not indexed after the first tick")
	}
	return l
}

func (e *env) grant(l *Lessor, id, ttl int64) int64 {
	e.t.Helper()
	got, _, err := l.Grant(context.Background(), id, ttl)
	if err != nil {
		e.t.Fatal(err)
	}
	return got
}

// attachPut attaches key to id and puts it, as a gateway does.
func (e *env) attachPut(l *Lessor, id int64, key string) {
	e.t.Helper()
	if err := l.Attach(id, [][]byte{[]byte(key)}); err != nil {
		e.t.Fatal(err)
	}
	e.keys.put(key, id)
}

func ttlOf(t *testing.T, l *Lessor, id int64) int64 {
	t.Helper()
	st, err := l.TimeToLive(id, false)
	if err != nil {
		t.Fatalf("time to live of %x: %v", id, err)
	}
	return st.TTL
}

func TestGrantRules(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxLeases = 3 })
	l, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := l.Grant(context.Background(), 1, 10); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("grant before Promote: %v", err)
	}
	if err := l.Promote(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	// Below the minimum: raised to it and reported so (etcd).
	if id, ttl, err := l.Grant(context.Background(), 1, 1); err != nil || id != 1 || ttl != 2 {
		t.Fatalf("grant of TTL 1: id %d ttl %d %v, want 1 2", id, ttl, err)
	}
	if _, _, err := l.Grant(context.Background(), 1, 10); !errors.Is(err, ErrExists) {
		t.Fatalf("grant of an existing id: %v", err)
	}
	if _, _, err := l.Grant(context.Background(), 2, MaxTTL+1); !errors.Is(err, ErrTTLTooLarge) {
		t.Fatalf("grant above MaxTTL: %v", err)
	}
	id, ttl, err := l.Grant(context.Background(), 0, MaxTTL)
	if err != nil || id <= 0 || ttl != MaxTTL {
		t.Fatalf("grant with id 0: id %d ttl %d %v, want a positive id", id, ttl, err)
	}
	if r := e.recs.get(id); r == nil || r.GetTtl() != MaxTTL {
		t.Fatalf("record of %x: %v", id, r)
	}
	e.grant(l, 3, 5)
	if _, _, err := l.Grant(context.Background(), 4, 5); kvpb.CodeOf(err) != kvpb.ErrorCode_RESOURCE_EXHAUSTED {
		t.Fatalf("grant past MaxLeases: %v", err)
	}
	ids, err := l.Leases()
	if err != nil || len(ids) != 3 {
		t.Fatalf("leases %v %v", ids, err)
	}
}

// A lease expires at its TTL unless kept alive; its expiry deletes the
// keys still attached to it, not a key re-put without it, and its record.
func TestExpiryAndKeepAlive(t *testing.T) {
	e := newEnv(t, nil)
	l := e.lessor(1)
	e.grant(l, 7, 10)
	e.attachPut(l, 7, "a")
	e.attachPut(l, 7, "b")
	e.attachPut(l, 7, "moved")
	e.keys.put("moved", 0) // re-put without the lease
	e.clock.advance(9 * time.Second)
	l.Tick()
	if ttl := ttlOf(t, l, 7); ttl != 1 {
		t.Fatalf("TTL after 9 s of 10: %d", ttl)
	}
	if ttl, err := l.KeepAlive(context.Background(), 7); err != nil || ttl != 10 {
		t.Fatalf("keepalive: %d %v", ttl, err)
	}
	e.clock.advance(9 * time.Second)
	l.Tick()
	if !e.keys.has("a") || ttlOf(t, l, 7) != 1 {
		t.Fatal("kept-alive lease expired early")
	}
	e.clock.advance(time.Second)
	// Expired but not yet revoked: it can no longer be renewed.
	if _, err := l.KeepAlive(context.Background(), 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("keepalive of an expired lease: %v", err)
	}
	l.Tick()
	if e.keys.has("a") || e.keys.has("b") {
		t.Fatal("expired lease's keys remain")
	}
	if !e.keys.has("moved") {
		t.Fatal("a key re-put without the lease was deleted")
	}
	if e.recs.get(7) != nil {
		t.Fatal("expired lease's record remains")
	}
	if _, err := l.TimeToLive(7, false); !errors.Is(err, ErrNotFound) {
		t.Fatalf("time to live after expiry: %v", err)
	}
	if err := l.Attach(7, [][]byte{[]byte("c")}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("attach after expiry: %v", err)
	}
	if st := l.Stats(); st.Leases != 0 || st.Keys != 0 {
		t.Fatalf("stats after expiry: %+v", st)
	}
}

// The remaining TTL survives a promotion through its checkpoint (plus
// Extend), is not reset to the full TTL, and a keepalive clears the
// checkpoint so that the next promotion does not resume from the old one.
func TestCheckpointAndPromotion(t *testing.T) {
	e := newEnv(t, nil)
	l1 := e.lessor(1)
	e.grant(l1, 5, 600)
	e.grant(l1, 6, 60) // not longer than the interval: never checkpointed
	e.clock.advance(50 * time.Second)
	if _, err := l1.KeepAlive(context.Background(), 6); err != nil {
		t.Fatal(err)
	}
	e.clock.advance(50 * time.Second)
	l1.Tick()
	if r := e.recs.get(5); r.GetRemainingTtl() != 500 {
		t.Fatalf("checkpointed record: %v, want remaining 500", r)
	}
	if r := e.recs.get(6); r.GetRemainingTtl() != 0 {
		t.Fatalf("short lease checkpointed: %v", r)
	}
	l1.Demote()
	if _, err := l1.TimeToLive(5, false); !errors.Is(err, ErrNotPrimary) {
		t.Fatalf("demoted lessor answered: %v", err)
	}
	e.clock.advance(3 * time.Second) // the election
	l2 := e.lessor(2)
	if ttl := ttlOf(t, l2, 5); ttl != 502 {
		t.Fatalf("after promotion: TTL %d, want the checkpoint's 500 + 2 s extension", ttl)
	}
	if ttl := ttlOf(t, l2, 6); ttl != 62 {
		t.Fatalf("short lease after promotion: TTL %d, want its full 60 + 2", ttl)
	}
	writes := e.recs.writes
	if _, err := l2.KeepAlive(context.Background(), 5); err != nil {
		t.Fatal(err)
	}
	if r := e.recs.get(5); r.GetRemainingTtl() != 0 || e.recs.writes != writes+1 {
		t.Fatalf("keepalive did not clear the checkpoint: %v", r)
	}
	if _, err := l2.KeepAlive(context.Background(), 5); err != nil || e.recs.writes != writes+1 {
		t.Fatalf("second keepalive wrote again (%v)", err)
	}
	l2.Demote()
	l3 := e.lessor(3)
	if ttl := ttlOf(t, l3, 5); ttl != 602 {
		t.Fatalf("after a keepalive and a promotion: TTL %d, want 600 + 2", ttl)
	}
}

// With checkpoints off (etcd's default) a promotion resets the TTL: what
// checkpoints are for.
func TestNoCheckpointResets(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.CheckpointInterval = -1 })
	l1 := e.lessor(1)
	e.grant(l1, 5, 600)
	e.clock.advance(100 * time.Second)
	l1.Tick()
	l1.Demote()
	if ttl := ttlOf(t, e.lessor(2), 5); ttl != 602 {
		t.Fatalf("TTL %d, want the full 600 + 2 without checkpoints", ttl)
	}
}

// Revoke deletes the attached keys and the record before it returns; a
// put that checked the lease before the revocation and applied after is
// deleted RevokeGrace later; a key whose lease never existed (left by an
// older lessor) is deleted by the first sweep.
func TestRevokeAndRaces(t *testing.T) {
	e := newEnv(t, nil)
	e.keys.put("orphan", 99)
	e.keys.put("plain", 0)
	l := e.lessor(1)
	if e.keys.has("orphan") || !e.keys.has("plain") {
		t.Fatal("the first sweep did not delete exactly the key of a missing lease")
	}
	e.grant(l, 8, 60)
	e.attachPut(l, 8, "x")
	if err := l.Attach(8, [][]byte{[]byte("late")}); err != nil { // put still in flight
		t.Fatal(err)
	}
	if err := l.Revoke(context.Background(), 8); err != nil {
		t.Fatal(err)
	}
	if e.keys.has("x") || e.recs.get(8) != nil {
		t.Fatal("revoke returned before its key and record were gone")
	}
	if err := l.Revoke(context.Background(), 8); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	e.keys.put("late", 8) // the in-flight put applies
	e.clock.advance(11 * time.Second)
	l.Tick()
	if e.keys.has("late") {
		t.Fatal("a put that raced its lease's revocation outlived the grace")
	}
}

// Revoke waits for the term's first sweep, and a record left revoking by a
// failed-over lessor is finished by the next one.
func TestRevokeWaitsForIndexAndResumes(t *testing.T) {
	e := newEnv(t, nil)
	e.recs.recs[4] = &metapb.LeaseRecord{Id: 4, Ttl: 60, Revoking: true}
	e.keys.put("k", 4)
	l, err := New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.Promote(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if err := l.Revoke(ctx, 4); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("revoke before the index: %v, want to wait", err)
	}
	if _, err := l.KeepAlive(context.Background(), 4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("keepalive of a revoking lease: %v", err)
	}
	l.Tick()
	if e.keys.has("k") || e.recs.get(4) != nil {
		t.Fatal("the revocation left by the last lessor was not finished")
	}
}

func TestKeyBounds(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.MaxKeysPerLease = 2; c.MaxKeys = 3 })
	l := e.lessor(1)
	e.grant(l, 1, 60)
	e.grant(l, 2, 60)
	e.attachPut(l, 1, "a")
	e.attachPut(l, 1, "b")
	e.attachPut(l, 1, "a") // again: no new entry
	if err := l.Attach(1, [][]byte{[]byte("c")}); kvpb.CodeOf(err) != kvpb.ErrorCode_RESOURCE_EXHAUSTED {
		t.Fatalf("attach past MaxKeysPerLease: %v", err)
	}
	e.attachPut(l, 2, "c")
	if err := l.Attach(2, [][]byte{[]byte("d")}); kvpb.CodeOf(err) != kvpb.ErrorCode_RESOURCE_EXHAUSTED {
		t.Fatalf("attach past MaxKeys: %v", err)
	}
	st, err := l.TimeToLive(1, true)
	if err != nil || len(st.Keys) != 2 || string(st.Keys[0]) != "a" || string(st.Keys[1]) != "b" {
		t.Fatalf("keys of lease 1: %q %v", st.Keys, err)
	}
}

// A sweep rebuilds the index: a new lessor learns the keys attached under
// the last one, and forgets keys no longer attached.
func TestSweepRebuildsIndex(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SweepInterval = time.Minute })
	l1 := e.lessor(1)
	e.grant(l1, 3, 600)
	e.attachPut(l1, 3, "a")
	e.attachPut(l1, 3, "b")
	l1.Demote()
	l2 := e.lessor(2)
	if st, _ := l2.TimeToLive(3, true); len(st.Keys) != 2 {
		t.Fatalf("keys after promotion: %q", st.Keys)
	}
	e.keys.put("b", 0)
	e.clock.advance(11 * time.Second) // the second sweep, RevokeGrace after the first
	l2.Tick()
	if st, _ := l2.TimeToLive(3, true); len(st.Keys) != 1 || l2.Stats().Keys != 1 {
		t.Fatalf("keys after a sweep: %q (%+v)", st.Keys, l2.Stats())
	}
}

// Settle checkpoints every lease, short ones included: a planned handover
// resumes each where it was.
func TestSettle(t *testing.T) {
	e := newEnv(t, nil)
	l1 := e.lessor(1)
	e.grant(l1, 1, 30) // shorter than the interval: no periodic checkpoint
	e.clock.advance(10 * time.Second)
	if err := l1.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	l1.Demote()
	if ttl := ttlOf(t, e.lessor(2), 1); ttl != 22 {
		t.Fatalf("after a settled handover: TTL %d, want 20 + 2", ttl)
	}
}

// A key attached just before a sweep whose put has not applied when the
// sweep's scan passes it stays in the index: a revoke must still delete
// it.
func TestSweepKeepsAKeyAttachedJustBefore(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.SweepInterval = time.Minute })
	l := e.lessor(1)
	e.grant(l, 4, 600)
	if err := l.Attach(4, [][]byte{[]byte("late")}); err != nil {
		t.Fatal(err)
	}
	// The sweep runs before the put applies: the scan does not see it.
	e.clock.advance(11 * time.Second)
	l.Tick()
	if st, _ := l.TimeToLive(4, true); len(st.Keys) != 1 {
		t.Fatalf("keys after a sweep that missed the put: %q (%+v)", st.Keys, l.Stats())
	}
}
