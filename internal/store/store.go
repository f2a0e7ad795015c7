// Package store owns a node's replicas and drives them all through one Ready
// loop.
//
// Each round of the loop:
//
//  1. collects the Ready of every replica that has one;
//  2. writes all their entries, hard states and snapshots into ONE engine
//     batch and commits it with ONE fsync (group commit): many ranges and
//     many clients share each fsync;
//  3. only then sends their messages, batched per destination node by the
//     transport, so nothing is acknowledged before it is durable;
//  4. applies their committed entries and advances them.
//
// A round visits only the replicas that signalled work since the last one
// (a message, a tick, a proposal, an apply), and the ticker goroutine
// ticks only the replicas that are awake each TickInterval: idle ranges
// quiesce (see replica/quiesce.go), so a node with thousands of idle
// ranges spends nothing on them. Incoming Raft messages are stepped into
// their replica on the transport's goroutine and wake the loop.
package store

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/replica"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Sender delivers Raft messages to other nodes. Send must not block; the
// callee owns msgs.
type Sender interface {
	Send(to uint64, msgs []*rpcpb.RaftMessage)
}

// Store is one node's set of replicas.
type Store struct {
	nodeID uint64
	engine *storage.Engine
	sender Sender
	cfg    replica.Config
	log    *slog.Logger

	// appendGuard, when set, says whether the disk is nearly full (see
	// SetAppendGuard); droppedAppends counts what it dropped.
	appendGuard    atomic.Pointer[func() bool]
	droppedAppends atomic.Uint64

	// work is signalled (never blocking, capacity 1) when a replica may
	// have a Ready.
	work chan struct{}
	// applyCh feeds the applier goroutine; capacity maxApplyRounds.
	applyCh chan applyRound

	mu struct {
		sync.RWMutex
		// replicas by range id. Lock order: Store.mu before Replica.mu.
		replicas map[uint64]*replica.Replica
	}
	// pending holds the ids of the replicas that may have a Ready: the
	// next round visits them. A leaf lock: nothing else is taken under it.
	pending struct {
		sync.Mutex
		ids map[uint64]struct{}
	}
	// awake holds the replicas that tick (not quiesced). A leaf lock,
	// taken with a replica's mu held (replica.Config.SetAwake).
	awake struct {
		sync.Mutex
		m map[uint64]*replica.Replica
	}
	// tickBuf is the ticker's scratch list; only the ticking goroutine
	// uses it. pendingIDs and pendingBuf are takePending's, used only by
	// the Ready loop's goroutine: a round allocates no list of its own.
	tickBuf    []*replica.Replica
	pendingIDs []uint64
	pendingBuf []*replica.Replica
	// early holds the latest messages for ranges this node does not hold
	// yet, by range id: a range that a split creates here is created when
	// this node applies the split, and its leader (elected by the nodes
	// that applied it first) may have written to it already. Its messages
	// are handed to the replica as soon as it exists, instead of waiting
	// for the leader's next heartbeat (a tick). Without them a range split
	// again and again at its end (a bulk load in key order) reaches a
	// follower one split per tick. A leaf lock. Bounded: maxEarlyRanges
	// ranges, maxEarlyMsgs messages each; entries older than earlyMaxAge
	// make room.
	early struct {
		sync.Mutex
		m map[uint64][]earlyMsg
		// purged is when old entries were last dropped to make room.
		purged time.Time
	}

	stop chan struct{}
	wg   sync.WaitGroup
	// fsyncs counts group commits, for tests and metrics.
	fsyncs, readyRounds uint64Counter
}

