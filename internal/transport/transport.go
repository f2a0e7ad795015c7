package transport

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

const (
	// MaxMsgBytes bounds every gRPC message between nodes in both directions.
	// It is large because a Raft snapshot travels as one message; the snapshot
	// code must keep snapshots below it.
	MaxMsgBytes = 512 << 20

	// DefaultMaxQueueMsgs is the default per-peer queue bound. At one message
	// per range per Ready round it absorbs a few rounds of a busy node without
	// letting a dead peer hold more than a few MiB of small messages.
	DefaultMaxQueueMsgs = 10000

	// DefaultMaxBatchBytes is the default size bound of one RaftBatch: large
	// enough to amortize a network write, small enough that heartbeats do not
	// wait long behind a batch of entries.
	DefaultMaxBatchBytes = 4 << 20

	// MetadataClusterID is the gRPC metadata key that carries the caller's
	// cluster id, in decimal, on every Peer RPC.
	MetadataClusterID = "concord-cluster-id"
)

var (
	// ErrClosed is returned by Conn and ConnTo after Close.
	ErrClosed = errors.New("transport: closed")
	// ErrUnknownNode is returned by Conn when Resolve has no address for the node.
	ErrUnknownNode = errors.New("transport: unknown node")
)

// Handler receives what arrives from, and what happens to, other nodes.
//
// Its methods are called concurrently from the transport's goroutines (one
// per incoming stream, one per destination node), never from inside Send, so
// an implementation may call Send. They must not block long: a slow
// HandleRaftBatch stalls that peer's stream, a slow Report* stalls sending to
// that peer. Hand the work to the Ready loop instead.
type Handler interface {
	// HandleRaftBatch delivers one accepted batch. The handler owns b.
	// Batches from one peer arrive in order on one goroutine.
	HandleRaftBatch(b *rpcpb.RaftBatch)
	// ReportUnreachable says the stream to node `to` failed or could not be
	// opened; the messages queued for it were dropped. The caller should call
	// raft's ReportUnreachable for every range with a replica on that node.
	ReportUnreachable(to uint64)
	// ReportSnapshot says a MsgSnap for rangeID to node `to` was written to
	// the stream (ok) or dropped (!ok). Every MsgSnap given to Send gets
	// exactly one report, unless the transport is closed first.
	ReportSnapshot(rangeID, to uint64, ok bool)
}

// Fault decides, for a batch from node `from` to node `to`, whether to drop
// it (true). It is a test and chaos hook. It is called on the sending side
// before a batch goes on the wire and on the receiving side before the
// Handler sees it, so a Fault installed on one transport that cuts the link
// in both directions isolates that node from the peer. It must be safe for
// concurrent use.
type Fault func(from, to uint64) bool

// Config configures a Transport. The zero values of the optional fields pick
// the defaults.
type Config struct {
	// ClusterID and NodeID are this node's identity; both must be non-zero,
	// or both 0 for a node that has not joined yet (join mode).
	ClusterID, NodeID uint64
	// Addr is this node's advertised peer URL, e.g. "http://127.0.0.1:2380",
	// sent in every batch so a receiver can answer a node it has not heard
	// of. Required unless in join mode.
	Addr string
	// Resolve is the current address book: a node id to its peer URL. The
	// caller may change the answers over time; Conn redials when the answer
	// changes. It is called from many goroutines and must be safe for
	// concurrent use. Nil means an empty address book.
	Resolve func(nodeID uint64) (url string, ok bool)
	// Logger receives the transport's logs. Nil means slog.Default().
	Logger *slog.Logger
	// MaxQueueMsgs bounds each peer's queue; when it is full Send drops and
	// counts. 0 means DefaultMaxQueueMsgs.
	MaxQueueMsgs int
	// MaxBatchBytes bounds the encoded size of one RaftBatch; a single
	// larger message (a snapshot) is sent alone. 0 means
	// DefaultMaxBatchBytes; it may not exceed MaxMsgBytes.
	MaxBatchBytes int
	// DialOptions are appended to the transport's own dial options (tests).
	DialOptions []grpc.DialOption
	// Credentials secure every connection the transport dials (the peer
	// port's mutual TLS). Nil means insecure.
	Credentials credentials.TransportCredentials
}

// Validate reports the first problem with c, or nil.
func (c *Config) Validate() error {
	switch {
	case (c.ClusterID == 0) != (c.NodeID == 0):
		return fmt.Errorf("transport: cluster id %d and node id %d must both be set or both be 0", c.ClusterID, c.NodeID)
	case c.MaxQueueMsgs < 0:
		return fmt.Errorf("transport: negative MaxQueueMsgs %d", c.MaxQueueMsgs)
	case c.MaxBatchBytes < 0 || c.MaxBatchBytes > MaxMsgBytes:
		return fmt.Errorf("transport: MaxBatchBytes %d outside [0, %d]", c.MaxBatchBytes, MaxMsgBytes)
	}
	if c.NodeID != 0 {
		if _, err := HostPort(c.Addr); err != nil {
			return fmt.Errorf("transport: Addr: %w", err)
		}
	}
	return nil
}

// Stats are the transport's counters since New. They only grow.
type Stats struct {
	SentMsgs    uint64 // messages written to a stream
	SentBatches uint64 // batches written to a stream
	// DroppedMsgs counts outgoing messages dropped (queue full, peer
	// unreachable or in backoff, oversized, Fault, Send after Close) and
	// incoming messages dropped by a Fault.
	DroppedMsgs     uint64
	ReceivedMsgs    uint64 // messages handed to the Handler
	ReceivedBatches uint64 // batches handed to the Handler
	RejectedBatches uint64 // incoming batches refused by validation
}

