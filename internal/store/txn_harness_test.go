package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/eval"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/replica"
	"github.com/concorddb/concord/internal/storage"
)

// The harness's cross-range txn commands. The script plays the
// coordinator (internal/txn, which needs a router) one step at a time, and
// each step goes to the leaseholder of the range holding its keys through
// Store.Execute, the entry point a gateway's request reaches, so that the
// replicas' real Txn code serves it. Txn ids are the script's numbers.
//
//	txn-begin txn=1 put=(a=x,n=y) delete=(c)
//	                     txn 1 writes those keys (one etcd Txn, no
//	                     compares); it is cut by the ranges holding them
//	                     now, into parts, as the coordinator cuts it: a
//	                     part is anchored at the first key it writes, the
//	                     first part's anchor is the record
//	txn-reserve txn=1 [key=a] [ttl=2000] [release]
//	                     reserve every part (key: only the part holding a),
//	                     above the cluster's current revision, for ttl ms
//	                     (default abandonAfter, as the coordinator does);
//	                     release gives the reservation up
//	txn-draw txn=1       draw the txn's commit revision from the TSO
//	txn-stage txn=1 key=a
//	                     stage the part holding a (a participant; with one
//	                     part, a one-phase commit)
//	txn-resolve txn=1 keys=(a,b) [anchor=a] commit=true [forget] [range=3]
//	                     resolve the txn's locks on keys, in one request per
//	                     range holding them now, and end its marker at
//	                     anchor (forget: delete it); range=3 sends it all
//	                     to range 3, as a router whose cache predates a
//	                     split would
//	txn-mark txn=1 anchor=n status=aborted [if-absent]
//	                     decide txn 1's marker at n; prints it as it is after
//	txn-query txn=1 anchor=a [age] | lock=a
//	                     txn 1's marker at a (age: whether it was staged
//	                     over abandonAfter ago), or the lock on a
//	locks                every replica's locks, as its engine holds them
//	                     (and the lock table, Replica.LockCount, if it says
//	                     otherwise)
//	pending name=r       the answer of the read started by get async=r if
//	                     it came within pendingWait, else "still waiting"
//	await name=r         wait for that read's answer
//
// Time: reservations expire by the manual clock (tick); a read that meets
// a lock waits lockWait on a real timer, so a get that meets one prints
// LOCKED a moment later, whatever the clock.

// abandonAfter is internal/txn's default AbandonAfter: the coordinator
// reserves for that long, and a txn staged longer ago than that and not
// staged everywhere may be aborted by whoever meets its locks. The
// harness's clock also moves when a request takes long (drive ticks), so
// scripts ask a marker's age (txn-query age) only far from that bound.
const abandonAfter = 2 * time.Second

// pendingWait is how long pending waits for a read that should be held:
// twice the replica's lockWait, so that a read held only by a lock would
// have failed LOCKED by then.
const pendingWait = 100 * time.Millisecond

// awaitBound bounds how long await drives the cluster for a read.
const awaitBound = 10 * time.Second

type txnState struct {
	txns  map[uint64]*htxn
	reads map[string]*hread
}

// htxn is one txn as the script's coordinator knows it.
type htxn struct {
	id    uint64
	op    *kvpb.RequestOp
	path  []bool
	parts []*hpart
	// ts is the commit revision (0 until drawn); staged stamps the
	// stagings (the coordinator's clock when it drew ts).
	ts     int64
	staged int64
}

// hpart is one range's share of a txn.
type hpart struct {
	rangeID uint64 // as cut
	clip    keys.Span
	writes  [][]byte // global keys, in key order
	anchor  []byte
}

// hread is a read left running (get async=name) on node's replica of
// rangeID.
type hread struct {
	node, rangeID uint64
	// done is closed once resp and err are set.
	done chan struct{}
	resp *cmdpb.BatchResponse
	err  error
}