// New creates the store of a node and loads every replica found in the
// engine. cfg is the replica configuration shared by all replicas; New sets
// its Signal. Call Start to run the Ready loop.
func New(cfg replica.Config, sender Sender) (*Store, error) {
	s := &Store{
		nodeID:  cfg.NodeID,
		engine:  cfg.Engine,
		sender:  sender,
		log:     cfg.Logger,
		work:    make(chan struct{}, 1),
		applyCh: make(chan applyRound, maxApplyRounds),
		stop:    make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	cfg.Signal = s.signalRange
	cfg.SetAwake = s.setAwake
	if cfg.SnapshotSlots == nil {
		cfg.SnapshotSlots = make(chan struct{}, maxSnapshotBuilds)
	}
	if cfg.Index == nil && cfg.KeyIndexSize > 0 {
		// One index for the node: its bound holds however many ranges
		// the node has.
		cfg.Index = eval.NewIndex(cfg.KeyIndexSize)
	}
	cfg.OnSplit = s.onSplit
	cfg.OnMerge = s.onMerge
	cfg.OnRemoved = s.onRemoved
	cfg.OnSpanGained = s.onSpanGained
	s.cfg = cfg
	s.mu.replicas = make(map[uint64]*replica.Replica)
	s.pending.ids = make(map[uint64]struct{})
	s.awake.m = make(map[uint64]*replica.Replica)
	descs, err := storage.LoadLocalDescriptors(cfg.Engine)
	if err != nil {
		return nil, err
	}
	for _, d := range descs {
		r, err := replica.Load(cfg, d)
		if err != nil {
			s.stopReplicas()
			return nil, err
		}
		s.mu.replicas[d.GetRangeId()] = r
		s.added(r)
	}
	return s, nil
}

// SetSender sets the message sender; it must be called before Start when the
// transport could not be built before the store.
func (s *Store) SetSender(sender Sender) { s.sender = sender }

// Start runs the Ready loop and the ticker until Stop.
func (s *Store) Start() {
	s.wg.Add(3)
	go s.runReadyLoop()
	go s.runTicker()
	go s.runApplier()
}

// Stop ends the loops and stops every replica.
func (s *Store) Stop() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	s.wg.Wait()
	s.stopReplicas()
}

func (s *Store) stopReplicas() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.mu.replicas {
		r.Stop()
	}
}

func (s *Store) signal() {
	select {
	case s.work <- struct{}{}:
	default:
	}
}

// signalRange marks the replica of rangeID for the next round and wakes
// the loop (replica.Config.Signal).
func (s *Store) signalRange(rangeID uint64) {
	s.markPending(rangeID)
	s.signal()
}

func (s *Store) markPending(rangeID uint64) {
	s.pending.Lock()
	s.pending.ids[rangeID] = struct{}{}
	s.pending.Unlock()
}

// setAwake keeps the set of ticking replicas (replica.Config.SetAwake).
func (s *Store) setAwake(r *replica.Replica, awake bool) {
	s.awake.Lock()
	defer s.awake.Unlock()
	if awake {
		s.awake.m[r.RangeID] = r
	} else {
		delete(s.awake.m, r.RangeID)
	}
}

// added registers a replica just loaded: it starts awake, and its first
// round may have work.
func (s *Store) added(r *replica.Replica) {
	if !r.Quiesced() {
		s.setAwake(r, true)
	}
	s.markPending(r.RangeID)
}

// Awake returns how many replicas tick (are not quiesced).
func (s *Store) Awake() int {
	s.awake.Lock()
	defer s.awake.Unlock()
	return len(s.awake.m)
}

// onSplit creates the replica of a range that a split made here (see
// replica.Config.OnSplit). The left side's leader campaigns for the new
// range at once, so that it has a leader without an election timeout and
// on the same node as its neighbour; the other replicas wait to be asked.
func (s *Store) onSplit(_, right *metapb.RangeDescriptor, leads bool) {
	r, err := replica.Load(s.cfg, right)
	if err != nil {
		// Its state is in the engine with the split: not loading it would
		// lose the range here.
		panic(fmt.Sprintf("store: node %d: load range %d after a split: %v", s.nodeID, right.GetRangeId(), err))
	}
	s.mu.Lock()
	if _, ok := s.mu.replicas[right.GetRangeId()]; ok {
		s.mu.Unlock()
		r.Stop()
		panic(fmt.Sprintf("store: node %d: split created range %d, which is already here", s.nodeID, right.GetRangeId()))
	}
	s.mu.replicas[right.GetRangeId()] = r
	s.added(r)
	s.mu.Unlock()
	s.deliverEarly(r)
	if leads {
		s.wg.Add(1)
		go s.campaignNew(r)
	}
	s.signal()
}

