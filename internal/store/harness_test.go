package store

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/replica"
	"github.com/concorddb/concord/internal/storage"
)

// The store harness runs several nodes' Stores in one test, each on its
// own in-memory Pebble file system, with a manual clock, a counting TSO and
// an in-memory transport that the script delivers. Nothing runs by itself:
// no ticker, no Ready loop. A script says when time passes (tick), when
// nodes do their Ready work and messages are delivered (stabilize), which
// links are cut (partition), and which nodes stop and start again. Writes
// run through the replicas' real write path (proposer, lease, Raft, apply);
// the harness drives the cluster until they answer.
//
// Commands (node and range ids are numbers; keys are etcd keys):
//
//	bootstrap nodes=3            a cluster of 3 nodes, one user range on all
//	campaign node=1 range=2      node 1's replica of range 2 campaigns
//	stabilize                    Ready work and delivery until quiet
//	tick [n=1]                   the clock moves n ticks; every replica ticks
//	put node=1 key=a value=x     a Put through node 1's replica holding a
//	                             (range=N: through its replica of range N;
//	                             no node: through the leader, once elected)
//	put-many node=1 prefix=k n=9 nine puts, of k000 to k008, through node 1
//	split node=1 key=m id=3      node 1's replica splits its range at m into range 3
//	freeze key=m                 the range starting at m freezes (a merge's first step)
//	merge key=m                  the frozen range starting at m merges into its left neighbour
//	partition node=3             cut node 3 off (its messages are dropped)
//	heal                         restore every link
//	stop node=3 / start node=3   stop a node's store; start it again from its disk
//	ranges                       every node's replicas: span, leader, applied revision
//	scan node=3                  the user keys node 3's replicas hold, as of now
//	get node=2 key=a             a linearizable read of a through node 2's replica
//	                             (no node: the leader's; rev=5: at revision 5;
//	                             async=r: left running, see await in
//	                             txn_harness_test.go)
//	awake                        which replicas tick and which are quiesced
//	snapshots                    how many snapshots each replica received
//	messages                     the Raft messages delivered since last asked
//
// The steps of cross-range txns (txn-begin, txn-reserve, txn-stage, ...),
// played by the script as a coordinator would, are in txn_harness_test.go.
//
// Outcomes, not message traces, are what the scripts check: Raft's message
// interleaving depends on goroutine timing, its results do not.

// tickInterval is one harness tick.
const tickInterval = 100 * time.Millisecond

type harness struct {
	t testing.TB

	mu struct {
		sync.Mutex
		now time.Time
		// queue holds the messages sent and not delivered yet.
		queue []sent
		// cut is the set of nodes partitioned away.
		cut map[uint64]bool
	}
	tso   htso
	nodes map[uint64]*hnode
	// ids are the nodes' ids, in order.
	ids []uint64
	// delivered counts the Raft messages delivered since the script last
	// asked (messages).
	delivered int
	// txn is the state of the txn commands (txn_harness_test.go).
	txn txnState
}

type sent struct {
	from, to uint64
	msgs     []*rpcpb.RaftMessage
}

type hnode struct {
	id     uint64
	fs     vfs.FS
	engine *storage.Engine
	store  *Store // nil while stopped
}

// htso is the harness's revision oracle: a counter.
type htso struct {
	mu   sync.Mutex
	next int64
}

func (o *htso) Next(_ context.Context, n int) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	first := o.next
	o.next += int64(n)
	return first, nil
}

func (o *htso) Current(context.Context) (int64, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.next - 1, nil
}

// hsender is one node's Sender: it queues what the node sends.
type hsender struct {
	h    *harness
	from uint64
}

func (s hsender) Send(to uint64, msgs []*rpcpb.RaftMessage) {
	s.h.mu.Lock()
	defer s.h.mu.Unlock()
	s.h.mu.queue = append(s.h.mu.queue, sent{from: s.from, to: to, msgs: msgs})
}