// txnCommand runs td if it is a txn command; ok reports whether it was.
func (h *harness) txnCommand(t *testing.T, td *datadriven.TestData) (out string, ok bool) {
	if h.txn.txns == nil {
		h.txn.txns = map[uint64]*htxn{}
	}
	txnOf := func() *htxn {
		var id uint64
		td.ScanArgs(t, "txn", &id)
		x := h.txn.txns[id]
		if x == nil {
			t.Fatalf("txn %d has not begun", id)
		}
		return x
	}
	switch td.Cmd {
	case "txn-begin":
		return h.txnBegin(t, td), true
	case "txn-reserve":
		return h.txnReserve(t, td, txnOf()), true
	case "txn-draw":
		x := txnOf()
		ts, err := h.tso.Next(context.Background(), 1)
		if err != nil {
			t.Fatal(err)
		}
		x.ts, x.staged = ts, h.now().UnixNano()
		return fmt.Sprintf("txn %d: commit revision %d\n", x.id, ts), true
	case "txn-stage":
		return h.txnStage(t, td, txnOf()), true
	case "txn-resolve":
		return h.txnResolve(t, td, txnOf()), true
	case "txn-mark":
		x := txnOf()
		var anchor, status string
		td.ScanArgs(t, "anchor", &anchor)
		td.ScanArgs(t, "status", &status)
		st, found := kvpb.TxnStatus_value[strings.ToUpper(status)]
		if !found {
			t.Fatalf("unknown txn status %q", status)
		}
		a := keys.User([]byte(anchor))
		rangeID, resp, err := h.send(a, &cmdpb.BatchRequest{TxnMark: &cmdpb.TxnMark{TxnId: x.id, Anchor: a, Status: kvpb.TxnStatus(st), IfAbsent: td.HasArg("if-absent")}})
		if err != nil {
			return fmt.Sprintf("range %d: %s\n", rangeID, showErr(err)), true
		}
		return fmt.Sprintf("range %d: txn %d at %s: %s\n", rangeID, x.id, anchor, h.showMeta(resp.GetTxn(), false)), true
	case "txn-query":
		x := txnOf()
		var anchor, lock string
		q := &cmdpb.TxnQueryRequest{TxnId: x.id}
		var at []byte
		if td.MaybeScanArgs(t, "anchor", &anchor) {
			q.Anchor = keys.User([]byte(anchor))
			at = q.Anchor
		}
		if td.MaybeScanArgs(t, "lock", &lock) {
			q.LockKey = keys.User([]byte(lock))
			at = q.LockKey
		}
		rangeID, resp, err := h.send(at, &cmdpb.BatchRequest{TxnQuery: q})
		if err != nil {
			return fmt.Sprintf("range %d: %s\n", rangeID, showErr(err)), true
		}
		var b strings.Builder
		if q.Anchor != nil {
			fmt.Fprintf(&b, "range %d: txn %d at %s: %s\n", rangeID, x.id, anchor, h.showMeta(resp.GetTxn(), td.HasArg("age")))
		}
		if q.LockKey != nil {
			if l := resp.GetLock(); l != nil {
				fmt.Fprintf(&b, "range %d: lock on %s: txn %d at %d, record %s\n", rangeID, lock, l.GetTxnId(), l.GetCommitTs(), showKey(l.GetRecord()))
			} else {
				fmt.Fprintf(&b, "range %d: no lock on %s\n", rangeID, lock)
			}
		}
		return b.String(), true
	case "locks":
		h.stabilize()
		return h.locks(), true
	case "pending":
		var name string
		td.ScanArgs(t, "name", &name)
		return h.awaitRead(t, name, pendingWait), true
	case "await":
		var name string
		td.ScanArgs(t, "name", &name)
		return h.awaitRead(t, name, awaitBound), true
	}
	return "", false
}