// splitCampaigns bounds how often the left side's leader campaigns for the
// new range of a split, splitCampaignEvery apart, while it has no leader:
// the other replicas drop its votes until they have applied the split too.
const (
	splitCampaigns     = 20
	splitCampaignEvery = 25 * time.Millisecond
)

func (s *Store) campaignNew(r *replica.Replica) {
	defer s.wg.Done()
	for range splitCampaigns {
		if r.Status().Leader != 0 {
			return
		}
		r.Campaign()
		s.signalRange(r.RangeID)
		select {
		case <-s.stop:
			return
		case <-time.After(splitCampaignEvery):
		}
	}
}

// onMerge drops the replica of a range merged into its left neighbour;
// the merge already deleted its range-local state.
func (s *Store) onMerge(_, right *metapb.RangeDescriptor) {
	s.drop(right.GetRangeId(), false /* clear: done by the merge */)
}

// onRemoved destroys a replica that applied its own removal from its
// range: its range-local state and its data go (unless another replica
// here covers part of the span by now, then only its range-local state),
// so that a later replica of the range on this node, with a new replica
// id, starts afresh from a snapshot. It returns at once; the work is done
// in the background, as the replica cannot stop itself from its own
// apply.
func (s *Store) onRemoved(rangeID, replicaID uint64) {
	go s.destroy(rangeID, replicaID)
}

// destroy drops the replica of rangeID if it is still replica replicaID,
// and deletes its state.
func (s *Store) destroy(rangeID, replicaID uint64) {
	s.mu.Lock()
	r := s.mu.replicas[rangeID]
	if r == nil || r.ReplicaID() != replicaID {
		s.mu.Unlock()
		return
	}
	d := r.Descriptor()
	span := keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}
	shared := replica.IsUninitialized(d)
	for id, o := range s.mu.replicas {
		od := o.Descriptor()
		if id != rangeID && !replica.IsUninitialized(od) && !span.Intersect(keys.Span{Start: od.GetStartKey(), End: od.GetEndKey()}).Empty() {
			shared = true
		}
	}
	s.mu.Unlock()
	s.drop(rangeID, true /* clear range-local state */)
	if shared {
		return
	}
	b := s.engine.NewBatch()
	defer b.Close()
	err := b.DestroyReplica(rangeID, span)
	if err == nil {
		err = b.Commit(false)
	}
	if err != nil {
		s.log.Warn("data of a removed replica not cleared", "range", rangeID, "err", err)
		return
	}
	s.log.Info("destroyed a replica removed from its range", "range", rangeID, "replica", replicaID)
}

// onSpanGained drops the replicas of the ranges inside gained: a snapshot
// showed that the range it came with had merged them while this node was
// behind, and replaced their data. Their range-local state goes too.
func (s *Store) onSpanGained(rangeID uint64, gained keys.Span) {
	for _, r := range s.Replicas() {
		d := r.Descriptor()
		if r.RangeID == rangeID || replica.IsUninitialized(d) || !gained.ContainsSpan(keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}) {
			continue
		}
		s.log.Info("dropping a replica of a range merged away while this node was behind", "range", r.RangeID, "into", rangeID)
		s.drop(r.RangeID, true /* clear */)
	}
}

