package transport

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// The sender's reconnection backoff: after a failure it does not dial again
// for a random delay in [d/2, d], d doubling from minBackoff to maxBackoff.
// Messages that arrive meanwhile are dropped, so the queue stays short and
// Raft (which retransmits) hears promptly that the peer is unreachable.
// A stream that proved itself (lived longer than maxBackoff) resets d.
const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = time.Second
)

// peer is the sending side towards one node: a bounded queue filled by Send
// and drained by one goroutine (run) that owns the stream.
type peer struct {
	t  *Transport
	to uint64
	// wake has room for one token: Send leaves one after queueing, run takes
	// it and drains everything queued so far.
	wake chan struct{}

	mu struct {
		sync.Mutex
		// Invariant: len(queue) <= t.cfg.MaxQueueMsgs.
		queue []*rpcpb.RaftMessage
		// spare is the drained queue's backing array, kept for reuse.
		spare []*rpcpb.RaftMessage
		// failedSnaps are the range ids of MsgSnaps dropped by Send because
		// the queue was full, reported by run (never from inside Send).
		failedSnaps []uint64
	}

	// headerBytes is the encoded size of a RaftBatch to this peer without
	// its messages, counted against MaxBatchBytes.
	headerBytes int

	// Fields below are owned by run's goroutine.
	// healthy says no failure happened since the last stream proved itself
	// (see raftStream.proven); the first failure of an outage flips it.
	healthy bool
	retryAt time.Time // no dial before this
	delay   time.Duration
}

func newPeer(t *Transport, to uint64) *peer {
	p := &peer{t: t, to: to, wake: make(chan struct{}, 1), healthy: true}
	p.headerBytes = proto.Size(p.newBatch(nil))
	return p
}

// newBatch wraps msgs in a batch to this peer.
func (p *peer) newBatch(msgs []*rpcpb.RaftMessage) *rpcpb.RaftBatch {
	return &rpcpb.RaftBatch{
		ClusterId: p.t.cfg.ClusterID,
		FromNode:  p.t.cfg.NodeID,
		ToNode:    p.to,
		Msgs:      msgs,
		FromAddr:  p.t.cfg.Addr,
	}
}

// enqueue appends msgs to the queue and returns how many it dropped because
// the queue was full.
func (p *peer) enqueue(msgs []*rpcpb.RaftMessage) int {
	p.mu.Lock()
	room := p.t.cfg.MaxQueueMsgs - len(p.mu.queue)
	n := min(room, len(msgs))
	p.mu.queue = append(p.mu.queue, msgs[:n]...)
	for _, m := range msgs[n:] {
		if isSnap(m) {
			p.mu.failedSnaps = append(p.mu.failedSnaps, m.GetRangeId())
		}
	}
	p.mu.Unlock()
	select {
	case p.wake <- struct{}{}:
	default:
	}
	return len(msgs) - n
}

// take returns everything queued; the caller owns it until it hands the
// slice back through recycle.
func (p *peer) take() (msgs []*rpcpb.RaftMessage, failedSnaps []uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	msgs = p.mu.queue
	p.mu.queue, p.mu.spare = p.mu.spare[:0], nil
	failedSnaps, p.mu.failedSnaps = p.mu.failedSnaps, nil
	return msgs, failedSnaps
}

// recycle keeps msgs' backing array for the next take, after clearing it so
// the sent messages can be collected.
func (p *peer) recycle(msgs []*rpcpb.RaftMessage) {
	clear(msgs)
	p.mu.Lock()
	p.mu.spare = msgs[:0]
	p.mu.Unlock()
}

// run is the sender goroutine. It exits when ctx is canceled (Close),
// closing its stream on the way out.
func (p *peer) run(ctx context.Context) {
	defer p.t.wg.Done()
	var s *raftStream // nil while there is no stream
	defer func() {
		if s != nil {
			s.close()
		}
	}()
	for {
		var streamDone <-chan struct{}
		if s != nil {
			streamDone = s.done
		}
		select {
		case <-ctx.Done():
			return
		case <-streamDone:
			p.fail(s, s.err)
			s = nil
			continue
		case <-p.wake:
		}

		msgs, failedSnaps := p.take()
		for _, rangeID := range failedSnaps {
			p.t.h.ReportSnapshot(rangeID, p.to, false)
		}
		if len(msgs) == 0 {
			p.recycle(msgs)
			continue
		}
		if s == nil {
			if time.Now().Before(p.retryAt) {
				p.drop(msgs)
				p.recycle(msgs)
				continue
			}
			var err error
			if s, err = p.open(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				p.fail(nil, err)
				p.drop(msgs)
				p.recycle(msgs)
				continue
			}
		}
		if err := p.sendAll(s, msgs); err != nil {
			if ctx.Err() != nil {
				return
			}
			p.fail(s, err)
			s = nil
		}
		p.recycle(msgs)
	}
}

