package lease

import (
	"bytes"
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// MaxTTL is the largest TTL a lease may be granted, in seconds (etcd's
// MaxLeaseTTL).
const MaxTTL int64 = 9000000000

// Defaults (see Config).
const (
	// DefaultCheckpointInterval is etcd's lease checkpoint interval.
	DefaultCheckpointInterval = 5 * time.Minute
	// DefaultSweepInterval bounds how long a key can outlive its lease
	// through the put-after-revoke race (see the package comment). A sweep
	// reads the whole user keyspace, values included (a Range cannot
	// return leases without values), so it costs a read of the data once
	// per interval: measured 122,000 keys/s for 100-byte values on one
	// in-process node (BenchmarkLeaseSweep in internal/server), so about
	// 80 s of scanning per 10 million such keys.
	DefaultSweepInterval = 10 * time.Minute
	// DefaultRevokeGrace is twice the router's default request timeout: a
	// put that checked its lease before a revocation has applied or
	// failed by then.
	DefaultRevokeGrace = 10 * time.Second
	// DefaultMaxLeases bounds the leases held in memory: about 200 bytes
	// each without keys, so 200 MiB at the bound.
	DefaultMaxLeases = 1 << 20
	// DefaultMaxKeysPerLease bounds one lease's keys, and so the size of
	// the write that deletes them from a range (about 10000 guarded
	// deletes, 1-2 MiB with etcd-sized keys).
	DefaultMaxKeysPerLease = 10000
	// DefaultMaxKeys bounds the index: every lease's attached keys.
	DefaultMaxKeys = 1 << 22
)

const (
	// maxRevokesPerTick bounds the expiries one Tick revokes: with a
	// 100 ms tick, 1000 a second, etcd's default lease revoke rate.
	maxRevokesPerTick = 100
	// maxCheckpointBatch is the most records one checkpoint write carries
	// (etcd's maxLeaseCheckpointBatchSize).
	maxCheckpointBatch = 1000
	// maxGraced bounds the revocations waiting for their second deletion;
	// past it the oldest is dropped (the next sweep covers it).
	maxGraced = 4096
	// ioTimeout bounds each write or scan the lessor makes.
	ioTimeout = 10 * time.Second
	// retryAfter is how soon a failed revocation or sweep is tried again.
	retryAfter = time.Second
)

// Errors, with etcd's messages (etcdapi translates them by code).
var (
	ErrNotFound    = kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "etcdserver: requested lease not found")
	ErrExists      = kvpb.Errorf(kvpb.ErrorCode_LEASE_EXIST, "etcdserver: lease already exists")
	ErrTTLTooLarge = kvpb.Errorf(kvpb.ErrorCode_LEASE_TTL_TOO_LARGE, "etcdserver: too large lease TTL")
	// ErrNotPrimary: this lessor does not serve (its node does not lead
	// the meta range, or leads it in another term).
	ErrNotPrimary = kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "lease: this node's lessor does not serve")
)

// Clock reads the time. Only differences of its readings are used, so
// time.Now (monotonic) is right; tests use a fake.
type Clock interface {
	Now() time.Time
}

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

// Records persists lease records in the meta range. Implementations write
// through this node's meta replica; they are called without the Lessor's
// locks, one write at a time.
type Records interface {
	// Load reads every lease record, linearizably.
	Load(ctx context.Context) ([]*metapb.LeaseRecord, error)
	// Write puts puts and deletes the records of deletes in one write.
	Write(ctx context.Context, puts []*metapb.LeaseRecord, deletes []int64) error
}

// Keys reaches the user keyspace. Implementations go through the router;
// they may be called concurrently.
type Keys interface {
	// Delete deletes each of keys (etcd keys) whose lease is still id,
	// in one write per range (each delete guarded by the key's lease), and
	// returns once every range has applied its write.
	Delete(ctx context.Context, id int64, keys [][]byte) error
	// Scan calls fn for every live user key that has a lease.
	Scan(ctx context.Context, fn func(key []byte, lease int64) error) error
}

