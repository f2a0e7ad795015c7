package transport

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

func TestDeliveryInOrderTwoNodes(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	b := startNode(t, bk, 1, 2, nil)

	const n = 2000
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 1; i <= n; {
		k := min(1+rng.IntN(50), n-i+1)
		var msgs []*rpcpb.RaftMessage
		for j := range k {
			msgs = append(msgs, msg(uint64(1+rng.IntN(5)), uint64(i+j)))
		}
		a.tr.Send(2, msgs)
		b.tr.Send(1, []*rpcpb.RaftMessage{msg(1, uint64(i))})
		i += k
	}
	waitFor(t, "node 2 to receive every message", func() bool { return len(b.rec.msgsFrom(1)) >= n })
	checkSequence(t, indexes(b.rec.msgsFrom(1)), n)
	waitFor(t, "node 1 to hear from node 2", func() bool { return a.tr.Stats().ReceivedMsgs == b.tr.Stats().SentMsgs && b.tr.Stats().SentMsgs > 0 })

	as, bs := a.tr.Stats(), b.tr.Stats()
	if as.SentMsgs != n || bs.ReceivedMsgs != n || as.DroppedMsgs != 0 {
		t.Fatalf("stats: sender %+v receiver %+v", as, bs)
	}
	if as.SentBatches != bs.ReceivedBatches {
		t.Fatalf("sent %d batches, received %d", as.SentBatches, bs.ReceivedBatches)
	}
	for _, batch := range b.rec.batchesFrom(1) {
		if batch.GetClusterId() != 1 || batch.GetToNode() != 2 || batch.GetFromAddr() != "http://"+a.addr {
			t.Fatalf("bad batch header: %v", batch)
		}
	}
}

func TestDeliveryThreeNodes(t *testing.T) {
	bk := newBook()
	nodes := []*testNode{
		startNode(t, bk, 7, 1, nil),
		startNode(t, bk, 7, 2, nil),
		startNode(t, bk, 7, 3, nil),
	}
	const n = 300
	for i := 1; i <= n; i++ {
		for _, from := range nodes {
			for _, to := range nodes {
				if from != to {
					from.tr.Send(to.id, []*rpcpb.RaftMessage{msg(from.id*10+to.id, uint64(i))})
				}
			}
		}
	}
	for _, to := range nodes {
		for _, from := range nodes {
			if from == to {
				continue
			}
			waitFor(t, fmt.Sprintf("%d -> %d", from.id, to.id), func() bool { return len(to.rec.msgsFrom(from.id)) >= n })
			got := to.rec.msgsFrom(from.id)
			checkSequence(t, indexes(got), n)
			for _, m := range got {
				if m.GetRangeId() != from.id*10+to.id {
					t.Fatalf("%d -> %d: message for range %d", from.id, to.id, m.GetRangeId())
				}
			}
		}
	}
}

func TestBatchingCoalesces(t *testing.T) {
	bk := newBook()
	release := make(chan struct{})
	fault, entered := blockFirst(release)
	a := startNode(t, bk, 1, 1, nil)
	b := startNode(t, bk, 1, 2, nil)
	a.tr.SetFault(fault)

	// The first message is taken by the sender, which then blocks in the
	// fault; everything sent meanwhile must leave together.
	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 1)})
	<-entered
	const n = 1000
	for i := 2; i <= n; i++ {
		a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, uint64(i))})
	}
	close(release)
	waitFor(t, "all messages", func() bool { return len(b.rec.msgsFrom(1)) >= n })
	checkSequence(t, indexes(b.rec.msgsFrom(1)), n)
	if got := len(b.rec.batchesFrom(1)); got != 2 {
		t.Fatalf("%d messages came in %d batches, want 2", n, got)
	}
}

