package transport

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
)

// waitTimeout bounds every wait in these tests; it is generous because the
// race detector on a shared 2-core machine is slow, and a passing test never
// waits for it.
const waitTimeout = 20 * time.Second

// waitFor polls cond until it holds or waitTimeout passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// snapReport is one ReportSnapshot call.
type snapReport struct {
	rangeID, to uint64
	ok          bool
}

// recorder is a Handler that remembers everything.
type recorder struct {
	mu          sync.Mutex
	batches     []*rpcpb.RaftBatch
	unreachable map[uint64]int
	snaps       []snapReport
}

var _ Handler = (*recorder)(nil)

func newRecorder() *recorder { return &recorder{unreachable: make(map[uint64]int)} }

func (r *recorder) HandleRaftBatch(b *rpcpb.RaftBatch) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.batches = append(r.batches, b)
}

func (r *recorder) ReportUnreachable(to uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[to]++
}

func (r *recorder) ReportSnapshot(rangeID, to uint64, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.snaps = append(r.snaps, snapReport{rangeID, to, ok})
}

// msgsFrom returns the messages received from node `from`, in order.
func (r *recorder) msgsFrom(from uint64) []*rpcpb.RaftMessage {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*rpcpb.RaftMessage
	for _, b := range r.batches {
		if b.GetFromNode() == from {
			out = append(out, b.GetMsgs()...)
		}
	}
	return out
}

func (r *recorder) batchesFrom(from uint64) []*rpcpb.RaftBatch {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []*rpcpb.RaftBatch
	for _, b := range r.batches {
		if b.GetFromNode() == from {
			out = append(out, b)
		}
	}
	return out
}

func (r *recorder) unreachableCount(to uint64) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.unreachable[to]
}

func (r *recorder) snapReports() []snapReport {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]snapReport(nil), r.snaps...)
}

// book is an address book shared by the nodes of a test.
type book struct {
	mu sync.Mutex
	m  map[uint64]string
}

func newBook() *book { return &book{m: make(map[uint64]string)} }

func (b *book) resolve(id uint64) (string, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	u, ok := b.m[id]
	return u, ok
}

