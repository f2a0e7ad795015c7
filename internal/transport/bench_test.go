package transport

import (
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"google.golang.org/grpc"
)

// countingHandler counts delivered messages and nothing else.
type countingHandler struct{ msgs atomic.Uint64 }

func (h *countingHandler) HandleRaftBatch(b *rpcpb.RaftBatch) {
	h.msgs.Add(uint64(len(b.GetMsgs())))
}
func (h *countingHandler) ReportUnreachable(uint64)            {}
func (h *countingHandler) ReportSnapshot(uint64, uint64, bool) {}

// BenchmarkSend measures the throughput of small Raft messages from one
// transport to another over loopback, Send to HandleRaftBatch. One op is
// one message; Send calls carry 16 messages, as a Ready round of a busy
// node would. The sender is paced to keep the queue below its bound, so
// nothing is dropped.
func BenchmarkSend(b *testing.B) {
	bk := newBook()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	var recv countingHandler
	benchNode(b, bk, 2, &recv, quiet)
	tx := benchNode(b, bk, 1, &countingHandler{}, quiet)

	const perSend = 16
	const maxInFlight = DefaultMaxQueueMsgs / 2
	b.ReportAllocs()
	b.ResetTimer()
	sent := 0
	for sent < b.N {
		for sent-int(recv.msgs.Load()) > maxInFlight {
			time.Sleep(10 * time.Microsecond)
		}
		k := min(perSend, b.N-sent)
		msgs := make([]*rpcpb.RaftMessage, k)
		for i := range msgs {
			msgs[i] = msg(1, uint64(sent+i+1))
		}
		tx.Send(2, msgs)
		sent += k
	}
	for int(recv.msgs.Load()) < b.N {
		time.Sleep(10 * time.Microsecond)
	}
	b.StopTimer()
	s := tx.Stats()
	if s.DroppedMsgs != 0 {
		b.Fatalf("dropped %d messages", s.DroppedMsgs)
	}
	b.ReportMetric(float64(s.SentMsgs)/float64(s.SentBatches), "msgs/batch")
}

// benchNode starts a transport with handler h behind a loopback server.
func benchNode(b *testing.B, bk *book, id uint64, h Handler, log *slog.Logger) *Transport {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	url := "http://" + lis.Addr().String()
	bk.set(id, url)
	tr, err := New(Config{ClusterID: 1, NodeID: id, Addr: url, Resolve: bk.resolve, Logger: log}, h)
	if err != nil {
		b.Fatal(err)
	}
	srv := grpc.NewServer(tr.ServerOptions()...)
	rpcpb.RegisterPeerServer(srv, &testPeer{tr: tr})
	go func() {
		// Serve returns when the benchmark stops the server.
		_ = srv.Serve(lis)
	}()
	b.Cleanup(func() {
		srv.Stop()
		tr.Close()
	})
	return tr
}