// drop stops and forgets the replica of rangeID, deleting its range-local
// state first if clear.
func (s *Store) drop(rangeID uint64, clear bool) {
	s.mu.Lock()
	r := s.mu.replicas[rangeID]
	delete(s.mu.replicas, rangeID)
	s.mu.Unlock()
	if r == nil {
		return
	}
	r.Stop()
	s.awake.Lock()
	if s.awake.m[rangeID] == r {
		delete(s.awake.m, rangeID)
	}
	s.awake.Unlock()
	if !clear {
		return
	}
	b := s.engine.NewBatch()
	defer b.Close()
	if err := b.ClearRangeLocal(rangeID); err == nil {
		err = b.Commit(true /* sync: a leftover descriptor would load the replica again at restart */)
		if err != nil {
			s.log.Warn("range-local state of a dropped replica not cleared", "range", rangeID, "err", err)
		}
	}
}

// SetAppendGuard installs full, asked at every batch of Raft messages:
// while it returns true (the data dir's disk is nearly full) the store
// drops the log entries and snapshots other nodes send it, so that no
// write reaches a full disk (Pebble stops the process on a failed WAL
// write).
func (s *Store) SetAppendGuard(full func() bool) { s.appendGuard.Store(&full) }

// DroppedAppends counts the Raft appends and snapshots dropped by the
// append guard.
func (s *Store) DroppedAppends() uint64 { return s.droppedAppends.Load() }

// AddUninitialized creates a replica of rangeID that knows nothing of its
// range yet (replica.Uninitialized) and waits for its leader's snapshot,
// unless this node holds one already; replicaID is its id in the range's
// Raft group, from the range's descriptor. It is how a node that missed a split
// (its replica of the splitting range caught up by snapshot, past the
// split) comes to hold the new range: the descriptor is kept so that it
// survives a restart.
func (s *Store) AddUninitialized(rangeID, replicaID uint64) error {
	s.mu.Lock()
	if old, ok := s.mu.replicas[rangeID]; ok {
		if old.ReplicaID() == replicaID || replicaID < old.ReplicaID() {
			s.mu.Unlock()
			return nil
		}
		// A replica of an earlier membership (removed while this node
		// did not hear of it): it gives way to the new one.
		s.mu.Unlock()
		s.log.Info("replacing a removed replica of the range", "range", rangeID, "old_replica", old.ReplicaID(), "replica", replicaID)
		s.destroy(rangeID, old.ReplicaID())
		s.mu.Lock()
		if _, ok := s.mu.replicas[rangeID]; ok {
			s.mu.Unlock()
			return nil
		}
	}
	defer s.mu.Unlock()
	d := replica.Uninitialized(rangeID, s.nodeID, replicaID)
	b := s.engine.NewBatch()
	defer b.Close()
	if err := b.PutLocalDescriptor(d); err != nil {
		return err
	}
	if err := b.Commit(true /* sync */); err != nil {
		return err
	}
	r, err := replica.Load(s.cfg, d)
	if err != nil {
		return err
	}
	s.mu.replicas[rangeID] = r
	s.added(r)
	s.log.Info("created an uninitialized replica to receive a snapshot", "range", rangeID)
	s.deliverEarly(r)
	s.signal()
	return nil
}

// Replica returns the replica of rangeID, or nil.
func (s *Store) Replica(rangeID uint64) *replica.Replica {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.mu.replicas[rangeID]
}

// Count returns how many replicas the node holds and how many of them
// lead their range, without building a list.
func (s *Store) Count() (replicas, leaders int) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, r := range s.mu.replicas {
		if r.Leads() {
			leaders++
		}
	}
	return len(s.mu.replicas), leaders
}

// Replicas returns every replica, by range id.
func (s *Store) Replicas() []*replica.Replica {
	s.mu.RLock()
	out := make([]*replica.Replica, 0, len(s.mu.replicas))
	for _, r := range s.mu.replicas {
		out = append(out, r)
	}
	s.mu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].RangeID < out[j].RangeID })
	return out
}

func (s *Store) runTicker() {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.TickInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		s.tick()
	}
}