// txnBegin declares a txn and cuts it into parts.
func (h *harness) txnBegin(t *testing.T, td *datadriven.TestData) string {
	var id uint64
	td.ScanArgs(t, "txn", &id)
	if id == 0 || h.txn.txns[id] != nil {
		t.Fatalf("txn %d: ids are non-zero and new", id)
	}
	txn := &kvpb.TxnRequest{}
	var written [][]byte
	for _, arg := range td.CmdArgs {
		for _, v := range arg.Vals {
			switch arg.Key {
			case "put":
				k, val, found := strings.Cut(v, "=")
				if !found {
					t.Fatalf("put=(%s): want key=value", v)
				}
				txn.Success = append(txn.Success, &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte(val)}}})
				written = append(written, keys.User([]byte(k)))
			case "delete":
				txn.Success = append(txn.Success, &kvpb.RequestOp{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Key: []byte(v)}}})
				written = append(written, keys.User([]byte(v)))
			}
		}
	}
	if len(written) == 0 {
		t.Fatalf("txn %d writes nothing", id)
	}
	op := &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: txn}}
	path, err := eval.Path(op, func(*kvpb.Compare) ([]*kvpb.KeyValue, error) { return nil, nil })
	if err != nil {
		t.Fatal(err)
	}
	x := &htxn{id: id, op: op, path: path}
	sort.Slice(written, func(i, j int) bool { return bytes.Compare(written[i], written[j]) < 0 })
	bound := keys.Span{Start: written[0], End: append(append([]byte(nil), written[len(written)-1]...), 0)}
	for _, k := range written {
		d := h.holding(h.leaderOf(keys.StripUser(k)), keys.StripUser(k)).Descriptor()
		if n := len(x.parts); n > 0 && x.parts[n-1].rangeID == d.GetRangeId() {
			if p := x.parts[n-1]; !bytes.Equal(p.writes[len(p.writes)-1], k) {
				p.writes = append(p.writes, k)
			}
			continue
		}
		clip := keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}.Intersect(bound)
		x.parts = append(x.parts, &hpart{rangeID: d.GetRangeId(), clip: clip, writes: [][]byte{k}, anchor: k})
	}
	h.txn.txns[id] = x
	var b strings.Builder
	for i, p := range x.parts {
		fmt.Fprintf(&b, "range %d: writes %s; anchor %s", p.rangeID, showKeys(p.writes), showKey(p.anchor))
		switch {
		case len(x.parts) == 1:
			b.WriteString(" (the only participant: it commits at once)")
		case i == 0:
			b.WriteString(" (the record)")
		}
		b.WriteString("\n")
	}
	return b.String()
}

// part returns the part of x holding key (the first part with none).
func (x *htxn) part(t *testing.T, td *datadriven.TestData) *hpart {
	var key string
	if !td.MaybeScanArgs(t, "key", &key) {
		return x.parts[0]
	}
	for _, p := range x.parts {
		if p.clip.Contains(keys.User([]byte(key))) {
			return p
		}
	}
	t.Fatalf("txn %d has no part holding %q", x.id, key)
	return nil
}

