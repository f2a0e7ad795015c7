package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/telemetry"
)

// Revisions hands out revisions (internal/tso). Implementations are safe
// for concurrent use. Next returns the first of n consecutive revisions,
// every one greater than any revision returned before Next was called,
// anywhere in the cluster.
type Revisions interface {
	Next(ctx context.Context, n int) (int64, error)
	// Current returns the cluster's newest revision: no write
	// acknowledged before the call has a higher one.
	Current(ctx context.Context) (int64, error)
}

// Config holds what every replica of a node shares.
type Config struct {
	// NodeID is this node's id, also its Raft id in every group.
	NodeID uint64
	Engine *storage.Engine
	// Revisions is the TSO client that numbers writes.
	Revisions Revisions
	// Signal tells the store's Ready loop that the replica of rangeID may
	// have a Ready; it must not block.
	Signal func(rangeID uint64)
	// SetAwake is called, with the replica's mutex held, when the replica
	// quiesces (awake false: it stops ticking until woken) or wakes up
	// (true). The store ticks only awake replicas. A replica starts awake.
	// It must not block or call into the replica. Nil: ignored.
	SetAwake func(r *Replica, awake bool)
	// Index, if set, is the key index every replica of the node shares
	// (bounded by KeyIndexSize keys for the whole node); nil gives each
	// replica its own.
	Index *eval.Index
	// SnapshotSlots, if set, bounds the Raft snapshots the node's replicas
	// build at once (a buffered channel of that capacity, shared): each
	// holds a whole range in memory while it is built. Nil: no bound.
	SnapshotSlots chan struct{}
	// OnSplit is called, from Apply, once a split this replica applied is
	// durable: the store creates the right-hand range's replica. leads
	// tells whether this replica led the splitting range then. Nil: no
	// splits expected (tests of a single range).
	OnSplit func(left, right *metapb.RangeDescriptor, leads bool)
	// OnSpanLost is called when a snapshot leaves the range with less than
	// it had (lost, a span this replica no longer holds): the replica
	// missed splits, whose new ranges this node must create, uninitialized,
	// to receive their own snapshots. It must not block. Nil: ignored.
	OnSpanLost func(rangeID uint64, lost keys.Span)
	// OnMerge is called, from Apply, once a merge this replica applied is
	// durable: the store drops its replica of right, whose range-local
	// state the merge deleted. Nil: ignored.
	OnMerge func(left, right *metapb.RangeDescriptor)
	// OnRemoved is called, from Apply, once this replica applied a replica
	// change that removed it from its range (desc, the range's new
	// descriptor, lists it no more): the store destroys it, so that a
	// later replica of the range on this node starts afresh.
	OnRemoved func(rangeID, replicaID uint64)
	// OnSpanGained is called when a snapshot leaves the range with more
	// than it had (gained): it missed merges, and the store drops its
	// replicas of the ranges merged away, whose data the snapshot
	// replaced. It must not block. Nil: ignored.
	OnSpanGained func(rangeID uint64, gained keys.Span)
	Logger       *slog.Logger
	// Metrics receives the node's Raft and storage observations and makes
	// its spans; nil observes nothing.
	Metrics *telemetry.Metrics

	// TickInterval is the wall time of one Raft tick.
	TickInterval time.Duration
	// ElectionTicks and HeartbeatTicks are Raft's timeouts in ticks.
	ElectionTicks, HeartbeatTicks int
	// LogTruncateEntries bounds the Raft log: once more entries than this are
	// applied beyond the truncation point, the log is truncated: to the
	// applied index, or on a leader to what its live followers have, as
	// long as the log stays within 8 times the bounds (followers behind
	// the truncation get a snapshot).
	LogTruncateEntries uint64
	// LogTruncateBytes bounds the Raft log by size the same way: once the
	// commands applied beyond the truncation point hold more bytes than
	// this, the log is truncated to the applied index. Raft keeps the log
	// in memory, so this bounds the memory too (to 8 times it while a
	// follower is behind): ten thousand entries of a bulk load's 64-put
	// transactions would hold 170 MiB.
	LogTruncateBytes uint64
	// MaxQueuedWrites bounds the writes waiting for the proposer; more are
	// refused as UNAVAILABLE (back-pressure), not queued without limit.
	MaxQueuedWrites int
	// MaxProposalBatch bounds how many queued writes one proposal takes
	// (and so one TSO call numbers).
	MaxProposalBatch int
	// KeyIndexSize bounds the keys the eval.Index remembers (roughly 100
	// bytes each): the node's shared Index, or each replica's own when
	// Index is nil; 0 turns the index off.
	KeyIndexSize int
	// QuiesceTicks is how many ticks a leader waits without a request
	// before it quiesces its range, once every replica has everything
	// (see quiesce.go); 0 never quiesces.
	QuiesceTicks int
	// Now reads the clock used for leases; nil means time.Now. A test-only
	// clock offset is applied here.
	Now func() time.Time
	// UnsafeNoReadLease serves linearizable reads from the applied state
	// without leadership or lease: it BREAKS linearizability on purpose,
	// so that the fault-injection harness can prove it notices. Never set
	// outside tests.
	UnsafeNoReadLease bool
}