// Config configures a Lessor.
type Config struct {
	Records Records
	Keys    Keys
	// Clock is time.Now if nil.
	Clock Clock
	// MinTTL is the smallest TTL granted, in seconds: a grant below it is
	// raised to it (etcd: 1.5 election timeouts, rounded up).
	MinTTL int64
	// Extend is added to every lease's expiry on Promote: the time clients
	// could not reach any lessor while the meta range elected its new
	// leader (etcd extends by the election timeout).
	Extend time.Duration
	// CheckpointInterval is how often the remaining TTL of each lease whose
	// TTL is longer is persisted (DefaultCheckpointInterval if 0; negative
	// turns checkpoints off, etcd's default).
	CheckpointInterval time.Duration
	// SweepInterval, RevokeGrace, MaxLeases, MaxKeysPerLease and MaxKeys:
	// see the defaults.
	SweepInterval   time.Duration
	RevokeGrace     time.Duration
	MaxLeases       int
	MaxKeysPerLease int
	MaxKeys         int
	Logger          *slog.Logger
}

// Lessor serves leases while its node leads the meta range. It is safe for
// concurrent use.
type Lessor struct {
	cfg Config
	log *slog.Logger

	// writeMu serialises every write of lease records (and the memory
	// change that goes with it), so that a lease's record changes in the
	// order its state in memory did: a checkpoint cannot land after a
	// keepalive cleared it, or after a revocation deleted the record.
	// Lock order: writeMu before mu.
	writeMu sync.Mutex
	mu      struct {
		sync.Mutex
		// term is the meta leader term served (0: none).
		term   uint64
		ctx    context.Context
		cancel context.CancelFunc
		leases map[int64]*lease
		// pending holds the ids of grants being written.
		pending map[int64]bool
		expiry  expiryHeap
		// nkeys counts the index entries. Invariant: nkeys is the sum of
		// len(l.keys) over leases.
		nkeys int
		// gen numbers the attaches; a sweep gives the entries it finds
		// its starting gen. A sweep drops the entries it did not find
		// only if they are no newer than the previous sweep's start
		// (lastSweepGen): a put attached just before this sweep's scan
		// may not have applied when the scan passed its key.
		gen, lastSweepGen uint64
		// indexed is closed once the term's first sweep has finished.
		indexed     chan struct{}
		sweeps      int
		nextSweep   time.Time
		nextCheck   time.Time
		graced      []graced
		checkpoints int
	}
}

// lease is one lease in memory.
type lease struct {
	id, ttl int64
	expiry  time.Time
	// persisted is the remaining_ttl its record holds (0: the full ttl).
	persisted int64
	revoking  bool
	// keys maps each attached key to the generation of its last attach.
	keys map[string]uint64
	// idx is the lease's position in the expiry heap.
	idx int
}

// graced is a revocation waiting for its second deletion of keys.
type graced struct {
	id   int64
	keys [][]byte
	at   time.Time
}

// New creates a Lessor that serves nothing until Promote.
func New(cfg Config) (*Lessor, error) {
	if cfg.Records == nil || cfg.Keys == nil {
		return nil, errors.New("lease: Records and Keys are required")
	}
	if cfg.Clock == nil {
		cfg.Clock = realClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MinTTL < 1 {
		cfg.MinTTL = 1
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = DefaultSweepInterval
	}
	if cfg.RevokeGrace <= 0 {
		cfg.RevokeGrace = DefaultRevokeGrace
	}
	if cfg.MaxLeases <= 0 {
		cfg.MaxLeases = DefaultMaxLeases
	}
	if cfg.MaxKeysPerLease <= 0 {
		cfg.MaxKeysPerLease = DefaultMaxKeysPerLease
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultMaxKeys
	}
	return &Lessor{cfg: cfg, log: cfg.Logger}, nil
}

// Term returns the meta leader term the lessor serves (0: none).
func (l *Lessor) Term() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.mu.term
}