func TestBatchingRespectsMaxBatchBytes(t *testing.T) {
	bk := newBook()
	const maxBatch = 1024
	release := make(chan struct{})
	fault, entered := blockFirst(release)
	a := startNode(t, bk, 1, 1, func(c *Config) { c.MaxBatchBytes = maxBatch })
	b := startNode(t, bk, 1, 2, nil)
	a.tr.SetFault(fault)

	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 1)})
	<-entered
	const n = 400
	var msgs []*rpcpb.RaftMessage
	for i := 2; i <= n; i++ {
		m := msg(1, uint64(i))
		m.GetMsg().Context = make([]byte, 40)
		if i == n/2 {
			m.GetMsg().Context = make([]byte, 5*maxBatch) // too big for a batch: goes alone
		}
		msgs = append(msgs, m)
	}
	a.tr.Send(2, msgs)
	close(release)
	waitFor(t, "all messages", func() bool { return len(b.rec.msgsFrom(1)) >= n })
	checkSequence(t, indexes(b.rec.msgsFrom(1)), n)

	batches := b.rec.batchesFrom(1)
	big := 0
	for _, batch := range batches {
		size := proto.Size(batch)
		if len(batch.GetMsgs()) == 1 && size > maxBatch {
			big++
			continue
		}
		if size > maxBatch {
			t.Fatalf("batch of %d messages is %d bytes, limit %d", len(batch.GetMsgs()), size, maxBatch)
		}
	}
	if big != 1 {
		t.Fatalf("%d oversized single-message batches, want 1", big)
	}
	// ~60 bytes a message in 1 KiB batches: at least ~20 batches, and far
	// fewer than messages.
	if len(batches) < 20 || len(batches) > n/4 {
		t.Fatalf("%d messages in %d batches", n, len(batches))
	}
}

func TestWrongClusterRefused(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	good := startNode(t, bk, 1, 3, nil)
	// Node 2 of another cluster whose address book points at node 1.
	evil := startNode(t, bk, 2, 2, nil)

	for round := 1; round <= 3; round++ {
		evil.tr.Send(1, []*rpcpb.RaftMessage{msg(1, 1)})
		waitFor(t, "the refused stream to be reported unreachable", func() bool {
			if evil.rec.unreachableCount(1) >= round {
				return true
			}
			// Sends during backoff are dropped without a dial; keep going.
			evil.tr.Send(1, []*rpcpb.RaftMessage{msg(1, 1)})
			return false
		})
	}
	if got := len(a.rec.msgsFrom(2)); got != 0 {
		t.Fatalf("node 1 accepted %d messages from another cluster", got)
	}
	if got := a.tr.Stats().RejectedBatches; got < 3 {
		t.Fatalf("RejectedBatches = %d, want >= 3", got)
	}
	if got := a.logs.count("level=WARN", "refused peer", "cluster 2"); got != 1 {
		t.Fatalf("refusal logged %d times at warn, want once:\n%s", got, a.logs.buf.String())
	}
	if got := evil.logs.count("level=WARN", "peer unreachable", "PermissionDenied"); got != 1 {
		t.Fatalf("sender logged the refusal %d times at warn, want once", got)
	}

	good.tr.Send(1, []*rpcpb.RaftMessage{msg(1, 1)})
	waitFor(t, "the good peer's message", func() bool { return len(a.rec.msgsFrom(3)) == 1 })
}

