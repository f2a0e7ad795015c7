package transport_test

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/transport"
	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
)

// peerServer is the smallest Peer server: Raft streams go to the transport.
type peerServer struct {
	rpcpb.UnimplementedPeerServer
	t *transport.Transport
}

func (s *peerServer) Raft(stream rpcpb.Peer_RaftServer) error { return s.t.ServeRaft(stream) }

// inbox is a Handler that hands batches to a channel, as a Ready loop would.
type inbox chan *rpcpb.RaftBatch

func (in inbox) HandleRaftBatch(b *rpcpb.RaftBatch)  { in <- b }
func (in inbox) ReportUnreachable(uint64)            {}
func (in inbox) ReportSnapshot(uint64, uint64, bool) {}

// Two nodes on loopback: node 1 sends a heartbeat for range 7 to node 2.
func Example() {
	var mu sync.Mutex
	book := map[uint64]string{}
	resolve := func(id uint64) (string, bool) {
		mu.Lock()
		defer mu.Unlock()
		u, ok := book[id]
		return u, ok
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	// start runs node id behind a gRPC server; stop shuts both down.
	start := func(id uint64, h transport.Handler) (t *transport.Transport, stop func()) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			panic(err)
		}
		url := "http://" + lis.Addr().String()
		mu.Lock()
		book[id] = url
		mu.Unlock()
		t, err = transport.New(transport.Config{
			ClusterID: 1, NodeID: id, Addr: url, Resolve: resolve, Logger: logger,
		}, h)
		if err != nil {
			panic(err)
		}
		srv := grpc.NewServer(t.ServerOptions()...)
		rpcpb.RegisterPeerServer(srv, &peerServer{t: t})
		go func() { _ = srv.Serve(lis) }() // returns when stop stops srv
		return t, func() { srv.Stop(); t.Close() }
	}
	in := make(inbox, 1)
	n1, stop1 := start(1, make(inbox, 1))
	_, stop2 := start(2, in)
	defer stop1()
	defer stop2()

	n1.Send(2, []*rpcpb.RaftMessage{{
		RangeId: 7,
		Msg:     &raftpb.Message{Type: raftpb.MsgHeartbeat.Enum(), From: proto.Uint64(1), To: proto.Uint64(2)},
	}})
	b := <-in
	fmt.Printf("node %d got %s for range %d from node %d\n",
		b.GetToNode(), b.GetMsgs()[0].GetMsg().GetType(), b.GetMsgs()[0].GetRangeId(), b.GetFromNode())
	// Output: node 2 got MsgHeartbeat for range 7 from node 1
}
