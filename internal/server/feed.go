package server

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/replica"
	"github.com/concorddb/concord/internal/watch"
)

// Range feeds: a node serves the feeds of the ranges it leads (to its own
// watch hub in process, to other nodes' over the Peer service), and its
// hub opens feeds through feedSource.

// maxFeedMsgBytes bounds the changes one RangeFeedEvent carries (a
// revision is never cut, so one may be larger).
const maxFeedMsgBytes = 4 << 20

// RangeFeed serves a range feed to another node's watch hub.
func (s *peerService) RangeFeed(stream rpcpb.Peer_RangeFeedServer) error {
	req, err := stream.Recv()
	if err != nil {
		return err
	}
	create := req.GetCreate()
	if create == nil {
		return status.Error(codes.InvalidArgument, "concord: a range feed starts with its create request")
	}
	closes := make(chan int64, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				return
			}
			if c := m.GetClose(); c != nil {
				offerRev(closes, c.GetRevision())
			}
		}
	}()
	return s.n.serveFeed(stream.Context(), create, closes, stream.Send)
}

// offerRev puts rev in a one-slot channel, keeping the larger of it and
// what the slot held.
func offerRev(ch chan int64, rev int64) {
	for {
		select {
		case ch <- rev:
			return
		case old := <-ch:
			rev = max(rev, old)
		}
	}
}

// serveFeed serves one range feed: an acknowledgement (or the error that
// refused it), then the feed's changes and resolved revisions, each
// resolve request taken from closes answered by the feed's Resolve. It
// returns nil after a bounded feed's end.
func (n *Node) serveFeed(ctx context.Context, create *rpcpb.RangeFeedCreate, closes chan int64, send func(*rpcpb.RangeFeedEvent) error) error {
	r := n.store.Replica(create.GetRangeId())
	if r == nil {
		return send(feedError(kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "concord: node %d holds no replica of range %d", n.ident.NodeID, create.GetRangeId())))
	}
	span := keys.Span{Start: create.GetStartKey(), End: create.GetEndKey()}
	f, err := r.OpenFeed(ctx, span, create.GetFromRevision(), create.GetToRevision(), create.GetPrevKv())
	if err != nil {
		return send(feedError(err))
	}
	defer f.Close()
	if err := send(&rpcpb.RangeFeedEvent{Resolved: create.GetFromRevision()}); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	resolveErr := make(chan error, 1)
	if to := create.GetToRevision(); to > 0 {
		offerRev(closes, to)
	}
	go func() {
		for {
			select {
			case rev := <-closes:
				if err := f.Resolve(ctx, rev); err != nil {
					resolveErr <- err
					cancel()
					return
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		b, err := f.Next(ctx)
		if replica.IsFeedDone(err) {
			return nil
		}
		if err != nil {
			select {
			case err = <-resolveErr:
			default:
			}
			return send(feedError(err))
		}
		if b.Compacted > 0 {
			if err := send(&rpcpb.RangeFeedEvent{CompactRevision: b.Compacted, Resolved: create.GetFromRevision()}); err != nil {
				return err
			}
		}
		if err := sendChunked(b.Events, b.Resolved, send); err != nil {
			return err
		}
	}
}

// sendChunked sends evs in messages of about maxFeedMsgBytes, cut between
// revisions; each message's resolved revision is that of its last change,
// the last message's resolved.
func sendChunked(evs []*kvpb.Event, resolved int64, send func(*rpcpb.RangeFeedEvent) error) error {
	if len(evs) == 0 {
		return send(&rpcpb.RangeFeedEvent{Resolved: resolved})
	}
	for len(evs) > 0 {
		size, n := 0, 0
		for n < len(evs) {
			size += proto.Size(evs[n])
			n++
			if size >= maxFeedMsgBytes && (n == len(evs) || evs[n].GetKv().GetModRevision() != evs[n-1].GetKv().GetModRevision()) {
				break
			}
		}
		msg := &rpcpb.RangeFeedEvent{Events: evs[:n], Resolved: evs[n-1].GetKv().GetModRevision()}
		if n == len(evs) {
			msg.Resolved = resolved
		}
		if err := send(msg); err != nil {
			return err
		}
		evs = evs[n:]
	}
	return nil
}

// feedError is the last message of a feed that failed with err.
func feedError(err error) *rpcpb.RangeFeedEvent {
	ev := &rpcpb.RangeFeedEvent{Error: kvpb.AsError(err)}
	if rev, ok := replica.CompactedRevision(err); ok {
		ev.Error = &kvpb.Error{Code: kvpb.ErrorCode_COMPACTED, Message: err.Error()}
		ev.CompactRevision = rev
	}
	return ev
}

// feedSource is the watch hub's view of the cluster.
type feedSource struct {
	n *Node
	// servers tracks the feeds this node serves to its own hub, which
	// hold engine snapshots: Stop waits for them before the engine closes.
	servers *localFeeds
}

var _ watch.Source = feedSource{}

// localFeeds counts the in-process feed servers. closed refuses new ones
// once the node stops.
type localFeeds struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// add registers a new feed server; false once the node stops.
func (l *localFeeds) add() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	return true
}

// closeAndWait refuses new feed servers and waits for the running ones.
func (l *localFeeds) closeAndWait() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.wg.Wait()
}