// open dials (or reuses) the connection to the peer and opens a Raft stream.
func (p *peer) open(ctx context.Context) (*raftStream, error) {
	cc, err := p.t.Conn(ctx, p.to)
	if err != nil {
		return nil, err
	}
	sctx, cancel := context.WithCancel(ctx)
	cs, err := rpcpb.NewPeerClient(cc).Raft(sctx)
	if err != nil {
		cancel()
		return nil, err
	}
	s := &raftStream{cs: cs, cancel: cancel, done: make(chan struct{}), opened: time.Now()}
	go s.watch()
	return s, nil
}

// fail handles a failed stream s (nil if it never opened): it closes s,
// tells the Handler the peer is unreachable and sets the next dial time.
// The first failure of an outage is logged at warn, the rest at debug.
func (p *peer) fail(s *raftStream, err error) {
	if s != nil {
		s.close()
		if s.proven() {
			p.healthy = true
		}
	}
	if p.healthy {
		p.delay = 0
		p.t.log.Warn("peer unreachable", "peer", p.to, "err", err)
	} else {
		p.t.log.Debug("peer still unreachable", "peer", p.to, "err", err)
	}
	p.healthy = false
	p.delay = nextDelay(p.delay)
	p.retryAt = time.Now().Add(jitter(p.delay))
	p.t.h.ReportUnreachable(p.to)
}

// sendAll writes msgs to s in batches of at most MaxBatchBytes. On error
// it drops the batch in flight and everything after it.
func (p *peer) sendAll(s *raftStream, msgs []*rpcpb.RaftMessage) error {
	t := p.t
	for len(msgs) > 0 {
		n, size := nextBatch(msgs, t.cfg.MaxBatchBytes-p.headerBytes)
		size += p.headerBytes
		batch := msgs[:n]
		msgs = msgs[n:]
		if size > MaxMsgBytes {
			t.log.Error("dropping message larger than the peer message limit",
				"peer", p.to, "range", batch[0].GetRangeId(), "type", batch[0].GetMsg().GetType().String(), "bytes", size, "limit", MaxMsgBytes)
			p.drop(batch)
			continue
		}
		if t.dropByFault(t.cfg.NodeID, p.to) {
			p.drop(batch)
			continue
		}
		err := s.cs.Send(p.newBatch(batch))
		if err != nil {
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status is what the
				// watcher received.
				<-s.done
				err = s.err
			}
			p.drop(batch)
			p.drop(msgs)
			return err
		}
		if !p.healthy && s.proven() {
			t.log.Info("peer reachable again", "peer", p.to)
			p.healthy = true
		}
		t.stats.sentBatches.Add(1)
		t.stats.sentMsgs.Add(uint64(len(batch)))
		for _, m := range batch {
			if isSnap(m) {
				t.h.ReportSnapshot(m.GetRangeId(), p.to, true)
			}
		}
	}
	return nil
}

// drop counts msgs as dropped and reports each MsgSnap among them as failed.
func (p *peer) drop(msgs []*rpcpb.RaftMessage) {
	if len(msgs) == 0 {
		return
	}
	p.t.stats.droppedMsgs.Add(uint64(len(msgs)))
	for _, m := range msgs {
		if isSnap(m) {
			p.t.h.ReportSnapshot(m.GetRangeId(), p.to, false)
		}
	}
}

// nextBatch returns how many leading msgs fit in maxBytes of a batch's
// messages field, and their encoded size. It always takes at least one
// message, however large.
func nextBatch(msgs []*rpcpb.RaftMessage, maxBytes int) (n, size int) {
	for n < len(msgs) {
		// Each message is a length-delimited field 4 of RaftBatch: one tag
		// byte, a varint length, the bytes.
		l := proto.Size(msgs[n])
		l += 1 + protowire.SizeVarint(uint64(l))
		if n > 0 && size+l > maxBytes {
			break
		}
		size += l
		n++
	}
	return n, size
}

func isSnap(m *rpcpb.RaftMessage) bool {
	return m.GetMsg().GetType() == raftpb.MsgSnap
}

// nextDelay doubles d within [minBackoff, maxBackoff].
func nextDelay(d time.Duration) time.Duration {
	return min(max(2*d, minBackoff), maxBackoff)
}

// jitter returns a random duration in [d/2, d], so peers that failed
// together do not redial together.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

// raftStream is one open Peer.Raft client stream and the goroutine that
// watches it for the server's answer, which only comes when the stream ends.
type raftStream struct {
	cs     rpcpb.Peer_RaftClient
	cancel context.CancelFunc
	opened time.Time
	done   chan struct{} // closed by watch when the stream ended
	err    error         // why it ended; written before done is closed
}

// watch waits for the stream to end and records why. It exits when the
// server ends the stream, the connection breaks, or close cancels it.
func (s *raftStream) watch() {
	var ack rpcpb.RaftAck
	err := s.cs.RecvMsg(&ack)
	if err == nil {
		err = errors.New("transport: peer ended the raft stream")
	}
	s.err = err
	close(s.done)
}

// proven reports whether the stream lived longer than maxBackoff. A write
// succeeding proves little (the server may refuse the stream right after),
// so only a stream that lasted resets the backoff and ends an outage.
func (s *raftStream) proven() bool {
	return time.Since(s.opened) > maxBackoff
}

// close cancels the stream and waits for its watcher to exit.
func (s *raftStream) close() {
	s.cancel()
	<-s.done
}