// tick ticks every awake replica, sends the quiesce heartbeats of those
// that quiesce, batched per node, and wakes the Ready loop for them all.
func (s *Store) tick() {
	s.awake.Lock()
	rs := s.tickBuf[:0]
	for _, r := range s.awake.m {
		rs = append(rs, r)
	}
	s.awake.Unlock()
	// In range order, so that the store harness replays alike.
	sort.Slice(rs, func(i, j int) bool { return rs[i].RangeID < rs[j].RangeID })
	var out map[uint64][]*rpcpb.RaftMessage
	s.pending.Lock()
	for _, r := range rs {
		s.pending.ids[r.RangeID] = struct{}{}
	}
	s.pending.Unlock()
	for _, r := range rs {
		for _, m := range r.Tick() {
			if out == nil {
				out = make(map[uint64][]*rpcpb.RaftMessage)
			}
			if to := r.NodeOf(m.GetTo()); to != 0 {
				out[to] = append(out[to], &rpcpb.RaftMessage{RangeId: r.RangeID, Msg: m, Quiesce: true})
			}
		}
	}
	clear(rs)
	s.tickBuf = rs[:0]
	for to, msgs := range out {
		s.sender.Send(to, msgs)
	}
	s.signal()
}

func (s *Store) runReadyLoop() {
	defer s.wg.Done()
	for {
		select {
		case <-s.stop:
			return
		case <-s.work:
		}
		if err := s.processReady(); err == errStopping {
			return
		} else if err != nil {
			// A failed fsync or apply leaves the node's durable state
			// unknown: crash rather than acknowledge anything more.
			panic(fmt.Sprintf("store: node %d: %v", s.nodeID, err))
		}
	}
}

// errStopping ends the Ready loop mid-round when the store stops; the
// replicas' Readies are then never advanced, which is fine as they stop too.
var errStopping = errors.New("store: stopping")

// maxSnapshotBuilds bounds the Raft snapshots a node builds at once (each
// holds its range in memory until sent): a node whose followers all fall
// behind at once sends them one pair at a time, not all together.
const maxSnapshotBuilds = 2

// The bounds of Store.early.
const (
	maxEarlyRanges = 1024
	maxEarlyMsgs   = 8
	earlyMaxAge    = 2 * time.Second
)

type earlyMsg struct {
	msg  *raftpb.Message
	from uint64 // the sending node
	at   time.Time
}

// keepEarly keeps m, for range rangeID that this node does not hold.
func (s *Store) keepEarly(rangeID, from uint64, m *raftpb.Message) {
	now := s.now()
	s.early.Lock()
	defer s.early.Unlock()
	if s.early.m == nil {
		s.early.m = make(map[uint64][]earlyMsg)
	}
	q, ok := s.early.m[rangeID]
	if !ok && len(s.early.m) >= maxEarlyRanges && now.Sub(s.early.purged) > earlyMaxAge/4 {
		// Full: make room by dropping what is old, at most four times
		// per earlyMaxAge (a flood of messages for unknown ranges must
		// not cost a scan each).
		s.early.purged = now
		for id, q := range s.early.m {
			if now.Sub(q[len(q)-1].at) > earlyMaxAge {
				delete(s.early.m, id)
			}
		}
	}
	if !ok && len(s.early.m) >= maxEarlyRanges {
		return
	}
	if len(q) >= maxEarlyMsgs {
		q = append(q[:0], q[1:]...)
	}
	s.early.m[rangeID] = append(q, earlyMsg{msg: m, from: from, at: now})
}

// deliverEarly steps the kept messages of r's range into r, which was just
// created here. Messages older than earlyMaxAge are dropped: Raft would
// ignore most of them, and the leader has sent newer ones since.
func (s *Store) deliverEarly(r *replica.Replica) {
	s.early.Lock()
	q := s.early.m[r.RangeID]
	delete(s.early.m, r.RangeID)
	s.early.Unlock()
	now := s.now()
	for _, e := range q {
		if now.Sub(e.at) <= earlyMaxAge {
			r.LearnPeer(e.msg.GetFrom(), e.from)
			r.Step(e.msg)
		}
	}
	if len(q) > 0 {
		s.signalRange(r.RangeID)
	}
}