func TestServeRaftRejectsBadBatches(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	c := startNode(t, bk, 1, 3, nil)
	cc, err := c.tr.Conn(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		batch *rpcpb.RaftBatch
		code  codes.Code
	}{
		{"other cluster", &rpcpb.RaftBatch{ClusterId: 2, FromNode: 3, ToNode: 1}, codes.PermissionDenied},
		{"other node", &rpcpb.RaftBatch{ClusterId: 1, FromNode: 3, ToNode: 9}, codes.InvalidArgument},
		{"from node 0", &rpcpb.RaftBatch{ClusterId: 1, ToNode: 1}, codes.InvalidArgument},
		{"from itself", &rpcpb.RaftBatch{ClusterId: 1, FromNode: 1, ToNode: 1}, codes.InvalidArgument},
		{"empty message", &rpcpb.RaftBatch{ClusterId: 1, FromNode: 3, ToNode: 1, Msgs: []*rpcpb.RaftMessage{{RangeId: 1}}}, codes.InvalidArgument},
		{"range 0", &rpcpb.RaftBatch{ClusterId: 1, FromNode: 3, ToNode: 1, Msgs: []*rpcpb.RaftMessage{msg(0, 1)}}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stream, err := rpcpb.NewPeerClient(cc).Raft(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if err := stream.Send(tc.batch); err != nil {
				t.Fatal(err)
			}
			_, err = stream.CloseAndRecv()
			if status.Code(err) != tc.code {
				t.Fatalf("got %v, want %v", err, tc.code)
			}
		})
	}
	t.Run("from changes mid-stream", func(t *testing.T) {
		stream, err := rpcpb.NewPeerClient(cc).Raft(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, from := range []uint64{3, 4} {
			if err := stream.Send(&rpcpb.RaftBatch{ClusterId: 1, FromNode: from, ToNode: 1, Msgs: []*rpcpb.RaftMessage{msg(1, from)}}); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := stream.CloseAndRecv(); status.Code(err) != codes.InvalidArgument {
			t.Fatalf("got %v, want InvalidArgument", err)
		}
	})
	if got, want := a.tr.Stats().RejectedBatches, uint64(len(tests)+1); got != want {
		t.Fatalf("RejectedBatches = %d, want %d", got, want)
	}
	// One warning per peer identity (cluster, from_node): "other node",
	// "empty message" and "range 0" all come from cluster 1 node 3.
	if got := a.logs.count("level=WARN", "refused peer"); got != 5 {
		t.Fatalf("%d warnings, want 5 (one per claimed peer):\n%s", got, a.logs.buf.String())
	}

	// A clean stream is acknowledged, and the node still serves.
	stream, err := rpcpb.NewPeerClient(cc).Raft(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpcpb.RaftBatch{ClusterId: 1, FromNode: 3, ToNode: 1, Msgs: []*rpcpb.RaftMessage{msg(1, 7)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); err != nil {
		t.Fatalf("clean stream: %v", err)
	}
	c.tr.Send(1, []*rpcpb.RaftMessage{msg(1, 8)})
	waitFor(t, "delivery after refusals", func() bool {
		got := a.rec.msgsFrom(3)
		return len(got) > 0 && got[len(got)-1].GetMsg().GetIndex() == 8
	})
}

func TestPeerRPCClusterCheck(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	same := startNode(t, bk, 1, 3, nil)
	other := startNode(t, bk, 2, 2, nil)
	joiner, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer joiner.Close()
	ctx := context.Background()
	url := "http://" + a.addr

	conn := func(tr *Transport) *grpc.ClientConn {
		cc, err := tr.ConnTo(ctx, url)
		if err != nil {
			t.Fatal(err)
		}
		return cc
	}
	// A connection without the transport's interceptors carries no cluster id.
	bare, err := grpc.NewClient(a.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := bare.Close(); err != nil {
			t.Error(err)
		}
	}()

	tests := []struct {
		name       string
		cc         *grpc.ClientConn
		join, stat codes.Code
	}{
		{"same cluster", conn(same.tr), codes.OK, codes.OK},
		{"joiner (cluster 0)", conn(joiner), codes.OK, codes.PermissionDenied},
		{"no metadata", bare, codes.OK, codes.PermissionDenied},
		{"other cluster", conn(other.tr), codes.PermissionDenied, codes.PermissionDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			client := rpcpb.NewPeerClient(tc.cc)
			resp, err := client.Join(ctx, &rpcpb.JoinRequest{})
			if status.Code(err) != tc.join {
				t.Fatalf("Join: %v, want %v", err, tc.join)
			}
			if err == nil && resp.GetClusterId() != 1 {
				t.Fatalf("Join answered %v", resp)
			}
			if _, err := client.NodeStatus(ctx, &rpcpb.NodeStatusRequest{}); status.Code(err) != tc.stat {
				t.Fatalf("NodeStatus: %v, want %v", err, tc.stat)
			}
		})
	}
}

func TestCheckClusterID(t *testing.T) {
	join := rpcpb.Peer_Join_FullMethodName
	stat := rpcpb.Peer_NodeStatus_FullMethodName
	md := func(vals ...string) context.Context {
		var kv []string
		for _, v := range vals {
			kv = append(kv, MetadataClusterID, v)
		}
		return metadataCtx(kv...)
	}
	tests := []struct {
		ctx    context.Context
		method string
		ours   uint64
		want   codes.Code
	}{
		{md("5"), stat, 5, codes.OK},
		{md("5"), join, 5, codes.OK},
		{md("0"), join, 5, codes.OK},
		{md(), join, 5, codes.OK},
		{md("0"), join, 0, codes.OK},
		{md(), stat, 5, codes.PermissionDenied},
		{md("0"), stat, 5, codes.PermissionDenied},
		{md("6"), stat, 5, codes.PermissionDenied},
		{md("6"), join, 5, codes.PermissionDenied},
		{md("x"), stat, 5, codes.InvalidArgument},
		{md("-1"), join, 5, codes.InvalidArgument},
		{md("5", "5"), stat, 5, codes.InvalidArgument},
		{md("5"), stat, 0, codes.FailedPrecondition},
	}
	for i, tc := range tests {
		if got := status.Code(checkClusterID(tc.ctx, tc.method, tc.ours)); got != tc.want {
			t.Errorf("%d: %s ours=%d: got %v, want %v", i, tc.method, tc.ours, got, tc.want)
		}
	}
}

func TestGarbageDoesNotCrash(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	c := startNode(t, bk, 1, 3, nil)
	rng := rand.New(rand.NewPCG(3, 4))
	payloads := []struct {
		data []byte
		// closed: the server must hang up on this one at once. Shorter
		// garbage leaves it waiting for the rest of the HTTP/2 preface
		// (bounded by the server's connection timeout).
		closed bool
	}{
		{[]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), true},
		// A valid HTTP/2 preface followed by nonsense frames.
		{append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), randBytes(rng, 4096)...), true},
		{randBytes(rng, 1<<16), true},
		{[]byte{0, 0, 0, 0, 0}, false},
	}
	for i, p := range payloads {
		conn, err := net.Dial("tcp", a.addr)
		if err != nil {
			t.Fatal(err)
		}
		if err := conn.SetDeadline(time.Now().Add(waitTimeout)); err != nil {
			t.Fatal(err)
		}
		// The server may hang up before reading it all; a write error is
		// fine, a crash is not.
		_, _ = conn.Write(p.data)
		buf := make([]byte, 1024)
		for p.closed {
			if _, err := conn.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("payload %d: server kept a garbage connection open", i)
				}
				break
			}
		}
		if err := conn.Close(); err != nil {
			t.Fatal(err)
		}
	}
	c.tr.Send(1, []*rpcpb.RaftMessage{msg(1, 1)})
	waitFor(t, "delivery after garbage", func() bool { return len(a.rec.msgsFrom(3)) == 1 })
}

func randBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
	return b
}

func TestPeerRestartReconnects(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	b := startNode(t, bk, 1, 2, nil)

	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 1)})
	waitFor(t, "first delivery", func() bool { return len(b.rec.msgsFrom(1)) == 1 })

	b.restart(t)
	waitFor(t, "the broken stream to be reported", func() bool { return a.rec.unreachableCount(2) >= 1 })

	i := uint64(2)
	waitFor(t, "delivery to the restarted peer", func() bool {
		a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, i)})
		i++
		return len(b.rec.msgsFrom(1)) > 0
	})
	// Once reconnected, nothing more is lost and order holds.
	last := i
	for j := range uint64(100) {
		a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, last+j)})
	}
	waitFor(t, "the last message", func() bool {
		got := b.rec.msgsFrom(1)
		return got[len(got)-1].GetMsg().GetIndex() == last+99
	})
	got := indexes(b.rec.msgsFrom(1))
	for k := 1; k < len(got); k++ {
		if got[k] <= got[k-1] {
			t.Fatalf("out of order after restart: %v", got)
		}
	}
	if tail := got[len(got)-100:]; tail[0] != last {
		t.Fatalf("lost messages after reconnecting: %v", tail)
	}
}

func TestFaultBothDirections(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	b := startNode(t, bk, 1, 2, nil)
	c := startNode(t, bk, 1, 3, nil)
	// Cut 1 <-> 2 on node 1 only.
	a.tr.SetFault(func(from, to uint64) bool {
		return (from == 1 && to == 2) || (from == 2 && to == 1)
	})
	const n = 10
	for i := 1; i <= n; i++ {
		one := func() []*rpcpb.RaftMessage { return []*rpcpb.RaftMessage{msg(1, uint64(i))} }
		a.tr.Send(2, one())
		a.tr.Send(3, one())
		b.tr.Send(1, one())
		c.tr.Send(1, one())
	}
	waitFor(t, "1 -> 3 and 3 -> 1", func() bool { return len(c.rec.msgsFrom(1)) == n && len(a.rec.msgsFrom(3)) == n })
	waitFor(t, "node 1 to drop both directions", func() bool { return a.tr.Stats().DroppedMsgs == 2*n })
	waitFor(t, "node 2 to send", func() bool { return b.tr.Stats().SentMsgs == n })
	if got := len(b.rec.msgsFrom(1)); got != 0 {
		t.Fatalf("node 2 got %d messages across the cut", got)
	}
	if got := len(a.rec.msgsFrom(2)); got != 0 {
		t.Fatalf("node 1 got %d messages across the cut", got)
	}

	a.tr.SetFault(nil)
	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 100)})
	b.tr.Send(1, []*rpcpb.RaftMessage{msg(1, 100)})
	waitFor(t, "the healed link", func() bool { return len(b.rec.msgsFrom(1)) == 1 && len(a.rec.msgsFrom(2)) == 1 })
}