func newHarness(t testing.TB) *harness {
	h := &harness{t: t, nodes: map[uint64]*hnode{}}
	h.mu.now = time.Unix(1_000_000, 0)
	h.mu.cut = map[uint64]bool{}
	h.tso.next = 2
	return h
}

func (h *harness) now() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.mu.now
}

func (h *harness) bootstrap(n int) {
	var reps []*metapb.ReplicaDescriptor
	for i := 1; i <= n; i++ {
		// Replica ids unlike the node ids (node 1 holds replica 10+n, ...),
		// so that every script checks the two are never confused.
		reps = append(reps, &metapb.ReplicaDescriptor{NodeId: uint64(i), ReplicaId: uint64(10 + n + 1 - i)})
	}
	user := &metapb.RangeDescriptor{RangeId: meta.UserRangeID, StartKey: keys.UserSpan.Start, EndKey: keys.UserSpan.End, Replicas: reps, Generation: 1, NextReplicaId: uint64(11 + n)}
	for i := 1; i <= n; i++ {
		id := uint64(i)
		nd := &hnode{id: id, fs: vfs.NewMem()}
		e, err := storage.Open("data", storage.Options{FS: nd.fs})
		if err != nil {
			h.t.Fatal(err)
		}
		if err := Bootstrap(e, storage.Ident{ClusterID: 1, NodeID: id}, []*metapb.RangeDescriptor{user}, nil); err != nil {
			h.t.Fatal(err)
		}
		if err := e.Close(); err != nil {
			h.t.Fatal(err)
		}
		h.nodes[id] = nd
		h.ids = append(h.ids, id)
		h.start(id)
	}
}

// start opens node id's engine and store; only the applier runs.
func (h *harness) start(id uint64) {
	nd := h.nodes[id]
	e, err := storage.Open("data", storage.Options{FS: nd.fs})
	if err != nil {
		h.t.Fatal(err)
	}
	nd.engine = e
	cfg := replica.DefaultConfig()
	cfg.NodeID = id
	cfg.Engine = e
	cfg.Revisions = &h.tso
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	cfg.TickInterval = tickInterval
	cfg.Now = h.now
	cfg.Signal = func(uint64) {}
	cfg.LogTruncateEntries = 5 // small, so a node that is behind needs a snapshot
	cfg.OnSpanLost = func(_ uint64, lost keys.Span) { h.adopt(id, lost) }
	s, err := New(cfg, hsender{h: h, from: id})
	if err != nil {
		h.t.Fatal(err)
	}
	s.wg.Add(1)
	go s.runApplier()
	nd.store = s
}

func (h *harness) stop(id uint64) {
	nd := h.nodes[id]
	nd.store.Stop()
	h.endReads(id) // before their engine closes under them
	if err := nd.engine.Close(); err != nil {
		h.t.Fatal(err)
	}
	nd.store = nil
}

// adopt does what a server does when a snapshot shows node id missed
// splits: it creates the replicas of the ranges that hold keys of lost and
// list id, as another node's replicas describe them (the harness's meta
// range).
func (h *harness) adopt(id uint64, lost keys.Span) {
	for _, other := range h.ids {
		nd := h.nodes[other]
		if other == id || nd.store == nil {
			continue
		}
		for _, r := range nd.store.Replicas() {
			d := r.Descriptor()
			if replica.IsUninitialized(d) || !overlaps(keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}, lost) {
				continue
			}
			for _, rd := range d.GetReplicas() {
				if rd.GetNodeId() == id {
					if err := h.nodes[id].store.AddUninitialized(d.GetRangeId(), rd.ID()); err != nil {
						h.t.Errorf("adopt range %d on node %d: %v", d.GetRangeId(), id, err)
					}
				}
			}
		}
	}
}

func overlaps(a, b keys.Span) bool {
	return string(a.Start) < string(b.End) && string(b.Start) < string(a.End)
}