func (s *Store) now() time.Time {
	if s.cfg.Now != nil {
		return s.cfg.Now()
	}
	return time.Now()
}

type readyReplica struct {
	r      *replica.Replica
	rd     raft.Ready
	leader bool
}

// applyRound is one round's committed entries, applied in order by the
// applier goroutine; a round with done set is a barrier that only signals
// that everything before it was applied.
type applyRound struct {
	items []readyReplica
	done  chan struct{}
}

// maxApplyRounds bounds the rounds waiting for the applier: past it the
// Ready loop waits, so a slow apply slows intake instead of queueing
// without limit.
const maxApplyRounds = 64

// processReady runs one round of the Ready loop over every replica.
//
// A leader's messages leave before its own entries are durable (Raft thesis
// 10.2.1; etcd does the same): followers write in parallel with the leader,
// and the leader only counts itself toward a quorum once Advance reports its
// write. Everyone else's messages (votes, append acknowledgements) leave only
// after the fsync. Committed entries go to the applier goroutine, so the
// next round's fsync overlaps this round's apply.
func (s *Store) processReady() error {
	var readies []readyReplica
	snapshot := false
	for _, r := range s.takePending() {
		if rd, leader, ok := r.Ready(); ok {
			readies = append(readies, readyReplica{r, rd, leader})
			snapshot = snapshot || !raft.IsEmptySnap(rd.Snapshot)
		}
	}
	if len(readies) == 0 {
		return nil
	}
	if snapshot {
		// A snapshot replaces a range's state: let every earlier apply
		// finish first.
		s.waitApplied()
	}
	s.readyRounds.add(1)
	s.send(readies, true /* leaders */)
	b := s.engine.NewBatch()
	sync := false
	for i := range readies {
		rr := &readies[i]
		if err := rr.r.Persist(b, &rr.rd); err != nil {
			b.Close()
			return err
		}
		sync = sync || rr.rd.MustSync || !raft.IsEmptySnap(rr.rd.Snapshot)
	}
	if !b.Empty() {
		start, size := time.Now(), b.Len()
		if err := b.Commit(sync); err != nil {
			b.Close()
			return fmt.Errorf("group commit: %w", err)
		}
		s.cfg.Metrics.ObserveBatchCommit(time.Since(start), size, sync)
		if sync {
			s.fsyncs.add(1)
		}
	}
	b.Close()
	for i := range readies {
		if err := readies[i].r.AfterPersist(&readies[i].rd); err != nil {
			return err
		}
	}
	s.send(readies, false /* leaders */)
	round := applyRound{}
	for _, rr := range readies {
		if len(rr.rd.CommittedEntries) > 0 {
			round.items = append(round.items, rr)
			s.cfg.Metrics.ObserveCommitted(len(rr.rd.CommittedEntries))
		}
	}
	if len(round.items) > 0 {
		select {
		case s.applyCh <- round:
		case <-s.stop:
			return errStopping
		}
	}
	for i := range readies {
		readies[i].r.Advance(&readies[i].rd)
	}
	for i := range readies {
		rr := &readies[i]
		if rr.r.RangeID == meta.MetaRangeID && rr.rd.SoftState != nil && rr.rd.SoftState.RaftState == raft.StateLeader {
			s.followTSO(rr.r)
		}
	}
	// Advance may have left more work (entries that became committed).
	s.pending.Lock()
	for i := range readies {
		s.pending.ids[readies[i].r.RangeID] = struct{}{}
	}
	s.pending.Unlock()
	s.signal()
	return nil
}

// takePending empties the pending set and returns its replicas, in range
// order (so that the store harness replays alike).
func (s *Store) takePending() []*replica.Replica {
	s.pending.Lock()
	if len(s.pending.ids) == 0 {
		s.pending.Unlock()
		return nil
	}
	ids := s.pendingIDs[:0]
	for id := range s.pending.ids {
		ids = append(ids, id)
	}
	clear(s.pending.ids)
	s.pending.Unlock()
	slices.Sort(ids)
	s.pendingIDs = ids
	clear(s.pendingBuf)
	out := s.pendingBuf[:0]
	s.mu.RLock()
	for _, id := range ids {
		if r := s.mu.replicas[id]; r != nil {
			out = append(out, r)
		}
	}
	s.mu.RUnlock()
	s.pendingBuf = out
	return out
}

