package router

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/telemetry"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
)

// Forwarding: a gateway sends the requests it forwards to one node over one
// Peer.Forward stream, many requests per message, instead of one unary call
// per request. Under load most of a unary call's cost is per call (HTTP/2
// headers, a stream, a flush and a syscall on both sides), so packing the
// requests queued while the previous message was being written into the
// next one makes forwarding cost a fraction of the client's own call.
//
// What a failure means for a request on a stream:
//   - queued but not yet handed to Send: it never left this node
//     (errUnreachable), so even a write may be retried elsewhere;
//   - handed to Send: it may have reached the node, so a write's fate is
//     unknown once the stream breaks (the router makes that AMBIGUOUS).

// maxForwardBatch bounds the requests per ForwardBatch message, so a batch
// of etcd-sized requests (1.5 MiB at most) stays far below the peer
// transport's message limit.
const maxForwardBatch = 64

// maxForwardInFlight bounds the requests of one Forward stream that the
// serving node holds at once, running or answered but not yet sent back
// (and so its goroutines and buffered responses for them).
const maxForwardInFlight = 4096

// maxForwardPending bounds the calls a gateway's stream to one node holds
// awaiting their answers, queued or sent: twice what the serving node runs
// at once (maxForwardInFlight), so that node always has a full set of
// requests behind the ones it runs. Past it the node is not keeping up
// with this gateway, and another call would only wait out its deadline in
// a queue that grows with the load: it is refused at once instead
// (errFull, ResourceExhausted to the client), before it was sent, so a
// write may be retried.
const maxForwardPending = 2 * maxForwardInFlight

// maxForwardQueued bounds the calls a gateway's stream holds that were not
// yet handed to Send, counting those whose callers gave up (each stays
// until the send loop passes over it), so callers that time out while Send
// is held back by a slow node cannot fill the queue behind the pending
// bound. It is maxForwardPending: a queue of live calls never exceeds it.
const maxForwardQueued = maxForwardPending

// forwardWorkerIdle is how long a serving goroutine waits for another
// forwarded request before it exits.
const forwardWorkerIdle = time.Second

// forwarder keeps one forward stream per node.
type forwarder struct {
	// ctx bounds every stream's life; cancel ends them all (Router.Close).
	ctx    context.Context
	cancel context.CancelFunc

	mu sync.Mutex
	// streams holds the live stream to each node; a broken stream removes
	// itself, and the next request opens a new one.
	streams map[uint64]*fwdStream

	// maxPending and maxQueued are each stream's bounds (maxForwardPending
	// and maxForwardQueued; tests lower them).
	maxPending, maxQueued int
}

func newForwarder() *forwarder {
	ctx, cancel := context.WithCancel(context.Background())
	return &forwarder{ctx: ctx, cancel: cancel, streams: make(map[uint64]*fwdStream),
		maxPending: maxForwardPending, maxQueued: maxForwardQueued}
}

// stream returns the live stream to node over cc, opening one if there is
// none (or the one there runs over another connection). Opening happens
// outside f.mu and is bounded by readyWait, so a connection that drops just
// now delays only the callers that need it.
func (f *forwarder) stream(node uint64, cc *grpc.ClientConn) (*fwdStream, error) {
	f.mu.Lock()
	if s := f.streams[node]; s != nil {
		if s.cc == cc {
			f.mu.Unlock()
			return s, nil
		}
		s.cancel() // the node's address changed: its old stream is done
		delete(f.streams, node)
	}
	f.mu.Unlock()
	if err := f.ctx.Err(); err != nil {
		return nil, errors.New("router: closed")
	}
	ctx, cancel := context.WithCancel(f.ctx)
	expired := time.AfterFunc(readyWait, cancel)
	st, err := rpcpb.NewPeerClient(cc).Forward(ctx)
	if !expired.Stop() && err == nil {
		err = fmt.Errorf("router: opening a forward stream to node %d took over %v", node, readyWait)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	s := f.start(ctx, cancel, node, cc, st)
	f.mu.Lock()
	defer f.mu.Unlock()
	if cur := f.streams[node]; cur != nil && cur.cc == cc {
		s.cancel() // another caller opened one meanwhile: use that
		return cur, nil
	}
	f.streams[node] = s
	return s, nil
}

// start runs the loops of a new stream st to node; cancel ends ctx, which
// st runs under.
func (f *forwarder) start(ctx context.Context, cancel context.CancelFunc, node uint64, cc *grpc.ClientConn, st rpcpb.Peer_ForwardClient) *fwdStream {
	s := &fwdStream{f: f, node: node, cc: cc, stream: st, cancel: cancel, wake: make(chan struct{}, 1)}
	s.mu.pending = make(map[uint64]*fwdCall)
	go s.sendLoop(ctx)
	go s.recvLoop()
	return s
}

// remove forgets s if it is still node's stream.
func (f *forwarder) remove(s *fwdStream) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.streams[s.node] == s {
		delete(f.streams, s.node)
	}
}