// DefaultConfig returns etcd's default timing: 100 ms ticks, a 1 s election
// timeout.
func DefaultConfig() Config {
	return Config{
		TickInterval:       100 * time.Millisecond,
		ElectionTicks:      10,
		HeartbeatTicks:     1,
		LogTruncateEntries: 10000,
		LogTruncateBytes:   4 << 20,
		MaxQueuedWrites:    10000,
		MaxProposalBatch:   1024,
		KeyIndexSize:       1 << 19,
		QuiesceTicks:       10,
	}
}

// Validate reports a configuration that cannot work.
func (c *Config) Validate() error {
	switch {
	case c.NodeID == 0:
		return errors.New("replica: NodeID is 0")
	case c.Engine == nil:
		return errors.New("replica: no Engine")
	case c.Revisions == nil:
		return errors.New("replica: no Revisions")
	case c.Signal == nil:
		return errors.New("replica: no Signal")
	case c.TickInterval <= 0:
		return errors.New("replica: TickInterval must be positive")
	case c.HeartbeatTicks <= 0 || c.ElectionTicks <= c.HeartbeatTicks:
		return fmt.Errorf("replica: need 0 < HeartbeatTicks (%d) < ElectionTicks (%d)", c.HeartbeatTicks, c.ElectionTicks)
	case c.ElectionTicks < 4:
		return fmt.Errorf("replica: ElectionTicks %d leaves no room for a lease", c.ElectionTicks)
	case c.LogTruncateEntries == 0 || c.LogTruncateBytes == 0 || c.MaxQueuedWrites <= 0 || c.MaxProposalBatch <= 0:
		return errors.New("replica: limits must be positive")
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return nil
}

// Initial Raft position of a bootstrapped range: as in CockroachDB, the log
// starts at a non-zero index so that a replica created empty (index 0) is
// always behind and receives a snapshot.
const (
	initialIndex = 10
	initialTerm  = 5
)

// Bootstrap writes the initial state of a new range into b: its descriptor,
// a truncated log at initialIndex and an applied state whose voters are the
// descriptor's replicas. Every initial replica writes the same state, so they
// start identical without a snapshot.
func Bootstrap(b *storage.Batch, desc *metapb.RangeDescriptor) error {
	cs := &raftpb.ConfState{}
	for _, r := range desc.GetReplicas() {
		cs.Voters = append(cs.Voters, r.ID())
	}
	return bootstrapState(b, desc, storage.AppliedState{ConfState: cs})
}

// bootstrapState writes a range's initial state into b: its descriptor, a
// truncated log at initialIndex and as (its ConfState, newest and compacted
// revisions) applied at initialIndex.
func bootstrapState(b *storage.Batch, desc *metapb.RangeDescriptor, as storage.AppliedState) error {
	if err := b.PutLocalDescriptor(desc); err != nil {
		return err
	}
	as.Index, as.Term = initialIndex, initialTerm
	if err := b.PutAppliedState(desc.GetRangeId(), as); err != nil {
		return err
	}
	if err := b.TruncateLog(desc.GetRangeId(), storage.TruncatedState{Index: initialIndex, Term: initialTerm}); err != nil {
		return err
	}
	return b.PutHardState(desc.GetRangeId(), &raftpb.HardState{Term: proto.Uint64(initialTerm), Commit: proto.Uint64(initialIndex)})
}

// Uninitialized returns the descriptor of a replica this node holds of
// rangeID but knows nothing of yet: no span, no log; its leader sends it a
// snapshot, which brings the descriptor. It names only this replica (on
// node, with replicaID: its Raft id). Load makes such a replica from it;
// PutLocalDescriptor keeps it over a restart.
func Uninitialized(rangeID, node, replicaID uint64) *metapb.RangeDescriptor {
	return &metapb.RangeDescriptor{RangeId: rangeID, Replicas: []*metapb.ReplicaDescriptor{{NodeId: node, ReplicaId: replicaID}}}
}

// IsUninitialized reports whether d describes a replica waiting for its
// first snapshot (see Uninitialized).
func IsUninitialized(d *metapb.RangeDescriptor) bool { return len(d.GetEndKey()) == 0 }

// Replica is one node's copy of one range. Its methods are safe for
// concurrent use; the store's Ready loop is the only caller of Ready,
// Persist, AfterPersist, Apply and Advance.
type Replica struct {
	RangeID uint64
	// replicaID is this replica's id in the range's Raft group (from its
	// descriptor; see metapb.ReplicaDescriptor). It never changes: a
	// replica moved here again is a new Replica.
	replicaID uint64
	// desc mirrors mu.desc for readers that must not take mu (the store
	// maps a message's replica id to a node with it).
	desc atomic.Pointer[metapb.RangeDescriptor]
	// learned maps the replica ids of peers that the descriptor does not
	// name to their nodes, as their messages showed (an uninitialized
	// replica knows no peer until then). A leaf lock.
	learned struct {
		sync.Mutex
		nodes map[uint64]uint64
	}
	cfg Config
	log *slog.Logger

	// writes feeds the proposer goroutine, which runs only while writes
	// are queued (a node may hold thousands of idle replicas). Bounded by
	// cfg.MaxQueuedWrites.
	writes writeQueue
	// idx remembers the newest version of written keys for the apply path
	// (nil when cfg.KeyIndexSize is 0). Reset when a snapshot replaces the
	// range's state.
	idx *eval.Index
	// feeds are the range's open change feeds (feed.go).
	feeds feeds
	// evalMu orders the evaluations that decide what a write does against
	// the applied state: the proposer's (classify through propose) and a
	// cross-range txn staging's (txn.go). Lock order: evalMu before mu.
	evalMu sync.Mutex
	// applyLocks collects the lock table changes of the Apply round in
	// progress (used by Apply only), made to mu.locks once it commits.
	applyLocks []lockChange

	// stopped is closed by Stop; the proposer exits on it.
	stopped  chan struct{}
	stopOnce sync.Once
	// wg counts the running proposer (0 or 1), whose Add is called with
	// writes.mu held and never after writes.close, and the goroutines
	// building snapshots (startLocked), whose Add is called with mu held
	// and never once mu.stopping is set.
	wg sync.WaitGroup

	// quiesced is set while the replica does not tick (see quiesce.go);
	// written with mu held, read without it. active is set by every request
	// and cleared by each tick: a leader quiesces only after QuiesceTicks
	// ticks without one.
	quiesced, active atomic.Bool
	// leading mirrors leadsLocked for Leads, which must not take mu (a
	// node's status counts thousands of replicas each second).
	leading atomic.Bool

	// qps counts the requests this replica served, for the range's recent
	// rate (Status.QPS); loadKeys samples their keys (LoadSplitKey).
	qps      rateCounter
	loadKeys keySampler

	// dropSeq is a sequence lock over changes that may remove MVCC versions
	// from the engine: a compaction's apply and a snapshot's install. It is
	// odd from before such a change reaches the engine until mu.applied
	// reflects it. A read that sees the same even value before it takes
	// mu.applied and after it has read the engine knows that the engine
	// held every version at or below applied.MaxTS throughout, so it may
	// read the engine directly at that revision instead of opening a
	// snapshot and loading the applied state from it (see Read).
	dropSeq atomic.Uint64

	// mu guards everything below, including the RawNode and its storage.
	// Lock order: a store's mutex before a replica's mu; never the reverse.
	mu struct {
		sync.Mutex
		rn      *raft.RawNode
		storage *raftStorage
		desc    *metapb.RangeDescriptor
		// applied mirrors the engine's applied state after each Apply.
		// Invariant: applied.Index <= the Raft commit index.
		applied storage.AppliedState
		// truncated is the log's truncation point.
		// Invariant: truncated.Index <= applied.Index.
		truncated storage.TruncatedState
		// appliedLogBytes is the data size of the entries applied since
		// the last truncation (or since the replica was loaded): what a
		// truncation to the applied index would free.
		appliedLogBytes uint64
		// leader is the Raft leader as last seen (0 if none); term its term.
		leader, term uint64
		// leaderSeen is set once leader is first non-zero.
		leaderSeen bool
		// lastProposedTS is the newest revision this replica proposed, in
		// term lastProposedTerm.
		// Invariant: proposals are made in increasing ts order.
		lastProposedTS   int64
		lastProposedTerm uint64
		// resolvedTS is the newest revision of any command applied here,
		// whether it wrote or failed: every revision this range numbered at
		// or below it has applied or never will.
		// Invariant: applied.MaxTS <= resolvedTS.
		resolvedTS int64
		// drawing is set while the proposer waits for revisions from the
		// TSO: they may be below a revision a read is about to be served
		// at.
		drawing   bool
		nextID    uint64
		proposals map[uint64]*proposal
		// confPending is the id of this leader's replica change not yet
		// applied (0: none); one at a time, as Raft allows.
		confPending uint64
		// inflight holds the footprints of the user writes this leader
		// proposed that have not applied yet (see inflight.go).
		// Invariant: empty while this replica does not lead.
		inflight inflight
		lease    lease
		// snapshotsApplied counts snapshots received since Load.
		snapshotsApplied int
		// splitOff is the descriptor of the range this replica last split
		// off, as the split made it (nil if none since Load).
		splitOff *metapb.RangeDescriptor
		// idleTicks counts the ticks since the last request (see active).
		idleTicks int
		// stopping is set by Stop: startLocked starts nothing more.
		stopping bool
		// locks mirrors the range's cross-range txn locks as applied
		// (txn.go, locks.go).
		locks lockTable
		// stagings are the txn stagings this leader proposed that have not
		// applied, by command id: reads at or above their revision wait
		// for them. Invariant: empty while this replica does not lead.
		stagings map[uint64]stagingRef
		// tsc is the timestamp cache (locks.go); meaningful on the
		// leaseholder only.
		tsc tsCache
		// reservations are the txns about to stage here, by txn id
		// (txn.go). Invariant: empty while this replica does not lead.
		reservations map[uint64]*reservation
	}
}

// proposal is a command this replica proposed and whose result a client
// waits for.
type proposal struct {
	done chan result // buffered(1): the applier never blocks on it
	// span is the proposing request's span and proposed when it was
	// proposed: the apply is traced on the proposing node, under it.
	span     trace.SpanContext
	proposed time.Time
}

type result struct {
	resp *cmdpb.BatchResponse
	err  error
}

// Load creates the replica of desc from the state stored in the engine.
func Load(cfg Config, desc *metapb.RangeDescriptor) (*Replica, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	id := desc.GetRangeId()
	rs, err := storage.LoadRaftState(cfg.Engine, id)
	if err != nil {
		return nil, fmt.Errorf("replica: load raft state of range %d: %w", id, err)
	}
	as, err := storage.LoadAppliedState(cfg.Engine, id)
	if err != nil {
		return nil, fmt.Errorf("replica: load applied state of range %d: %w", id, err)
	}
	if as.Index < rs.Truncated.Index {
		panic(fmt.Sprintf("replica: range %d applied index %d below truncated index %d", id, as.Index, rs.Truncated.Index))
	}
	r := &Replica{
		RangeID: id,
		cfg:     cfg,
		log:     cfg.Logger.With("range", id),
		writes:  writeQueue{max: cfg.MaxQueuedWrites},
		idx:     cfg.Index,
		stopped: make(chan struct{}),
	}
	ms := raft.NewMemoryStorage()
	// An uninitialized replica (see Uninitialized) has no log yet: Raft
	// starts it empty, and its leader sends it a snapshot.
	if rs.Truncated.Index > 0 {
		if err := ms.ApplySnapshot(&raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{
			Index: proto.Uint64(rs.Truncated.Index), Term: proto.Uint64(rs.Truncated.Term), ConfState: as.ConfState,
		}}); err != nil {
			return nil, err
		}
	}
	if rs.HardState != nil {
		if err := ms.SetHardState(rs.HardState); err != nil {
			return nil, err
		}
	}
	if err := ms.Append(rs.Entries); err != nil {
		return nil, err
	}
	r.mu.storage = &raftStorage{MemoryStorage: ms, engine: cfg.Engine, rangeID: id, span: r.spanLocked,
		build: r.startLocked, done: r.signal, lock: r.mu.Lock, unlock: r.mu.Unlock, slots: cfg.SnapshotSlots}
	r.setDescLocked(desc)
	r.replicaID = cfg.NodeID // a descriptor without this node: none better
	if rd := desc.ReplicaOn(cfg.NodeID); rd != nil {
		r.replicaID = rd.ID()
	}
	r.mu.applied = as
	if err := r.mu.locks.load(cfg.Engine, r.spanLocked()); err != nil {
		return nil, fmt.Errorf("replica: load locks of range %d: %w", id, err)
	}
	r.mu.truncated = rs.Truncated
	r.mu.lastProposedTS = as.MaxTS
	r.mu.resolvedTS = as.MaxTS
	r.mu.proposals = make(map[uint64]*proposal)
	// Ids start from the clock so that a command proposed before a restart
	// and applied after it never matches a new proposal.
	r.mu.nextID = uint64(time.Now().UnixNano())
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        r.replicaID,
		ElectionTick:              cfg.ElectionTicks,
		HeartbeatTick:             cfg.HeartbeatTicks,
		Storage:                   r.mu.storage,
		Applied:                   as.Index,
		MaxSizePerMsg:             1 << 20,
		MaxCommittedSizePerReady:  8 << 20,
		MaxUncommittedEntriesSize: 64 << 20,
		MaxInflightMsgs:           256,
		CheckQuorum:               true,
		PreVote:                   true,
		ReadOnlyOption:            raft.ReadOnlySafe,
		DisableProposalForwarding: true,
		Logger:                    raftLogger{r.log},
	})
	if err != nil {
		return nil, fmt.Errorf("replica: range %d: %w", id, err)
	}
	r.mu.rn = rn
	if r.idx == nil {
		r.idx = newIndex(cfg.KeyIndexSize)
	}
	return r, nil
}