// followTSO is called when this node's meta replica has just become leader,
// so the TSO runs here: every other replica here that has known no leader
// of its range since it was loaded campaigns at once, instead of waiting out
// a random election timeout somewhere. A range led on the TSO's node gets
// each batch of write revisions by a local call instead of an RPC to
// another node (about 0.3 ms of a 2.4 ms single-client put on loopback).
// This places a new (or fully restarted) cluster's leaders together (see
// server's electFirst). A range that has had a leader is left alone: it is
// led, or in an election (a leadership hand-over, a failover) that a
// campaign from here would only disturb.
func (s *Store) followTSO(meta *replica.Replica) {
	for _, r := range s.Replicas() {
		if r != meta && !r.Status().LeaderSeen {
			r.Campaign()
			s.markPending(r.RangeID)
		}
	}
}

// send hands the messages of the leaders' (or the others') Readies to the
// transport, batched per destination node.
func (s *Store) send(readies []readyReplica, leaders bool) {
	out := make(map[uint64][]*rpcpb.RaftMessage)
	for i := range readies {
		rr := &readies[i]
		if rr.leader != leaders {
			continue
		}
		for _, m := range rr.rd.Messages {
			to := rr.r.NodeOf(m.GetTo())
			if to == 0 {
				// A peer the descriptor does not name (yet): it
				// cannot be reached.
				continue
			}
			out[to] = append(out[to], &rpcpb.RaftMessage{RangeId: rr.r.RangeID, Msg: m})
		}
	}
	for to, msgs := range out {
		if to == s.nodeID {
			panic(fmt.Sprintf("store: node %d: raft message to self", s.nodeID))
		}
		s.sender.Send(to, msgs)
	}
}

// runApplier applies committed entries round by round, in order.
func (s *Store) runApplier() {
	defer s.wg.Done()
	for {
		var round applyRound
		select {
		case round = <-s.applyCh:
		case <-s.stop:
			return
		}
		if round.done != nil {
			close(round.done)
			continue
		}
		for _, rr := range round.items {
			if err := rr.r.Apply(rr.rd.CommittedEntries); err != nil {
				// The engine refused a write: the node's state is unknown.
				panic(fmt.Sprintf("store: node %d: apply: %v", s.nodeID, err))
			}
			// An apply may leave Raft work (a configuration change).
			s.markPending(rr.r.RangeID)
		}
		s.signal()
	}
}

// waitApplied returns once every round queued so far has been applied.
func (s *Store) waitApplied() {
	done := make(chan struct{})
	select {
	case s.applyCh <- applyRound{done: done}:
	case <-s.stop:
		return
	}
	select {
	case <-done:
	case <-s.stop:
	}
}

// HandleRaftBatch steps every message of a batch into its replica.
// Messages for ranges this node does not hold are kept a while (see
// Store.early), for a replica a split is about to create here.
func (s *Store) HandleRaftBatch(b *rpcpb.RaftBatch) {
	full := false
	if g := s.appendGuard.Load(); g != nil {
		full = (*g)()
	}
	for _, m := range b.GetMsgs() {
		if full {
			if t := m.GetMsg().GetType(); t == raftpb.MessageType_MsgApp || t == raftpb.MessageType_MsgSnap {
				// The disk is nearly full: what this follower would
				// append is left to its leader to send again later. Raft
				// tolerates lost messages; the node stays up.
				s.droppedAppends.Add(1)
				continue
			}
		}
		r := s.Replica(m.GetRangeId())
		if r == nil {
			if !m.GetQuiesce() {
				s.keepEarly(m.GetRangeId(), b.GetFromNode(), m.GetMsg())
			}
			continue
		}
		r.LearnPeer(m.GetMsg().GetFrom(), b.GetFromNode())
		if m.GetQuiesce() {
			r.StepQuiesce(m.GetMsg())
		} else {
			r.Step(m.GetMsg())
		}
		s.markPending(m.GetRangeId())
	}
	s.signal()
}