// fwdStream is one Forward stream to one node: a send loop packs queued
// requests into messages, a receive loop hands each response to its caller.
type fwdStream struct {
	f      *forwarder
	node   uint64
	cc     *grpc.ClientConn
	stream rpcpb.Peer_ForwardClient
	cancel context.CancelFunc
	// wake tells the send loop that the queue is not empty (capacity 1).
	wake chan struct{}

	mu struct {
		sync.Mutex
		nextID uint64
		// queue holds the calls not yet handed to Send, in arrival order,
		// and those of them whose callers gave up.
		// Invariant: len(queue) <= f.maxQueued.
		queue []*fwdCall
		// pending holds every call awaiting its response, queued or sent.
		// Invariant: len(pending) <= f.maxPending.
		pending map[uint64]*fwdCall
		// err is why the stream broke; once set no call is added.
		err error
	}
}

// fwdCall is one forwarded request. resp and err are set before done is
// closed; sent and dropped are guarded by the stream's mu.
type fwdCall struct {
	req  *rpcpb.ForwardRequest
	done chan struct{}
	resp *cmdpb.BatchResponse
	err  error
	// sent is set when the request is handed to Send.
	sent bool
	// dropped is set when the caller gave up before it was sent.
	dropped bool
}

// call forwards req and waits for its response, ctx's end, or the stream's.
// It fails with errUnreachable if req was not sent (the stream broke first,
// or ctx ended while req was queued), and with errFull, at once, if the
// stream holds as many calls as its bounds allow.
func (s *fwdStream) call(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	fr := &rpcpb.ForwardRequest{Req: req}
	if dl, ok := ctx.Deadline(); ok {
		fr.TimeoutMicros = max(1, time.Until(dl).Microseconds())
	}
	if trace.SpanFromContext(ctx).IsRecording() {
		carrier := propagation.MapCarrier{}
		telemetry.Propagator.Inject(ctx, carrier)
		fr.Trace = carrier
	}
	c := &fwdCall{req: fr, done: make(chan struct{})}
	s.mu.Lock()
	if err := s.mu.err; err != nil {
		s.mu.Unlock()
		return nil, errUnreachable{err}
	}
	if n := len(s.mu.pending); n >= s.f.maxPending {
		s.mu.Unlock()
		return nil, &errFull{fmt.Sprintf("router: forward stream to node %d full: %d requests await answers (bound maxForwardPending); node %d is not keeping up, retry later", s.node, n, s.node)}
	}
	if n := len(s.mu.queue); n >= s.f.maxQueued {
		s.mu.Unlock()
		return nil, &errFull{fmt.Sprintf("router: forward stream to node %d full: %d requests wait to be sent (bound maxForwardQueued); node %d is not keeping up, retry later", s.node, n, s.node)}
	}
	s.mu.nextID++
	fr.Id = s.mu.nextID
	s.mu.pending[fr.Id] = c
	s.mu.queue = append(s.mu.queue, c)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}

	select {
	case <-c.done:
		return c.resp, c.err
	case <-ctx.Done():
	}
	s.mu.Lock()
	sent := c.sent
	if _, ok := s.mu.pending[fr.Id]; ok {
		delete(s.mu.pending, fr.Id)
		c.dropped = true
	}
	s.mu.Unlock()
	select {
	case <-c.done: // answered (or failed) just before we gave up
		return c.resp, c.err
	default:
	}
	if !sent {
		return nil, errUnreachable{ctx.Err()}
	}
	return nil, ctx.Err()
}

// sendLoop sends the queued calls, up to maxForwardBatch per message, until
// the stream breaks or ctx ends.
func (s *fwdStream) sendLoop(ctx context.Context) {
	var batch rpcpb.ForwardBatch
	for {
		select {
		case <-s.wake:
		case <-ctx.Done():
			s.fail(ctx.Err())
			return
		}
		for {
			batch.Reqs = batch.Reqs[:0]
			s.mu.Lock()
			n := 0
			for _, c := range s.mu.queue {
				n++
				if c.dropped {
					continue
				}
				c.sent = true
				batch.Reqs = append(batch.Reqs, c.req)
				if len(batch.Reqs) == maxForwardBatch {
					break
				}
			}
			rest := copy(s.mu.queue, s.mu.queue[n:])
			clear(s.mu.queue[rest:])
			s.mu.queue = s.mu.queue[:rest]
			s.mu.Unlock()
			if len(batch.Reqs) == 0 {
				break
			}
			if err := s.stream.Send(&batch); err != nil {
				s.fail(err)
				return
			}
		}
	}
}