func TestReportSnapshot(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, func(c *Config) { c.MaxBatchBytes = 64 << 10 })
	b := startNode(t, bk, 1, 2, nil)

	a.tr.Send(2, []*rpcpb.RaftMessage{msg(7, 1), snapMsg(7, 1<<20), msg(7, 2)})
	waitFor(t, "the snapshot report", func() bool { return len(a.rec.snapReports()) == 1 })
	if got := a.rec.snapReports()[0]; got != (snapReport{rangeID: 7, to: 2, ok: true}) {
		t.Fatalf("report %+v", got)
	}
	waitFor(t, "delivery", func() bool { return len(b.rec.msgsFrom(1)) == 3 })
	for _, batch := range b.rec.batchesFrom(1) {
		if hasSnap(batch) && len(batch.GetMsgs()) != 1 {
			t.Fatalf("a snapshot larger than MaxBatchBytes shared a batch of %d", len(batch.GetMsgs()))
		}
	}
	if got := len(b.rec.msgsFrom(1)[1].GetMsg().GetSnapshot().GetData()); got != 1<<20 {
		t.Fatalf("snapshot data is %d bytes", got)
	}

	// A snapshot to a node nobody listens for fails.
	bk.set(9, "http://"+freeAddr(t))
	a.tr.Send(9, []*rpcpb.RaftMessage{snapMsg(8, 10)})
	waitFor(t, "the failed snapshot report", func() bool { return len(a.rec.snapReports()) == 2 })
	if got := a.rec.snapReports()[1]; got != (snapReport{rangeID: 8, to: 9, ok: false}) {
		t.Fatalf("report %+v", got)
	}
	if a.rec.unreachableCount(9) == 0 {
		t.Fatal("unreachable node not reported")
	}
}

