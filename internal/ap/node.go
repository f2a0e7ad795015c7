package ap

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/ap/crdt"
	"github.com/concorddb/concord/internal/storage"
)

// ErrUnavailable is returned when fewer than the quorum of replica slots
// answered. For a write it is ambiguous: the coordinator stored the state
// durably and some replicas may have, so it can still appear.
var ErrUnavailable = errors.New("ap: not enough replicas answered")

// Keyspace is a keyspace's replication: N replica slots per key, and how
// many of them a read (R) and a write (W) wait for.
type Keyspace struct {
	N, R, W int
}

// DefaultKeyspace is SELECT 0's: a read after an acknowledged write sees
// it while no node fails (R+W > N).
func DefaultKeyspace() Keyspace { return Keyspace{N: 3, R: 2, W: 2} }

// Validate checks 1 <= R, W <= N.
func (k Keyspace) Validate() error {
	if k.N < 1 || k.R < 1 || k.W < 1 || k.R > k.N || k.W > k.N || k.N > maxReplicas {
		return fmt.Errorf("ap: keyspace N=%d R=%d W=%d: need 1 <= R, W <= N <= %d", k.N, k.R, k.W, maxReplicas)
	}
	return nil
}

// Membership reports the nodes of the AP ring. Safe for concurrent use.
type Membership interface {
	// Members returns every node known, alive or not, this node included
	// (and alive). The caller owns the slice.
	Members() []Member
}

// State is one key's CRDT state in flight between nodes.
type State struct {
	Keyspace uint32
	Key      []byte
	Object   *crdt.Object
	// HintFor, when not 0, is the node the state is meant for: the
	// receiver holds it as a hint and hands it off when that node is back.
	HintFor uint64
}

// Peers carries AP requests to other nodes. Every method returns only
// after the remote node answered (Store: stored durably) or failed; ctx
// bounds it. Safe for concurrent use.
type Peers interface {
	Store(ctx context.Context, to uint64, states []State) error
	Fetch(ctx context.Context, to uint64, ks uint32, keys [][]byte) ([]*crdt.Object, error)
	Scan(ctx context.Context, to uint64, ks uint32, start []byte, limit int, nowMs int64) (keys [][]byte, done bool, err error)
	// Tree and Leaves are the anti-entropy exchange (merkle.go): node
	// to's tree of the replicas it shares with peer, and its states in
	// some leaves of it.
	Tree(ctx context.Context, to uint64, ks uint32, peer uint64, leaves bool) (root uint64, leafHashes []uint64, err error)
	Leaves(ctx context.Context, to uint64, ks uint32, peer uint64, leaves []uint32) ([]State, error)
}

// Fault decides whether AP traffic from -> to is dropped (tests and the
// demo's isolate button only).
type Fault func(from, to uint64) bool

// Config configures New.
type Config struct {
	// ID is this node's id: the actor of the CRDT updates it coordinates.
	// Never reused by another node.
	ID      uint64
	Local   *Local
	Members Membership
	Peers   Peers
	// Keyspace is the replication of every keyspace that Keyspaces does
	// not set.
	Keyspace Keyspace
	// Keyspaces, if set, returns the replication of keyspace ks and
	// whether it has its own (concord keyspace create|set, kept in the
	// meta range). Called on every request: it must be cheap.
	Keyspaces func(ks uint32) (Keyspace, bool)
	// Physical returns the wall clock in Unix nanoseconds (nil: time.Now).
	Physical func() int64
	// RPCTimeout bounds each call to another node (0: 1 s).
	RPCTimeout time.Duration
	// HandoffInterval is how often held hints are offered to their nodes
	// (0: 500 ms).
	HandoffInterval time.Duration
	// AntiEntropyInterval is how often replicas are compared with every
	// live peer's by Merkle tree (0: 10 s; negative: never).
	AntiEntropyInterval time.Duration
	// UnsafeDropHints, TEST ONLY, acknowledges every state sent to this
	// node as a hint for another without storing it: hinted handoff
	// broken on purpose, so that the fault-injection harness can prove
	// its AP check notices (internal/chaos).
	UnsafeDropHints bool
	Logger          *slog.Logger
}