// recvLoop hands each response to its call until the stream breaks.
func (s *fwdStream) recvLoop() {
	for {
		msg, err := s.stream.Recv()
		if err != nil {
			s.fail(err)
			return
		}
		s.mu.Lock()
		for _, r := range msg.GetResps() {
			c := s.mu.pending[r.GetId()]
			if c == nil {
				continue // its caller gave up
			}
			delete(s.mu.pending, r.GetId())
			c.resp = r.GetResp()
			if c.resp == nil {
				c.err = errors.New("router: empty forward response")
			} else if e := c.resp.GetError(); e != nil {
				c.resp, c.err = nil, e
			}
			close(c.done)
		}
		s.mu.Unlock()
	}
}

// fail breaks the stream: every waiting call fails with err, as unreachable
// if it was never sent.
func (s *fwdStream) fail(err error) {
	s.f.remove(s)
	s.cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.mu.err != nil {
		return
	}
	s.mu.err = err
	for id, c := range s.mu.pending {
		delete(s.mu.pending, id)
		if c.sent {
			c.err = err
		} else {
			c.err = errUnreachable{err}
		}
		close(c.done)
	}
	s.mu.queue = nil
}

// Executor serves one request for a range held on this node.
type Executor func(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error)

// ServeForward serves one gateway's Forward stream: every request runs on
// its own goroutine through exec under the deadline it carries, and the
// responses ready whenever the stream is free to send go back in one
// message. It returns when the stream ends. m (may be nil) continues the
// callers' traces.
func ServeForward(stream rpcpb.Peer_ForwardServer, exec Executor, m *telemetry.Metrics) error {
	ctx, cancel := context.WithCancel(stream.Context())
	// The handler returns only once its workers have: a stopping node
	// closes its engine after its servers' handlers return.
	var workers sync.WaitGroup
	defer func() {
		cancel()
		workers.Wait()
	}()
	var (
		mu    sync.Mutex
		ready []*rpcpb.ForwardResponse
		wake  = make(chan struct{}, 1)
	)
	answer := func(id uint64, resp *cmdpb.BatchResponse) {
		mu.Lock()
		ready = append(ready, &rpcpb.ForwardResponse{Id: id, Resp: resp})
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	slots := make(chan struct{}, maxForwardInFlight)
	run := func(fr *rpcpb.ForwardRequest) {
		rctx := ctx
		if len(fr.GetTrace()) > 0 {
			rctx = telemetry.Propagator.Extract(rctx, propagation.MapCarrier(fr.GetTrace()))
			var span trace.Span
			rctx, span = m.StartSpan(rctx, "router.serveForward", trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
		}
		if t := fr.GetTimeoutMicros(); t > 0 {
			var c context.CancelFunc
			rctx, c = context.WithTimeout(rctx, time.Duration(t)*time.Microsecond)
			defer c()
		}
		resp, err := exec(rctx, fr.GetReq())
		if err != nil {
			resp = &cmdpb.BatchResponse{Error: kvpb.AsError(err)}
		}
		answer(fr.GetId(), resp) // its slot is freed once the answer is sent
	}
	// Requests run on a pool of goroutines that grows with the requests in
	// flight and shrinks when idle: a goroutine that served one request
	// keeps the stack it grew on the way through the store for the next,
	// where a goroutine per request would grow a fresh stack every time.
	// work is unbuffered and every request holds a slot from before it is
	// handed over until its answer is sent, so the goroutines, the requests
	// and the answers in ready are all bounded by maxForwardInFlight.
	work := make(chan *rpcpb.ForwardRequest)
	worker := func(fr *rpcpb.ForwardRequest) {
		defer workers.Done()
		run(fr)
		idle := time.NewTimer(forwardWorkerIdle)
		defer idle.Stop()
		for {
			select {
			case fr := <-work:
				run(fr)
				idle.Reset(forwardWorkerIdle)
			case <-idle.C:
				return
			case <-ctx.Done():
				return
			}
		}
	}
	recvErr := make(chan error, 1)
	go func() {
		for {
			b, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			for _, fr := range b.GetReqs() {
				// At most maxForwardInFlight requests are held at once:
				// past it the stream stops being read, and gRPC's flow
				// control holds the gateway back. A gateway slow to read
				// the answers holds its requests back the same way.
				select {
				case slots <- struct{}{}:
				case <-ctx.Done():
					recvErr <- ctx.Err()
					return
				}
				select {
				case work <- fr:
				default:
					workers.Add(1)
					go worker(fr)
				}
			}
		}
	}()

	var out rpcpb.ForwardResponses
	for {
		select {
		case <-wake:
		case err := <-recvErr:
			if err == io.EOF || ctx.Err() != nil {
				return nil
			}
			return err
		}
		for {
			mu.Lock()
			n := min(len(ready), maxForwardBatch)
			out.Resps = append(out.Resps[:0], ready[:n]...)
			rest := copy(ready, ready[n:])
			clear(ready[rest:])
			ready = ready[:rest]
			mu.Unlock()
			if n == 0 {
				break
			}
			if err := stream.Send(&out); err != nil {
				return err
			}
			for range n {
				<-slots
			}
		}
	}
}