func (s feedSource) Covering(ctx context.Context, span keys.Span, fresh bool) ([]*metapb.RangeDescriptor, error) {
	return s.n.router.Covering(ctx, span, fresh)
}

func (s feedSource) Current(ctx context.Context) (int64, error) {
	return s.n.router.CurrentRevision(ctx)
}

// OpenFeed opens req's feed on the range's leader: the cached one first,
// following NOT_LEADER hints, then each replica in turn, a few rounds.
func (s feedSource) OpenFeed(ctx context.Context, d *metapb.RangeDescriptor, req *rpcpb.RangeFeedCreate) (watch.FeedStream, error) {
	var lastErr error
	tried := 0
	for attempt := 0; attempt < 3*len(d.GetReplicas())+2; attempt++ {
		node := s.n.router.PickNode(d, tried)
		st, err := s.openOn(ctx, node, req)
		if err == nil {
			s.n.router.NoteLeader(d.GetRangeId(), node, true)
			return st, nil
		}
		lastErr = err
		var e *kvpb.Error
		switch {
		case errors.As(err, &e) && e.GetCode() == kvpb.ErrorCode_NOT_LEADER && e.GetLeaderHint() != 0 && e.GetLeaderHint() != node:
			s.n.router.NoteLeader(d.GetRangeId(), e.GetLeaderHint(), true)
			continue
		case kvpb.CodeOf(err) == kvpb.ErrorCode_KEY_MISMATCH:
			return nil, err
		}
		var ce *watch.CompactedError
		if errors.As(err, &ce) || ctx.Err() != nil {
			return nil, err
		}
		s.n.router.NoteLeader(d.GetRangeId(), node, false)
		tried++
		select {
		case <-time.After(time.Duration(attempt+1) * 10 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return nil, lastErr
}

// openOn opens the feed on one node and waits for its acknowledgement.
func (s feedSource) openOn(ctx context.Context, node uint64, req *rpcpb.RangeFeedCreate) (watch.FeedStream, error) {
	ctx, cancel := context.WithCancel(ctx)
	var st watch.FeedStream
	if node == s.n.ident.NodeID {
		if !s.servers.add() {
			cancel()
			return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "concord: node %d is stopping", node)
		}
		lf := &localFeed{ch: make(chan *rpcpb.RangeFeedEvent, 16), closes: make(chan int64, 1), cancel: cancel, done: make(chan struct{})}
		go func() {
			defer s.servers.wg.Done()
			lf.err = s.n.serveFeed(ctx, req, lf.closes, func(ev *rpcpb.RangeFeedEvent) error {
				select {
				case lf.ch <- ev:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			})
			close(lf.done)
		}()
		st = lf
	} else {
		conn, err := s.n.transport.Conn(ctx, node)
		if err != nil {
			cancel()
			return nil, err
		}
		stream, err := rpcpb.NewPeerClient(conn).RangeFeed(ctx)
		if err != nil {
			cancel()
			return nil, err
		}
		if err := stream.Send(&rpcpb.RangeFeedRequest{Request: &rpcpb.RangeFeedRequest_Create{Create: req}}); err != nil {
			cancel()
			return nil, err
		}
		st = &remoteFeed{stream: stream, cancel: cancel}
	}
	first, err := st.Recv()
	if err == nil && first.GetError() != nil {
		err = first.GetError()
		if first.GetError().GetCode() == kvpb.ErrorCode_COMPACTED {
			err = &watch.CompactedError{Revision: first.GetCompactRevision()}
		}
	}
	if err != nil {
		st.Close()
		return nil, err
	}
	return st, nil
}

// localFeed is a feed served by this node to its own hub, in process.
type localFeed struct {
	ch     chan *rpcpb.RangeFeedEvent
	closes chan int64
	cancel context.CancelFunc
	done   chan struct{} // closed once the server returned err
	err    error
}

func (f *localFeed) Recv() (*rpcpb.RangeFeedEvent, error) {
	select {
	case ev := <-f.ch:
		return ev, nil
	case <-f.done:
		select {
		case ev := <-f.ch:
			return ev, nil
		default:
		}
		if f.err == nil {
			return nil, io.EOF
		}
		return nil, f.err
	}
}

func (f *localFeed) Resolve(rev int64) error {
	offerRev(f.closes, rev)
	return nil
}

func (f *localFeed) Close() { f.cancel() }

// remoteFeed is a feed served by another node.
type remoteFeed struct {
	mu     sync.Mutex // serializes Sends
	stream rpcpb.Peer_RangeFeedClient
	cancel context.CancelFunc
}

func (f *remoteFeed) Recv() (*rpcpb.RangeFeedEvent, error) { return f.stream.Recv() }

func (f *remoteFeed) Resolve(rev int64) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.stream.Send(&rpcpb.RangeFeedRequest{Request: &rpcpb.RangeFeedRequest_Close{Close: &rpcpb.RangeFeedClose{Revision: rev}}})
}

func (f *remoteFeed) Close() { f.cancel() }
