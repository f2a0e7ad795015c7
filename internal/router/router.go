// Package router is the core of every node's gateway: it maps a request's
// keys to the range that holds them (through a cache of range descriptors
// read from the meta range), sends it to the node believed to hold that
// range's lease (through a leader cache), and retries with backoff and
// jitter on NOT_LEADER, stale range caches and unavailable nodes until the
// request's deadline.
//
// What is retried inside and what surfaces:
//   - reads are retried on any routing or transport error;
//   - writes are retried only when they certainly were not applied:
//     NOT_LEADER, RANGE_NOT_FOUND, KEY_MISMATCH, UNAVAILABLE, RETRY, or a node
//     that could not be reached before sending. A write whose fate is unknown
//     (the connection broke after sending, the deadline passed while it was
//     in flight) surfaces as AMBIGUOUS and is never retried;
//   - request errors (COMPACTED, FUTURE_REV, INVALID_ARGUMENT, ...) surface
//     at once, and so does a request refused because a bound on its path
//     was full (a gRPC ResourceExhausted status; nothing was sent).
//
// Requests for ranges led elsewhere travel on one Peer.Forward stream per
// node, many per message; the package owns both ends of that protocol
// (forward.go: the gateway's forwarder and ServeForward on the leaseholder).
package router

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/telemetry"
	"go.opentelemetry.io/otel/attribute"
	otelcodes "go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Local is this node's own store and oracle: requests for ranges whose
// leader is here skip the network.
type Local interface {
	// Execute serves a request for a range held here (RANGE_NOT_FOUND if
	// not).
	Execute(ctx context.Context, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error)
	// Timestamp serves the TSO if this node leads the meta range
	// (NOT_LEADER otherwise).
	Timestamp(ctx context.Context, n int) (int64, error)
}

// Dialer returns a connection to a node.
type Dialer func(ctx context.Context, nodeID uint64) (*grpc.ClientConn, error)

// Config configures a Router.
type Config struct {
	NodeID uint64
	Local  Local
	Dial   Dialer
	// Meta is the meta range's descriptor, known from bootstrap or join.
	Meta   *metapb.RangeDescriptor
	Logger *slog.Logger
	// RequestTimeout bounds a request whose context has no deadline
	// (default 5 s, about etcd's).
	RequestTimeout time.Duration
	// MinBackoff and MaxBackoff bound the wait between retries.
	MinBackoff, MaxBackoff time.Duration
	// UnsafeLocalReads sends every read to this node's replica when it has
	// one (with replica.Config.UnsafeNoReadLease: stale reads on purpose,
	// for the fault-injection harness). Never set outside tests.
	UnsafeLocalReads bool
	// Metrics counts retries and makes the router's spans; nil does
	// neither.
	Metrics *telemetry.Metrics
	// Current, if set, returns the cluster's newest revision for
	// CurrentRevision (a tso.Client's, which shares calls between
	// concurrent reads); nil asks the TSO once per call.
	Current func(ctx context.Context) (int64, error)
}

// LockResolver resolves the lock of a cross-range txn that a request met
// (internal/txn): it returns once the request may be sent again (the
// lock resolved, or waited on for a while), or an error that the request
// then fails with. Safe for concurrent use.
type LockResolver interface {
	ResolveLock(ctx context.Context, lock *kvpb.LockInfo) error
}

// Router routes requests to ranges. It is safe for concurrent use.
type Router struct {
	cfg Config
	log *slog.Logger

	mu struct {
		sync.RWMutex
		meta *metapb.RangeDescriptor
		// ranges are the known user range descriptors, sorted by start key.
		ranges []*metapb.RangeDescriptor
		// leaders caches each range's believed leader node.
		leaders map[uint64]uint64
	}
	// refreshMu lets one goroutine refresh the range cache at a time.
	refreshMu sync.Mutex
	// refreshStarted numbers the refreshes as they begin; refreshOK
	// (guarded by refreshMu) is the number of the last one that succeeded.
	// A caller that queued behind a refresh which began after it asked
	// uses that result instead of scanning the meta range again.
	refreshStarted atomic.Uint64
	refreshOK      uint64
	// fwd carries requests for ranges led elsewhere (forward.go).
	fwd *forwarder
	// locks resolves the txn locks requests meet (SetLockResolver); nil
	// until set: a LOCKED answer then surfaces.
	locks atomic.Pointer[LockResolver]
}

// SetLockResolver sets what resolves the txn locks requests meet. Call it
// before serving requests that may meet one.
func (r *Router) SetLockResolver(lr LockResolver) { r.locks.Store(&lr) }

// maxLockRounds bounds how often one request is sent again after meeting
// a txn's lock; each round waits for the lock (the resolver's wait and
// the range's lockWait), so the request's deadline is what binds.
const maxLockRounds = 1000