// Promote makes the lessor serve term: it loads every lease record and
// restarts each lease's clock at its remaining TTL plus Config.Extend. A
// Promote for the term already served does nothing.
func (l *Lessor) Promote(ctx context.Context, term uint64) error {
	if term == 0 {
		return errors.New("lease: promote to term 0")
	}
	if l.Term() == term {
		return nil
	}
	recs, err := l.cfg.Records.Load(ctx)
	if err != nil {
		return fmt.Errorf("lease: load records: %w", err)
	}
	if len(recs) > l.cfg.MaxLeases {
		l.log.Warn("more lease records than MaxLeases; serving them all", "records", len(recs), "max", l.cfg.MaxLeases)
	}
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.term == term {
		return nil // a concurrent Promote of the same term won
	}
	l.demoteLocked()
	now := l.cfg.Clock.Now()
	l.mu.term = term
	l.mu.ctx, l.mu.cancel = context.WithCancel(context.Background())
	l.mu.leases = make(map[int64]*lease, len(recs))
	l.mu.pending = make(map[int64]bool)
	l.mu.expiry = nil
	l.mu.nkeys = 0
	l.mu.indexed = make(chan struct{})
	l.mu.sweeps = 0
	l.mu.nextSweep = now
	l.mu.nextCheck = now.Add(l.cfg.CheckpointInterval)
	l.mu.graced = nil
	for _, rec := range recs {
		le := &lease{id: rec.GetId(), ttl: rec.GetTtl(), persisted: rec.GetRemainingTtl(), revoking: rec.GetRevoking(), keys: map[string]uint64{}}
		rem := le.ttl
		if le.persisted > 0 {
			rem = le.persisted
		}
		le.expiry = now.Add(l.cfg.Extend + seconds(rem))
		if le.revoking {
			le.expiry = now // finish the revocation at once
		}
		l.mu.leases[le.id] = le
		heap.Push(&l.mu.expiry, le)
	}
	l.log.Info("lessor promoted", "term", term, "leases", len(recs))
	return nil
}

// Demote stops serving: leases are forgotten (the next lessor loads them)
// and work in progress is cancelled.
func (l *Lessor) Demote() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.term != 0 {
		l.log.Info("lessor demoted", "term", l.mu.term)
	}
	l.demoteLocked()
}

func (l *Lessor) demoteLocked() {
	if l.mu.cancel != nil {
		l.mu.cancel()
	}
	l.mu.term, l.mu.ctx, l.mu.cancel = 0, nil, nil
	l.mu.leases, l.mu.pending, l.mu.expiry, l.mu.graced = nil, nil, nil, nil
	l.mu.nkeys = 0
}

// serving returns the term's context, or ErrNotPrimary. Called with mu
// held.
func (l *Lessor) servingLocked() (context.Context, error) {
	if l.mu.term == 0 {
		return nil, ErrNotPrimary
	}
	return l.mu.ctx, nil
}

// liveLocked returns the lease id if it can be kept alive or take keys:
// it exists, is not being revoked and has not expired.
func (l *Lessor) liveLocked(id int64, now time.Time) (*lease, error) {
	if _, err := l.servingLocked(); err != nil {
		return nil, err
	}
	le := l.mu.leases[id]
	if le == nil || le.revoking || !now.Before(le.expiry) {
		return nil, ErrNotFound
	}
	return le, nil
}

// Grant grants lease id (a fresh random positive id if 0) for ttl seconds
// (raised to Config.MinTTL) and returns the id and the TTL granted.
// Errors: ErrTTLTooLarge, ErrExists, RESOURCE_EXHAUSTED past MaxLeases,
// ErrNotPrimary, or the record's write error (the lease may then exist:
// AMBIGUOUS).
func (l *Lessor) Grant(ctx context.Context, id, ttl int64) (int64, int64, error) {
	if ttl > MaxTTL {
		return 0, 0, ErrTTLTooLarge
	}
	ttl = max(ttl, l.cfg.MinTTL)
	l.mu.Lock()
	if _, err := l.servingLocked(); err != nil {
		l.mu.Unlock()
		return 0, 0, err
	}
	term := l.mu.term
	if len(l.mu.leases)+len(l.mu.pending) >= l.cfg.MaxLeases {
		l.mu.Unlock()
		return 0, 0, kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "lease: %d leases already (bound MaxLeases)", l.cfg.MaxLeases)
	}
	if id == 0 {
		for id == 0 || l.mu.leases[id] != nil || l.mu.pending[id] {
			id = rand.Int64N(math.MaxInt64) + 1
		}
	} else if l.mu.leases[id] != nil || l.mu.pending[id] {
		l.mu.Unlock()
		return 0, 0, ErrExists
	}
	l.mu.pending[id] = true
	l.mu.Unlock()

	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	err := l.cfg.Records.Write(ctx, []*metapb.LeaseRecord{{Id: id, Ttl: ttl}}, nil)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.term != term {
		return 0, 0, kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "lease: the lessor lost its term while granting lease %d (err: %v)", id, err)
	}
	delete(l.mu.pending, id)
	if err != nil {
		return 0, 0, err
	}
	le := &lease{id: id, ttl: ttl, expiry: l.cfg.Clock.Now().Add(seconds(ttl)), keys: map[string]uint64{}}
	l.mu.leases[id] = le
	heap.Push(&l.mu.expiry, le)
	return id, ttl, nil
}