func hasSnap(b *rpcpb.RaftBatch) bool {
	for _, m := range b.GetMsgs() {
		if isSnap(m) {
			return true
		}
	}
	return false
}

func TestQueueBoundDrops(t *testing.T) {
	bk := newBook()
	const maxQueue = 100
	release := make(chan struct{})
	fault, entered := blockFirst(release)
	a := startNode(t, bk, 1, 1, func(c *Config) { c.MaxQueueMsgs = maxQueue })
	b := startNode(t, bk, 1, 2, nil)
	a.tr.SetFault(fault)

	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 1)})
	<-entered // the sender holds message 1; the queue is empty
	var msgs []*rpcpb.RaftMessage
	for i := 2; i <= 500; i++ {
		msgs = append(msgs, msg(1, uint64(i)))
	}
	msgs = append(msgs, snapMsg(5, 10))
	a.tr.Send(2, msgs)
	if got, want := a.tr.Stats().DroppedMsgs, uint64(len(msgs)-maxQueue); got != want {
		t.Fatalf("dropped %d, want %d", got, want)
	}
	close(release)
	waitFor(t, "the queued messages", func() bool { return len(b.rec.msgsFrom(1)) == maxQueue+1 })
	checkSequence(t, indexes(b.rec.msgsFrom(1)), maxQueue+1)
	waitFor(t, "the dropped snapshot report", func() bool { return len(a.rec.snapReports()) == 1 })
	if got := a.rec.snapReports()[0]; got != (snapReport{rangeID: 5, to: 2, ok: false}) {
		t.Fatalf("report %+v", got)
	}
}

func TestQueueBoundedWhilePeerDown(t *testing.T) {
	bk := newBook()
	const maxQueue = 100
	a := startNode(t, bk, 1, 1, func(c *Config) { c.MaxQueueMsgs = maxQueue })
	bk.set(9, "http://"+freeAddr(t))

	const n = 20000
	for i := 0; i < n; i += 50 {
		var msgs []*rpcpb.RaftMessage
		for j := range 50 {
			msgs = append(msgs, msg(1, uint64(i+j)))
		}
		a.tr.Send(9, msgs)
		p := a.tr.peer(9)
		p.mu.Lock()
		queued := len(p.mu.queue)
		p.mu.Unlock()
		if queued > maxQueue {
			t.Fatalf("queue holds %d messages, bound %d", queued, maxQueue)
		}
	}
	waitFor(t, "every message to be dropped", func() bool { return a.tr.Stats().DroppedMsgs == n })
	if s := a.tr.Stats(); s.SentMsgs != 0 {
		t.Fatalf("stats %+v", s)
	}
	if a.rec.unreachableCount(9) == 0 {
		t.Fatal("down peer not reported unreachable")
	}
	if got := a.logs.count("level=WARN", "peer unreachable", "peer=9"); got != 1 {
		t.Fatalf("outage logged %d times at warn, want once", got)
	}
}

