package replica

import (
	"bytes"
	"fmt"
	"math"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// Ready returns the replica's pending Ready, if it has one, and whether the
// replica leads. The store must pass it to Persist, AfterPersist and
// Advance, in that order, before asking again, and apply its committed
// entries (Apply) in order, possibly later.
func (r *Replica) Ready() (rd raft.Ready, leader, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.mu.rn.HasReady() {
		return raft.Ready{}, false, false
	}
	rd = r.mu.rn.Ready()
	if rd.HardState != nil && rd.HardState.GetTerm() != 0 {
		r.mu.term = rd.HardState.GetTerm()
	}
	if rd.SoftState != nil {
		r.handleSoftStateLocked(rd.SoftState)
	}
	if len(rd.ReadStates) > 0 {
		r.handleReadStatesLocked(rd.ReadStates)
	}
	return rd, r.leadsLocked(), true
}

func (r *Replica) handleSoftStateLocked(ss *raft.SoftState) {
	isLeader := ss.RaftState == raft.StateLeader
	if ss.Lead != r.mu.leader {
		r.log.Info("leader changed", "leader", r.nodeOfLocked(ss.Lead), "previous", r.nodeOfLocked(r.mu.leader), "replica", ss.Lead, "term", r.mu.term)
		r.mu.leader = ss.Lead
		r.leading.Store(ss.Lead == r.replicaID)
		r.mu.leaderSeen = r.mu.leaderSeen || ss.Lead != 0
		r.cfg.Metrics.LeaderChanged(r.RangeID, r.nodeOfLocked(ss.Lead), r.mu.term)
	}
	if !isLeader {
		r.mu.storage.built = nil // only a leader sends one; let its memory go
		r.mu.lease.resetLocked(r.notLeaderLocked())
		r.mu.inflight.clear()
		clear(r.mu.stagings)
		clear(r.mu.reservations)
		r.mu.confPending = 0
		r.endFeedsLocked(r.notLeaderLocked())
		r.mu.lease.notifyAppliedLocked() // wakes waitRevision and waitNotInFlight
		// Commands proposed in a term we no longer lead may still commit
		// under the new leader, or may be lost: their clients cannot know.
		for id, p := range r.mu.proposals {
			p.done <- result{err: kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "replica: leadership of range %d lost with the write in flight", r.RangeID)}
			delete(r.mu.proposals, id)
		}
	}
}

// Persist adds the durable part of rd (snapshot, entries, hard state) to b,
// which the store commits with one fsync for every replica.
func (r *Replica) Persist(b *storage.Batch, rd *raft.Ready) error {
	if !raft.IsEmptySnap(rd.Snapshot) {
		// The snapshot replaces the range's versions; AfterPersist ends
		// the change (if the batch never commits, reads stay on their
		// careful path).
		r.dropSeq.Add(1)
		r.mu.Lock()
		span := r.spanLocked()
		r.mu.Unlock()
		md := rd.Snapshot.GetMetadata()
		if _, _, err := b.ImportRange(r.RangeID, span, rd.Snapshot.GetData()); err != nil {
			return fmt.Errorf("replica: range %d: apply snapshot at %d: %w", r.RangeID, md.GetIndex(), err)
		}
		if err := b.ClearLog(r.RangeID); err != nil {
			return err
		}
		if err := b.TruncateLog(r.RangeID, storage.TruncatedState{Index: md.GetIndex(), Term: md.GetTerm()}); err != nil {
			return err
		}
	}
	if len(rd.Entries) > 0 {
		if err := b.AppendEntries(r.RangeID, rd.Entries); err != nil {
			return err
		}
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := b.PutHardState(r.RangeID, rd.HardState); err != nil {
			return err
		}
	}
	return nil
}

// AfterPersist makes what Persist wrote visible to Raft. Call it after the
// store's batch is durable and before sending rd.Messages.
func (r *Replica) AfterPersist(rd *raft.Ready) error {
	lost, gained, err := r.afterPersist(rd)
	if err == nil && len(lost.End) > 0 && r.cfg.OnSpanLost != nil {
		r.cfg.OnSpanLost(r.RangeID, lost)
	}
	if err == nil && len(gained.End) > 0 && r.cfg.OnSpanGained != nil {
		r.cfg.OnSpanGained(r.RangeID, gained)
	}
	return err
}

