package router

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Many requests in flight on one stream each get their own answer.
func TestForwardManyConcurrentRequests(t *testing.T) {
	var puts atomic.Int64
	r, _ := harness(t, map[uint64]func(int, *concordpb.BatchRequest) (*concordpb.BatchResponse, error){
		1: func(_ int, req *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
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
	concordpb.UnimplementedPeerServer
	exec Executor
}

func (p execPeer) Forward(stream concordpb.Peer_ForwardServer) error {
	return ServeForward(stream, p.exec, nil)
}

// The serving node runs a request under the deadline its caller had.
func TestForwardCarriesTheDeadline(t *testing.T) {
	var left atomic.Int64
	s := forwardTo(t, func(ctx context.Context, _ *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
		dl, has := ctx.Deadline()
		if !has {
			return nil, concordpb.Errorf(concordpb.ErrorCode_INTERNAL, "no deadline")
		}
		left.Store(int64(time.Until(dl)))
		return ok(1)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := s.call(ctx, &concordpb.BatchRequest{Op: get("k")}); err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(left.Load()); d <= 2*time.Second || d > 3*time.Second {
		t.Fatalf("the server saw %v left of a 3 s deadline", d)
	}
	// A structured error travels back as itself.
	s2 := forwardTo(t, func(context.Context, *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
		return nil, concordpb.Errorf(concordpb.ErrorCode_NOT_LEADER, "not here")
	})
	if _, err := s2.call(ctx, &concordpb.BatchRequest{Op: get("k")}); concordpb.CodeOf(err) != concordpb.ErrorCode_NOT_LEADER {
		t.Fatalf("got %v, want NOT_LEADER", err)
	}
}

// A stream that breaks fails the requests on it; the next request opens a
// new stream and succeeds.
func TestForwardStreamBreaksAndReopens(t *testing.T) {
	var broken atomic.Bool
	r, servers := harness(t, map[uint64]func(int, *concordpb.BatchRequest) (*concordpb.BatchResponse, error){
		1: func(int, *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
			if broken.CompareAndSwap(false, true) {
				return nil, status.Error(codes.Unavailable, "connection reset")
			}
			return ok(5)
		},
	})
	r.setLeader(2, 1)
	if _, _, err := r.Do(context.Background(), put("a")); concordpb.CodeOf(err) != concordpb.ErrorCode_AMBIGUOUS {
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

func (b *blockedSend) Send(*concordpb.ForwardBatch) error {
	b.sending <- struct{}{}
	select {
	case <-b.release:
		return errors.New("released")
	case <-b.ctx.Done():
		return b.ctx.Err()
	}
}

func (b *blockedSend) Recv() (*concordpb.ForwardResponses, error) {
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
		_, err := s.call(sentCtx, &concordpb.BatchRequest{Op: put("a")})
		sentErr <- err
	}()
	<-st.sending // the first request is in Send, which blocks

	queuedCtx, cancelQueued := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancelQueued()
	_, err := s.call(queuedCtx, &concordpb.BatchRequest{Op: put("b")})
	var ue errUnreachable
	if !errors.As(err, &ue) {
		t.Fatalf("a call that expired in the queue: %v, want unreachable", err)
	}
	if got := timeoutErr(true, err, queuedCtx.Err()); concordpb.CodeOf(got) != concordpb.ErrorCode_UNAVAILABLE {
		t.Fatalf("its write surfaces as %v, want UNAVAILABLE", got)
	}

	cancelSent()
	err = <-sentErr
	if errors.As(err, &ue) {
		t.Fatalf("a call cancelled after it was handed to Send: %v, want a maybe-sent error", err)
	}
	if got := timeoutErr(true, err, sentCtx.Err()); concordpb.CodeOf(got) != concordpb.ErrorCode_AMBIGUOUS {
		t.Fatalf("its write surfaces as %v, want AMBIGUOUS", got)
	}
	close(st.release) // Send fails: the stream breaks
	if _, err := s.call(context.Background(), &concordpb.BatchRequest{Op: put("c")}); !errors.As(err, &ue) {
		t.Fatalf("a call on a broken stream: %v, want unreachable", err)
	}
}

// A serving node runs at most maxForwardInFlight requests of one stream at
// once; the rest wait in the stream and run as slots free up.
func TestForwardBoundsRequestsInFlight(t *testing.T) {
	var running, most atomic.Int64
	release := make(chan struct{})
	s := forwardTo(t, func(ctx context.Context, _ *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
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
			if _, err := s.call(ctx, &concordpb.BatchRequest{Op: get("k")}); err != nil {
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
	reqs chan *concordpb.ForwardBatch
}

func (g *stuckGateway) Context() context.Context { return g.ctx }

func (g *stuckGateway) Recv() (*concordpb.ForwardBatch, error) {
	select {
	case b := <-g.reqs:
		return b, nil
	case <-g.ctx.Done():
		return nil, g.ctx.Err()
	}
}

func (g *stuckGateway) Send(*concordpb.ForwardResponses) error {
	<-g.ctx.Done()
	return g.ctx.Err()
}

// Answers that cannot go back count against the bound too: a gateway that
// stops reading them stops its requests from being run, rather than the
// serving node buffering answers without limit.
func TestForwardBoundsAnswersNotSentBack(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	g := &stuckGateway{ctx: ctx, reqs: make(chan *concordpb.ForwardBatch)}
	var ran atomic.Int64
	served := make(chan error, 1)
	go func() {
		served <- ServeForward(g, func(context.Context, *concordpb.BatchRequest) (*concordpb.BatchResponse, error) {
			ran.Add(1)
			return ok(1)
		}, nil)
	}()
	const requests = maxForwardInFlight + 200
	go func() {
		for id := uint64(1); id <= requests; id++ {
			b := &concordpb.ForwardBatch{Reqs: []*concordpb.ForwardRequest{{Id: id, Req: &concordpb.BatchRequest{Op: get("k")}}}}
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