// New creates a Router.
func New(cfg Config) (*Router, error) {
	if cfg.NodeID == 0 || cfg.Local == nil || cfg.Dial == nil || cfg.Meta == nil {
		return nil, errors.New("router: NodeID, Local, Dial and Meta are required")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = 5 * time.Millisecond
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = 300 * time.Millisecond
	}
	r := &Router{cfg: cfg, log: cfg.Logger, fwd: newForwarder()}
	r.mu.meta = cfg.Meta
	r.mu.leaders = make(map[uint64]uint64)
	return r, nil
}

// Close ends the router's forward streams; requests waiting on them fail.
func (r *Router) Close() { r.fwd.cancel() }

// Header is what a response says about the state it was served from.
type Header struct {
	Revision int64
	RaftTerm uint64
}

// Do routes a KV request on user keys to its range. A read whose keys lie
// in several ranges is served across them (across.go); one that finds the
// ranges changed under it (CROSS_RANGE after a split) starts again, up to
// maxAcrossAttempts times. A write across ranges fails with CROSS_RANGE:
// internal/txn runs it.
func (r *Router) Do(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, Header, error) {
	span, err := opSpan(op)
	if err != nil {
		return nil, Header{}, err
	}
	ctx, cancel := r.withTimeout(ctx)
	defer cancel()
	for attempt := 0; ; attempt++ {
		resp, h, err := r.doOnce(ctx, op, span)
		if kvpb.CodeOf(err) != kvpb.ErrorCode_CROSS_RANGE || !kvpb.IsReadOnly(op) || attempt == maxAcrossAttempts || ctx.Err() != nil {
			return resp, h, err
		}
		if err := r.refresh(ctx); err != nil {
			return nil, Header{}, err
		}
	}
}

func (r *Router) doOnce(ctx context.Context, op *kvpb.RequestOp, span keys.Span) (*kvpb.ResponseOp, Header, error) {
	if d, ok := r.cached(span); (!ok || d == nil) && kvpb.IsReadOnly(op) && bytes.Compare(span.Start, span.End) < 0 {
		// No cached range holds every key: it may take several.
		descs, err := r.lookupAll(ctx, span)
		if err != nil {
			return nil, Header{}, err
		}
		if len(descs) > 1 {
			if rr := op.GetRange(); rr != nil {
				return r.rangeAcross(ctx, rr, descs)
			}
			return r.txnAcross(ctx, op)
		}
	}
	var resp *cmdpb.BatchResponse
	var err error
	if op.GetRange().GetSerializable() || (r.cfg.UnsafeLocalReads && kvpb.IsReadOnly(op)) {
		// etcd serves a serializable read from the member the client
		// talks to: prefer this node's own replica.
		resp, err = r.sendLocal(ctx, span, op)
	}
	if resp == nil {
		req := &cmdpb.BatchRequest{Op: op}
		if kvpb.IsReadOnly(op) && !op.GetRange().GetSerializable() && r.multiRange() {
			// With other ranges writing, this range's newest write may be
			// far behind the cluster: read as of the cluster's newest
			// revision, as etcd reads as of its store's (its header, and
			// the bound of a read at a past revision).
			if req.ReadRevision, err = r.CurrentRevision(ctx); err != nil {
				return nil, Header{}, err
			}
		}
		resp, err = r.send(ctx, span, req, !kvpb.IsReadOnly(op))
		if kvpb.CodeOf(err) == kvpb.ErrorCode_FUTURE_REV && kvpb.IsReadOnly(op) && !op.GetRange().GetSerializable() {
			// Above the range's newest write is not above the cluster's:
			// read it at that revision if the cluster has reached it.
			resp, err = r.readAbove(ctx, span, op, err)
		}
	}
	if err != nil {
		return nil, Header{}, err
	}
	return resp.GetResp(), Header{Revision: resp.GetRevision(), RaftTerm: resp.GetRaftTerm()}, nil
}

// multiRange reports whether the cached user ranges are more than one.
func (r *Router) multiRange() bool {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return len(r.mu.ranges) > 1
}

// readAbove serves a read that its range refused as a future revision
// (ferr) if the revision it names is not above the cluster's newest: at
// that revision, once the range has applied every write it numbered at or
// below it.
func (r *Router) readAbove(ctx context.Context, span keys.Span, op *kvpb.RequestOp, ferr error) (*cmdpb.BatchResponse, error) {
	rev := maxRangeRevision(op)
	cur, err := r.CurrentRevision(ctx)
	if err != nil {
		return nil, err
	}
	if rev <= 0 || rev > cur {
		return nil, ferr
	}
	return r.send(ctx, span, &cmdpb.BatchRequest{Op: op, ReadRevision: rev}, false /* write */)
}

// maxRangeRevision is the highest revision a read-only op names.
func maxRangeRevision(op *kvpb.RequestOp) int64 {
	if rr := op.GetRange(); rr != nil {
		return rr.GetRevision()
	}
	var rev int64
	for _, ops := range [][]*kvpb.RequestOp{op.GetTxn().GetSuccess(), op.GetTxn().GetFailure()} {
		for _, o := range ops {
			rev = max(rev, maxRangeRevision(o))
		}
	}
	return rev
}

// maxAcrossAttempts bounds how often a Range across ranges starts again
// because the ranges changed under it.
const maxAcrossAttempts = 5