func (r *Replica) afterPersist(rd *raft.Ready) (lost, gained keys.Span, _ error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !raft.IsEmptySnap(rd.Snapshot) {
		md := rd.Snapshot.GetMetadata()
		// The data now lives in the engine; Raft only needs the metadata.
		if err := r.mu.storage.ApplySnapshot(&raftpb.Snapshot{Metadata: md}); err != nil {
			return lost, gained, fmt.Errorf("replica: range %d: %w", r.RangeID, err)
		}
		as, err := storage.LoadAppliedState(r.cfg.Engine, r.RangeID)
		if err != nil {
			return lost, gained, err
		}
		// The snapshot carries the range's descriptor: a replica that
		// missed a split takes its new span with the data, and the split
		// off ranges must come to this node some other way.
		desc, ok, err := storage.LoadLocalDescriptor(r.cfg.Engine, r.RangeID)
		if err != nil {
			return lost, gained, err
		}
		if ok {
			old := r.mu.desc
			if !IsUninitialized(old) && bytes.Compare(desc.GetEndKey(), old.GetEndKey()) < 0 {
				lost = keys.Span{Start: desc.GetEndKey(), End: old.GetEndKey()}
			}
			if !IsUninitialized(old) && bytes.Compare(desc.GetEndKey(), old.GetEndKey()) > 0 {
				gained = keys.Span{Start: old.GetEndKey(), End: desc.GetEndKey()}
			}
			r.setDescLocked(desc)
		}
		r.mu.applied = as
		r.mu.resolvedTS = max(r.mu.resolvedTS, as.MaxTS)
		if err := r.mu.locks.load(r.cfg.Engine, r.spanLocked()); err != nil {
			return lost, gained, err
		}
		r.dropSeq.Add(1)
		r.mu.truncated = storage.TruncatedState{Index: md.GetIndex(), Term: md.GetTerm()}
		r.mu.appliedLogBytes = 0
		r.idx.Reset()
		if as.MaxTS > r.mu.lastProposedTS {
			r.mu.lastProposedTS = as.MaxTS
		}
		r.mu.snapshotsApplied++
		r.endFeedsLocked(kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d took a snapshot; open its feed again", r.RangeID))
		r.log.Info("applied snapshot", "index", md.GetIndex(), "term", md.GetTerm())
		r.mu.lease.notifyAppliedLocked()
	}
	if err := r.mu.storage.Append(rd.Entries); err != nil {
		return lost, gained, fmt.Errorf("replica: range %d: %w", r.RangeID, err)
	}
	if !raft.IsEmptyHardState(rd.HardState) {
		if err := r.mu.storage.SetHardState(rd.HardState); err != nil {
			return lost, gained, err
		}
	}
	return lost, gained, nil
}

// Advance completes rd.
func (r *Replica) Advance(rd *raft.Ready) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.rn.Advance(*rd)
}