func TestConnCache(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	ctx := context.Background()
	bk.set(2, "http://127.0.0.1:1111")

	c1, err := a.tr.Conn(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	c2, err := a.tr.Conn(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if c1 != c2 {
		t.Fatal("Conn dialed twice for one address")
	}
	bk.set(2, "127.0.0.1:2222")
	c3, err := a.tr.Conn(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if c3 == c1 || c3.Target() != "127.0.0.1:2222" {
		t.Fatalf("address change not redialed: %s", c3.Target())
	}
	if c1.GetState() != connectivity.Shutdown {
		t.Fatalf("replaced conn is %v, want closed", c1.GetState())
	}
	if _, err := a.tr.Conn(ctx, 99); !errors.Is(err, ErrUnknownNode) {
		t.Fatalf("unknown node: %v", err)
	}
	bk.set(98, "ftp://x:1")
	if _, err := a.tr.Conn(ctx, 98); err == nil {
		t.Fatal("bad url accepted")
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := a.tr.Conn(canceled, 2); !errors.Is(err, context.Canceled) {
		t.Fatalf("canceled ctx: %v", err)
	}

	u1, err := a.tr.ConnTo(ctx, "http://127.0.0.1:3333")
	if err != nil {
		t.Fatal(err)
	}
	u2, err := a.tr.ConnTo(ctx, "127.0.0.1:3333")
	if err != nil {
		t.Fatal(err)
	}
	if u1 != u2 {
		t.Fatal("ConnTo dialed twice for one address")
	}

	a.tr.Close()
	if c3.GetState() != connectivity.Shutdown || u1.GetState() != connectivity.Shutdown {
		t.Fatal("Close left connections open")
	}
	if _, err := a.tr.Conn(ctx, 2); !errors.Is(err, ErrClosed) {
		t.Fatalf("Conn after Close: %v", err)
	}
	if _, err := a.tr.ConnTo(ctx, "127.0.0.1:3333"); !errors.Is(err, ErrClosed) {
		t.Fatalf("ConnTo after Close: %v", err)
	}
}

func TestCloseStopsSending(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	b := startNode(t, bk, 1, 2, nil)
	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 1)})
	waitFor(t, "delivery", func() bool { return len(b.rec.msgsFrom(1)) == 1 })

	a.tr.Close()
	a.tr.Close() // idempotent
	a.tr.Send(2, []*rpcpb.RaftMessage{msg(1, 2), msg(1, 3)})
	if got := a.tr.Stats().DroppedMsgs; got != 2 {
		t.Fatalf("Send after Close: dropped %d, want 2", got)
	}

	// A closed transport refuses new streams.
	cc, err := b.tr.Conn(context.Background(), 1)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := rpcpb.NewPeerClient(cc).Raft(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&rpcpb.RaftBatch{ClusterId: 1, FromNode: 2, ToNode: 1, Msgs: []*rpcpb.RaftMessage{msg(1, 1)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := stream.CloseAndRecv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("stream to a closed transport: %v", err)
	}
}

func TestSendToSelfPanics(t *testing.T) {
	bk := newBook()
	a := startNode(t, bk, 1, 1, nil)
	for _, to := range []uint64{0, 1} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Send to %d did not panic", to)
				}
			}()
			a.tr.Send(to, []*rpcpb.RaftMessage{msg(1, 1)})
		}()
	}
}