// Compact sends a compaction to every user range: etcd's Compact (a
// revision, which must not be above the cluster's newest revision), or an
// automatic one (clamped to each range's newest revision; see
// CompactRequest). It returns the header of the last range compacted.
func (r *Router) Compact(ctx context.Context, req *kvpb.CompactRequest) (Header, error) {
	ranges, err := r.Ranges(ctx)
	if err != nil {
		return Header{}, err
	}
	if len(ranges) > 1 {
		// An idle range's newest write is below the cluster's: judge the
		// revision against the cluster, once, so that every range compacts
		// at the same revision (an automatic, clamped one at most at the
		// cluster's newest).
		cur, err := r.CurrentRevision(ctx)
		if err != nil {
			return Header{}, err
		}
		rev := req.GetRevision()
		switch {
		case rev > cur && !req.GetClamp():
			return Header{}, kvpb.Errorf(kvpb.ErrorCode_FUTURE_REV, "mvcc: required revision is a future revision")
		case rev > cur:
			rev = cur
		}
		req = &kvpb.CompactRequest{Revision: rev, Clamp: req.GetClamp(), ClusterChecked: true}
	}
	// Walk the keyspace range by range, each found by its first key, so
	// that a range that splits or merges meanwhile is still compacted
	// whole (a compaction applies to the whole range that gets it, and
	// compacting a part twice does nothing more).
	var h Header
	for cur := keys.UserSpan.Start; bytes.Compare(cur, keys.UserSpan.End) < 0; {
		span := keys.Span{Start: cur, End: append(append([]byte(nil), cur...), 0)}
		resp, err := r.send(ctx, span, &cmdpb.BatchRequest{Compact: req}, true /* write */)
		if err != nil {
			return Header{}, err
		}
		h = Header{Revision: resp.GetRevision(), RaftTerm: resp.GetRaftTerm()}
		d, err := r.lookup(ctx, span)
		if err != nil {
			return Header{}, err
		}
		cur = d.GetEndKey()
	}
	return h, nil
}

// sendLocal serves a request from this node's replica of the range, if it
// holds one; a nil response means it does not.
func (r *Router) sendLocal(ctx context.Context, span keys.Span, op *kvpb.RequestOp) (*cmdpb.BatchResponse, error) {
	desc, err := r.lookup(ctx, span)
	if err != nil {
		return nil, err
	}
	for _, rd := range desc.GetReplicas() {
		if rd.GetNodeId() == r.cfg.NodeID {
			resp, err := r.cfg.Local.Execute(ctx, &cmdpb.BatchRequest{RangeId: desc.GetRangeId(), Op: op})
			if kvpb.CodeOf(err) == kvpb.ErrorCode_RANGE_NOT_FOUND {
				return nil, nil
			}
			return resp, err
		}
	}
	return nil, nil
}

// Sys sends a system request to the meta range.
func (r *Router) Sys(ctx context.Context, req *cmdpb.SysRequest) (*cmdpb.SysResponse, error) {
	write := req.GetGet() == nil && req.GetScan() == nil
	resp, err := r.send(ctx, keys.Span{Start: keys.MetaSpan.Start}, &cmdpb.BatchRequest{Sys: req}, write)
	if err != nil {
		return nil, err
	}
	return resp.GetSys(), nil
}

// Timestamp fetches n consecutive revisions from the TSO on the meta
// range's leader.
func (r *Router) Timestamp(ctx context.Context, n int) (int64, error) {
	ctx, cancel := r.withTimeout(ctx)
	defer cancel()
	meta := r.metaDesc()
	var first int64
	err := r.retry(ctx, meta, false /* write: a revision fetch has no effect */, func(ctx context.Context, node uint64) error {
		if node == r.cfg.NodeID {
			ts, err := r.cfg.Local.Timestamp(ctx, n)
			first = ts
			return err
		}
		conn, err := r.cfg.Dial(ctx, node)
		if err != nil {
			return errUnreachable{err}
		}
		resp, err := rpcpb.NewPeerClient(conn).Timestamp(ctx, &rpcpb.TimestampRequest{Count: uint32(n)})
		if err != nil {
			return err
		}
		if resp.GetError() != nil {
			return resp.GetError()
		}
		first = resp.GetFirst()
		return nil
	})
	return first, err
}

// Split asks the leader of the range holding key (a global user key) to
// split it at key into a new range newRangeID, and returns the two ranges'
// new descriptors. Retries as a write: a split is applied once, by Raft.
func (r *Router) Split(ctx context.Context, key []byte, newRangeID uint64) (left, right *metapb.RangeDescriptor, err error) {
	resp, err := r.send(ctx, keys.Span{Start: key}, &cmdpb.BatchRequest{Split: &cmdpb.SplitRequest{SplitKey: key, NewRangeId: newRangeID}}, true /* write */)
	if err != nil {
		return nil, nil, err
	}
	ds := resp.GetDescriptors()
	if len(ds) != 2 {
		return nil, nil, fmt.Errorf("router: split answered %d descriptors, want 2", len(ds))
	}
	return ds[0], ds[1], nil
}

