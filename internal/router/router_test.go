package router

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// scripted is a node's Peer service answering forwarded requests from a
// script.
type scripted struct {
	rpcpb.UnimplementedPeerServer
	mu    sync.Mutex
	calls int
	// answer returns the response or error of the n-th call (from 0). An
	// error breaks the Forward stream, as a broken connection does.
	answer func(n int, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error)
}

func (s *scripted) Forward(stream rpcpb.Peer_ForwardServer) error {
	broke := make(chan error, 1)
	served := make(chan error, 1)
	go func() {
		served <- ServeForward(stream, func(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			resp, err := s.call(req)
			if err != nil {
				select {
				case broke <- err:
				default:
				}
				<-ctx.Done() // no answer: the stream breaks under it
			}
			return resp, err
		}, nil)
	}()
	select {
	case err := <-broke:
		return err
	case err := <-served:
		return err
	}
}

func (s *scripted) call(req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	s.mu.Lock()
	n := s.calls
	s.calls++
	s.mu.Unlock()
	return s.answer(n, req)
}

func (s *scripted) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls
}

// noLocal is a node (id 9) holding no replica.
type noLocal struct{}

func (noLocal) Execute(context.Context, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	return nil, kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "no replica here")
}

func (noLocal) Timestamp(context.Context, int) (int64, error) {
	return 0, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "not the meta leader")
}

var userDesc = &metapb.RangeDescriptor{
	RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End,
	Replicas: []*metapb.ReplicaDescriptor{{NodeId: 1}, {NodeId: 2}, {NodeId: 3}},
}

// harness starts scripted Peer servers for nodes 1..3; node 1 also serves
// the meta range, whose scan returns userDesc.
func harness(t *testing.T, answers map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error)) (*Router, map[uint64]*scripted) {
	return harnessIndex(t, answers, userDesc)
}

// harnessIndex is harness with a meta range index of the given ranges.
func harnessIndex(t *testing.T, answers map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error), index ...*metapb.RangeDescriptor) (*Router, map[uint64]*scripted) {
	t.Helper()
	var kvs []*cmdpb.SysKV
	for _, d := range index {
		data, err := proto.Marshal(d)
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, &cmdpb.SysKV{Key: keys.Range(d.GetRangeId()), Value: data})
	}
	conns := map[uint64]*grpc.ClientConn{}
	servers := map[uint64]*scripted{}
	for id := uint64(1); id <= 3; id++ {
		answer := answers[id]
		if answer == nil {
			answer = func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
				return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, LeaderHint: 1}}, nil
			}
		}
		s := &scripted{answer: func(n int, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			if req.GetSys().GetScan() != nil {
				return &cmdpb.BatchResponse{Sys: &cmdpb.SysResponse{Kvs: kvs}}, nil
			}
			return answer(n, req)
		}}
		servers[id] = s
		conns[id] = servePeer(t, s)
	}
	r, err := New(Config{
		NodeID: 9,
		Local:  noLocal{},
		Dial: func(_ context.Context, id uint64) (*grpc.ClientConn, error) {
			return conns[id], nil
		},
		Meta: &metapb.RangeDescriptor{RangeId: 1, StartKey: keys.MetaSpan.Start, EndKey: keys.MetaSpan.End,
			Replicas: []*metapb.ReplicaDescriptor{{NodeId: 1}}},
		RequestTimeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	return r, servers
}

// servePeer serves srv as a node's Peer service on loopback and returns a
// connection to it.
func servePeer(t testing.TB, srv rpcpb.PeerServer) *grpc.ClientConn {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gs := grpc.NewServer()
	rpcpb.RegisterPeerServer(gs, srv)
	go gs.Serve(l)
	t.Cleanup(gs.Stop)
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

func put(key string) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(key), Value: []byte("v")}}}
}

func get(key string) *kvpb.RequestOp {
	return &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte(key)}}}
}

func ok(rev int64) (*cmdpb.BatchResponse, error) {
	return &cmdpb.BatchResponse{Revision: rev, Resp: &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Put{Put: &kvpb.PutResponse{}}}}, nil
}

func TestFollowsLeaderHint(t *testing.T) {
	r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, LeaderHint: 3}}, nil
		},
		2: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, LeaderHint: 3}}, nil
		},
		3: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) { return ok(42) },
	})
	_, h, err := r.Do(context.Background(), put("k"))
	if err != nil || h.Revision != 42 {
		t.Fatalf("put: %v %v", h, err)
	}
	if r.Leader(2) != 3 {
		t.Fatalf("leader cache says %d, want 3", r.Leader(2))
	}
	// The next request goes straight to the cached leader.
	before := servers[1].count() + servers[2].count()
	if _, _, err := r.Do(context.Background(), put("k2")); err != nil {
		t.Fatal(err)
	}
	if after := servers[1].count() + servers[2].count(); after != before {
		t.Fatalf("%d requests went to followers after the leader was known", after-before)
	}
}