func TestJoinModeDrops(t *testing.T) {
	tr, err := New(Config{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	tr.Send(2, []*rpcpb.RaftMessage{msg(1, 1)})
	if got := tr.Stats().DroppedMsgs; got != 1 {
		t.Fatalf("dropped %d", got)
	}
}

func TestHostPort(t *testing.T) {
	good := map[string]string{
		"http://127.0.0.1:2380":  "127.0.0.1:2380",
		"https://node-1:2380":    "node-1:2380",
		"http://[::1]:2380/":     "[::1]:2380",
		"10.0.0.1:1":             "10.0.0.1:1",
		"localhost:65535":        "localhost:65535",
		"http://example.com:443": "example.com:443",
	}
	for in, want := range good {
		if got, err := HostPort(in); err != nil || got != want {
			t.Errorf("HostPort(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{
		"", "127.0.0.1", "http://127.0.0.1", "unix:///tmp/x", "ftp://h:1", "http://h:1/path",
		"http://u@h:1", "h:0", "h:65536", "h:port", ":2380", "http://:2380", "http://h:1?x=y", "%zz://h:1",
	} {
		if got, err := HostPort(in); err == nil {
			t.Errorf("HostPort(%q) = %q, want an error", in, got)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	ok := Config{ClusterID: 1, NodeID: 1, Addr: "http://127.0.0.1:2380"}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	if err := (&Config{}).Validate(); err != nil {
		t.Fatalf("join mode: %v", err)
	}
	bad := []func(*Config){
		func(c *Config) { c.ClusterID = 0 },
		func(c *Config) { c.NodeID = 0 },
		func(c *Config) { c.Addr = "" },
		func(c *Config) { c.Addr = "nope" },
		func(c *Config) { c.MaxQueueMsgs = -1 },
		func(c *Config) { c.MaxBatchBytes = -1 },
		func(c *Config) { c.MaxBatchBytes = MaxMsgBytes + 1 },
	}
	for i, f := range bad {
		c := ok
		f(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%d: %+v accepted", i, c)
		}
		if _, err := New(c, newRecorder()); err == nil {
			t.Errorf("%d: New accepted %+v", i, c)
		}
	}
	if _, err := New(ok, nil); err == nil {
		t.Error("New accepted a nil handler")
	}
}

func TestNextBatch(t *testing.T) {
	var msgs []*rpcpb.RaftMessage
	for i := range 10 {
		msgs = append(msgs, msg(1, uint64(i+1)))
	}
	one := proto.Size(&rpcpb.RaftBatch{Msgs: msgs[:1]})
	all := proto.Size(&rpcpb.RaftBatch{Msgs: msgs})
	if n, size := nextBatch(msgs, all); n != 10 || size != all {
		t.Fatalf("nextBatch(all) = %d, %d; want 10, %d", n, size, all)
	}
	if n, size := nextBatch(msgs, all-1); n != 9 || size > all-1 {
		t.Fatalf("nextBatch(all-1) = %d, %d", n, size)
	}
	if n, size := nextBatch(msgs, 1); n != 1 || size != one {
		t.Fatalf("nextBatch(1) = %d, %d; want 1, %d", n, size, one)
	}
	if n, _ := nextBatch(nil, 100); n != 0 {
		t.Fatalf("nextBatch(nil) = %d", n)
	}
}

func TestBackoff(t *testing.T) {
	var d time.Duration
	var seen []time.Duration
	for range 10 {
		d = nextDelay(d)
		seen = append(seen, d)
		if j := jitter(d); j < d/2 || j > d {
			t.Fatalf("jitter(%v) = %v", d, j)
		}
	}
	if seen[0] != minBackoff || seen[1] != 2*minBackoff || seen[9] != maxBackoff {
		t.Fatalf("delays %v", seen)
	}
}

// A connection to the peer port holds at most MaxPeerStreams streams: one
// past them waits in the caller (here until its deadline) while the open
// ones carry on, and opens once one of them ends.
func TestPeerStreamsBounded(t *testing.T) {
	bk := newBook()
	startNode(t, bk, 1, 1, nil)
	b := startNode(t, bk, 1, 2, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cc, err := b.tr.Conn(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	peer := rpcpb.NewPeerClient(cc)
	// The first call brings the server's stream bound to the client.
	if _, err := peer.NodeStatus(ctx, &rpcpb.NodeStatusRequest{}); err != nil {
		t.Fatal(err)
	}
	cancels := make([]context.CancelFunc, 0, MaxPeerStreams)
	defer func() {
		for _, c := range cancels {
			c()
		}
	}()
	for i := range MaxPeerStreams {
		sctx, c := context.WithCancel(ctx)
		cancels = append(cancels, c)
		if _, err := peer.Raft(sctx); err != nil {
			t.Fatalf("stream %d: %v", i, err)
		}
	}
	waitCtx, waitCancel := context.WithTimeout(ctx, 200*time.Millisecond)
	_, err = peer.NodeStatus(waitCtx, &rpcpb.NodeStatusRequest{})
	waitCancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("a call past %d open streams: %v, want it to wait out its deadline", MaxPeerStreams, err)
	}
	cancels[0]() // one stream ends
	if _, err := peer.NodeStatus(ctx, &rpcpb.NodeStatusRequest{}); err != nil {
		t.Fatalf("a call once a stream ended: %v", err)
	}
}
