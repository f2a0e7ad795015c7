package replica

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"go.etcd.io/raft/v3"
)

// Leader leases.
//
// With CheckQuorum on, a follower that heard from its leader less than an
// election timeout ago refuses to vote (or pre-vote) for anyone else. So if
// the leader sent a message at time s and a quorum acknowledged it, no other
// leader can be elected before s + ElectionTicks*tick, measured on the
// followers' clocks (ticks may fire up to one tick early after a reset). The
// leader therefore holds a lease until
//
//	s + (ElectionTicks - 2) * tick
//
// keeping one tick for the followers' tick phase and one for clock rate
// drift. It learns of the acknowledgement through Raft's ReadIndex (in
// ReadOnlySafe mode a ReadIndex is a heartbeat round that a quorum must
// answer): the probe's context carries a sequence number mapped to s.
//
// While the lease is valid, a linearizable read is served from the applied
// state once it includes the index of the lease's first ReadIndex in this
// term: every write acknowledged before the read began is at or below that
// index (acknowledged by an earlier leader) or was applied here (by us).
//
// The lease relies on a bounded clock rate, not on synchronised clocks. A
// leadership transfer would break it (the target campaigns at once); Concord
// does not transfer leadership while a lease is held.

// maxLeaseWaiters bounds the reads waiting for a lease on one replica.
const maxLeaseWaiters = 10000

type lease struct {
	// expiry is when the lease ends (monotonic clock); zero: no lease.
	expiry time.Time
	// term is the Raft term the lease belongs to, index the read index of its
	// first grant in that term.
	term, index uint64
	seq         uint64
	// probes maps an outstanding ReadIndex probe to its send time. Bounded:
	// a new probe is sent only when none is outstanding or the oldest is
	// older than an election timeout (its answer was lost).
	probes  map[uint64]time.Time
	waiters []chan struct{}
	// appliedCh is closed and replaced whenever the applied index moves.
	appliedCh chan struct{}
	// err is what waiters see when the lease is reset.
	err error
	// disabled is set for good when this replica hands its leadership
	// away: the transferee campaigns at once, ignoring the followers'
	// promise not to vote, so no lease may be granted or used any more.
	disabled bool
	// transferTerm, when not 0, is the term in which this replica began
	// handing its leadership to a given member (TransferLeadershipTo): no
	// lease in that term, for the same reason, until resumeAt, which is
	// set (two election timeouts on) only once the transfer failed and
	// this replica still leads. A later term has leases again: a stale
	// transfer cannot win an election against it.
	transferTerm uint64
	resumeAt     time.Time
}

func (l *lease) validLocked(now time.Time) bool {
	return !l.disabled && !l.expiry.IsZero() && now.Before(l.expiry)
}

// resetLocked drops the lease (leadership lost) and fails waiting reads.
func (l *lease) resetLocked(err error) {
	l.expiry = time.Time{}
	l.term, l.index = 0, 0
	clear(l.probes)
	l.failWaitersLocked(err)
}

func (l *lease) failWaitersLocked(err error) {
	l.err = err
	for _, w := range l.waiters {
		close(w)
	}
	l.waiters = nil
}

func (l *lease) notifyAppliedLocked() {
	if l.appliedCh != nil {
		close(l.appliedCh)
		l.appliedCh = nil
	}
}

func (l *lease) appliedChLocked() chan struct{} {
	if l.appliedCh == nil {
		l.appliedCh = make(chan struct{})
	}
	return l.appliedCh
}

func (r *Replica) electionTimeout() time.Duration {
	return time.Duration(r.cfg.ElectionTicks) * r.cfg.TickInterval
}

func (r *Replica) leaseDuration() time.Duration {
	return time.Duration(r.cfg.ElectionTicks-2) * r.cfg.TickInterval
}

// maybeRenewLeaseLocked sends a lease probe when this replica leads and its
// lease is missing, waited for, or past half its duration.
func (r *Replica) maybeRenewLeaseLocked() {
	if !r.leadsLocked() {
		return
	}
	l := &r.mu.lease
	now := r.cfg.Now()
	if len(l.waiters) == 0 && l.validLocked(now) && l.expiry.Sub(now) > r.leaseDuration()/2 {
		return
	}
	for seq, sent := range l.probes {
		if now.Sub(sent) < r.electionTimeout() {
			return // one probe in flight is enough
		}
		delete(l.probes, seq)
	}
	if l.probes == nil {
		l.probes = make(map[uint64]time.Time)
	}
	l.seq++
	l.probes[l.seq] = now
	r.mu.rn.ReadIndex(binary.BigEndian.AppendUint64(nil, l.seq))
}

// handleReadStatesLocked turns answered probes into lease extensions.
func (r *Replica) handleReadStatesLocked(rss []raft.ReadState) {
	l := &r.mu.lease
	for _, rs := range rss {
		if len(rs.RequestCtx) != 8 {
			continue
		}
		seq := binary.BigEndian.Uint64(rs.RequestCtx)
		sent, ok := l.probes[seq]
		if !ok {
			continue
		}
		delete(l.probes, seq)
		if !r.leadsLocked() || r.leaseOffLocked() {
			continue
		}
		if l.term != r.mu.term {
			l.term, l.index = r.mu.term, rs.Index
		}
		if exp := sent.Add(r.leaseDuration()); exp.After(l.expiry) {
			l.expiry = exp
		}
		for _, w := range l.waiters {
			close(w)
		}
		l.waiters = nil
	}
}