// KeepAlive renews lease id to its full TTL and returns the TTL. A lease
// whose remaining TTL was checkpointed has its record cleared first (one
// meta write, at most once per checkpoint), so that a new lessor never
// resumes it from a remaining TTL older than this renewal. Errors:
// ErrNotFound (also for a lease that expired and is being revoked),
// ErrNotPrimary, or the clearing write's error.
func (l *Lessor) KeepAlive(ctx context.Context, id int64) (int64, error) {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	le, err := l.liveLocked(id, l.cfg.Clock.Now())
	if err != nil {
		l.mu.Unlock()
		return 0, err
	}
	term := l.mu.term
	if le.persisted > 0 {
		l.mu.Unlock()
		if err := l.cfg.Records.Write(ctx, []*metapb.LeaseRecord{{Id: id, Ttl: le.ttl}}, nil); err != nil {
			return 0, err
		}
		l.mu.Lock()
		if l.mu.term != term || l.mu.leases[id] != le {
			l.mu.Unlock()
			return 0, ErrNotPrimary
		}
		le.persisted = 0
	}
	defer l.mu.Unlock()
	le.expiry = l.cfg.Clock.Now().Add(seconds(le.ttl))
	heap.Fix(&l.mu.expiry, le.idx)
	return le.ttl, nil
}

// Status is a lease as TimeToLive reports it.
type Status struct {
	ID int64
	// TTL is the remaining TTL in whole seconds, GrantedTTL the TTL.
	TTL, GrantedTTL int64
	// Keys are the attached etcd keys, sorted (with keys asked for); a key
	// re-put without the lease since may be listed: the caller checks.
	Keys [][]byte
}

// TimeToLive reports lease id. Errors: ErrNotFound, ErrNotPrimary.
func (l *Lessor) TimeToLive(id int64, withKeys bool) (Status, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Clock.Now()
	le, err := l.liveLocked(id, now)
	if err != nil {
		return Status{}, err
	}
	st := Status{ID: id, TTL: int64(le.expiry.Sub(now).Seconds()), GrantedTTL: le.ttl}
	if withKeys {
		for k := range le.keys {
			st.Keys = append(st.Keys, []byte(k))
		}
		slices.SortFunc(st.Keys, bytes.Compare)
	}
	return st, nil
}

// Leases returns the ids of every lease not being revoked, sorted.
func (l *Lessor) Leases() ([]int64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.servingLocked(); err != nil {
		return nil, err
	}
	out := make([]int64, 0, len(l.mu.leases))
	for id, le := range l.mu.leases {
		if !le.revoking {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out, nil
}

// Attach checks that lease id is live and records keys as attached to it;
// call it before sending the put that attaches them. Errors: ErrNotFound,
// ErrNotPrimary, RESOURCE_EXHAUSTED past MaxKeysPerLease or MaxKeys.
func (l *Lessor) Attach(id int64, keys [][]byte) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	le, err := l.liveLocked(id, l.cfg.Clock.Now())
	if err != nil {
		return err
	}
	added := 0
	for _, k := range keys {
		if _, ok := le.keys[string(k)]; !ok {
			added++
		}
	}
	if len(le.keys)+added > l.cfg.MaxKeysPerLease {
		return kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "lease: lease %x has %d keys already (bound MaxKeysPerLease %d)", id, len(le.keys), l.cfg.MaxKeysPerLease)
	}
	if l.mu.nkeys+added > l.cfg.MaxKeys {
		return kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "lease: %d keys attached to leases already (bound MaxKeys %d)", l.mu.nkeys, l.cfg.MaxKeys)
	}
	l.mu.gen++
	for _, k := range keys {
		le.keys[string(k)] = l.mu.gen
	}
	l.mu.nkeys += added
	return nil
}