// Node coordinates the reads and writes of AP keys that reach this node,
// over its Local store and its peers, and serves its peers' requests.
type Node struct {
	cfg   Config
	clock *crdt.Clock
	fault atomic.Pointer[Fault]

	// suspects are the nodes whose last call from this node failed, each
	// with when that was: plan gives their slots to fallbacks for
	// suspectTime, as if the membership saw them dead. memberlist takes
	// seconds to notice a node that is cut off (up to its suspicion
	// timeout times SuspicionMaxTimeoutMult, about 17 s with LAN timings
	// for a node that is cut off from all others and so gets no
	// confirmations), and meanwhile every write would wait out an
	// RPCTimeout on each unreachable slot before trying a fallback.
	suspects struct {
		sync.Mutex
		at map[uint64]time.Time
	}

	// ctx is cancelled by Close; the calls that outlive a client's request
	// (the slots after the quorum, read repair, handoff) run under it.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Tunables.
const (
	defaultRPCTimeout      = time.Second
	defaultHandoffInterval = 500 * time.Millisecond
	// maxHandoffBatch bounds the hints read and sent per handoff round.
	maxHandoffBatch = 256
	// suspectTime is how long a node whose call failed is passed over by
	// plan; a call that succeeds (the handoff of a hint for it, every
	// HandoffInterval) ends it sooner. Past it, the next request tries
	// the node again.
	suspectTime = 3 * time.Second
)

// New returns a node and starts its handoff loop; Close stops it.
func New(cfg Config) (*Node, error) {
	if cfg.ID == 0 || cfg.Local == nil || cfg.Members == nil || cfg.Peers == nil {
		return nil, errors.New("ap: Config needs ID, Local, Members and Peers")
	}
	if err := cfg.Keyspace.Validate(); err != nil {
		return nil, err
	}
	if cfg.Physical == nil {
		cfg.Physical = func() int64 { return time.Now().UnixNano() }
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = defaultRPCTimeout
	}
	if cfg.HandoffInterval <= 0 {
		cfg.HandoffInterval = defaultHandoffInterval
	}
	if cfg.AntiEntropyInterval == 0 {
		cfg.AntiEntropyInterval = defaultAntiEntropyInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	n := &Node{cfg: cfg, clock: crdt.NewClock(cfg.Physical)}
	n.suspects.at = map[uint64]time.Time{}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	n.wg.Add(1)
	go n.runHandoff()
	if cfg.AntiEntropyInterval > 0 {
		n.wg.Add(1)
		go n.runAntiEntropy()
	}
	return n, nil
}

// Close stops the handoff loop and waits for every call in flight.
func (n *Node) Close() {
	n.cancel()
	n.wg.Wait()
}

// ID is this node's id.
func (n *Node) ID() uint64 { return n.cfg.ID }

// SetFault installs f (nil removes it): tests and the demo only.
func (n *Node) SetFault(f Fault) {
	if f == nil {
		n.fault.Store(nil)
		return
	}
	n.fault.Store(&f)
}

func (n *Node) cut(to uint64) bool {
	f := n.fault.Load()
	return f != nil && to != n.cfg.ID && (*f)(n.cfg.ID, to)
}

var errCut = errors.New("ap: link cut by a fault")

// keyspace is the replication of keyspace ks.
func (n *Node) keyspace(ks uint32) Keyspace {
	if n.cfg.Keyspaces != nil {
		if k, ok := n.cfg.Keyspaces(ks); ok {
			return k
		}
	}
	return n.cfg.Keyspace
}

// NowMs is the wall clock in Unix milliseconds, for expiry.
func (n *Node) NowMs() int64 { return n.cfg.Physical() / 1e6 }

// store sends states to node to (this node: its Local).
func (n *Node) store(ctx context.Context, to uint64, states []State) error {
	if to == n.cfg.ID {
		return n.HandleStore(states)
	}
	if n.cut(to) {
		return errCut
	}
	err := n.cfg.Peers.Store(ctx, to, states)
	n.noteCall(to, err)
	return err
}

func (n *Node) fetch(ctx context.Context, to uint64, ks uint32, key []byte) (*crdt.Object, error) {
	if to == n.cfg.ID {
		return n.cfg.Local.Fetch(ks, key)
	}
	if n.cut(to) {
		return nil, errCut
	}
	os, err := n.cfg.Peers.Fetch(ctx, to, ks, [][]byte{key})
	n.noteCall(to, err)
	if err != nil {
		return nil, err
	}
	if len(os) != 1 {
		return nil, fmt.Errorf("ap: node %d answered %d states for 1 key", to, len(os))
	}
	return os[0], nil
}

// noteCall records how a call to node to ended: a failure makes it a
// suspect, a success clears it. A call cancelled because this node is
// closing says nothing about to.
func (n *Node) noteCall(to uint64, err error) {
	if err != nil && n.ctx.Err() != nil {
		return
	}
	n.suspects.Lock()
	defer n.suspects.Unlock()
	if err == nil {
		delete(n.suspects.at, to)
		return
	}
	n.suspects.at[to] = time.Now()
}

// suspected reports whether a call to node id failed in the last
// suspectTime.
func (n *Node) suspected(id uint64) bool {
	n.suspects.Lock()
	defer n.suspects.Unlock()
	at, ok := n.suspects.at[id]
	if ok && time.Since(at) > suspectTime {
		delete(n.suspects.at, id)
		ok = false
	}
	return ok
}

// HandleStore merges states sent by a peer into the local store, durably.
func (n *Node) HandleStore(states []State) error {
	for _, s := range states {
		n.clock.Observe(s.Object.MaxTS())
		hint := s.HintFor
		if hint == n.cfg.ID {
			hint = 0
		}
		if hint != 0 && n.cfg.UnsafeDropHints {
			continue
		}
		if err := n.cfg.Local.Merge(s.Keyspace, s.Key, s.Object, hint); err != nil {
			return err
		}
	}
	return nil
}

// HandleFetch returns this node's state of each key (replica and hints
// merged; empty objects for keys it does not hold).
func (n *Node) HandleFetch(ks uint32, keys [][]byte) ([]*crdt.Object, error) {
	out := make([]*crdt.Object, len(keys))
	for i, k := range keys {
		o, err := n.cfg.Local.Fetch(ks, k)
		if err != nil {
			return nil, err
		}
		out[i] = o
	}
	return out, nil
}

// HandleScan lists this node's live keys (see Local.Scan).
func (n *Node) HandleScan(ks uint32, start []byte, limit int, nowMs int64) ([][]byte, bool, error) {
	return n.cfg.Local.Scan(ks, start, limit, nowMs)
}

// Replica is what one node holds of a key, apart from the other nodes:
// its own replica (not merged with the hints it holds), whether it is in
// the key's preference list, and how many hints it holds under the key
// for other nodes (states not yet handed off).
type Replica struct {
	// Node is the node's id.
	Node      uint64
	Object    *crdt.Object
	Preferred bool
	Hints     int
}

// Replica returns this node's own state of key: a per-replica read, for
// operators and the fault-injection harness to see whether the replicas
// of a key agree (a quorum Read merges them and so cannot tell). The
// preference list is this node's view of it. The caller owns the result.
func (n *Node) Replica(ks uint32, key []byte) (Replica, error) {
	o, err := n.cfg.Local.Get(ks, key)
	if err != nil {
		return Replica{}, err
	}
	hs, err := storage.APHintsOf(n.cfg.Local.eng, ks, key)
	if err != nil {
		return Replica{}, err
	}
	ord := order(n.cfg.Members.Members(), ks, key)
	pref := slices.ContainsFunc(ord[:min(n.keyspace(ks).N, len(ord))], func(m Member) bool { return m.ID == n.cfg.ID })
	return Replica{Node: n.cfg.ID, Object: o, Preferred: pref, Hints: len(hs)}, nil
}

// slot is one of a key's N replica slots: its preferred node (0 when the
// ring has fewer than N nodes) and the node first asked to fill it (0:
// the preferred node is down, ask a fallback).
type slot struct {
	pref, target uint64
}

// picker hands out fallback nodes for slots whose node is down or failed:
// first the live nodes after the preference list (each once), then the
// live nodes in ring order again (each may then hold several slots, as
// Riak's fallback vnodes do, so that a node cut off from all others still
// takes writes). Safe for concurrent use.
type picker struct {
	mu     sync.Mutex
	spares []uint64
	alive  []uint64
	next   int
	failed map[uint64]bool
}

func (p *picker) pick(exclude uint64) (uint64, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.spares) > 0 {
		c := p.spares[0]
		p.spares = p.spares[1:]
		if !p.failed[c] && c != exclude {
			return c, true
		}
	}
	for range len(p.alive) {
		c := p.alive[p.next%len(p.alive)]
		p.next++
		if !p.failed[c] && c != exclude {
			return c, true
		}
	}
	return 0, false
}

func (p *picker) markFailed(id uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failed[id] = true
}

// plan lays out key's slots and fallbacks from the current membership,
// passing over the suspects as if they were down.
func (n *Node) plan(ks uint32, key []byte) ([]slot, *picker) {
	ord := order(n.cfg.Members.Members(), ks, key)
	for i := range ord {
		if ord[i].Alive && ord[i].ID != n.cfg.ID && n.suspected(ord[i].ID) {
			ord[i].Alive = false
		}
	}
	N := n.keyspace(ks).N
	slots := make([]slot, N)
	p := &picker{failed: map[uint64]bool{}}
	for i := range N {
		if i < len(ord) {
			slots[i].pref = ord[i].ID
			if ord[i].Alive {
				slots[i].target = ord[i].ID
			}
		}
	}
	for i, m := range ord {
		if !m.Alive {
			continue
		}
		if i >= N {
			p.spares = append(p.spares, m.ID)
		}
		p.alive = append(p.alive, m.ID)
	}
	if !slices.Contains(p.alive, n.cfg.ID) {
		// The membership may not list this node yet: it can always hold a
		// slot itself.
		p.alive = append(p.alive, n.cfg.ID)
	}
	return slots, p
}

// hintFor is what a node filling s must hold the state as: a replica when
// it is the preferred node (or there is none), else a hint for it.
func hintFor(s slot, target uint64) uint64 {
	if target == s.pref {
		return 0
	}
	return s.pref
}

type attempt struct {
	slot, target uint64
	err          error
}

// quorum runs do for every slot, on its node or, when that fails, on
// fallbacks, and returns once need slots succeeded (nil) or every slot
// has run out of nodes (ErrUnavailable) or ctx ends. The calls go on in
// the background until every slot succeeded or ran out: their contexts
// come from the node's, not ctx. done, if not nil, runs after the last.
func (n *Node) quorum(ctx context.Context, slots []slot, p *picker, need int, do func(ctx context.Context, target, hint uint64) error, done func()) error {
	reached := make(chan error, 1)
	results := make(chan attempt)
	launch := func(i int, target uint64) {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			cctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
			defer cancel()
			results <- attempt{slot: uint64(i), target: target, err: do(cctx, target, hintFor(slots[i], target))}
		}()
	}
	pending := 0
	for i, s := range slots {
		t := s.target
		if t == 0 {
			var ok bool
			if t, ok = p.pick(s.pref); !ok {
				continue
			}
		}
		launch(i, t)
		pending++
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		acked, signalled := 0, false
		signal := func(err error) {
			if !signalled {
				signalled = true
				reached <- err
			}
		}
		for ; pending > 0; pending-- {
			r := <-results
			if r.err == nil {
				if acked++; acked >= need {
					signal(nil)
				}
				continue
			}
			if n.ctx.Err() == nil {
				n.cfg.Logger.Debug("ap: replica slot failed", "node", r.target, "err", r.err)
			}
			p.markFailed(r.target)
			if t, ok := p.pick(slots[r.slot].pref); ok {
				launch(int(r.slot), t)
				pending++
			}
		}
		signal(fmt.Errorf("%w: %d of %d slots", ErrUnavailable, acked, need))
		if done != nil {
			done()
		}
	}()
	select {
	case err := <-reached:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Read returns key's state merged from R replica slots (and this node's
// own copy). Replicas found stale are repaired in the background with the
// state merged from every answer. The caller owns the result.
func (n *Node) Read(ctx context.Context, ks uint32, key []byte) (*crdt.Object, error) {
	own, err := n.cfg.Local.Get(ks, key)
	if err != nil {
		return nil, err
	}
	var mu sync.Mutex
	merged := own
	// answers are the states of the preferred nodes that answered as
	// replicas: the ones read repair brings up to date.
	answers := map[uint64][]byte{}
	slots, p := n.plan(ks, key)
	do := func(ctx context.Context, target, hint uint64) error {
		o, err := n.fetch(ctx, target, ks, key)
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		merged.Merge(o)
		if hint == 0 && target != n.cfg.ID {
			answers[target] = o.Encode()
		}
		return nil
	}
	repair := func() {
		mu.Lock()
		full := merged.Clone()
		var stale []uint64
		for id, enc := range answers {
			if !bytes.Equal(enc, full.Encode()) {
				stale = append(stale, id)
			}
		}
		mu.Unlock()
		for _, id := range stale {
			cctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
			if err := n.store(cctx, id, []State{{Keyspace: ks, Key: key, Object: full}}); err != nil && n.ctx.Err() == nil {
				n.cfg.Logger.Debug("ap: read repair failed", "node", id, "err", err)
			}
			cancel()
		}
	}
	if err := n.quorum(ctx, slots, p, n.keyspace(ks).R, do, repair); err != nil {
		return nil, err
	}
	mu.Lock()
	defer mu.Unlock()
	return merged.Clone(), nil
}

// Write is what an Op may use to change a state.
type Write struct {
	// TS is a fresh timestamp, after every one in the state.
	TS crdt.HLC
	// Actor is this node's id.
	Actor uint64
	// NowMs is the wall clock in Unix milliseconds (expiry).
	NowMs int64
}

// Op changes o, the merged state of a key (an expired key arrives
// deleted), and reports whether it changed it. An error leaves nothing
// written.
type Op func(o *crdt.Object, w Write) (changed bool, err error)

// Update applies op to key: it reads the key from R slots, merges that
// into this node's copy, applies op there under the key's lock and stores
// it durably, then sends the result to the key's N slots and returns once
// W of them stored it. If op made no change it returns without writing.
// ErrUnavailable from the last step is ambiguous (see its comment).
func (n *Node) Update(ctx context.Context, ks uint32, key []byte, op Op) error {
	remote, err := n.Read(ctx, ks, key)
	if err != nil {
		return err
	}
	var result *crdt.Object
	_, changed, err := n.cfg.Local.Update(ks, key, func(o *crdt.Object) (bool, error) {
		o.Merge(remote)
		n.clock.Observe(o.MaxTS())
		w := Write{TS: n.clock.Now(), Actor: n.cfg.ID, NowMs: n.NowMs()}
		if o.Expired(w.NowMs) {
			o.Delete(w.TS, w.Actor)
			w.TS = n.clock.Now()
		}
		changed, err := op(o, w)
		if changed {
			result = o.Clone()
		}
		return changed, err
	})
	if err != nil || !changed {
		return err
	}
	slots, p := n.plan(ks, key)
	do := func(ctx context.Context, target, hint uint64) error {
		if target == n.cfg.ID && hint == 0 {
			return nil // stored above, before any other node heard of it
		}
		return n.store(ctx, target, []State{{Keyspace: ks, Key: key, Object: result, HintFor: hint}})
	}
	return n.quorum(ctx, slots, p, n.keyspace(ks).W, do, nil)
}

// Scan returns up to limit live keys of keyspace at or after start,
// gathered from every live node, in order, and the start of the next page
// (nil when the scan is complete).
func (n *Node) Scan(ctx context.Context, ks uint32, start []byte, limit int) (keys [][]byte, next []byte, err error) {
	limit = max(limit, 1)
	nowMs := n.NowMs()
	type answer struct {
		keys [][]byte
		done bool
	}
	var alive []uint64
	for _, m := range n.cfg.Members.Members() {
		if m.Alive && m.ID != n.cfg.ID && !n.cut(m.ID) {
			alive = append(alive, m.ID)
		}
	}
	answers := make([]answer, len(alive)+1)
	var wg sync.WaitGroup
	for i, id := range alive {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, n.cfg.RPCTimeout)
			defer cancel()
			got, done, err := n.cfg.Peers.Scan(cctx, id, ks, start, limit, nowMs)
			if err != nil {
				// A node that does not answer leaves out only the keys
				// no other live node holds; SCAN promises no more under
				// failures.
				answers[i] = answer{done: true}
				return
			}
			answers[i] = answer{keys: got, done: done}
		}()
	}
	own, done, err := n.cfg.Local.Scan(ks, start, limit, nowMs)
	wg.Wait()
	if err != nil {
		return nil, nil, err
	}
	answers[len(alive)] = answer{keys: own, done: done}
	// cut is the last key every unfinished node has listed up to: keys
	// after it may be missing from an answer.
	var cut []byte
	var all [][]byte
	for _, a := range answers {
		all = append(all, a.keys...)
		if !a.done && len(a.keys) > 0 {
			last := a.keys[len(a.keys)-1]
			if cut == nil || bytes.Compare(last, cut) < 0 {
				cut = last
			}
		}
	}
	slices.SortFunc(all, bytes.Compare)
	all = slices.CompactFunc(all, bytes.Equal)
	for _, k := range all {
		if len(keys) == limit || (cut != nil && bytes.Compare(k, cut) > 0) {
			break
		}
		keys = append(keys, k)
	}
	if cut == nil && len(keys) == len(all) {
		return keys, nil, nil
	}
	if len(keys) == 0 {
		return nil, nil, fmt.Errorf("ap: scan made no progress from %q", start)
	}
	return keys, append(slices.Clone(keys[len(keys)-1]), 0), nil
}