// Apply evaluates committed entries in log order. All their effects and
// the new applied state go into one engine batch, committed once, so a crash
// leaves the range at an entry boundary; it is not synced because the Raft
// log already holds the entries durably and replays them.
//
// A command that fails with a request error (*kvpb.Error) wrote
// nothing (eval and the system ops check everything before they write), so
// later commands of the round share the batch safely. Any other error is an
// engine failure: Apply returns it without committing anything.
func (r *Replica) Apply(ents []*raftpb.Entry) error {
	if len(ents) == 0 {
		return nil
	}
	r.mu.Lock()
	as := r.mu.applied
	span := r.spanLocked()
	r.mu.Unlock()
	type applied struct {
		cmd   *cmdpb.Command
		res   result
		index uint64
		start time.Time
	}
	var done []applied
	var logBytes uint64
	var splits []*cmdpb.SplitTrigger
	var merges []*cmdpb.MergeTrigger
	var changes []*cmdpb.ChangeReplicasTrigger
	resolved := int64(0) // the newest revision of a command applied here
	drops := false       // see dropSeq
	b := r.cfg.Engine.NewBatch()
	defer b.Close()
	recorded := r.feeds.active.Load()
	if recorded {
		b.RecordEvents()
	}
	for _, ent := range ents {
		if ent.GetIndex() <= as.Index {
			continue // covered by a snapshot
		}
		if ent.GetIndex() != as.Index+1 {
			panic(fmt.Sprintf("replica: range %d applying index %d after %d", r.RangeID, ent.GetIndex(), as.Index))
		}
		start := time.Now()
		next := as
		next.Index, next.Term = ent.GetIndex(), ent.GetTerm()
		nevs, nlocks := b.EventCount(), len(r.applyLocks)
		cmd, res := r.applyEntry(b, ent, span, &next)
		if res.err != nil {
			b.DropEventsAfter(nevs)
			r.applyLocks = r.applyLocks[:nlocks]
			if kvpb.CodeOf(res.err) == kvpb.ErrorCode_OK {
				return fmt.Errorf("replica: range %d: apply index %d: %w", r.RangeID, ent.GetIndex(), res.err)
			}
			next.MaxTS, next.TxnTS, next.CompactedRev = as.MaxTS, as.TxnTS, as.CompactedRev
		}
		// A compaction drops versions, even one that failed (it may have
		// written before failing; the batch is then abandoned anyway).
		drops = drops || cmd.GetCompact() != nil
		a := applied{cmd: cmd, res: res, index: ent.GetIndex(), start: start}
		if cmd.GetTxnStage() == nil {
			// A staging's revision is the txn's, drawn elsewhere: it says
			// nothing of the writes this range numbered.
			resolved = max(resolved, cmd.GetTs())
		}
		if t := cmd.GetSplit(); t != nil && res.err == nil {
			// Later entries apply to the range as it is after the split.
			splits = append(splits, t)
			span = keys.Span{Start: t.GetLeft().GetStartKey(), End: t.GetLeft().GetEndKey()}
		}
		if t := cmd.GetChangeReplicas(); t != nil && res.err == nil {
			changes = append(changes, t)
		}
		if t := cmd.GetMerge(); t != nil && res.err == nil {
			merges = append(merges, t)
			span = keys.Span{Start: t.GetLeft().GetStartKey(), End: t.GetLeft().GetEndKey()}
		}
		as = next
		logBytes += uint64(len(ent.GetData()))
		done = append(done, a)
	}
	if len(done) == 0 {
		r.applyLocks = r.applyLocks[:0]
		return nil
	}
	defer func() { r.applyLocks = r.applyLocks[:0] }()
	if err := b.PutAppliedState(r.RangeID, as); err != nil {
		return err
	}
	if drops {
		r.dropSeq.Add(1) // ended below, once mu.applied says so
	}
	if err := b.Commit(false /* sync */); err != nil {
		return fmt.Errorf("replica: range %d: apply up to index %d: %w", r.RangeID, as.Index, err)
	}
	r.cfg.Metrics.ObserveApplied(len(done))
	r.mu.Lock()
	r.mu.applied = as
	r.mu.resolvedTS = max(r.mu.resolvedTS, resolved, as.MaxTS)
	for _, lc := range r.applyLocks {
		if lc.lock == nil {
			r.mu.locks.del(lc.key)
		} else {
			r.mu.locks.put(lc.key, lc.lock)
		}
	}
	for _, t := range splits {
		r.setDescLocked(t.GetLeft())
		r.mu.splitOff = t.GetRight()
		r.mu.locks.keepOnly(r.spanLocked())
	}
	removed := false
	for _, t := range changes {
		r.setDescLocked(t.GetDesc())
		removed = t.GetDesc().ReplicaOn(r.cfg.NodeID) == nil
	}
	for _, t := range merges {
		r.setDescLocked(t.GetLeft())
		// The right range's locks are this range's now; what reads it
		// served, this range's timestamp cache does not know.
		if err := storage.ScanLocks(r.cfg.Engine, keys.Span{Start: t.GetRight().GetStartKey(), End: t.GetRight().GetEndKey()}, func(key []byte, l *kvpb.Lock) error {
			r.mu.locks.put(key, l)
			return nil
		}); err != nil {
			r.mu.Unlock()
			return err
		}
		r.mu.tsc.term = 0
	}
	r.publishLocked(b.TakeEvents(), recorded, as.CompactedRev)
	if len(splits) > 0 || len(merges) > 0 {
		r.endFeedsLocked(kvpb.Errorf(kvpb.ErrorCode_KEY_MISMATCH, "replica: range %d changed its span; open the feeds of its keys again", r.RangeID))
	}
	leads := r.leadsLocked()
	r.mu.appliedLogBytes += logBytes
	if drops {
		r.dropSeq.Add(1)
	}
	for _, a := range done {
		if a.cmd == nil || a.cmd.GetProposer() != r.cfg.NodeID {
			continue
		}
		r.mu.inflight.remove(a.cmd.GetId())
		delete(r.mu.stagings, a.cmd.GetId())
		if r.mu.confPending == a.cmd.GetId() {
			r.mu.confPending = 0
		}
		if p, ok := r.mu.proposals[a.cmd.GetId()]; ok {
			delete(r.mu.proposals, a.cmd.GetId())
			if a.res.resp != nil {
				a.res.resp.RaftTerm = r.mu.term
			}
			p.done <- a.res
			r.traceApply(p, a.start, a.index, a.res.err)
		}
	}
	r.mu.lease.notifyAppliedLocked()
	err := r.maybeTruncateLogLocked()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	for _, t := range splits {
		if r.cfg.OnSplit != nil {
			r.cfg.OnSplit(t.GetLeft(), t.GetRight(), leads)
		}
	}
	for _, t := range merges {
		if r.cfg.OnMerge != nil {
			r.cfg.OnMerge(t.GetLeft(), t.GetRight())
		}
	}
	if removed {
		r.log.Info("this replica was removed from its range")
		if r.cfg.OnRemoved != nil {
			r.cfg.OnRemoved(r.RangeID, r.replicaID)
		}
	}
	return nil
}