// ReportUnreachable tells every replica with a peer on node to that it
// could not be reached.
func (s *Store) ReportUnreachable(to uint64) {
	for _, r := range s.Replicas() {
		if r.HasPeer(to) {
			r.ReportUnreachable(to)
			s.markPending(r.RangeID)
		}
	}
	s.signal()
}

// ReportSnapshot reports a snapshot's delivery to the range's Raft.
func (s *Store) ReportSnapshot(rangeID, to uint64, ok bool) {
	if r := s.Replica(rangeID); r != nil {
		r.ReportSnapshot(to, ok)
		s.markPending(rangeID)
	}
	s.signal()
}

// Execute serves a BatchRequest for a range held here: reads through the
// replica's read path, writes through Raft.
func (s *Store) Execute(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	r := s.Replica(req.GetRangeId())
	if r == nil {
		return nil, kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "store: node %d holds no replica of range %d", s.nodeID, req.GetRangeId())
	}
	var resp *cmdpb.BatchResponse
	var err error
	switch {
	case req.GetTxnStage() != nil || req.GetTxnResolve() != nil || req.GetTxnMark() != nil || req.GetTxnQuery() != nil || req.GetTxnReserve() != nil || req.GetTxnForget() != nil:
		resp, err = r.Txn(ctx, req)
	case isRead(req):
		resp, err = r.Read(ctx, req)
	default:
		resp, err = r.Write(ctx, req)
	}
	var e *kvpb.Error
	if errors.As(err, &e) && e.GetCode() == kvpb.ErrorCode_KEY_MISMATCH && !replica.IsUninitialized(r.Descriptor()) {
		// Tell the router where the keys went.
		e = proto.CloneOf(e)
		e.Descriptors = r.Neighbourhood()
		err = e
	}
	return resp, err
}

func isRead(req *cmdpb.BatchRequest) bool {
	if req.GetSys() != nil {
		return meta.IsRead(req.GetSys())
	}
	return kvpb.IsReadOnly(req.GetOp())
}

// Stats are the store's counters.
type Stats struct {
	GroupCommits, ReadyRounds uint64
}

// Stats returns the store's counters.
func (s *Store) Stats() Stats {
	return Stats{GroupCommits: s.fsyncs.load(), ReadyRounds: s.readyRounds.load()}
}

// Bootstrap writes the initial state of ranges into a fresh engine, with the
// given system values preloaded into the meta range (range descriptors and
// node records). Every initial node calls it with identical arguments.
func Bootstrap(e *storage.Engine, ident storage.Ident, descs []*metapb.RangeDescriptor, sys map[string][]byte) error {
	b := e.NewBatch()
	defer b.Close()
	if err := b.PutIdent(ident); err != nil {
		return err
	}
	for _, d := range descs {
		held := false
		for _, rd := range d.GetReplicas() {
			held = held || rd.GetNodeId() == ident.NodeID
		}
		if !held {
			continue
		}
		if err := replica.Bootstrap(b, d); err != nil {
			return err
		}
		if d.GetRangeId() == meta.MetaRangeID {
			for k, v := range sys {
				if err := b.SysPut([]byte(k), v); err != nil {
					return err
				}
			}
		}
	}
	return b.Commit(true /* sync */)
}

// Campaign asks the replica of rangeID to campaign (bootstrap speed-up).
func (s *Store) Campaign(rangeID uint64) {
	if r := s.Replica(rangeID); r != nil {
		r.Campaign()
		s.signalRange(rangeID)
	}
}

type uint64Counter struct{ v atomic.Uint64 }

func (c *uint64Counter) add(n uint64) { c.v.Add(n) }
func (c *uint64Counter) load() uint64 { return c.v.Load() }