// Stop ends the proposer and fails every waiting client. Safe to call more
// than once.
func (r *Replica) Stop() {
	r.stopOnce.Do(func() {
		r.mu.Lock()
		r.mu.stopping = true // no goroutine starts after this (startLocked)
		r.mu.Unlock()
		close(r.stopped)
		r.writes.close()
	})
	r.wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, p := range r.mu.proposals {
		p.done <- result{err: kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: range %d stopped with the write in flight", r.RangeID)}
		delete(r.mu.proposals, id)
	}
	r.mu.lease.failWaitersLocked(kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d stopped", r.RangeID))
	r.endFeedsLocked(kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d stopped here", r.RangeID))
}

// Neighbourhood returns the range's descriptor and, if it split since it
// was loaded, the descriptor of the range it last split off, as the split
// made it: what a router that sent keys here by a stale descriptor needs.
// The caller must not modify them.
func (r *Replica) Neighbourhood() []*metapb.RangeDescriptor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.neighbourhoodLocked()
}

func (r *Replica) neighbourhoodLocked() []*metapb.RangeDescriptor {
	if r.mu.splitOff == nil {
		return []*metapb.RangeDescriptor{r.mu.desc}
	}
	return []*metapb.RangeDescriptor{r.mu.desc, r.mu.splitOff}
}

// LoadSplitKey returns the key that splits the range's recent requests in
// half (the median of sampled request keys, a global key), or nil if too
// few were sampled or the median does not lie strictly inside the range.
func (r *Replica) LoadSplitKey() []byte {
	k := r.loadKeys.median(keySamples / 4)
	r.mu.Lock()
	defer r.mu.Unlock()
	if k == nil || bytes.Equal(k, r.mu.desc.GetStartKey()) || !r.spanLocked().Contains(k) {
		return nil
	}
	return k
}

// Descriptor returns the range's descriptor. The caller must not modify it.
func (r *Replica) Descriptor() *metapb.RangeDescriptor {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.mu.desc
}

func (r *Replica) spanLocked() keys.Span {
	return keys.Span{Start: r.mu.desc.GetStartKey(), End: r.mu.desc.GetEndKey()}
}

// Status is a replica's Raft position, for status endpoints.
type Status struct {
	RangeID, Leader, Term, Commit, Applied uint64
	IsLeader                               bool
	LeaseValid                             bool
	// PendingProposals are this replica's proposals waiting to apply.
	PendingProposals int
	// SnapshotsApplied counts snapshots this replica received since it
	// was loaded.
	SnapshotsApplied int
	// LeaderSeen is whether this replica has known a leader of its range
	// since it was loaded.
	LeaderSeen bool
	// Frozen is set while the range is frozen for a merge.
	Frozen bool
	// QPS is the requests per second this replica served over the last
	// ten seconds (the leaseholder serves nearly all of a range's).
	QPS float64
	// Truncated is the index the log was last truncated to (or covered
	// by a snapshot), and AppliedLogBytes the data size of the entries
	// applied since: the log a truncation to the applied index would
	// free, which Raft holds in memory.
	Truncated, AppliedLogBytes uint64
}

// Status reports the replica's Raft position.
func (r *Replica) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	bs := r.mu.rn.BasicStatus()
	return Status{
		RangeID:    r.RangeID,
		Leader:     r.nodeOfLocked(bs.Lead),
		Term:       bs.HardState.GetTerm(),
		Commit:     bs.HardState.GetCommit(),
		Applied:    r.mu.applied.Index,
		IsLeader:   bs.RaftState == raft.StateLeader,
		LeaseValid: r.mu.lease.validLocked(r.cfg.Now()),

		SnapshotsApplied: r.mu.snapshotsApplied,
		LeaderSeen:       r.mu.leaderSeen,
		PendingProposals: len(r.mu.proposals),
		Frozen:           r.mu.applied.Frozen,
		QPS:              r.qps.rate(r.cfg.Now()),
		Truncated:        r.mu.truncated.Index,
		AppliedLogBytes:  r.mu.appliedLogBytes,
	}
}

// Tick advances the replica's logical clock by one tick and renews the
// leader lease when due. An idle leader whose followers have everything
// quiesces instead: it returns the quiesce heartbeats the store must send
// (see quiesce.go). A quiesced replica ignores ticks.
func (r *Replica) Tick() (quiesce []*raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.quiesced.Load() {
		return nil
	}
	if r.active.Swap(false) {
		r.mu.idleTicks = 0
	} else {
		r.mu.idleTicks++
	}
	if msgs := r.maybeQuiesceLocked(); msgs != nil {
		return msgs
	}
	r.mu.rn.Tick()
	r.maybeRenewLeaseLocked()
	return nil
}

// Step feeds a message from a peer into Raft. Messages for another Raft id
// or stale ones are dropped by Raft itself. Any message wakes a quiesced
// replica, except a heartbeat's answer to a quiesced leader.
func (r *Replica) Step(m *raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.GetTo() != r.replicaID {
		return // for a replica this one is not (one removed, or a stale id)
	}
	if r.quiesced.Load() && m.GetType() != raftpb.MsgHeartbeatResp {
		r.wakeLocked()
	}
	if err := r.mu.rn.Step(m); err != nil && !errors.Is(err, raft.ErrStepPeerNotFound) {
		r.log.Debug("step failed", "type", m.GetType().String(), "from", m.GetFrom(), "err", err)
	}
}

// ReportUnreachable tells Raft that peer could not be reached.
func (r *Replica) ReportUnreachable(peer uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	rd := r.mu.desc.ReplicaOn(peer)
	if rd == nil {
		return
	}
	if rd.ID() == r.mu.leader {
		// The leader may be gone: tick, so that an election can follow.
		r.wakeLocked()
	}
	r.mu.rn.ReportUnreachable(rd.ID())
}

// ReportSnapshot tells Raft whether a snapshot reached peer.
func (r *Replica) ReportSnapshot(peer uint64, ok bool) {
	status := raft.SnapshotFinish
	if !ok {
		status = raft.SnapshotFailure
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if rd := r.mu.desc.ReplicaOn(peer); rd != nil {
		r.mu.rn.ReportSnapshot(rd.ID(), status)
	}
}

// Campaign makes this replica try to become leader (used at bootstrap to
// elect quickly and by tests).
func (r *Replica) Campaign() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.wakeLocked()
	_ = r.mu.rn.Campaign()
}

// HasPeer reports whether node is a member of this range's Raft group.
func (r *Replica) HasPeer(node uint64) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rd := range r.mu.desc.GetReplicas() {
		if rd.GetNodeId() == node {
			return true
		}
	}
	return false
}