// round does every running node's Ready work once, applies what it
// committed, and delivers every queued message. It reports whether
// anything happened.
func (h *harness) round() bool {
	busy := false
	for _, id := range h.ids {
		s := h.nodes[id].store
		if s == nil {
			continue
		}
		// Snapshots are built on goroutines of their own: let them finish,
		// so that a script replays alike.
		for _, r := range s.Replicas() {
			for i := 0; r.BuildingSnapshot() && i < 1000; i++ {
				time.Sleep(time.Millisecond)
			}
		}
		before := s.readyRounds.load()
		if err := s.processReady(); err != nil {
			h.t.Fatalf("node %d: %v", id, err)
		}
		s.waitApplied()
		busy = busy || s.readyRounds.load() != before
	}
	h.mu.Lock()
	q := h.mu.queue
	h.mu.queue = nil
	cut := h.mu.cut
	h.mu.Unlock()
	for _, m := range q {
		to := h.nodes[m.to]
		if cut[m.from] || cut[m.to] || to == nil || to.store == nil {
			continue
		}
		to.store.HandleRaftBatch(&rpcpb.RaftBatch{ClusterId: 1, FromNode: m.from, ToNode: m.to, Msgs: m.msgs})
		h.delivered += len(m.msgs)
		busy = true
	}
	return busy
}

// stabilize runs rounds until one does nothing (bounded).
func (h *harness) stabilize() {
	for i := 0; i < 1000; i++ {
		if !h.round() {
			return
		}
	}
	h.t.Fatal("harness: the cluster never settles")
}

func (h *harness) tick(n int) {
	for i := 0; i < n; i++ {
		h.mu.Lock()
		h.mu.now = h.mu.now.Add(tickInterval)
		h.mu.Unlock()
		for _, id := range h.ids {
			if s := h.nodes[id].store; s != nil {
				s.tick()
			}
		}
		h.stabilize()
	}
}

// holding returns node id's replica whose span holds key.
func (h *harness) holding(id uint64, key []byte) *replica.Replica {
	g := keys.User(key)
	for _, r := range h.nodes[id].store.Replicas() {
		d := r.Descriptor()
		if !replica.IsUninitialized(d) && (keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}).Contains(g) {
			return r
		}
	}
	h.t.Fatalf("node %d holds no range with %q", id, key)
	return nil
}

// write sends req through r's write path and drives the cluster until it
// answers (ticking now and then, so leases and elections move).
func (h *harness) write(r *replica.Replica, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	return h.drive(func() (*cmdpb.BatchResponse, error) { return r.Write(context.Background(), req) })
}

// drive runs call (a write or a read) and drives the cluster until it
// answers, ticking now and then.
func (h *harness) drive(call func() (*cmdpb.BatchResponse, error)) (*cmdpb.BatchResponse, error) {
	type answer struct {
		resp *cmdpb.BatchResponse
		err  error
	}
	done := make(chan answer, 1)
	go func() {
		resp, err := call()
		done <- answer{resp, err}
	}()
	for i := 0; i < 200; i++ {
		select {
		case a := <-done:
			h.stabilize()
			return a.resp, a.err
		case <-time.After(5 * time.Millisecond):
		}
		h.round()
		if i%20 == 19 {
			h.tick(1)
		}
	}
	h.t.Fatal("harness: the request never answered")
	return nil, nil
}

// leftOf returns node's replica descriptor of the range that ends where
// right starts.
func (h *harness) leftOf(node uint64, right *metapb.RangeDescriptor) *metapb.RangeDescriptor {
	for _, r := range h.nodes[node].store.Replicas() {
		if d := r.Descriptor(); string(d.GetEndKey()) == string(right.GetStartKey()) {
			return d
		}
	}
	h.t.Fatalf("node %d holds no range left of range %d", node, right.GetRangeId())
	return nil
}