// Revoke revokes lease id: it returns once every attached key is deleted
// and the record is gone. It waits for the term's first sweep (the index)
// first. Errors: ErrNotFound, ErrNotPrimary, or a write's error (the
// lease is then being revoked: Tick finishes it).
func (l *Lessor) Revoke(ctx context.Context, id int64) error {
	l.mu.Lock()
	_, err := l.servingLocked()
	indexed := l.mu.indexed
	termCtx := l.mu.ctx
	l.mu.Unlock()
	if err != nil {
		return err
	}
	select {
	case <-indexed:
	case <-termCtx.Done():
		return ErrNotPrimary
	case <-ctx.Done():
		return ctx.Err()
	}
	return l.revoke(ctx, id)
}

// revoke runs a revocation (see the package comment). Running it again,
// or twice at once, is harmless: every step is idempotent.
func (l *Lessor) revoke(ctx context.Context, id int64) error {
	l.writeMu.Lock()
	l.mu.Lock()
	if _, err := l.servingLocked(); err != nil {
		l.mu.Unlock()
		l.writeMu.Unlock()
		return err
	}
	term := l.mu.term
	le := l.mu.leases[id]
	if le == nil {
		l.mu.Unlock()
		l.writeMu.Unlock()
		return ErrNotFound
	}
	le.revoking = true
	rec := &metapb.LeaseRecord{Id: id, Ttl: le.ttl, RemainingTtl: le.persisted, Revoking: true}
	l.mu.Unlock()
	err := l.cfg.Records.Write(ctx, []*metapb.LeaseRecord{rec}, nil)
	l.writeMu.Unlock()
	if err != nil {
		l.retryRevoke(term, le)
		return err
	}

	l.mu.Lock()
	keys := make([][]byte, 0, len(le.keys))
	for k := range le.keys {
		keys = append(keys, []byte(k))
	}
	l.mu.Unlock()
	if len(keys) > 0 {
		if err := l.cfg.Keys.Delete(ctx, id, keys); err != nil {
			l.retryRevoke(term, le)
			return fmt.Errorf("lease: delete the keys of lease %x: %w", id, err)
		}
	}

	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	if err := l.cfg.Records.Write(ctx, nil, []int64{id}); err != nil {
		l.retryRevoke(term, le)
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.term != term || l.mu.leases[id] != le {
		return nil // demoted meanwhile, or a concurrent revocation finished
	}
	delete(l.mu.leases, id)
	heap.Remove(&l.mu.expiry, le.idx)
	l.mu.nkeys -= len(le.keys)
	if len(keys) > 0 {
		if len(l.mu.graced) >= maxGraced {
			l.mu.graced = l.mu.graced[1:]
		}
		l.mu.graced = append(l.mu.graced, graced{id: id, keys: keys, at: l.cfg.Clock.Now().Add(l.cfg.RevokeGrace)})
	}
	return nil
}

// retryRevoke makes Tick try a failed revocation again soon.
func (l *Lessor) retryRevoke(term uint64, le *lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.mu.term != term || l.mu.leases[le.id] != le {
		return
	}
	le.expiry = l.cfg.Clock.Now().Add(retryAfter)
	heap.Fix(&l.mu.expiry, le.idx)
}

// Tick does the lessor's periodic work (see the package comment); call it
// every TickInterval from one goroutine. It does nothing while the lessor
// does not serve. Errors are logged and retried at a later Tick.
func (l *Lessor) Tick() {
	l.mu.Lock()
	ctx, err := l.servingLocked()
	if err != nil {
		l.mu.Unlock()
		return
	}
	now := l.cfg.Clock.Now()
	sweep := !now.Before(l.mu.nextSweep)
	l.mu.Unlock()
	if sweep {
		l.sweep(ctx)
	}
	l.mu.Lock()
	if l.mu.ctx != ctx || !isClosed(l.mu.indexed) {
		l.mu.Unlock()
		return
	}
	var expired []int64
	for len(expired) < maxRevokesPerTick && len(l.mu.expiry) > 0 && !now.Before(l.mu.expiry[0].expiry) {
		le := l.mu.expiry[0]
		expired = append(expired, le.id)
		// Expired: no keepalive may renew it any more. Out of the heap's
		// way until this revocation has run (it reschedules itself if it
		// fails).
		le.revoking = true
		le.expiry = now.Add(retryAfter)
		heap.Fix(&l.mu.expiry, le.idx)
	}
	var due []graced
	for len(l.mu.graced) > 0 && !now.Before(l.mu.graced[0].at) {
		due = append(due, l.mu.graced[0])
		l.mu.graced = l.mu.graced[1:]
	}
	check := l.cfg.CheckpointInterval > 0 && !now.Before(l.mu.nextCheck)
	if check {
		l.mu.nextCheck = now.Add(l.cfg.CheckpointInterval)
	}
	l.mu.Unlock()

	for _, id := range expired {
		ictx, cancel := context.WithTimeout(ctx, ioTimeout)
		err := l.revoke(ictx, id)
		cancel()
		if err != nil && !errors.Is(err, ErrNotFound) {
			l.log.Warn("lease expired but not revoked yet; retrying", "lease", id, "err", err)
		}
	}
	for _, g := range due {
		ictx, cancel := context.WithTimeout(ctx, ioTimeout)
		err := l.cfg.Keys.Delete(ictx, g.id, g.keys)
		cancel()
		if err != nil {
			l.log.Warn("second deletion of a revoked lease's keys failed; the next sweep deletes what is left", "lease", g.id, "err", err)
		}
	}
	if check {
		if err := l.checkpoint(ctx, false /* all */); err != nil {
			l.log.Warn("lease checkpoint failed; retrying at the next interval", "err", err)
		}
	}
}

// Settle checkpoints every lease now, whatever its TTL: call it before
// handing the meta range's leadership over, so that the next lessor
// resumes every lease where it is (plus Extend). It does nothing while
// the lessor does not serve.
func (l *Lessor) Settle(ctx context.Context) error {
	l.mu.Lock()
	tctx, err := l.servingLocked()
	l.mu.Unlock()
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(tctx, cancel)
	defer stop()
	return l.checkpoint(ctx, true /* all */)
}

// checkpoint persists the remaining TTL of every lease (all) or of every
// lease whose TTL is longer than the checkpoint interval (etcd's rule: a
// shorter lease is at most its TTL from the end anyway),
// maxCheckpointBatch records per write.
func (l *Lessor) checkpoint(ctx context.Context, all bool) error {
	minTTL := int64(l.cfg.CheckpointInterval / time.Second)
	l.mu.Lock()
	term := l.mu.term
	var ids []int64
	for id, le := range l.mu.leases {
		if !le.revoking && (all || le.ttl > minTTL) {
			ids = append(ids, id)
		}
	}
	l.mu.Unlock()
	for len(ids) > 0 {
		n := min(len(ids), maxCheckpointBatch)
		batch := ids[:n]
		ids = ids[n:]
		if err := l.checkpointBatch(ctx, term, batch); err != nil {
			return fmt.Errorf("lease: checkpoint of %d leases: %w", len(batch), err)
		}
	}
	return nil
}

func (l *Lessor) checkpointBatch(ctx context.Context, term uint64, ids []int64) error {
	l.writeMu.Lock()
	defer l.writeMu.Unlock()
	l.mu.Lock()
	if l.mu.term != term {
		l.mu.Unlock()
		return ErrNotPrimary
	}
	now := l.cfg.Clock.Now()
	var recs []*metapb.LeaseRecord
	var les []*lease
	for _, id := range ids {
		le := l.mu.leases[id]
		if le == nil || le.revoking {
			continue
		}
		// Rounded up: a new lessor may keep a lease up to a second long,
		// never expire it early.
		rem := int64(math.Ceil(le.expiry.Sub(now).Seconds()))
		rem = min(max(rem, 1), le.ttl)
		recs = append(recs, &metapb.LeaseRecord{Id: id, Ttl: le.ttl, RemainingTtl: rem})
		les = append(les, le)
	}
	l.mu.Unlock()
	if len(recs) == 0 {
		return nil
	}
	ictx, cancel := context.WithTimeout(ctx, ioTimeout)
	defer cancel()
	if err := l.cfg.Records.Write(ictx, recs, nil); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, le := range les {
		le.persisted = recs[i].GetRemainingTtl()
	}
	l.mu.checkpoints += len(recs)
	return nil
}

// sweep scans the user keyspace: it rebuilds the index of the term's
// leases from the keys found (keeping the entries attached since it
// began) and deletes the keys whose lease does not exist.
func (l *Lessor) sweep(ctx context.Context) {
	l.mu.Lock()
	// Entries this sweep confirms get gen0; attaches during it get more.
	l.mu.gen++
	gen0 := l.mu.gen
	l.mu.Unlock()
	found := map[int64]map[string]bool{}
	n := 0
	sctx, cancel := context.WithTimeout(ctx, 10*ioTimeout)
	err := l.cfg.Keys.Scan(sctx, func(key []byte, id int64) error {
		if n++; n > l.cfg.MaxKeys {
			return kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "lease: more than %d keys with leases (bound MaxKeys)", l.cfg.MaxKeys)
		}
		if found[id] == nil {
			found[id] = map[string]bool{}
		}
		found[id][string(key)] = true
		return nil
	})
	cancel()
	l.mu.Lock()
	if l.mu.ctx != ctx {
		l.mu.Unlock()
		return
	}
	now := l.cfg.Clock.Now()
	if err != nil {
		l.mu.nextSweep = now.Add(retryAfter)
		l.mu.Unlock()
		l.log.Warn("lease sweep failed; retrying", "err", err)
		return
	}
	orphans := map[int64][][]byte{}
	for id, ks := range found {
		le := l.mu.leases[id]
		if le == nil {
			for k := range ks {
				orphans[id] = append(orphans[id], []byte(k))
			}
			continue
		}
		for k := range ks {
			if _, ok := le.keys[k]; !ok {
				l.mu.nkeys++
			}
			le.keys[k] = max(le.keys[k], gen0)
		}
	}
	for id, le := range l.mu.leases {
		for k, g := range le.keys {
			if g <= l.mu.lastSweepGen && !found[id][k] {
				delete(le.keys, k)
				l.mu.nkeys--
			}
		}
	}
	l.mu.lastSweepGen = gen0
	l.mu.sweeps++
	if l.mu.sweeps == 1 {
		close(l.mu.indexed)
		// Once more after a grace: puts that attached under the last
		// lessor may still have been in flight.
		l.mu.nextSweep = now.Add(l.cfg.RevokeGrace)
	} else {
		l.mu.nextSweep = now.Add(l.cfg.SweepInterval)
	}
	l.mu.Unlock()
	for id, ks := range orphans {
		ictx, cancel := context.WithTimeout(ctx, ioTimeout)
		err := l.cfg.Keys.Delete(ictx, id, ks)
		cancel()
		if err != nil {
			l.log.Warn("deleting keys of a lease that does not exist failed; the next sweep retries", "lease", id, "keys", len(ks), "err", err)
			continue
		}
		l.log.Info("deleted keys that outlived their lease", "lease", id, "keys", len(ks))
	}
}

// Stats is what the lessor holds, for tests and metrics.
type Stats struct {
	Leases, Keys, Checkpoints, Sweeps int
	Indexed                           bool
}

// Stats reports the lessor's state.
func (l *Lessor) Stats() Stats {
	l.mu.Lock()
	defer l.mu.Unlock()
	return Stats{Leases: len(l.mu.leases), Keys: l.mu.nkeys, Checkpoints: l.mu.checkpoints, Sweeps: l.mu.sweeps, Indexed: l.mu.term != 0 && isClosed(l.mu.indexed)}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

func seconds(s int64) time.Duration {
	if s > int64(math.MaxInt64/time.Second) {
		return math.MaxInt64
	}
	return time.Duration(s) * time.Second
}

// expiryHeap orders leases by expiry, soonest first.
type expiryHeap []*lease

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expiry.Before(h[j].expiry) }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}
func (h *expiryHeap) Push(x any) {
	le := x.(*lease)
	le.idx = len(*h)
	*h = append(*h, le)
}
func (h *expiryHeap) Pop() any {
	old := *h
	le := old[len(old)-1]
	*h = old[:len(old)-1]
	return le
}