// ChangeReplicas sends one replica change of range desc to its leader
// (cmdpb.ChangeReplicasRequest) and returns the range's descriptor after.
func (r *Router) ChangeReplicas(ctx context.Context, desc *metapb.RangeDescriptor, change *cmdpb.ChangeReplicasRequest) (*metapb.RangeDescriptor, error) {
	resp, err := r.send(ctx, keys.Span{Start: desc.GetStartKey()}, &cmdpb.BatchRequest{ChangeReplicas: change}, true /* write */)
	if err != nil {
		return nil, err
	}
	ds := resp.GetDescriptors()
	if len(ds) != 1 {
		return nil, fmt.Errorf("router: replica change answered %d descriptors, want 1", len(ds))
	}
	r.Learn(ds[0])
	if keys.MetaSpan.Contains(ds[0].GetStartKey()) {
		r.mu.Lock()
		if ds[0].GetGeneration() > r.mu.meta.GetGeneration() {
			r.mu.meta = ds[0]
		}
		r.mu.Unlock()
	}
	return ds[0], nil
}

// Freeze freezes the range desc (thaw: unfreezes it) for a merge, and
// returns the log index the freeze applied at.
func (r *Router) Freeze(ctx context.Context, desc *metapb.RangeDescriptor, thaw bool) (uint64, error) {
	resp, err := r.send(ctx, keys.Span{Start: desc.GetStartKey(), End: desc.GetEndKey()}, &cmdpb.BatchRequest{Freeze: &cmdpb.FreezeRequest{Thaw: thaw}}, true /* write */)
	if err != nil {
		return 0, err
	}
	return resp.GetAppliedIndex(), nil
}

// Holds reports whether the range of desc (its range id) holds key, a
// global key, as its leaseholder has applied it: a linearizable read there,
// which the range refuses (KEY_MISMATCH) for a key outside it.
func (r *Router) Holds(ctx context.Context, desc *metapb.RangeDescriptor, key []byte) (bool, error) {
	req := &cmdpb.BatchRequest{RangeId: desc.GetRangeId(), Op: &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: keys.StripUser(key), CountOnly: true}}}}
	err := r.retry(ctx, desc, false, func(ctx context.Context, node uint64) error {
		_, err := r.sendTo(ctx, node, req)
		return err
	})
	switch kvpb.CodeOf(err) {
	case kvpb.ErrorCode_OK:
		return err == nil, err
	case kvpb.ErrorCode_KEY_MISMATCH:
		return false, nil
	}
	return false, err
}

// Merge asks the leader of the range that ends where right starts to take
// right over, and returns its new descriptor.
func (r *Router) Merge(ctx context.Context, left, right *metapb.RangeDescriptor) (*metapb.RangeDescriptor, error) {
	resp, err := r.send(ctx, keys.Span{Start: left.GetStartKey(), End: left.GetEndKey()}, &cmdpb.BatchRequest{Merge: &cmdpb.MergeRequest{Right: right}}, true /* write */)
	if err != nil {
		return nil, err
	}
	if len(resp.GetDescriptors()) != 1 {
		return nil, fmt.Errorf("router: merge answered %d descriptors, want 1", len(resp.GetDescriptors()))
	}
	return resp.GetDescriptors()[0], nil
}

// Learn records descriptors in the range cache. A descriptor replaces the
// cached ranges it overlaps (or of its id), unless one of them is newer (a
// higher generation): then it is stale and dropped. A split gives both
// sides a generation above the range they came from.
func (r *Router) Learn(descs ...*metapb.RangeDescriptor) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, d := range descs {
		if keys.MetaSpan.Contains(d.GetStartKey()) {
			continue
		}
		hits := func(c *metapb.RangeDescriptor) bool {
			return c.GetRangeId() == d.GetRangeId() ||
				(bytes.Compare(c.GetStartKey(), d.GetEndKey()) < 0 && bytes.Compare(d.GetStartKey(), c.GetEndKey()) < 0)
		}
		stale := false
		for _, c := range r.mu.ranges {
			if hits(c) && (c.GetGeneration() > d.GetGeneration() || (c.GetRangeId() == d.GetRangeId() && c.GetGeneration() == d.GetGeneration())) {
				stale = true
				break
			}
		}
		if stale {
			continue
		}
		kept := make([]*metapb.RangeDescriptor, 0, len(r.mu.ranges)+1)
		for _, c := range r.mu.ranges {
			if !hits(c) {
				kept = append(kept, c)
			}
		}
		kept = append(kept, d)
		sort.Slice(kept, func(i, j int) bool { return bytes.Compare(kept[i].GetStartKey(), kept[j].GetStartKey()) < 0 })
		r.mu.ranges = kept
	}
}

// CurrentRevision returns the cluster's newest revision, from the TSO: no
// write acknowledged before the call has a higher one.
func (r *Router) CurrentRevision(ctx context.Context) (int64, error) {
	if r.cfg.Current != nil {
		return r.cfg.Current(ctx)
	}
	return r.Timestamp(ctx, 0)
}