func TestRetriesUntilALeaderIsElected(t *testing.T) {
	leaderless := func(n int, _ *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
		return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER}}, nil
	}
	r, _ := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: leaderless,
		3: leaderless,
		2: func(n int, _ *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			if n < 3 { // an election in progress
				return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER}}, nil
			}
			return ok(7)
		},
	})
	if _, h, err := r.Do(context.Background(), put("k")); err != nil || h.Revision != 7 {
		t.Fatalf("put: %v %v", h, err)
	}
}

func TestAmbiguousWriteIsNotRetried(t *testing.T) {
	r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			// The node got the request and the connection broke: the write
			// may have been applied.
			return nil, status.Error(codes.Unavailable, "connection reset")
		},
		2: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) { return ok(1) },
		3: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) { return ok(1) },
	})
	r.setLeader(2, 1)
	_, _, err := r.Do(context.Background(), put("k"))
	if kvpb.CodeOf(err) != kvpb.ErrorCode_AMBIGUOUS {
		t.Fatalf("put: %v, want AMBIGUOUS", err)
	}
	if servers[2].count()+servers[3].count() != 0 {
		t.Fatal("an ambiguous write was sent again to another node")
	}
	// A read after the same failure is retried elsewhere.
	r.setLeader(2, 1)
	if _, _, err := r.Do(context.Background(), get("k")); err != nil {
		t.Fatalf("read: %v", err)
	}
}

func TestRequestErrorsSurfaceAtOnce(t *testing.T) {
	for _, e := range []*kvpb.Error{
		kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted"),
		// A full queue on the leaseholder: retrying would only add load.
		kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "replica: range 2 has 10000 writes queued"),
	} {
		t.Run(e.GetCode().String(), func(t *testing.T) {
			r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
				1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
					return &cmdpb.BatchResponse{Error: e}, nil
				},
			})
			r.setLeader(2, 1)
			_, _, err := r.Do(context.Background(), get("k"))
			if kvpb.CodeOf(err) != e.GetCode() {
				t.Fatalf("got %v, want %v", err, e.GetCode())
			}
			if n := servers[1].count(); n != 2 { // the descriptor scan and the read
				t.Fatalf("node 1 saw %d calls, want 2 (no retry)", n)
			}
		})
	}
}

func TestDeadlineSurfacesAsUnavailable(t *testing.T) {
	r, _ := harness(t, nil) // every node says NOT_LEADER, hint 1
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, _, err := r.Do(ctx, get("k"))
	if kvpb.CodeOf(err) != kvpb.ErrorCode_UNAVAILABLE {
		t.Fatalf("got %v, want UNAVAILABLE", err)
	}
}

func TestCrossRangeRequestIsRefused(t *testing.T) {
	r, _ := harness(t, nil)
	r.mu.Lock()
	r.mu.ranges = []*metapb.RangeDescriptor{
		{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.User([]byte("m")), Replicas: userDesc.Replicas},
		{RangeId: 3, StartKey: keys.User([]byte("m")), EndKey: keys.UserSpan.End, Replicas: userDesc.Replicas},
	}
	r.mu.Unlock()
	// A delete (or txn) whose keys lie in two ranges is refused whole, with
	// the ranges named; a Range is served part by part (internal/server).
	op := &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Key: []byte("a"), RangeEnd: []byte("z")}}}
	_, _, err := r.Do(context.Background(), op)
	if kvpb.CodeOf(err) != kvpb.ErrorCode_CROSS_RANGE || !strings.Contains(err.Error(), `ranges 2 ["", "m"), 3 ["m", "")`) {
		t.Fatalf("got %v, want CROSS_RANGE naming ranges 2 and 3", err)
	}
}

func TestWriteCutByDeadlineInFlightIsAmbiguous(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	r, _ := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			<-block // the node holds the write past the client's deadline
			return ok(1)
		},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	r.setLeader(2, 1)
	_, _, err := r.Do(ctx, put("k"))
	if kvpb.CodeOf(err) != kvpb.ErrorCode_AMBIGUOUS {
		t.Fatalf("write cut by its deadline while in flight: %v, want AMBIGUOUS", err)
	}
}

// A cold router's concurrent first requests share its meta scans: a caller
// that queued behind a refresh begun after it asked uses that refresh.
func TestConcurrentColdLookupsShareTheScan(t *testing.T) {
	var puts atomic.Int64
	r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			puts.Add(1)
			return ok(1)
		},
	})
	r.setLeader(2, 1)
	const n = 200
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if _, _, err := r.Do(context.Background(), put(fmt.Sprintf("k%d", i))); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	// One scan, plus at most one more by callers that asked while the
	// first was in flight.
	if scans := int64(servers[1].count()) - puts.Load(); scans > 2 {
		t.Fatalf("%d concurrent cold requests made %d meta scans, want at most 2", n, scans)
	}
}

