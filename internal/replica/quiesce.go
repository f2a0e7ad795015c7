package replica

import (
	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

// Quiescence.
//
// An idle range costs nothing: once its leader has served no request for
// QuiesceTicks ticks, and every replica has every entry and has applied it
// (nothing proposed, queued, or waiting for a lease), the leader sends each
// follower a quiesce heartbeat (a MsgHeartbeat marked RaftMessage.quiesce)
// and stops ticking. A follower that gets one from the leader it knows, in
// its term, steps it (its commit index catches up and it answers) and stops
// ticking too. From then on the range sends no heartbeats and no lease
// probes, and the store's ticker and Ready loop do not visit it; a node
// with thousands of idle ranges does work only for the busy ones
// (CockroachDB's quiescence, TiKV's hibernate regions).
//
// Anything a replica must act on wakes it: a request (a write, or a read
// that needs the lease: one that comes to a follower wakes the follower,
// so that a range whose leader is gone elects another once asked), any
// Raft message but a heartbeat's answer (a follower that missed the
// quiesce heartbeat times out and asks for votes, which wakes everyone),
// a campaign, or the transport's report that the leader's node is
// unreachable.
//
// Quiescence is safe because it only withholds ticks: a follower that does
// not tick keeps its promise not to vote for another leader longer, never
// shorter, so no lease is broken. The leader's lease runs out while it is
// quiesced; the first read after it waits for one heartbeat round.

// maybeQuiesceLocked quiesces an idle leader whose range is fully
// replicated and applied, and returns the quiesce heartbeats to send, one
// per follower; nil if the range stays awake.
func (r *Replica) maybeQuiesceLocked() []*raftpb.Message {
	if r.cfg.QuiesceTicks <= 0 || r.mu.idleTicks < r.cfg.QuiesceTicks || !r.leadsLocked() {
		return nil
	}
	l := &r.mu.lease
	if len(r.mu.proposals) > 0 || !r.mu.inflight.empty() || len(l.waiters) > 0 || r.leaseOffLocked() || r.mu.drawing || r.writes.len() > 0 {
		return nil
	}
	if r.mu.rn.HasReady() {
		return nil
	}
	st := r.mu.rn.BasicStatus()
	if st.RaftState != raft.StateLeader || st.LeadTransferee != 0 {
		return nil
	}
	last, err := r.mu.storage.LastIndex()
	commit := st.HardState.GetCommit()
	if err != nil || commit != last || r.mu.applied.Index != last {
		return nil
	}
	caughtUp := true
	var followers []uint64
	r.mu.rn.WithProgress(func(id uint64, _ raft.ProgressType, pr tracker.Progress) {
		if id == r.replicaID {
			return
		}
		caughtUp = caughtUp && pr.Match == last
		followers = append(followers, id)
	})
	if !caughtUp {
		return nil
	}
	term := st.HardState.GetTerm()
	msgs := make([]*raftpb.Message, 0, max(len(followers), 1))
	for _, id := range followers {
		msgs = append(msgs, &raftpb.Message{
			Type: raftpb.MsgHeartbeat.Enum(), To: new(id), From: new(r.replicaID),
			Term: new(term), Commit: new(commit),
		})
	}
	r.quiesceLocked()
	if len(msgs) == 0 {
		// A range of one replica: nothing to tell, but the store expects
		// a non-nil answer when the replica quiesced.
		return msgs[:0:0]
	}
	return msgs
}

// StepQuiesce steps a quiesce heartbeat and quiesces this follower if it
// came from the leader it knows, in its term.
func (r *Replica) StepQuiesce(m *raftpb.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.GetTo() != r.replicaID {
		return
	}
	if err := r.mu.rn.Step(m); err != nil {
		return
	}
	st := r.mu.rn.BasicStatus()
	if st.RaftState == raft.StateFollower && st.Lead == m.GetFrom() && st.HardState.GetTerm() == m.GetTerm() && !r.active.Load() {
		r.quiesceLocked()
	}
}

func (r *Replica) quiesceLocked() {
	if r.quiesced.Load() {
		return
	}
	r.quiesced.Store(true)
	r.mu.idleTicks = 0
	if r.cfg.SetAwake != nil {
		r.cfg.SetAwake(r, false)
	}
}

// wakeLocked makes a quiesced replica tick again.
func (r *Replica) wakeLocked() {
	if !r.quiesced.Load() {
		return
	}
	r.quiesced.Store(false)
	r.mu.idleTicks = 0
	if r.cfg.SetAwake != nil {
		r.cfg.SetAwake(r, true)
	}
}

// touch records a request: it keeps the range from quiescing, and wakes
// the replica if it is quiesced.
func (r *Replica) touch() {
	r.active.Store(true)
	if r.quiesced.Load() {
		r.mu.Lock()
		r.wakeLocked()
		r.mu.Unlock()
	}
}

// Quiesced reports whether the replica is quiesced (not ticking).
func (r *Replica) Quiesced() bool { return r.quiesced.Load() }

func (r *Replica) signal() { r.cfg.Signal(r.RangeID) }