// Refresh reloads the range cache from the meta range.
func (r *Router) Refresh(ctx context.Context) error { return r.refresh(ctx) }

// Ranges returns the cached user range descriptors (refreshing them first
// if none are known).
func (r *Router) Ranges(ctx context.Context) ([]*metapb.RangeDescriptor, error) {
	r.mu.RLock()
	n := len(r.mu.ranges)
	r.mu.RUnlock()
	if n == 0 {
		if err := r.refresh(ctx); err != nil {
			return nil, err
		}
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	return append([]*metapb.RangeDescriptor(nil), r.mu.ranges...), nil
}

// Leader returns the cached leader of a range (0 if unknown).
func (r *Router) Leader(rangeID uint64) uint64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.mu.leaders[rangeID]
}

// MetaDescriptor returns the meta range's descriptor as last known.
func (r *Router) MetaDescriptor() *metapb.RangeDescriptor { return r.metaDesc() }

func (r *Router) metaDesc() *metapb.RangeDescriptor {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.mu.meta
}

func (r *Router) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, r.cfg.RequestTimeout)
}

// txnKey carries the cross-range txn a read is part of (WithTxn).
type txnKey struct{}

// uncountedKey marks the Ranges of a pager that does not read Count
// (WithoutCount).
type uncountedKey struct{}

// WithoutCount returns ctx for the Ranges of an internal pager that reads
// every key of a span, a page of Limit keys at a time, and never looks at
// Count: each page's scan stops at its limit, where etcd's Range would
// count the rest of the span on every page (a full pass in O(n^2)).
// Count and More then cover only the keys read (cmdpb.BatchRequest's
// uncounted); More still tells whether another page follows.
func WithoutCount(ctx context.Context) context.Context {
	return context.WithValue(ctx, uncountedKey{}, true)
}

func uncounted(ctx context.Context) bool {
	v, _ := ctx.Value(uncountedKey{}).(bool)
	return v
}

// WithTxn returns ctx for the reads of cross-range txn id: the router
// tells their ranges, so that the txn's own reservations do not hold them
// back (cmdpb.BatchRequest.txn_id).
func WithTxn(ctx context.Context, id uint64) context.Context {
	return context.WithValue(ctx, txnKey{}, id)
}

// Send routes req (whose keys are span, global keys) to the range holding
// span and returns the response, retrying as Do does (write says whether
// req may have an effect, so that an unknown fate is AMBIGUOUS). It owns
// req: callers build it for this call. Errors: CROSS_RANGE if no known
// range holds all of span.
func (r *Router) Send(ctx context.Context, span keys.Span, req *cmdpb.BatchRequest, write bool) (*cmdpb.BatchResponse, error) {
	return r.send(ctx, span, req, write)
}