func (b *book) set(id uint64, url string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.m[id] = url
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// count returns how many log lines contain every one of subs.
func (s *syncBuffer) count(subs ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, line := range strings.Split(s.buf.String(), "\n") {
		all := true
		for _, sub := range subs {
			all = all && strings.Contains(line, sub)
		}
		if all && line != "" {
			n++
		}
	}
	return n
}

// testPeer is the minimal Peer server: Raft goes to the transport.
type testPeer struct {
	rpcpb.UnimplementedPeerServer
	tr *Transport
}

func (p *testPeer) Raft(s rpcpb.Peer_RaftServer) error { return p.tr.ServeRaft(s) }

func (p *testPeer) Join(context.Context, *rpcpb.JoinRequest) (*rpcpb.JoinResponse, error) {
	return &rpcpb.JoinResponse{ClusterId: p.tr.cfg.ClusterID, NodeId: 42}, nil
}

func (p *testPeer) NodeStatus(context.Context, *rpcpb.NodeStatusRequest) (*rpcpb.NodeStatusResponse, error) {
	return &rpcpb.NodeStatusResponse{NodeId: p.tr.cfg.NodeID}, nil
}

// testNode is a transport behind a real grpc.Server on loopback.
type testNode struct {
	id, cluster uint64
	addr        string // host:port
	book        *book
	tweak       func(*Config)

	tr   *Transport
	rec  *recorder
	logs *syncBuffer
	srv  *grpc.Server
}

// startNode starts node id of cluster on a fresh loopback port and records
// its address in bk. tweak, if not nil, adjusts the config.
func startNode(t testing.TB, bk *book, cluster, id uint64, tweak func(*Config)) *testNode {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &testNode{id: id, cluster: cluster, addr: lis.Addr().String(), book: bk, tweak: tweak}
	bk.set(id, "http://"+n.addr)
	n.serve(t, lis)
	t.Cleanup(n.stop)
	return n
}

func (n *testNode) serve(t testing.TB, lis net.Listener) {
	t.Helper()
	n.rec = newRecorder()
	n.logs = &syncBuffer{}
	cfg := Config{
		ClusterID: n.cluster,
		NodeID:    n.id,
		Addr:      "http://" + n.addr,
		Resolve:   n.book.resolve,
		Logger:    slog.New(slog.NewTextHandler(n.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if n.tweak != nil {
		n.tweak(&cfg)
	}
	tr, err := New(cfg, n.rec)
	if err != nil {
		t.Fatal(err)
	}
	n.tr = tr
	n.srv = grpc.NewServer(tr.ServerOptions()...)
	rpcpb.RegisterPeerServer(n.srv, &testPeer{tr: tr})
	srv := n.srv
	go func() {
		// Serve returns when the test stops the server; its error then says
		// only that.
		_ = srv.Serve(lis)
	}()
}

func (n *testNode) stop() {
	n.srv.Stop()
	n.tr.Close()
}

// restart stops the node and starts a new process-alike (new transport,
// recorder and server) on the same address.
func (n *testNode) restart(t testing.TB) {
	t.Helper()
	n.stop()
	lis, err := net.Listen("tcp", n.addr)
	if err != nil {
		t.Fatal(err)
	}
	n.serve(t, lis)
}

// msg returns a small MsgApp for rangeID carrying index.
func msg(rangeID, index uint64) *rpcpb.RaftMessage {
	return &rpcpb.RaftMessage{RangeId: rangeID, Msg: &raftpb.Message{
		Type:  raftpb.MsgApp.Enum(),
		To:    proto.Uint64(2),
		From:  proto.Uint64(1),
		Index: proto.Uint64(index),
	}}
}

// snapMsg returns a MsgSnap for rangeID with dataBytes of snapshot data.
func snapMsg(rangeID uint64, dataBytes int) *rpcpb.RaftMessage {
	return &rpcpb.RaftMessage{RangeId: rangeID, Msg: &raftpb.Message{
		Type: raftpb.MsgSnap.Enum(),
		Snapshot: &raftpb.Snapshot{
			Data:     bytes.Repeat([]byte{'s'}, dataBytes),
			Metadata: &raftpb.SnapshotMetadata{Index: proto.Uint64(100), Term: proto.Uint64(3)},
		},
	}}
}

// indexes returns the Raft index of each message.
func indexes(msgs []*rpcpb.RaftMessage) []uint64 {
	out := make([]uint64, len(msgs))
	for i, m := range msgs {
		out[i] = m.GetMsg().GetIndex()
	}
	return out
}

// checkSequence fails unless got is exactly 1..n.
func checkSequence(t testing.TB, got []uint64, n int) {
	t.Helper()
	if len(got) != n {
		t.Fatalf("got %d messages, want %d", len(got), n)
	}
	for i, idx := range got {
		if idx != uint64(i+1) {
			t.Fatalf("message %d has index %d, want %d (out of order or lost)", i, idx, i+1)
		}
	}
}

// freeAddr returns a loopback address nobody listens on.
func freeAddr(t testing.TB) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := lis.Addr().String()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

// blockFirst returns a Fault that blocks its first call until release is
// closed and drops nothing, and a channel closed when that call started.
// Holding a sender inside it lets a test fill that peer's queue
// deterministically.
func blockFirst(release <-chan struct{}) (Fault, <-chan struct{}) {
	entered := make(chan struct{})
	var once sync.Once
	return func(from, to uint64) bool {
		once.Do(func() {
			close(entered)
			<-release
		})
		return false
	}, entered
}

// metadataCtx returns an incoming context carrying the key/value pairs.
func metadataCtx(kv ...string) context.Context {
	return metadata.NewIncomingContext(context.Background(), metadata.Pairs(kv...))
}