// leadsLocked reports whether this replica led Raft as of the last Ready
// (Raft reports every change of leader there). It may lag a step down by a
// moment: a proposal then is dropped by Raft (UNAVAILABLE, retried) and a
// lease probe goes unanswered, so the lag is safe, and it avoids
// BasicStatus, which allocates, on every write.
func (r *Replica) leadsLocked() bool { return r.mu.leader == r.replicaID }

// ReplicaID returns this replica's id in its range's Raft group.
func (r *Replica) ReplicaID() uint64 { return r.replicaID }

// NodeOf returns the node that holds the range's replica id (0 if the
// descriptor has none). Safe without the replica's lock.
func (r *Replica) NodeOf(replicaID uint64) uint64 {
	if n := r.desc.Load().NodeOf(replicaID); n != 0 {
		return n
	}
	r.learned.Lock()
	defer r.learned.Unlock()
	return r.learned.nodes[replicaID]
}

// LearnPeer records that the range's replica replicaID is on node, when
// the descriptor does not say (see NodeOf): a message from it came from
// that node.
func (r *Replica) LearnPeer(replicaID, node uint64) {
	if replicaID == 0 || r.desc.Load().NodeOf(replicaID) != 0 {
		return
	}
	r.learned.Lock()
	defer r.learned.Unlock()
	if r.learned.nodes == nil {
		r.learned.nodes = make(map[uint64]uint64)
	}
	if len(r.learned.nodes) < 16 { // a range has a handful of replicas
		r.learned.nodes[replicaID] = node
	}
}

func (r *Replica) nodeOfLocked(replicaID uint64) uint64 {
	if replicaID == 0 {
		return 0
	}
	return r.mu.desc.NodeOf(replicaID)
}

// setDescLocked replaces the range's descriptor.
func (r *Replica) setDescLocked(d *metapb.RangeDescriptor) {
	r.mu.desc = d
	r.desc.Store(d)
}

func (r *Replica) notLeaderLocked() *kvpb.Error {
	hint := r.nodeOfLocked(r.mu.leader)
	if r.leadsLocked() {
		hint = 0
	}
	return &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, Message: fmt.Sprintf("replica: node %d is not the leader of range %d", r.cfg.NodeID, r.RangeID), LeaderHint: hint}
}

func newIndex(size int) *eval.Index {
	if size <= 0 {
		return nil
	}
	return eval.NewIndex(size)
}

// startLocked runs fn on a goroutine that Stop waits for, unless the
// replica is stopping (false).
func (r *Replica) startLocked(fn func()) bool {
	if r.mu.stopping {
		return false
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		fn()
	}()
	return true
}

// Leads reports whether this replica led its range as of the last Ready
// (cheap: no lock, no Raft status).
func (r *Replica) Leads() bool { return r.leading.Load() }