// leaderOf returns the running node whose replica of the range holding key
// leads, ticking until one does.
func (h *harness) leaderOf(key []byte) uint64 {
	for i := 0; i < 100; i++ {
		for _, id := range h.ids {
			if h.nodes[id].store == nil {
				continue
			}
			if r := h.holding(id, key); r.Status().IsLeader {
				return id
			}
		}
		h.tick(1)
	}
	h.t.Fatalf("harness: no leader for %q", key)
	return 0
}

// awaitLeader drives the cluster until every running, connected node's
// replica of rangeID knows its leader: the left side's leader campaigns
// for a new range from a goroutine of its own.
func (h *harness) awaitLeader(rangeID uint64) {
	for i := 0; i < 400; i++ {
		known := true
		h.mu.Lock()
		cut := h.mu.cut
		h.mu.Unlock()
		for _, id := range h.ids {
			s := h.nodes[id].store
			if s == nil || cut[id] {
				continue
			}
			if r := s.Replica(rangeID); r == nil || r.Status().Leader == 0 {
				known = false
			}
		}
		if known {
			return
		}
		time.Sleep(time.Millisecond)
		h.round()
	}
	h.t.Fatalf("harness: range %d never elected a leader", rangeID)
}

func (h *harness) ranges() string {
	var b strings.Builder
	for _, id := range h.ids {
		s := h.nodes[id].store
		if s == nil {
			fmt.Fprintf(&b, "node %d: stopped\n", id)
			continue
		}
		for _, r := range s.Replicas() {
			d, st := r.Descriptor(), r.Status()
			if replica.IsUninitialized(d) {
				fmt.Fprintf(&b, "node %d: range %d uninitialized\n", id, d.GetRangeId())
				continue
			}
			fmt.Fprintf(&b, "node %d: range %d [%s, %s) gen %d leader %d\n", id, d.GetRangeId(), showKey(d.GetStartKey()), showKey(d.GetEndKey()), d.GetGeneration(), st.Leader)
		}
	}
	return b.String()
}

// awakeReplicas lists, per node, which replicas tick and which are
// quiesced.
func (h *harness) awakeReplicas() string {
	var b strings.Builder
	for _, id := range h.ids {
		s := h.nodes[id].store
		if s == nil {
			fmt.Fprintf(&b, "node %d: stopped\n", id)
			continue
		}
		var awake, quiet []string
		for _, r := range s.Replicas() {
			if r.Quiesced() {
				quiet = append(quiet, fmt.Sprint(r.RangeID))
			} else {
				awake = append(awake, fmt.Sprint(r.RangeID))
			}
		}
		if len(awake) != s.Awake() {
			h.t.Fatalf("node %d: %d replicas awake, the store ticks %d", id, len(awake), s.Awake())
		}
		fmt.Fprintf(&b, "node %d: awake [%s] quiesced [%s]\n", id, strings.Join(awake, " "), strings.Join(quiet, " "))
	}
	return b.String()
}

func showKey(k []byte) string {
	switch {
	case len(k) == 1 && k[0] == keys.UserSpan.Start[0]:
		return "<start>"
	case string(k) == string(keys.UserSpan.End):
		return "<end>"
	}
	return string(keys.StripUser(k))
}

func (h *harness) scan(id uint64) string {
	var out []string
	for _, r := range h.nodes[id].store.Replicas() {
		d := r.Descriptor()
		if replica.IsUninitialized(d) {
			continue
		}
		op := &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{
			Key: keys.StripUser(d.GetStartKey()), RangeEnd: []byte{0}, Serializable: true}}}
		if len(d.GetStartKey()) == 1 {
			op.GetRange().Key = []byte{0}
		}
		if string(d.GetEndKey()) != string(keys.UserSpan.End) {
			op.GetRange().RangeEnd = keys.StripUser(d.GetEndKey())
		}
		resp, err := r.Read(context.Background(), &cmdpb.BatchRequest{RangeId: d.GetRangeId(), Op: op})
		if err != nil {
			out = append(out, fmt.Sprintf("range %d: %v", d.GetRangeId(), err))
			continue
		}
		for _, kv := range resp.GetResp().GetRange().GetKvs() {
			out = append(out, fmt.Sprintf("%s=%s@%d (range %d)", kv.GetKey(), kv.GetValue(), kv.GetModRevision(), d.GetRangeId()))
		}
	}
	sort.Strings(out)
	return strings.Join(out, "\n") + "\n"
}