// runHandoff offers the hints this node holds to their nodes every
// HandoffInterval, and deletes those that were stored.
func (n *Node) runHandoff() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.HandoffInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		if err := n.handoff(); err != nil && n.ctx.Err() == nil {
			n.cfg.Logger.Warn("ap: hinted handoff", "err", err)
		}
	}
}

// handoff runs one round: it returns the first local error; a node that
// does not answer keeps its hints for the next round.
func (n *Node) handoff() error {
	hints, err := n.cfg.Local.Hints(maxHandoffBatch)
	if err != nil || len(hints) == 0 {
		return err
	}
	alive := map[uint64]bool{}
	for _, m := range n.cfg.Members.Members() {
		alive[m.ID] = m.Alive
	}
	// failed are the nodes that did not take a hint this round: their
	// other hints wait for the next, rather than each waiting out an
	// RPCTimeout. Suspects are tried: a hint they take clears them.
	failed := map[uint64]bool{}
	for _, h := range hints {
		if !alive[h.Target] || n.cut(h.Target) || failed[h.Target] {
			continue
		}
		o, err := crdt.Decode(h.State)
		if err != nil {
			return fmt.Errorf("ap: hint %q for node %d: %w", h.Key, h.Target, err)
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.RPCTimeout)
		err = n.store(ctx, h.Target, []State{{Keyspace: h.Keyspace, Key: h.Key, Object: o}})
		cancel()
		if err != nil {
			failed[h.Target] = true
			continue
		}
		if err := n.cfg.Local.DropHint(h); err != nil {
			return err
		}
	}
	return nil
}