// Transport sends Raft messages to other nodes and serves theirs. All its
// methods are safe for concurrent use.
type Transport struct {
	cfg Config // with defaults applied; read-only after New
	h   Handler
	log *slog.Logger

	// ctx is canceled by Close; every sender goroutine and stream lives
	// under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // sender goroutines

	fault  atomic.Pointer[Fault]
	warned logOnce

	stats struct {
		sentMsgs, sentBatches, droppedMsgs      atomic.Uint64
		receivedMsgs, receivedBatches, rejected atomic.Uint64
	}

	mu struct {
		sync.Mutex
		closed bool
		// peers holds one sender per destination node, created by the first
		// Send to it.
		peers map[uint64]*peer
		// conns caches one connection per node, with the target it was
		// dialed for; addrConns caches one per target dialed by ConnTo.
		conns     map[uint64]*nodeConn
		addrConns map[string]*grpc.ClientConn
	}
}

// New validates cfg and returns a Transport that calls h. h may be nil only
// in join mode. The caller must Close it.
func New(cfg Config, h Handler) (*Transport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil && cfg.NodeID != 0 {
		return nil, errors.New("transport: nil Handler")
	}
	if cfg.MaxQueueMsgs == 0 {
		cfg.MaxQueueMsgs = DefaultMaxQueueMsgs
	}
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = DefaultMaxBatchBytes
	}
	if cfg.Resolve == nil {
		cfg.Resolve = func(uint64) (string, bool) { return "", false }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	t := &Transport{
		cfg: cfg,
		h:   h,
		log: cfg.Logger.With("component", "transport", "node", cfg.NodeID),
	}
	t.ctx, t.cancel = context.WithCancel(context.Background())
	t.mu.peers = make(map[uint64]*peer)
	t.mu.conns = make(map[uint64]*nodeConn)
	t.mu.addrConns = make(map[string]*grpc.ClientConn)
	return t, nil
}

// Send queues msgs for node `to` and returns at once; it never blocks on the
// network. The caller gives up ownership of msgs and of the messages in it.
// Messages that do not fit in the queue, or arrive after Close or in join
// mode, are dropped and counted (a dropped MsgSnap is reported through
// ReportSnapshot(!ok) from the sender goroutine). Sending to this node itself
// or to node 0 is a bug in the caller and panics.
func (t *Transport) Send(to uint64, msgs []*rpcpb.RaftMessage) {
	if to == t.cfg.NodeID || to == 0 {
		panic(fmt.Sprintf("transport: Send from node %d to node %d (%d msgs)", t.cfg.NodeID, to, len(msgs)))
	}
	if len(msgs) == 0 {
		return
	}
	p := t.peer(to)
	if p == nil {
		t.stats.droppedMsgs.Add(uint64(len(msgs)))
		return
	}
	if n := p.enqueue(msgs); n > 0 {
		t.stats.droppedMsgs.Add(uint64(n))
	}
}

// peer returns the sender for node `to`, starting it on first use, or nil
// after Close or in join mode.
func (t *Transport) peer(to uint64) *peer {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed || t.cfg.NodeID == 0 {
		return nil
	}
	p := t.mu.peers[to]
	if p == nil {
		p = newPeer(t, to)
		t.mu.peers[to] = p
		t.wg.Add(1)
		go p.run(t.ctx)
	}
	return p
}

// Stats returns a snapshot of the counters.
func (t *Transport) Stats() Stats {
	return Stats{
		SentMsgs:        t.stats.sentMsgs.Load(),
		SentBatches:     t.stats.sentBatches.Load(),
		DroppedMsgs:     t.stats.droppedMsgs.Load(),
		ReceivedMsgs:    t.stats.receivedMsgs.Load(),
		ReceivedBatches: t.stats.receivedBatches.Load(),
		RejectedBatches: t.stats.rejected.Load(),
	}
}

// SetFault installs f (nil removes it). Off by default; for tests and chaos
// only. See Fault.
func (t *Transport) SetFault(f Fault) {
	if f == nil {
		t.fault.Store(nil)
		return
	}
	t.fault.Store(&f)
}

// dropByFault reports whether the installed Fault drops a batch from -> to.
func (t *Transport) dropByFault(from, to uint64) bool {
	f := t.fault.Load()
	return f != nil && (*f)(from, to)
}

// Close stops every sender goroutine, waits for them, and closes every
// cached connection. After Close, Send drops, Conn and ConnTo fail with
// ErrClosed and ServeRaft refuses streams; no Handler method is called from
// a sender goroutine once Close returns. Close is idempotent.
func (t *Transport) Close() {
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return
	}
	t.mu.closed = true
	t.cancel()
	t.mu.Unlock()

	t.wg.Wait()

	// Close connections outside the lock: Send and Conn only take it briefly.
	t.mu.Lock()
	conns, addrConns := t.mu.conns, t.mu.addrConns
	t.mu.conns, t.mu.addrConns = map[uint64]*nodeConn{}, map[string]*grpc.ClientConn{}
	t.mu.Unlock()
	for _, c := range conns {
		t.closeConn(c.cc, c.target)
	}
	for target, cc := range addrConns {
		t.closeConn(cc, target)
	}
}

// logOnce remembers which keys were logged, so a misconfigured or hostile
// peer that retries forever fills the log with one line, not millions.
type logOnce struct {
	mu   sync.Mutex
	seen map[string]struct{}
}

// maxLogOnceKeys bounds logOnce's memory; when reached the set is cleared,
// so at worst a key is logged again.
const maxLogOnceKeys = 1024

// first reports whether key is seen for the first time.
func (l *logOnce) first(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.seen[key]; ok {
		return false
	}
	if l.seen == nil || len(l.seen) >= maxLogOnceKeys {
		l.seen = make(map[string]struct{})
	}
	l.seen[key] = struct{}{}
	return true
}