// txnReserve reserves x's parts, as the coordinator's reserve does.
func (h *harness) txnReserve(t *testing.T, td *datadriven.TestData, x *htxn) string {
	parts := x.parts
	if td.HasArg("key") {
		parts = []*hpart{x.part(t, td)}
	}
	ttl := abandonAfter.Milliseconds()
	td.MaybeScanArgs(t, "ttl", &ttl)
	floor, err := h.tso.Current(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, p := range parts {
		rr := &cmdpb.TxnReserveRequest{TxnId: x.id, Floor: floor, TtlMillis: ttl, Op: x.op, Path: x.path, SpanStart: p.clip.Start, SpanEnd: p.clip.End}
		if td.HasArg("release") {
			rr = &cmdpb.TxnReserveRequest{TxnId: x.id, Release: true}
		}
		for _, k := range p.writes {
			rr.Spans = append(rr.Spans, &cmdpb.KeySpan{Start: k})
		}
		rangeID, resp, err := h.send(p.anchor, &cmdpb.BatchRequest{TxnReserve: rr})
		switch {
		case err != nil:
			fmt.Fprintf(&b, "range %d: %s\n", rangeID, showErr(err))
		case rr.GetRelease():
			fmt.Fprintf(&b, "range %d: released\n", rangeID)
		case len(resp.GetLockedKeys()) == 0:
			fmt.Fprintf(&b, "range %d: nothing to reserve\n", rangeID)
		default:
			fmt.Fprintf(&b, "range %d: reserved %s above revision %d\n", rangeID, showKeys(resp.GetLockedKeys()), resp.GetRevision())
		}
	}
	return b.String()
}

// txnStage stages one part of x, as the coordinator's attempt does.
func (h *harness) txnStage(t *testing.T, td *datadriven.TestData, x *htxn) string {
	if x.ts == 0 {
		t.Fatalf("txn %d: no commit revision drawn", x.id)
	}
	p := x.part(t, td)
	record := x.parts[0].anchor
	sr := &cmdpb.TxnStageRequest{TxnId: x.id, Ts: x.ts, Op: x.op, Path: x.path, SpanStart: p.clip.Start, SpanEnd: p.clip.End, StagedUnixNanos: x.staged}
	if len(x.parts) == 1 {
		sr.CommitNow = true
	} else {
		sr.Participant, sr.Anchor, sr.Record = true, p.anchor, record
		if bytes.Equal(p.anchor, record) {
			for _, q := range x.parts {
				sr.Participants = append(sr.Participants, q.anchor)
			}
		}
	}
	rangeID, resp, err := h.send(p.anchor, &cmdpb.BatchRequest{TxnStage: sr})
	switch {
	case err != nil:
		return fmt.Sprintf("range %d: %s\n", rangeID, showErr(err))
	case sr.CommitNow:
		return fmt.Sprintf("range %d: committed %s at %d\n", rangeID, showKeys(resp.GetLockedKeys()), resp.GetRevision())
	case sr.Participants != nil:
		return fmt.Sprintf("range %d: staged at %d: locked %s; record at %s, participants %s\n", rangeID, resp.GetRevision(), showKeys(resp.GetLockedKeys()), showKey(p.anchor), showKeys(sr.Participants))
	}
	return fmt.Sprintf("range %d: staged at %d: locked %s; marker at %s, record %s\n", rangeID, resp.GetRevision(), showKeys(resp.GetLockedKeys()), showKey(p.anchor), showKey(record))
}

// txnResolve resolves x's locks on keys, grouped by the ranges holding
// them now, and its marker at anchor, as the coordinator's resolveKeys
// does.
func (h *harness) txnResolve(t *testing.T, td *datadriven.TestData, x *htxn) string {
	var ks [][]byte
	for _, arg := range td.CmdArgs {
		if arg.Key == "keys" {
			for _, v := range arg.Vals {
				ks = append(ks, keys.User([]byte(v)))
			}
		}
	}
	sort.Slice(ks, func(i, j int) bool { return bytes.Compare(ks[i], ks[j]) < 0 })
	var anchorArg string
	var anchor []byte
	if td.MaybeScanArgs(t, "anchor", &anchorArg) {
		anchor = keys.User([]byte(anchorArg))
	}
	var commit bool
	td.ScanArgs(t, "commit", &commit)
	forget := td.HasArg("forget")
	var to uint64
	td.MaybeScanArgs(t, "range", &to)
	if len(ks) == 0 && anchor == nil {
		t.Fatalf("txn-resolve: no keys and no anchor")
	}
	// Group the keys by the ranges holding them now (or all in range to).
	var groups [][][]byte
	var last uint64
	for _, k := range ks {
		id := to
		if id == 0 {
			id = h.holding(h.leaderOf(keys.StripUser(k)), keys.StripUser(k)).RangeID
		}
		if len(groups) == 0 || id != last {
			groups = append(groups, nil)
		}
		groups[len(groups)-1] = append(groups[len(groups)-1], k)
		last = id
	}
	var b strings.Builder
	withAnchor := false
	resolve := func(res *cmdpb.TxnResolve, at []byte) {
		req := &cmdpb.BatchRequest{TxnResolve: &cmdpb.TxnResolveRequest{Resolve: res}}
		var rangeID uint64
		var err error
		if to != 0 {
			rangeID, _, err = h.sendTo(to, req)
		} else {
			rangeID, _, err = h.send(at, req)
		}
		var what []string
		if len(res.GetKeys()) > 0 {
			what = append(what, "keys "+showKeys(res.GetKeys()))
		}
		if res.Anchor != nil {
			what = append(what, "anchor "+showKey(res.GetAnchor()))
			if res.GetForget() {
				what[len(what)-1] += " (forget)"
			}
		}
		if err != nil {
			fmt.Fprintf(&b, "range %d: %s: %s\n", rangeID, strings.Join(what, ", "), showErr(err))
			return
		}
		fmt.Fprintf(&b, "range %d: %s: ok\n", rangeID, strings.Join(what, ", "))
	}
	for _, g := range groups {
		res := &cmdpb.TxnResolve{TxnId: x.id, Commit: commit, Keys: g}
		span := keys.Span{Start: g[0], End: append(append([]byte(nil), g[len(g)-1]...), 0)}
		if anchor != nil && !withAnchor && span.Contains(anchor) {
			res.Anchor, res.Forget, withAnchor = anchor, forget, true
		}
		resolve(res, g[0])
	}
	if anchor != nil && !withAnchor {
		resolve(&cmdpb.TxnResolve{TxnId: x.id, Commit: commit, Anchor: anchor, Forget: forget}, anchor)
	}
	return b.String()
}

// send sends req to the leaseholder of the range holding key (global),
// retrying where the leader moved, as a router does, and drives the
// cluster until it answers.
func (h *harness) send(key []byte, req *cmdpb.BatchRequest) (rangeID uint64, _ *cmdpb.BatchResponse, _ error) {
	k := keys.StripUser(key)
	for attempt := 0; ; attempt++ {
		node := h.leaderOf(k)
		r := h.holding(node, k)
		resp, err := h.execute(node, r.RangeID, req)
		if kvpb.CodeOf(err) == kvpb.ErrorCode_NOT_LEADER && attempt < 10 {
			h.tick(1)
			continue
		}
		return r.RangeID, resp, err
	}
}

// sendTo sends req to range rangeID's leaseholder, whatever keys the
// range holds.
func (h *harness) sendTo(rangeID uint64, req *cmdpb.BatchRequest) (uint64, *cmdpb.BatchResponse, error) {
	for attempt := 0; ; attempt++ {
		resp, err := h.execute(h.leaderOfRange(rangeID), rangeID, req)
		if kvpb.CodeOf(err) == kvpb.ErrorCode_NOT_LEADER && attempt < 10 {
			h.tick(1)
			continue
		}
		return rangeID, resp, err
	}
}

// leaderOfRange returns the running node whose replica of rangeID leads,
// ticking until one does.
func (h *harness) leaderOfRange(rangeID uint64) uint64 {
	for i := 0; i < 100; i++ {
		for _, id := range h.ids {
			if s := h.nodes[id].store; s != nil {
				if r := s.Replica(rangeID); r != nil && r.Status().IsLeader {
					return id
				}
			}
		}
		h.tick(1)
	}
	h.t.Fatalf("harness: no leader for range %d", rangeID)
	return 0
}

// execute runs req on node's store (Store.Execute) and drives the cluster
// until it answers.
func (h *harness) execute(node, rangeID uint64, req *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error) {
	s := h.nodes[node].store
	req.RangeId = rangeID
	return h.drive(func() (*cmdpb.BatchResponse, error) { return s.Execute(context.Background(), req) })
}

// startRead runs read, through node's replica of rangeID, on a goroutine
// of its own, as read name.
func (h *harness) startRead(name string, node, rangeID uint64, read func() (*cmdpb.BatchResponse, error)) {
	if h.txn.reads == nil {
		h.txn.reads = map[string]*hread{}
	}
	if h.txn.reads[name] != nil {
		h.t.Fatalf("read %s is still running", name)
	}
	rd := &hread{node: node, rangeID: rangeID, done: make(chan struct{})}
	go func() {
		defer close(rd.done)
		rd.resp, rd.err = read()
	}()
	h.txn.reads[name] = rd
}

// awaitRead drives the cluster (without ticking: time stands still) until
// read name answers or bound passes.
func (h *harness) awaitRead(t *testing.T, name string, bound time.Duration) string {
	rd := h.txn.reads[name]
	if rd == nil {
		t.Fatalf("no read %s running", name)
	}
	deadline := time.Now().Add(bound)
	for {
		select {
		case <-rd.done:
			delete(h.txn.reads, name)
			h.stabilize()
			return name + ": " + showRead(rd.rangeID, rd.resp, rd.err)
		case <-time.After(5 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			if bound == awaitBound {
				t.Fatalf("read %s never answered", name)
			}
			return name + ": still waiting\n"
		}
		h.round()
	}
}

// endReads waits for the reads running on node, whose store stopped (they
// end with it), so that its engine does not close under them; await still
// tells their answers.
func (h *harness) endReads(node uint64) {
	for name, rd := range h.txn.reads {
		if rd.node != node {
			continue
		}
		select {
		case <-rd.done:
		case <-time.After(awaitBound):
			h.t.Fatalf("read %s on node %d did not end with its store", name, node)
		}
	}
}

// locks lists every running replica's locks, from its engine, in key
// order, and says so where its lock table disagrees.
func (h *harness) locks() string {
	var b strings.Builder
	for _, id := range h.ids {
		nd := h.nodes[id]
		if nd.store == nil {
			fmt.Fprintf(&b, "node %d: stopped\n", id)
			continue
		}
		for _, r := range nd.store.Replicas() {
			d := r.Descriptor()
			if replica.IsUninitialized(d) {
				continue
			}
			var ls []string
			if err := storage.ScanLocks(nd.engine, keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}, func(key []byte, l *kvpb.Lock) error {
				w := "put " + string(l.GetIntent().GetKv().GetValue())
				if l.GetIntent().GetDelete() {
					w = "delete"
				}
				ls = append(ls, fmt.Sprintf("%s (txn %d at %d, %s, record %s)", showKey(key), l.GetTxnId(), l.GetCommitTs(), w, showKey(l.GetRecord())))
				return nil
			}); err != nil {
				h.t.Fatalf("node %d: range %d: scan locks: %v", id, r.RangeID, err)
			}
			if len(ls) == 0 {
				fmt.Fprintf(&b, "node %d: range %d: no locks", id, r.RangeID)
			} else {
				fmt.Fprintf(&b, "node %d: range %d: %s", id, r.RangeID, strings.Join(ls, ", "))
			}
			if n := r.LockCount(); n != len(ls) {
				fmt.Fprintf(&b, " (but its lock table holds %d)", n)
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// showMeta renders a txn marker (nil: none), with age whether it was
// staged over abandonAfter ago.
func (h *harness) showMeta(m *kvpb.TxnMeta, age bool) string {
	if m == nil {
		return "none"
	}
	out := m.GetStatus().String()
	if m.GetCommitTs() > 0 {
		out += fmt.Sprintf(" at %d", m.GetCommitTs())
	}
	if len(m.GetRecord()) > 0 {
		out += ", record " + showKey(m.GetRecord())
	}
	if len(m.GetParticipants()) > 0 {
		out += ", participants " + showKeys(m.GetParticipants())
	}
	if len(m.GetKeys()) > 0 {
		out += ", keys " + showKeys(m.GetKeys())
	}
	if age && m.GetStagedUnixNanos() > 0 {
		if h.now().Sub(time.Unix(0, m.GetStagedUnixNanos())) > abandonAfter {
			out += ", abandoned"
		} else {
			out += ", not abandoned"
		}
	}
	return out
}

// showKeys renders global keys as (a, b).
func showKeys(ks [][]byte) string {
	out := make([]string, 0, len(ks))
	for _, k := range ks {
		out = append(out, showKey(k))
	}
	return "(" + strings.Join(out, ", ") + ")"
}

// showErr renders a request's error: its code, and its message, or for
// KEY_MISMATCH the span of the range that answered (the message quotes
// global keys).
func showErr(err error) string {
	var e *kvpb.Error
	if !errors.As(err, &e) {
		return "error: " + err.Error()
	}
	if e.GetCode() == kvpb.ErrorCode_KEY_MISMATCH && len(e.GetDescriptors()) > 0 {
		d := e.GetDescriptors()[0]
		return fmt.Sprintf("%s: range %d holds [%s, %s)", e.GetCode(), d.GetRangeId(), showKey(d.GetStartKey()), showKey(d.GetEndKey()))
	}
	return fmt.Sprintf("%s: %s", e.GetCode(), e.GetMessage())
}
