package router

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Many requests in flight on one stream each get their own answer.
func TestForwardManyConcurrentRequests(t *testing.T) {
	var puts atomic.Int64
	r, _ := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(_ int, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			puts.Add(1)
			// The revision echoes the key, so a mixed-up answer shows.
			var n int64
			fmt.Sscanf(string(req.GetOp().GetPut().GetKey()), "k%d", &n)
			time.Sleep(time.Duration(n%7) * time.Millisecond) // answers out of order
			return ok(n)
		},
	})
	r.setLeader(2, 1)
	const n = 500
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			_, h, err := r.Do(context.Background(), put(fmt.Sprintf("k%d", i)))
			if err != nil {
				errs <- err
			} else if h.Revision != int64(i) {
				errs <- fmt.Errorf("put k%d answered with revision %d", i, h.Revision)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := puts.Load(); got != n {
		t.Fatalf("node 1 served %d puts, want %d (each once)", got, n)
	}
}

// execServer serves Forward streams through exec and returns a connection
// to it.
func execServer(t testing.TB, exec Executor) *grpc.ClientConn {
	return servePeer(t, execPeer{exec: exec})
}

// forwardTo opens a forward stream, as node 7's gateway would, to a Peer
// server that runs requests with exec. The stream ends with the test.
func forwardTo(t testing.TB, exec Executor) *fwdStream {
	t.Helper()
	cc := execServer(t, exec)
	f := newForwarder()
	t.Cleanup(f.cancel)
	s, err := f.stream(7, cc)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type execPeer struct {
	rpcpb.UnimplementedPeerServer
	exec Executor
}

func (p execPeer) Forward(stream rpcpb.Peer_ForwardServer) error {
	return ServeForward(stream, p.exec, nil)
}

// The serving node runs a request under the deadline its caller had.
func TestForwardCarriesTheDeadline(t *testing.T) {
	var left atomic.Int64
	s := forwardTo(t, func(ctx context.Context, _ *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
		dl, has := ctx.Deadline()
		if !has {
			return nil, kvpb.Errorf(kvpb.ErrorCode_INTERNAL, "no deadline")
		}
		left.Store(int64(time.Until(dl)))
		return ok(1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := s.call(ctx, &cmdpb.BatchRequest{Op: get("k")}); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(left.Load()); d <= 2*time.Second || d > 3*time.Second {
		t.Fatalf("the server saw %v left of a 3 s deadline", d)
	}
	// A structured error travels back as itself.
	s2 := forwardTo(t, func(context.Context, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "not here")
	})
	if _, err := s2.call(ctx, &cmdpb.BatchRequest{Op: get("k")}); kvpb.CodeOf(err) != kvpb.ErrorCode_NOT_LEADER {
		t.Fatalf("got %v, want NOT_LEADER", err)
	}
}

// A stream that breaks fails the requests on it; the next request opens a
// new stream and succeeds.
func TestForwardStreamBreaksAndReopens(t *testing.T) {
	var broken atomic.Bool
	r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			if broken.CompareAndSwap(false, true) {
				return nil, status.Error(codes.Unavailable, "connection reset")
			}
			return ok(5)
		},
	})
	r.setLeader(2, 1)
	if _, _, err := r.Do(context.Background(), put("a")); kvpb.CodeOf(err) != kvpb.ErrorCode_AMBIGUOUS {
		t.Fatalf("write on a stream that broke under it: %v, want AMBIGUOUS", err)
	}
	r.setLeader(2, 1)
	if _, h, err := r.Do(context.Background(), put("b")); err != nil || h.Revision != 5 {
		t.Fatalf("write after the stream broke: %v %v", h, err)
	}
	if servers[2].count()+servers[3].count() != 0 {
		t.Fatal("requests went to other nodes")
	}
}

// blockedSend is a Forward client stream whose Send blocks until release is
// closed; nothing ever arrives on it.
type blockedSend struct {
	grpc.ClientStream
	ctx     context.Context
	sending chan struct{}
	release chan struct{}
}