// waitLease returns once this replica may serve a linearizable read: it
// leads, holds a valid lease of its current term, and has applied up to the
// lease's index. Errors: NOT_LEADER, or AMBIGUOUS-free UNAVAILABLE when the
// context ends first (a read has no side effects).
func (r *Replica) waitLease(ctx context.Context) error {
	for {
		r.mu.Lock()
		if !r.leadsLocked() || r.leaseOffLocked() {
			err := r.notLeaderLocked()
			r.mu.Unlock()
			return err
		}
		l := &r.mu.lease
		var ch chan struct{}
		if l.validLocked(r.cfg.Now()) && l.term == r.mu.term {
			if r.mu.applied.Index >= l.index {
				r.mu.Unlock()
				return nil
			}
			ch = l.appliedChLocked()
		} else {
			if len(l.waiters) >= maxLeaseWaiters {
				r.mu.Unlock()
				return kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "replica: range %d: %d reads already wait for a lease (bound maxLeaseWaiters); retry later", r.RangeID, maxLeaseWaiters)
			}
			ch = make(chan struct{})
			l.waiters = append(l.waiters, ch)
			r.maybeRenewLeaseLocked()
		}
		r.mu.Unlock()
		r.signal()
		select {
		case <-ch:
		case <-ctx.Done():
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: no lease: %v", r.RangeID, ctx.Err())
		case <-r.stopped:
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d stopped", r.RangeID)
		}
	}
}

// leaseOffLocked reports whether this replica may hold no lease now: it
// gave its leadership away, or is handing it to another member in this
// term.
func (r *Replica) leaseOffLocked() bool {
	l := &r.mu.lease
	if l.disabled {
		return true
	}
	if l.transferTerm == 0 || l.transferTerm != r.mu.term {
		return false
	}
	return l.resumeAt.IsZero() || r.cfg.Now().Before(l.resumeAt)
}

// TransferLeadershipTo hands this replica's leadership to replica target
// (etcd's move-leader; 0: the most up-to-date other voter) and waits until
// another replica leads, for at most
// two election timeouts. The lease ends first: the target campaigns at
// once. A replica that does not lead, or whose target is itself, returns
// at once. Errors: INVALID_ARGUMENT for a target that is no voter of the
// range, UNAVAILABLE if the transfer did not happen in time (this replica
// still leads, and has leases again two election timeouts later).
func (r *Replica) TransferLeadershipTo(ctx context.Context, target uint64) error {
	r.mu.Lock()
	st := r.mu.rn.Status()
	if st.RaftState != raft.StateLeader || target == r.replicaID {
		r.mu.Unlock()
		return nil
	}
	if target == 0 {
		if target = r.leaderTargetLocked(st); target == 0 {
			r.mu.Unlock()
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d has no other voter to lead it", r.RangeID)
		}
	}
	if pr, ok := st.Progress[target]; !ok || pr.IsLearner {
		r.mu.Unlock()
		return kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "replica: range %d: replica %d is no voter to lead it", r.RangeID, target)
	}
	term := r.mu.term
	l := &r.mu.lease
	l.transferTerm, l.resumeAt = term, time.Time{}
	l.resetLocked(r.notLeaderLocked())
	r.wakeLocked()
	r.mu.rn.TransferLeader(target)
	r.mu.Unlock()
	r.signal()
	r.log.Info("moving leadership", "to", target)
	ctx, cancel := context.WithTimeout(ctx, 2*r.electionTimeout())
	defer cancel()
	t := time.NewTicker(r.cfg.TickInterval / 4)
	defer t.Stop()
	for {
		r.mu.Lock()
		lead := r.mu.leader
		if lead != r.replicaID && lead != 0 {
			r.mu.Unlock()
			return nil
		}
		r.mu.Unlock()
		select {
		case <-ctx.Done():
			r.mu.Lock()
			if r.mu.term == term && r.mu.lease.transferTerm == term {
				r.mu.lease.resumeAt = r.cfg.Now().Add(2 * r.electionTimeout())
			}
			r.mu.Unlock()
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: leadership not moved to %d: %v", r.RangeID, target, ctx.Err())
		case <-t.C:
		}
	}
}

// TransferLeadership hands this replica's leadership to its most
// up-to-date follower and waits until another replica leads or ctx ends.
// It first gives up the lease for good (see lease.disabled), so it is meant
// for a node that is shutting down. A replica that does not lead returns at
// once.
func (r *Replica) TransferLeadership(ctx context.Context) error {
	r.mu.Lock()
	st := r.mu.rn.Status()
	if st.RaftState != raft.StateLeader {
		r.mu.Unlock()
		return nil
	}
	var target, best uint64
	for id, pr := range st.Progress {
		if id != r.replicaID && !pr.IsLearner && pr.Match >= best {
			target, best = id, pr.Match
		}
	}
	if target == 0 {
		r.mu.Unlock()
		return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d has no follower to lead", r.RangeID)
	}
	r.mu.lease.disabled = true
	r.mu.lease.resetLocked(r.notLeaderLocked())
	r.wakeLocked()
	r.mu.rn.TransferLeader(target)
	r.mu.Unlock()
	r.signal()
	r.log.Info("transferring leadership", "to", target)
	t := time.NewTicker(r.cfg.TickInterval / 4)
	defer t.Stop()
	for {
		r.mu.Lock()
		lead := r.mu.leader
		r.mu.Unlock()
		if lead != r.replicaID && lead != 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: leadership transfer to %d: %v", r.RangeID, target, ctx.Err())
		case <-t.C:
		}
	}
}