// send routes req (whose keys are span, global) to its range and returns
// the response. It owns req: callers build it for this call.
func (r *Router) send(ctx context.Context, span keys.Span, req *cmdpb.BatchRequest, write bool) (_ *cmdpb.BatchResponse, err error) {
	ctx, tspan := r.cfg.Metrics.StartSpan(ctx, "router.send", trace.WithAttributes(attribute.Int64("concord.node_id", int64(r.cfg.NodeID)), attribute.Bool("concord.write", write)))
	defer func() { endSpan(tspan, err) }()
	ctx, cancel := r.withTimeout(ctx)
	defer cancel()
	if id, ok := ctx.Value(txnKey{}).(uint64); ok && !write && req.GetOp() != nil {
		req.TxnId = id
	}
	if uncounted(ctx) && req.GetOp().GetRange() != nil {
		req.Uncounted = true
	}
	var out *cmdpb.BatchResponse
	followed := false // a KEY_MISMATCH's descriptors were followed
	lockRounds := 0
	for round := 0; ; round++ {
		desc, err := r.lookup(ctx, span)
		if err != nil {
			return nil, err
		}
		if round > 0 {
			// Re-routed after a stale descriptor: the request of the last
			// round may still be queued on a stream, so change a copy.
			req = proto.CloneOf(req)
		}
		req.RangeId = desc.GetRangeId()
		err = r.retry(ctx, desc, write, func(ctx context.Context, node uint64) error {
			resp, err := r.sendTo(ctx, node, req)
			out = resp
			return err
		})
		if lr := r.locks.Load(); kvpb.CodeOf(err) == kvpb.ErrorCode_LOCKED && lr != nil && lockRounds < maxLockRounds {
			// Nothing was proposed: resolve the lock and send it again.
			var e *kvpb.Error
			if !errors.As(err, &e) || e.GetLock() == nil {
				return nil, err
			}
			lockRounds++
			if rerr := (*lr).ResolveLock(ctx, e.GetLock()); rerr != nil {
				return nil, rerr
			}
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		if c := kvpb.CodeOf(err); c == kvpb.ErrorCode_KEY_MISMATCH || c == kvpb.ErrorCode_RANGE_NOT_FOUND {
			// The descriptor itself is stale: learn the range's own (and
			// the one it split off) from the answer, or reload the index,
			// and route again. The answer is followed once: a cache that
			// missed several splits in a row would otherwise walk them
			// one range at a time (each split-off range having split
			// again), so a second mismatch reloads the index instead.
			var e *kvpb.Error
			if errors.As(err, &e) && len(e.GetDescriptors()) > 0 && !followed {
				followed = true
				r.Learn(e.GetDescriptors()...)
				if d, ok := r.cached(span); ok && d != nil && d.GetRangeId() != desc.GetRangeId() {
					if ctx.Err() != nil {
						return nil, err
					}
					continue
				}
			}
			if ctx.Value(refreshingKey{}) != nil {
				// The refresh's own read of the index: it cannot wait for
				// a refresh (it holds it).
				return nil, err
			}
			if rerr := r.refresh(ctx); rerr != nil {
				return nil, err
			}
			if ctx.Err() != nil {
				return nil, err
			}
			continue
		}
		return out, err
	}
}

func (r *Router) sendTo(ctx context.Context, node uint64, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	if node == r.cfg.NodeID {
		return r.cfg.Local.Execute(ctx, req)
	}
	conn, err := r.cfg.Dial(ctx, node)
	if err != nil {
		return nil, errUnreachable{err}
	}
	if err := waitReady(ctx, conn); err != nil {
		return nil, errUnreachable{err}
	}
	s, err := r.fwd.stream(node, conn)
	if err != nil {
		return nil, errUnreachable{err}
	}
	return s.call(ctx, req)
}

// readyWait bounds how long a send waits for a connection to become ready;
// past it the node counts as unreachable and the next replica is tried.
const readyWait = 250 * time.Millisecond

// waitReady returns nil once conn is ready to carry a request. A request is
// only sent on a ready connection, so a failure before that point is known
// not to have reached the node.
func waitReady(ctx context.Context, conn *grpc.ClientConn) error {
	if conn.GetState() == connectivity.Ready {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, readyWait)
	defer cancel()
	for {
		s := conn.GetState()
		switch s {
		case connectivity.Ready:
			return nil
		case connectivity.Idle:
			conn.Connect()
		case connectivity.Shutdown:
			return errors.New("router: connection shut down")
		}
		if !conn.WaitForStateChange(ctx, s) {
			return fmt.Errorf("router: connection %s", s)
		}
	}
}

// errUnreachable marks a failure known to have happened before the request
// left this node.
type errUnreachable struct{ err error }

func (e errUnreachable) Error() string { return "router: node unreachable: " + e.err.Error() }
func (e errUnreachable) Unwrap() error { return e.err }

// errFull is a request refused because a bound on its path was reached
// (the message names it and its value). The request was not sent, so even
// a write may be retried; the router surfaces it at once rather than add
// to the load, and gRPC reports it as codes.ResourceExhausted, as etcd
// reports its own overload ("etcdserver: too many requests").
type errFull struct{ msg string }

func (e *errFull) Error() string { return e.msg }

// GRPCStatus makes the error a gRPC status for status.FromError.
func (e *errFull) GRPCStatus() *status.Status { return status.New(codes.ResourceExhausted, e.msg) }

// retry calls fn on the range's replicas, leader first, until it succeeds,
// fails for good, or ctx ends.
func (r *Router) retry(ctx context.Context, desc *metapb.RangeDescriptor, write bool, fn func(ctx context.Context, node uint64) error) error {
	backoff := r.cfg.MinBackoff
	var lastErr error
	tried := 0
	for attempt := 0; ; attempt++ {
		node := r.pickNode(desc, tried)
		err := fn(ctx, node)
		if err == nil {
			r.setLeader(desc.GetRangeId(), node)
			return nil
		}
		var full *errFull
		if errors.As(err, &full) {
			return err
		}
		lastErr = err
		r.cfg.Metrics.ObserveRouterRetry(kvpb.CodeOf(err).String())
		switch code := kvpb.CodeOf(err); code {
		case kvpb.ErrorCode_NOT_LEADER:
			var e *kvpb.Error
			if errors.As(err, &e) && e.GetLeaderHint() != 0 && e.GetLeaderHint() != node {
				r.setLeader(desc.GetRangeId(), e.GetLeaderHint())
				continue // follow the hint at once
			}
			r.clearLeader(desc.GetRangeId(), node)
			tried++
		case kvpb.ErrorCode_UNAVAILABLE, kvpb.ErrorCode_RETRY:
			if code == kvpb.ErrorCode_UNAVAILABLE {
				r.clearLeader(desc.GetRangeId(), node)
				tried++
			}
		case kvpb.ErrorCode_RANGE_NOT_FOUND:
			if keys.MetaSpan.Contains(desc.GetStartKey()) {
				// A node whose meta replica was removed: the meta range
				// lives on, on its other replicas (and the index that
				// would say where is in it).
				r.clearLeader(desc.GetRangeId(), node)
				tried++
				break
			}
			return err
		case kvpb.ErrorCode_KEY_MISMATCH:
			return err
		case kvpb.ErrorCode_OK:
			// Not a structured error: transport or context.
			if ctx.Err() != nil {
				return timeoutErr(write, lastErr, ctx.Err())
			}
			var ue errUnreachable
			if write && !errors.As(err, &ue) && maybeSent(err) {
				return kvpb.Errorf(kvpb.ErrorCode_AMBIGUOUS, "router: write to node %d may have been applied: %v", node, err)
			}
			r.clearLeader(desc.GetRangeId(), node)
			tried++
		default:
			return err
		}
		if ctx.Err() != nil {
			return timeoutErr(write, lastErr, ctx.Err())
		}
		// Sleep with full jitter, then double the bound.
		d := time.Duration(rand.Int64N(int64(backoff))) + time.Millisecond
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return timeoutErr(write, lastErr, ctx.Err())
		}
		backoff = min(backoff*2, r.cfg.MaxBackoff)
	}
}