// A range that answers KEY_MISMATCH names itself and the range it split
// off: the router re-routes from that, without reading the meta range.
func TestKeyMismatchCarriesTheNewDescriptors(t *testing.T) {
	left := &metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.User([]byte("m")), Replicas: userDesc.Replicas, Generation: 2}
	right := &metapb.RangeDescriptor{RangeId: 3, StartKey: keys.User([]byte("m")), EndKey: keys.UserSpan.End, Replicas: userDesc.Replicas, Generation: 2}
	r, servers := harness(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(_ int, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			if req.GetRangeId() == 2 {
				return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_KEY_MISMATCH, Descriptors: []*metapb.RangeDescriptor{left, right}}}, nil
			}
			return &cmdpb.BatchResponse{Resp: &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: &kvpb.RangeResponse{}}}, Revision: 7}, nil
		},
	})
	r.mu.Lock()
	r.mu.ranges = []*metapb.RangeDescriptor{userDesc} // the range before its split
	r.mu.Unlock()
	r.setLeader(2, 1)
	r.setLeader(3, 1)
	if _, h, err := r.Do(context.Background(), get("x")); err != nil || h.Revision != 7 {
		t.Fatalf("read after a split: %v %v", h, err)
	}
	if n := servers[1].count(); n != 2 {
		t.Fatalf("node 1 saw %d calls, want 2 (the stale range, then the new one; no meta scan)", n)
	}
	if rs, _ := r.Ranges(context.Background()); len(rs) != 2 || rs[1].GetRangeId() != 3 {
		t.Fatalf("cached ranges after the answer: %v", rs)
	}
}

// A router that missed a chain of splits (each split-off range split
// again) follows one KEY_MISMATCH answer, then reloads the index instead of
// walking the chain one range at a time (each hop would also wake an idle
// range).
func TestKeyMismatchChainReloadsTheIndex(t *testing.T) {
	var chain []*metapb.RangeDescriptor
	bounds := []string{"", "b", "c", "d", "e", "f"}
	for i, b := range bounds {
		d := &metapb.RangeDescriptor{RangeId: uint64(2 + i), StartKey: keys.User([]byte(b)), EndKey: keys.UserSpan.End, Replicas: userDesc.Replicas, Generation: 2}
		if i == 0 {
			d.StartKey = keys.UserSpan.Start
		}
		if i+1 < len(bounds) {
			d.EndKey = keys.User([]byte(bounds[i+1]))
		}
		chain = append(chain, d)
	}
	hops := 0
	r, _ := harnessIndex(t, map[uint64]func(int, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error){
		1: func(_ int, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
			id := req.GetRangeId()
			if id == 7 { // the range [f, end) holds the key
				return &cmdpb.BatchResponse{Resp: &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: &kvpb.RangeResponse{}}}, Revision: 9}, nil
			}
			hops++
			// The range as it is, and the one it split off as the split
			// made it (reaching to the end).
			made := proto.CloneOf(chain[id-1])
			made.EndKey = keys.UserSpan.End
			return &cmdpb.BatchResponse{Error: &kvpb.Error{Code: kvpb.ErrorCode_KEY_MISMATCH, Descriptors: []*metapb.RangeDescriptor{chain[id-2], made}}}, nil
		},
	}, chain...)
	r.mu.Lock()
	r.mu.ranges = []*metapb.RangeDescriptor{userDesc} // before every split
	r.mu.Unlock()
	for id := uint64(2); id <= 7; id++ {
		r.setLeader(id, 1)
	}
	if _, h, err := r.Do(context.Background(), get("x")); err != nil || h.Revision != 9 {
		t.Fatalf("read after five splits: %v %v", h, err)
	}
	if hops != 2 {
		t.Fatalf("%d stale ranges asked, want 2 (the cached one, the one its answer named; then the index)", hops)
	}
}

// A range merged away but still in the index next to the range that took
// it over is dropped from the cache: every key has one range.
func TestRefreshDropsRangesOverlappedByNewerOnes(t *testing.T) {
	merged := &metapb.RangeDescriptor{RangeId: 2, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End, Generation: 3}
	gone := &metapb.RangeDescriptor{RangeId: 3, StartKey: keys.User([]byte("m")), EndKey: keys.UserSpan.End, Generation: 2}
	other := &metapb.RangeDescriptor{RangeId: 4, StartKey: keys.UserSpan.End, EndKey: append(keys.UserSpan.End, 1), Generation: 1}
	got := dropOverlapped([]*metapb.RangeDescriptor{merged, gone, other})
	if len(got) != 2 || got[0] != merged || got[1] != other {
		t.Fatalf("dropOverlapped kept %v", got)
	}
}