// Solo is the membership of a node alone: a one-node ring (tests, and
// tools that run the AP engine without a cluster).
type Solo uint64

// Members returns the node itself, alive.
func (s Solo) Members() []Member { return []Member{{ID: uint64(s), Alive: true}} }

// NoPeers is the Peers of a node alone: every call fails (a Solo node
// never makes one).
type NoPeers struct{}

var errNoPeers = errors.New("ap: this node has no peers")

// Store fails.
func (NoPeers) Store(context.Context, uint64, []State) error { return errNoPeers }

// Fetch fails.
func (NoPeers) Fetch(context.Context, uint64, uint32, [][]byte) ([]*crdt.Object, error) {
	return nil, errNoPeers
}

// Scan fails.
func (NoPeers) Scan(context.Context, uint64, uint32, []byte, int, int64) ([][]byte, bool, error) {
	return nil, false, errNoPeers
}

// Tree fails.
func (NoPeers) Tree(context.Context, uint64, uint32, uint64, bool) (uint64, []uint64, error) {
	return 0, nil, errNoPeers
}

// Leaves fails.
func (NoPeers) Leaves(context.Context, uint64, uint32, uint64, []uint32) ([]State, error) {
	return nil, errNoPeers
}

var (
	_ Membership = Solo(0)
	_ Peers      = NoPeers{}
)

// Local is this node's store (tests and status pages read replicas
// through it).
func (n *Node) Local() *Local { return n.cfg.Local }