// timeoutErr is the error of a request whose deadline passed. It is
// AMBIGUOUS when the last attempt of a write may have reached a node (its
// fate is unknown), UNAVAILABLE otherwise.
func timeoutErr(write bool, last, ctxErr error) error {
	code := kvpb.ErrorCode_UNAVAILABLE
	var ue errUnreachable
	switch c := kvpb.CodeOf(last); {
	case c == kvpb.ErrorCode_AMBIGUOUS:
		code = c
	case write && c == kvpb.ErrorCode_OK && !errors.As(last, &ue) && maybeSent(last):
		code = kvpb.ErrorCode_AMBIGUOUS
	}
	return kvpb.Errorf(code, "router: %v (last error: %v)", ctxErr, last)
}

// maybeSent reports whether a transport error leaves open that the request
// reached the node.
func maybeSent(err error) bool {
	s, ok := status.FromError(err)
	if !ok {
		return true
	}
	switch s.Code() {
	case codes.PermissionDenied, codes.Unimplemented, codes.InvalidArgument:
		return false
	}
	return true
}

// pickNode chooses the replica to try: the cached leader, else the local
// replica, else the replicas in turn.
func (r *Router) pickNode(desc *metapb.RangeDescriptor, tried int) uint64 {
	r.mu.RLock()
	leader := r.mu.leaders[desc.GetRangeId()]
	r.mu.RUnlock()
	if leader != 0 {
		return leader
	}
	reps := desc.GetReplicas()
	if tried == 0 {
		for _, rd := range reps {
			if rd.GetNodeId() == r.cfg.NodeID {
				return r.cfg.NodeID
			}
		}
	}
	return reps[tried%len(reps)].GetNodeId()
}

func (r *Router) setLeader(rangeID, node uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.leaders[rangeID] = node
}

func (r *Router) clearLeader(rangeID, node uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.mu.leaders[rangeID] == node {
		delete(r.mu.leaders, rangeID)
	}
}

// lookup returns the descriptor of the range holding span, refreshing the
// cache when no cached range does.
func (r *Router) lookup(ctx context.Context, span keys.Span) (*metapb.RangeDescriptor, error) {
	if keys.MetaSpan.Contains(span.Start) {
		return r.metaDesc(), nil
	}
	for attempt := 0; attempt < 2; attempt++ {
		if d, ok := r.cached(span); ok {
			if d == nil {
				return nil, r.crossRange(span)
			}
			return d, nil
		}
		if attempt == 0 {
			if err := r.refresh(ctx); err != nil {
				return nil, err
			}
		}
	}
	return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "router: no range holds %v", span)
}

// crossRange is the error of a request whose keys (span) lie in more than
// one range and which cannot be served part by part: a Txn or a
// DeleteRange. It names the ranges, so that an operator can tell which
// split to undo or where keys must live together.
func (r *Router) crossRange(span keys.Span) error {
	var ids []string
	for _, d := range r.cachedOverlapping(span) {
		ids = append(ids, fmt.Sprintf("%d [%q, %q)", d.GetRangeId(), userKey(d.GetStartKey()), userKey(d.GetEndKey())))
	}
	return kvpb.Errorf(kvpb.ErrorCode_CROSS_RANGE, "concord: keys [%q, %q) span ranges %s: a write across ranges runs as a txn across ranges (internal/txn), not through the router alone",
		userKey(span.Start), userKey(span.End), strings.Join(ids, ", "))
}

// userKey shows a global user key as the etcd key it stands for; the end
// of the user keyspace is "" (no end).
func userKey(k []byte) []byte {
	if !keys.IsUser(k) {
		return nil
	}
	return keys.StripUser(k)
}

// cachedOverlapping returns the cached ranges that hold keys of span, in
// key order.
func (r *Router) cachedOverlapping(span keys.Span) []*metapb.RangeDescriptor {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rs := r.mu.ranges
	i := sort.Search(len(rs), func(i int) bool { return bytes.Compare(rs[i].GetEndKey(), span.Start) > 0 })
	var out []*metapb.RangeDescriptor
	for ; i < len(rs) && bytes.Compare(rs[i].GetStartKey(), span.End) < 0; i++ {
		out = append(out, rs[i])
	}
	return out
}