// showRead renders a get's answer from range rangeID.
func showRead(rangeID uint64, resp *cmdpb.BatchResponse, err error) string {
	if err != nil {
		return fmt.Sprintf("error: %v\n", err)
	}
	var out []string
	for _, kv := range resp.GetResp().GetRange().GetKvs() {
		out = append(out, fmt.Sprintf("%s=%s@%d", kv.GetKey(), kv.GetValue(), kv.GetModRevision()))
	}
	return fmt.Sprintf("%s (range %d)\n", strings.Join(out, " "), rangeID)
}

func (h *harness) stopAll() {
	for _, id := range h.ids {
		if h.nodes[id].store != nil {
			h.stop(id)
		}
	}
}

func TestStoreHarness(t *testing.T) {
	datadriven.Walk(t, "testdata/harness", func(t *testing.T, path string) {
		h := newHarness(t)
		defer h.stopAll()
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			var node, rangeID, n uint64
			var key, value string
			switch td.Cmd {
			case "bootstrap":
				td.ScanArgs(t, "nodes", &n)
				h.bootstrap(int(n))
				return ""
			case "campaign":
				td.ScanArgs(t, "node", &node)
				td.ScanArgs(t, "range", &rangeID)
				h.nodes[node].store.Campaign(rangeID)
				h.stabilize()
				return ""
			case "stabilize":
				h.stabilize()
				return ""
			case "tick":
				n = 1
				td.MaybeScanArgs(t, "n", &n)
				h.tick(int(n))
				return ""
			case "put":
				td.ScanArgs(t, "key", &key)
				td.ScanArgs(t, "value", &value)
				if !td.MaybeScanArgs(t, "node", &node) {
					node = h.leaderOf([]byte(key))
				}
				r := h.holding(node, []byte(key))
				if td.MaybeScanArgs(t, "range", &rangeID) {
					// Through the replica of that range, whatever it holds.
					r = h.nodes[node].store.Replica(rangeID)
				}
				resp, err := h.write(r, &cmdpb.BatchRequest{RangeId: r.RangeID, Op: &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(key), Value: []byte(value)}}}})
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				return fmt.Sprintf("ok: revision %d (range %d)\n", resp.GetRevision(), r.RangeID)
			case "put-many":
				// n puts of keys prefix000, prefix001, ... through node.
				var prefix string
				td.ScanArgs(t, "node", &node)
				td.ScanArgs(t, "prefix", &prefix)
				td.ScanArgs(t, "n", &n)
				var last *cmdpb.BatchResponse
				for i := range int(n) {
					k := fmt.Sprintf("%s%03d", prefix, i)
					r := h.holding(node, []byte(k))
					resp, err := h.write(r, &cmdpb.BatchRequest{RangeId: r.RangeID, Op: &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte("v")}}}})
					if err != nil {
						return fmt.Sprintf("error at %s: %v\n", k, err)
					}
					last = resp
				}
				return fmt.Sprintf("ok: last at revision %d\n", last.GetRevision())
			case "split":
				td.ScanArgs(t, "node", &node)
				td.ScanArgs(t, "key", &key)
				td.ScanArgs(t, "id", &rangeID)
				r := h.holding(node, []byte(key))
				resp, err := h.write(r, &cmdpb.BatchRequest{RangeId: r.RangeID, Split: &cmdpb.SplitRequest{SplitKey: keys.User([]byte(key)), NewRangeId: rangeID}})
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				ds := resp.GetDescriptors()
				h.awaitLeader(ds[1].GetRangeId())
				return fmt.Sprintf("ok: range %d [%s, %s), range %d [%s, %s)\n", ds[0].GetRangeId(), showKey(ds[0].GetStartKey()), showKey(ds[0].GetEndKey()),
					ds[1].GetRangeId(), showKey(ds[1].GetStartKey()), showKey(ds[1].GetEndKey()))
			case "freeze":
				// Freeze the range starting at key through its leader and
				// wait until every running replica applied it (what a
				// merge does first).
				td.ScanArgs(t, "key", &key)
				node = h.leaderOf([]byte(key))
				r := h.holding(node, []byte(key))
				resp, err := h.write(r, &cmdpb.BatchRequest{RangeId: r.RangeID, Freeze: &cmdpb.FreezeRequest{}})
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				h.stabilize()
				return fmt.Sprintf("ok: range %d frozen at index %d\n", r.RangeID, resp.GetAppliedIndex())
			case "merge":
				// Merge the (frozen) range starting at key into its left
				// neighbour, through the left range's leader.
				td.ScanArgs(t, "key", &key)
				node = h.leaderOf([]byte(key))
				right := h.holding(node, []byte(key)).Descriptor()
				left := h.leftOf(node, right)
				lnode := h.leaderOf(keys.StripUser(left.GetStartKey()))
				r := h.nodes[lnode].store.Replica(left.GetRangeId())
				resp, err := h.write(r, &cmdpb.BatchRequest{RangeId: r.RangeID, Merge: &cmdpb.MergeRequest{Right: right}})
				if err != nil {
					return fmt.Sprintf("error: %v\n", err)
				}
				d := resp.GetDescriptors()[0]
				return fmt.Sprintf("ok: range %d [%s, %s) gen %d\n", d.GetRangeId(), showKey(d.GetStartKey()), showKey(d.GetEndKey()), d.GetGeneration())
			case "partition":
				td.ScanArgs(t, "node", &node)
				h.mu.Lock()
				h.mu.cut[node] = true
				h.mu.Unlock()
				return ""
			case "heal":
				h.mu.Lock()
				clear(h.mu.cut)
				h.mu.Unlock()
				return ""
			case "stop":
				td.ScanArgs(t, "node", &node)
				h.stop(node)
				return ""
			case "start":
				td.ScanArgs(t, "node", &node)
				h.start(node)
				return ""
			case "ranges":
				return h.ranges()
			case "awake":
				return h.awakeReplicas()
			case "snapshots":
				// How many snapshots each node's replicas received.
				var b strings.Builder
				for _, id := range h.ids {
					if st := h.nodes[id].store; st != nil {
						for _, r := range st.Replicas() {
							fmt.Fprintf(&b, "node %d: range %d received %d\n", id, r.RangeID, r.Status().SnapshotsApplied)
						}
					}
				}
				return b.String()
			case "messages":
				out := fmt.Sprintf("%d delivered\n", h.delivered)
				h.delivered = 0
				return out
			case "get":
				// A linearizable read of key through node's replica (the
				// leader's if no node), at revision rev if given.
				td.ScanArgs(t, "key", &key)
				if !td.MaybeScanArgs(t, "node", &node) {
					node = h.leaderOf([]byte(key))
				}
				var rev int64
				td.MaybeScanArgs(t, "rev", &rev)
				r := h.holding(node, []byte(key))
				read := func() (*cmdpb.BatchResponse, error) {
					return r.Read(context.Background(), &cmdpb.BatchRequest{RangeId: r.RangeID, Op: &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte(key), Revision: rev}}}})
				}
				var name string
				if td.MaybeScanArgs(t, "async", &name) {
					h.startRead(name, node, r.RangeID, read)
					return ""
				}
				resp, err := h.drive(read)
				return showRead(r.RangeID, resp, err)
			case "scan":
				td.ScanArgs(t, "node", &node)
				return h.scan(node)
			}
			if out, ok := h.txnCommand(t, td); ok {
				return out
			}
			t.Fatalf("unknown command %q", td.Cmd)
			return ""
		})
	})
}