// applyEntry evaluates one entry into b and updates as. It returns the
// decoded command (nil for Raft's own entries) and its result.
func (r *Replica) applyEntry(b *storage.Batch, ent *raftpb.Entry, span keys.Span, as *storage.AppliedState) (*cmdpb.Command, result) {
	switch ent.GetType() {
	case raftpb.EntryConfChange:
		var cc raftpb.ConfChange
		if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
			panic(fmt.Sprintf("replica: range %d: undecodable conf change at %d: %v", r.RangeID, ent.GetIndex(), err))
		}
		return r.applyConfEntry(b, &cc, cc.GetContext(), as)
	case raftpb.EntryConfChangeV2:
		var cc raftpb.ConfChangeV2
		if err := proto.Unmarshal(ent.GetData(), &cc); err != nil {
			panic(fmt.Sprintf("replica: range %d: undecodable conf change at %d: %v", r.RangeID, ent.GetIndex(), err))
		}
		return r.applyConfEntry(b, &cc, cc.GetContext(), as)
	}
	if len(ent.GetData()) == 0 {
		return nil, result{} // a new leader's empty entry
	}
	var cmd cmdpb.Command
	if err := proto.Unmarshal(ent.GetData(), &cmd); err != nil {
		// Every replica fails the same way, so the ranges stay identical.
		r.log.Error("undecodable command", "index", ent.GetIndex(), "err", err)
		return nil, result{err: kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "replica: undecodable command at index %d", ent.GetIndex())}
	}
	return &cmd, r.evalCommand(b, &cmd, span, as)
}

func (r *Replica) applyConfChange(cc raftpb.ConfChangeI, as *storage.AppliedState) {
	r.mu.Lock()
	defer r.mu.Unlock()
	as.ConfState = r.mu.rn.ApplyConfChange(cc)
}

// maybeTruncateLogLocked truncates the log to the applied index once it has
// grown past cfg.LogTruncateEntries or cfg.LogTruncateBytes.
func (r *Replica) maybeTruncateLogLocked() error {
	as := r.mu.applied
	entries := as.Index - r.mu.truncated.Index
	if entries <= r.cfg.LogTruncateEntries && r.mu.appliedLogBytes <= r.cfg.LogTruncateBytes {
		return nil
	}
	// A leader keeps what its live followers still need, so that one a
	// little behind catches up from the log instead of a snapshot of the
	// whole range (CockroachDB's raft log queue does the same), up to
	// logHardFactor times the bounds; past them, or on a follower, the log
	// goes up to the applied index. A follower that is down, or already
	// getting a snapshot, does not hold the log back.
	to := as.Index
	hard := entries > logHardFactor*r.cfg.LogTruncateEntries || r.mu.appliedLogBytes > logHardFactor*r.cfg.LogTruncateBytes
	if !hard && r.leadsLocked() {
		r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
			if id != r.replicaID && pr.RecentActive && pr.State != tracker.StateSnapshot && pr.Match < to {
				to = pr.Match
			}
		})
	}
	if to <= r.mu.truncated.Index {
		return nil
	}
	term, err := r.mu.storage.Term(to)
	if err != nil {
		return err
	}
	var kept uint64 // the data of the entries left, applied after to
	if to < as.Index {
		ents, err := r.mu.storage.Entries(to+1, as.Index+1, math.MaxUint64)
		if err != nil {
			return err
		}
		for _, e := range ents {
			kept += uint64(len(e.GetData()))
		}
	}
	ts := storage.TruncatedState{Index: to, Term: term}
	b := r.cfg.Engine.NewBatch()
	defer b.Close()
	if err := b.TruncateLog(r.RangeID, ts); err != nil {
		return err
	}
	if err := b.Commit(false /* sync */); err != nil {
		return err
	}
	if err := r.mu.storage.Compact(ts.Index); err != nil && err != raft.ErrCompacted {
		return err
	}
	r.mu.truncated = ts
	r.mu.appliedLogBytes = kept
	return nil
}

// logHardFactor is how far past LogTruncateEntries and LogTruncateBytes a
// leader's log may grow for a follower that is behind.
const logHardFactor = 8