// lookupAll returns the ranges holding span's keys, in key order, each
// starting where the one before ends; it refreshes the cache once when
// the cached ranges leave a gap.
func (r *Router) lookupAll(ctx context.Context, span keys.Span) ([]*metapb.RangeDescriptor, error) {
	for attempt := 0; ; attempt++ {
		descs := r.cachedOverlapping(span)
		if covers(descs, span) {
			return descs, nil
		}
		if attempt > 0 {
			return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "router: the known ranges do not cover %v", span)
		}
		if err := r.refresh(ctx); err != nil {
			return nil, err
		}
	}
}

// covers reports whether descs, in key order, hold every key of span
// without a gap.
func covers(descs []*metapb.RangeDescriptor, span keys.Span) bool {
	if len(descs) == 0 || bytes.Compare(descs[0].GetStartKey(), span.Start) > 0 {
		return false
	}
	for i := 1; i < len(descs); i++ {
		if !bytes.Equal(descs[i-1].GetEndKey(), descs[i].GetStartKey()) {
			return false
		}
	}
	return bytes.Compare(descs[len(descs)-1].GetEndKey(), span.End) >= 0
}

// cached finds the cached range holding span. ok with a nil descriptor means
// span starts in a known range but does not fit in it.
func (r *Router) cached(span keys.Span) (*metapb.RangeDescriptor, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	rs := r.mu.ranges
	i := sort.Search(len(rs), func(i int) bool { return bytes.Compare(rs[i].GetEndKey(), span.Start) > 0 })
	if i == len(rs) || bytes.Compare(rs[i].GetStartKey(), span.Start) > 0 {
		return nil, false
	}
	d := rs[i]
	if !(keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}).ContainsSpan(span) {
		return nil, true
	}
	return d, true
}

// refreshingKey marks the context of a refresh's own read of the index.
type refreshingKey struct{}

// refresh reloads every range descriptor from the meta range.
func (r *Router) refresh(ctx context.Context) error {
	asked := r.refreshStarted.Load()
	r.refreshMu.Lock()
	defer r.refreshMu.Unlock()
	if r.refreshOK > asked {
		return nil // a refresh that began after this call did the work
	}
	n := r.refreshStarted.Add(1)
	rs := keys.RangeSpan()
	resp, err := r.Sys(context.WithValue(ctx, refreshingKey{}, true), &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: rs.Start, End: rs.End}}})
	if err != nil {
		return fmt.Errorf("router: load range descriptors: %w", err)
	}
	metaRange, ranges, err := meta.DecodeRanges(resp.GetKvs())
	if err != nil {
		return fmt.Errorf("router: %w", err)
	}
	ranges = dropOverlapped(ranges)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.mu.ranges = ranges
	if metaRange != nil && metaRange.GetGeneration() >= r.mu.meta.GetGeneration() {
		r.mu.meta = metaRange
	}
	r.refreshOK = n
	return nil
}

// dropOverlapped removes from ranges (sorted by start key) every descriptor
// that overlaps one of a higher generation: the index can hold a range
// merged away next to the range that took it until the merge is recorded.
func dropOverlapped(ranges []*metapb.RangeDescriptor) []*metapb.RangeDescriptor {
	out := ranges[:0:0]
	for _, d := range ranges {
		newer := false
		for _, o := range ranges {
			if o != d && o.GetGeneration() > d.GetGeneration() &&
				bytes.Compare(o.GetStartKey(), d.GetEndKey()) < 0 && bytes.Compare(d.GetStartKey(), o.GetEndKey()) < 0 {
				newer = true
				break
			}
		}
		if !newer {
			out = append(out, d)
		}
	}
	return out
}

// endSpan ends span, marking it failed with err if err is not nil.
func endSpan(span trace.Span, err error) {
	if err != nil {
		span.SetStatus(otelcodes.Error, err.Error())
	}
	span.End()
}

// Covering returns the user ranges holding span's keys (global keys, a
// non-empty End), in key order and without a gap, from the cache, reloaded
// from the meta range first when fresh is set or the cache leaves a gap.
func (r *Router) Covering(ctx context.Context, span keys.Span, fresh bool) ([]*metapb.RangeDescriptor, error) {
	if fresh {
		if err := r.refresh(ctx); err != nil {
			return nil, err
		}
	}
	return r.lookupAll(ctx, span)
}

// PickNode chooses the node to ask first for a range (the cached leader,
// else the local replica, else the replicas in turn by tried).
func (r *Router) PickNode(desc *metapb.RangeDescriptor, tried int) uint64 {
	return r.pickNode(desc, tried)
}

// NoteLeader records node as the range's leader (a NOT_LEADER hint, or a
// node that served it), or with ok false forgets node as its leader.
func (r *Router) NoteLeader(rangeID, node uint64, ok bool) {
	if ok {
		r.setLeader(rangeID, node)
	} else {
		r.clearLeader(rangeID, node)
	}
}