func (b *blockedSend) Send(*rpcpb.ForwardBatch) error {
	b.sending <- struct{}{}
	select {
	case <-b.release:
		return errors.New("released")
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

func (b *blockedSend) Recv() (*rpcpb.ForwardResponses, error) {
	<-b.ctx.Done()
	return nil, b.ctx.Err()
}

// A caller that gives up before its request left learns so: its write is
// UNAVAILABLE and may be retried. One that gives up after is AMBIGUOUS.
func TestForwardGivingUpBeforeAndAfterSending(t *testing.T) {
	f := newForwarder()
	defer f.cancel()
	ctx, cancel := context.WithCancel(f.ctx)
	st := &blockedSend{ctx: ctx, sending: make(chan struct{}), release: make(chan struct{})}
	s := f.start(ctx, cancel, 7, nil, st)

	sentCtx, cancelSent := context.WithCancel(context.Background())
	sentErr := make(chan error, 1)
	go func() {
		_, err := s.call(sentCtx, &cmdpb.BatchRequest{Op: put("a")})
		sentErr <- err
	}()
	<-st.sending // the first request is in Send, which blocks

	queuedCtx, cancelQueued := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelQueued()
	_, err := s.call(queuedCtx, &cmdpb.BatchRequest{Op: put("b")})
	var ue errUnreachable
	if !errors.As(err, &ue) {
		t.Fatalf("a call that expired in the queue: %v, want unreachable", err)
	}
	if got := timeoutErr(true, err, queuedCtx.Err()); kvpb.CodeOf(got) != kvpb.ErrorCode_UNAVAILABLE {
		t.Fatalf("its write surfaces as %v, want UNAVAILABLE", got)
	}

	cancelSent()
	err = <-sentErr
	if errors.As(err, &ue) {
		t.Fatalf("a call cancelled after it was handed to Send: %v, want a maybe-sent error", err)
	}
	if got := timeoutErr(true, err, sentCtx.Err()); kvpb.CodeOf(got) != kvpb.ErrorCode_AMBIGUOUS {
		t.Fatalf("its write surfaces as %v, want AMBIGUOUS", got)
	}
	close(st.release) // Send fails: the stream breaks
	if _, err := s.call(context.Background(), &cmdpb.BatchRequest{Op: put("c")}); !errors.As(err, &ue) {
		t.Fatalf("a call on a broken stream: %v, want unreachable", err)
	}
}

// A serving node runs at most maxForwardInFlight requests of one stream at
// once; the rest wait in the stream and run as slots free up.
func TestForwardBoundsRequestsInFlight(t *testing.T) {
	var running, most atomic.Int64
	release := make(chan struct{})
	s := forwardTo(t, func(ctx context.Context, _ *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
		n := running.Add(1)
		for {
			m := most.Load()
			if n <= m || most.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-release:
		case <-ctx.Done():
		}
		running.Add(-1)
		return ok(1)
	})
	const callers = maxForwardInFlight + 200
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for range callers {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			if _, err := s.call(ctx, &cmdpb.BatchRequest{Op: get("k")}); err != nil {
				errs <- err
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for running.Load() < maxForwardInFlight && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // give any excess a chance to start
	if got := most.Load(); got != maxForwardInFlight {
		t.Fatalf("%d requests ran at once, want %d", got, maxForwardInFlight)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// stuckGateway is a Forward stream, seen from the serving node, whose
// gateway sends requests but never reads the answers: every Send blocks.
type stuckGateway struct {
	grpc.ServerStream
	ctx  context.Context
	reqs chan *rpcpb.ForwardBatch
}

func (g *stuckGateway) Context() context.Context { return g.ctx }

func (g *stuckGateway) Recv() (*rpcpb.ForwardBatch, error) {
	select {
	case b := <-g.reqs:
		return b, nil
	case <-g.ctx.Done():
		return nil, g.ctx.Err()
	}
}

func (g *stuckGateway) Send(*rpcpb.ForwardResponses) error {
	<-g.ctx.Done()
	return g.ctx.Err()
}

// Answers that cannot go back count against the bound too: a gateway that
// stops reading them stops its requests from being run, rather than the
// serving node buffering answers without limit.
func TestForwardBoundsAnswersNotSentBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &stuckGateway{ctx: ctx, reqs: make(chan *rpcpb.ForwardBatch)}
	var ran atomic.Int64
	served := make(chan error, 1)
	go func() {
		served <- ServeForward(g, func(context.Context, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			ran.Add(1)
			return ok(1)
		}, nil)
	}()
	const requests = maxForwardInFlight + 200
	go func() {
		for id := uint64(1); id <= requests; id++ {
			b := &rpcpb.ForwardBatch{Reqs: []*rpcpb.ForwardRequest{{Id: id, Req: &cmdpb.BatchRequest{Op: get("k")}}}}
			select {
			case g.reqs <- b:
			case <-ctx.Done():
				return
			}
		}
	}()
	// Wait until the serving node stops running requests.
	last, still := int64(-1), 0
	for still < 5 {
		time.Sleep(20 * time.Millisecond)
		if n := ran.Load(); n == last {
			still++
		} else {
			last, still = n, 0
		}
	}
	if n := ran.Load(); n > maxForwardInFlight {
		t.Fatalf("%d requests ran while no answer could be sent back; want at most %d", n, maxForwardInFlight)
	}
	cancel()
	<-served
}

// gatedStream is a Forward client stream that sends nothing until gate is
// closed (the first Send says so on sending, then blocks), as a node that
// stopped reading holds a gateway's stream back; once open, it answers
// every request with its id as the revision.
type gatedStream struct {
	grpc.ClientStream
	ctx     context.Context
	sending chan struct{} // capacity 1
	gate    chan struct{}
	resps   chan *rpcpb.ForwardResponses
}

func newGatedStream(ctx context.Context) *gatedStream {
	return &gatedStream{ctx: ctx, sending: make(chan struct{}, 1), gate: make(chan struct{}), resps: make(chan *rpcpb.ForwardResponses, 1)}
}

func (g *gatedStream) Send(b *rpcpb.ForwardBatch) error {
	select {
	case g.sending <- struct{}{}:
	default:
	}
	select {
	case <-g.gate:
	case <-g.ctx.Done():
		return g.ctx.Err()
	}
	out := &rpcpb.ForwardResponses{}
	for _, fr := range b.GetReqs() {
		out.Resps = append(out.Resps, &rpcpb.ForwardResponse{Id: fr.GetId(), Resp: &cmdpb.BatchResponse{Revision: int64(fr.GetId())}})
	}
	select {
	case g.resps <- out:
		return nil
	case <-g.ctx.Done():
		return g.ctx.Err()
	}
}

func (g *gatedStream) Recv() (*rpcpb.ForwardResponses, error) {
	select {
	case r := <-g.resps:
		return r, nil
	case <-g.ctx.Done():
		return nil, g.ctx.Err()
	}
}

// gatedStreamTo starts a stream over a gatedStream on a forwarder with the
// bounds given.
func gatedStreamTo(t *testing.T, maxPending, maxQueued int) (*fwdStream, *gatedStream) {
	t.Helper()
	f := newForwarder()
	t.Cleanup(f.cancel)
	f.maxPending, f.maxQueued = maxPending, maxQueued
	ctx, cancel := context.WithCancel(f.ctx)
	st := newGatedStream(ctx)
	return f.start(ctx, cancel, 7, nil, st), st
}

// sizes returns how many calls s holds pending and queued.
func (s *fwdStream) sizes() (pending, queued int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.mu.pending), len(s.mu.queue)
}

// waitSizes waits until s holds pending and queued calls (queued -1: any
// number).
func waitSizes(t *testing.T, s *fwdStream, pending, queued int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		p, q := s.sizes()
		if p == pending && (q == queued || queued < 0) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stream holds %d pending, %d queued calls; want %d, %d", p, q, pending, queued)
		}
		time.Sleep(time.Millisecond)
	}
}

// wantFull checks that err is the refusal of a full stream: ResourceExhausted,
// naming the bound and the node.
func wantFull(t *testing.T, err error, bound string) {
	t.Helper()
	var full *errFull
	if !errors.As(err, &full) {
		t.Fatalf("a call on a full stream: %v, want errFull", err)
	}
	s, _ := status.FromError(err)
	if s.Code() != codes.ResourceExhausted || !strings.Contains(s.Message(), bound) || !strings.Contains(s.Message(), "node 7") {
		t.Fatalf("a call on a full stream: %v, want ResourceExhausted naming %s and node 7", s, bound)
	}
}

// A stream holds at most maxPending calls awaiting answers: the next one is
// refused at once with ResourceExhausted, the ones it holds are all
// answered once the node reads again, and later calls go through.
func TestForwardBoundsPendingCalls(t *testing.T) {
	const bound = 8
	s, st := gatedStreamTo(t, bound, bound)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	type answer struct {
		rev int64
		err error
	}
	answers := make(chan answer, bound)
	for range bound {
		go func() {
			resp, err := s.call(ctx, &cmdpb.BatchRequest{Op: put("a")})
			answers <- answer{resp.GetRevision(), err}
		}()
	}
	<-st.sending
	waitSizes(t, s, bound, -1) // the first Send took some, the rest are queued
	_, err := s.call(ctx, &cmdpb.BatchRequest{Op: put("b")})
	wantFull(t, err, fmt.Sprintf("%d requests await answers (bound maxForwardPending)", bound))

	close(st.gate)
	seen := map[int64]bool{}
	for range bound {
		a := <-answers
		if a.err != nil || a.rev < 1 || a.rev > bound || seen[a.rev] {
			t.Fatalf("a call held by the full stream answered %d, %v", a.rev, a.err)
		}
		seen[a.rev] = true
	}
	waitSizes(t, s, 0, 0)
	for i := range 2 * bound {
		if resp, err := s.call(ctx, &cmdpb.BatchRequest{Op: put("c")}); err != nil || resp.GetRevision() != int64(bound+1+i) {
			t.Fatalf("call %d after the stream drained: %v, %v", i, resp, err)
		}
	}
}

// Callers that give up while their calls wait to be sent leave them in the
// queue until the send loop passes over them, and those count against
// maxQueued: once it is reached calls are refused, until the queue drains.
func TestForwardBoundsQueuedCalls(t *testing.T) {
	const bound = 4
	s, st := gatedStreamTo(t, 100, bound)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	first := make(chan error, 1)
	go func() {
		_, err := s.call(ctx, &cmdpb.BatchRequest{Op: put("a")})
		first <- err
	}()
	<-st.sending // the first call is in Send, which blocks
	gone, giveUp := context.WithCancel(context.Background())
	giveUp()
	var ue errUnreachable
	for i := range bound {
		if _, err := s.call(gone, &cmdpb.BatchRequest{Op: put("b")}); !errors.As(err, &ue) {
			t.Fatalf("call %d, given up before it was sent: %v, want unreachable", i, err)
		}
	}
	waitSizes(t, s, 1, bound)
	_, err := s.call(ctx, &cmdpb.BatchRequest{Op: put("c")})
	wantFull(t, err, fmt.Sprintf("%d requests wait to be sent (bound maxForwardQueued)", bound))

	close(st.gate)
	if err := <-first; err != nil {
		t.Fatalf("the call in Send: %v", err)
	}
	waitSizes(t, s, 0, 0)
	for i := range 2 * bound {
		if _, err := s.call(ctx, &cmdpb.BatchRequest{Op: put("d")}); err != nil {
			t.Fatalf("call %d after the queue drained: %v", i, err)
		}
	}
}

// The router surfaces a full stream at once, as ResourceExhausted, without
// retrying on other nodes, and serves requests again once there is room.
func TestRouterSurfacesAFullForwardStream(t *testing.T) {
	r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) { return ok(5) },
	})
	if _, _, err := r.Do(context.Background(), put("a")); err != nil {
		t.Fatal(err)
	}
	before := servers[1].count() + servers[2].count() + servers[3].count()
	r.fwd.maxPending = 0 // every stream is full
	start := time.Now()
	_, _, err := r.Do(context.Background(), put("b"))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "maxForwardPending") {
		t.Fatalf("a write through a full stream: %v, want ResourceExhausted naming maxForwardPending", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("the refusal took %v; want it at once", d)
	}
	if after := servers[1].count() + servers[2].count() + servers[3].count(); after != before {
		t.Fatalf("%d requests reached the nodes while every stream was full", after-before)
	}
	r.fwd.maxPending = maxForwardPending
	if _, h, err := r.Do(context.Background(), put("c")); err != nil || h.Revision != 5 {
		t.Fatalf("a write once the stream has room: %v, %v", h, err)
	}
}
