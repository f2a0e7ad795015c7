package replica

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/storage"
)

// A range's change feed (what watches are built on, DESIGN.md "Watch,
// lease, lock, election"): a Feed gives, in revision order, every change
// to a span of the range with a revision above the one it was opened
// from, first from the MVCC history and then as the changes apply, and
// resolved revisions: every change at or below one has been given.
//
// Resolved revisions come from three facts. On one replica, the commands
// the range numbers apply in increasing revision order (the proposer
// numbers and proposes them in order, and apply refuses a revision not
// above the applied one), so the newest applied revision is resolved. A
// revision T above it is resolved once the leaseholder has waited, as a
// read at T does, for the writes it numbered at or below T (Resolve):
// none can apply below T later. And a cross-range txn commits below the
// range's newest revision, at its own, only where it reserved, staged or
// locked keys first: a feed's resolved revision stays below those
// (txnCapLocked), its events above it wait in pending, and its resolved
// revision counts as a read in the timestamp cache, so no txn stages
// below it later (txn.go). A feed lives on the leader: it ends when the replica stops
// leading, splits, merges, takes a snapshot or stops; its reader opens
// the new ranges from the last resolved revision.

const (
	// feedPageEvents is how many history events a feed reads at once (a
	// revision is never cut, so a page may hold more).
	feedPageEvents = 1000
	// maxFeedQueuedEvents bounds the live events a feed holds for a reader
	// that does not keep up; past it the feed ends (RESOURCE_EXHAUSTED) and
	// the reader opens it again from its resolved revision, reading the
	// history it missed from the MVCC versions instead of from memory.
	maxFeedQueuedEvents = 16384
)

// errFeedDone ends a feed opened with an upper revision once it reached it.
var errFeedDone = errors.New("replica: feed reached its upper revision")

// IsFeedDone reports whether err is the end of a bounded feed.
func IsFeedDone(err error) bool { return errors.Is(err, errFeedDone) }

// Feed is one reader's change feed of a span of the range. Next and
// Resolve may be called from different goroutines; Next from one only.
type Feed struct {
	r      *Replica
	span   keys.Span // global keys
	prevKV bool
	to     int64 // 0: unbounded

	// openRev is the range's newest applied revision when the feed opened:
	// the history read covers changes up to it, live events come above it.
	openRev int64
	// The catch-up state, used by Next only: the history (from, catchTo]
	// is read from snap, a page at a time, before the live events;
	// returned is the resolved revision Next returned last.
	snap     *storage.Snapshot
	from     int64
	catchTo  int64
	returned int64

	// signal has a token when mu holds something new for Next.
	signal chan struct{}
	// compactedSent is the compaction Next reported last.
	compactedSent int64
	mu            struct {
		sync.Mutex
		// events are the live changes above snapTo not yet taken, in
		// revision order; pending those above resolved, in revision order,
		// waiting for it; resolved the newest resolved revision pushed;
		// compacted the range's compacted revision as last applied.
		// Invariant: every event's revision <= resolved < every pending
		// one's.
		events    []*kvpb.Event
		pending   []*kvpb.Event
		resolved  int64
		compacted int64
		// err ends the feed once the events before it are taken.
		err    error
		closed bool
	}
}

// feeds is a replica's set of live feeds. Lock order: Replica.mu, then
// feeds.mu, then a Feed's mu.
type feeds struct {
	// active is set while any feed is registered: Apply records events
	// only then.
	active atomic.Bool
	mu     sync.Mutex
	set    map[*Feed]struct{}
}

// OpenFeed opens a feed of the changes to span (global keys, clipped to
// the range; an empty End means the rest of the range) above revision from;
// with to > 0 it ends (IsFeedDone) after revision to. prevKV adds each
// change's previous version. Errors: NOT_LEADER, RANGE_NOT_FOUND for a
// replica that awaits its first snapshot, KEY_MISMATCH for a span outside
// the range, COMPACTED (see CompactedRevision) when changes above from are
// no longer all in the history.
func (r *Replica) OpenFeed(ctx context.Context, span keys.Span, from, to int64, prevKV bool) (*Feed, error) {
	// A feed starts resolved at the range's newest revision, which it may
	// only do once no txn can still commit at or below it there: wait for
	// the locks and stagings at or below it, and for the writes this range
	// numbered below a txn's resolution that moved it up.
	if err := r.waitApplying(ctx, "txns to resolve before a feed opens", func() (bool, error) {
		if IsUninitialized(r.mu.desc) || !r.leadsLocked() {
			return true, nil
		}
		newest := r.mu.applied.Newest()
		rs := r.spanLocked()
		c := r.txnCapLocked(rs)
		return r.freeResolvedLocked() >= newest && (c == 0 || c >= newest), nil
	}); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if IsUninitialized(r.mu.desc) {
		return nil, kvpb.Errorf(kvpb.ErrorCode_RANGE_NOT_FOUND, "replica: range %d here waits for its first snapshot", r.RangeID)
	}
	if !r.leadsLocked() {
		return nil, r.notLeaderLocked()
	}
	rs := r.spanLocked()
	gspan := span
	if len(gspan.End) == 0 {
		gspan.End = rs.End
	}
	// The whole span, or the reader would silently miss the part a split
	// gave away since its descriptor was read: it must look the span up
	// again (KEY_MISMATCH, with the descriptors that say why).
	if !rs.ContainsSpan(gspan) || gspan.Empty() || !keys.IsUser(gspan.Start) {
		return nil, &kvpb.Error{Code: kvpb.ErrorCode_KEY_MISMATCH, Message: fmt.Sprintf("replica: feed span %v not inside range %d %v", span, r.RangeID, rs), Descriptors: r.neighbourhoodLocked()}
	}
	as := r.mu.applied
	if from+1 < as.CompactedRev {
		return nil, &compactedError{rev: as.CompactedRev}
	}
	newest := r.feedResolvedLocked(gspan)
	if newest < as.Newest() {
		return nil, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: a txn staged at or below revision %d meanwhile; open the feed again", r.RangeID, as.Newest())
	}
	f := &Feed{r: r, span: gspan, prevKV: prevKV, to: to, openRev: newest, from: from, catchTo: max(newest, from), signal: make(chan struct{}, 1)}
	f.mu.resolved = f.catchTo
	if to > 0 {
		f.catchTo = min(f.catchTo, to)
	}
	f.returned = f.from
	if f.from < f.catchTo {
		f.snap = r.cfg.Engine.NewSnapshot()
	}
	if to == 0 || to > f.catchTo {
		r.feeds.mu.Lock()
		if r.feeds.set == nil {
			r.feeds.set = map[*Feed]struct{}{}
		}
		r.feeds.set[f] = struct{}{}
		r.feeds.active.Store(true)
		r.feeds.mu.Unlock()
	}
	return f, nil
}

// compactedError is COMPACTED with the compacted revision.
type compactedError struct{ rev int64 }

func (e *compactedError) Error() string { return "mvcc: required revision has been compacted" }

// Unwrap makes it a COMPACTED *kvpb.Error to kvpb.CodeOf.
func (e *compactedError) Unwrap() error {
	return kvpb.Errorf(kvpb.ErrorCode_COMPACTED, "mvcc: required revision has been compacted")
}

// CompactedRevision returns the compacted revision carried by an OpenFeed
// or Next error, and whether it carries one.
func CompactedRevision(err error) (int64, bool) {
	var ce *compactedError
	if errors.As(err, &ce) {
		return ce.rev, true
	}
	return 0, false
}

// FeedBatch is what Next returns: changes in revision order (user keys),
// the feed's resolved revision (every change at or below it has now been
// returned), and the range's compacted revision if a compaction applied
// since the last batch (0 otherwise). Events may be empty when only the
// resolved revision or the compaction moved.
type FeedBatch struct {
	Events              []*kvpb.Event
	Resolved, Compacted int64
}

// Next waits for changes and returns them. Errors: the feed's end (see
// OpenFeed and the package's feed comment; IsFeedDone for a bounded feed
// that is complete), UNAVAILABLE when ctx ends.
func (f *Feed) Next(ctx context.Context) (FeedBatch, error) {
	evs, resolved, compacted, err := f.next(ctx)
	return FeedBatch{Events: evs, Resolved: resolved, Compacted: compacted}, err
}

func (f *Feed) next(ctx context.Context) (_ []*kvpb.Event, _, _ int64, _ error) {
	if f.snap != nil {
		evs, upTo, err := storage.MVCCHistory(f.snap, f.span, f.from, f.catchTo, f.prevKV, feedPageEvents)
		if err != nil {
			f.Close()
			return nil, 0, 0, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: read history: %v", f.r.RangeID, err)
		}
		f.from, f.returned = upTo, upTo
		if upTo >= f.catchTo {
			f.snap.Close()
			f.snap = nil
		}
		return userEvents(evs), upTo, 0, nil
	}
	for {
		f.mu.Lock()
		evs, resolved, compacted, err := f.mu.events, f.mu.resolved, f.mu.compacted, f.mu.err
		f.mu.events = nil
		f.mu.Unlock()
		newCompaction := int64(0)
		if compacted > f.compactedSent {
			newCompaction, f.compactedSent = compacted, compacted
		}
		if f.to > 0 && resolved >= f.to {
			resolved = f.to
			n := len(evs)
			for n > 0 && evs[n-1].GetKv().GetModRevision() > f.to {
				n--
			}
			evs, err = evs[:n], errFeedDone
			f.Close()
		}
		if len(evs) > 0 || resolved > f.returned || newCompaction > 0 {
			f.returned = max(f.returned, resolved)
			if f.prevKV {
				if err := f.addPrev(evs); err != nil {
					f.Close()
					return nil, 0, 0, err
				}
			}
			return userEvents(evs), f.returned, newCompaction, nil
		}
		if err != nil {
			f.Close()
			return nil, 0, 0, err
		}
		select {
		case <-f.signal:
		case <-ctx.Done():
			return nil, 0, 0, kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d feed: %v", f.r.RangeID, ctx.Err())
		}
	}
}

// addPrev reads each live change's previous version, as etcd's watch does
// (at the revision below it); a create has none.
func (f *Feed) addPrev(evs []*kvpb.Event) error {
	for _, ev := range evs {
		kv := ev.GetKv()
		if ev.GetType() == kvpb.Event_PUT && kv.GetCreateRevision() == kv.GetModRevision() {
			continue
		}
		prev, err := storage.MVCCGet(f.r.cfg.Engine, kv.GetKey(), kv.GetModRevision()-1)
		if err != nil {
			return kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: read previous version: %v", f.r.RangeID, err)
		}
		ev.PrevKv = prev
	}
	return nil
}

// userEvents strips the global prefix from the events' keys, in place.
func userEvents(evs []*kvpb.Event) []*kvpb.Event {
	for _, ev := range evs {
		ev.Kv.Key = keys.StripUser(ev.GetKv().GetKey())
		if ev.GetPrevKv() != nil {
			ev.PrevKv.Key = keys.StripUser(ev.GetPrevKv().GetKey())
		}
	}
	return evs
}

// Resolve makes rev resolved on the feed, waiting as a read at rev waits
// (the lease, then every write this range numbered at or below rev), so
// that Next soon returns it. rev must not be above a revision the TSO has
// handed out. Errors: NOT_LEADER, UNAVAILABLE (ctx ended, or the feed's
// replica stopped).
func (f *Feed) Resolve(ctx context.Context, rev int64) error {
	r := f.r
	r.touch()
	if err := r.waitLease(ctx); err != nil {
		return err
	}
	if err := r.waitRevision(ctx, rev); err != nil {
		return err
	}
	// Every change this range numbered at or below rev is applied here,
	// so published to the feed before this; a txn's may still come below
	// it only where a lock or staging is (txnCapLocked).
	r.mu.Lock()
	if c := r.txnCapLocked(f.span); c > 0 {
		rev = min(rev, c)
	}
	r.mu.tsc.bump([]keys.Span{f.span}, rev)
	r.mu.Unlock()
	f.push(nil, rev, 0)
	return nil
}

// Close ends the feed and releases what it holds. Calling it again does
// nothing.
func (f *Feed) Close() {
	if f.snap != nil {
		f.snap.Close()
		f.snap = nil
	}
	f.mu.Lock()
	closed := f.mu.closed
	f.mu.closed = true
	f.mu.Unlock()
	if closed {
		return
	}
	r := f.r
	r.feeds.mu.Lock()
	delete(r.feeds.set, f)
	r.feeds.active.Store(len(r.feeds.set) > 0)
	r.feeds.mu.Unlock()
}

// push queues the changes of evs inside the feed's span and moves its
// resolved revision to resolved and its compacted one to compacted.
// Changes may come out of revision order (a txn's commit resolved after
// the range's later writes): those above the resolved revision wait in
// pending, and reach events in revision order once it passes them.
func (f *Feed) push(evs []*kvpb.Event, resolved, compacted int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.mu.err != nil || f.mu.closed {
		return
	}
	for _, ev := range evs {
		if !f.span.Contains(ev.GetKv().GetKey()) || ev.GetKv().GetModRevision() <= f.openRev {
			continue
		}
		if len(f.mu.events)+len(f.mu.pending) >= maxFeedQueuedEvents {
			f.mu.events, f.mu.pending = nil, nil
			f.mu.err = kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "replica: range %d: feed reader fell %d events behind; open it again from its resolved revision", f.r.RangeID, maxFeedQueuedEvents)
			break
		}
		// The event is shared by every feed it matches: each takes its
		// own copy, since Next rewrites keys and adds prev_kv.
		f.mu.pending = insertByRevision(f.mu.pending, cloneEvent(ev))
	}
	f.mu.resolved = max(f.mu.resolved, resolved)
	n := 0
	for n < len(f.mu.pending) && f.mu.pending[n].GetKv().GetModRevision() <= f.mu.resolved {
		n++
	}
	if n > 0 {
		f.mu.events = append(f.mu.events, f.mu.pending[:n]...)
		f.mu.pending = append(f.mu.pending[:0:0], f.mu.pending[n:]...)
	}
	f.mu.compacted = max(f.mu.compacted, compacted)
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

// insertByRevision inserts ev into evs, kept in revision order (stable:
// events of one revision stay in the order they came).
func insertByRevision(evs []*kvpb.Event, ev *kvpb.Event) []*kvpb.Event {
	i := len(evs)
	for i > 0 && evs[i-1].GetKv().GetModRevision() > ev.GetKv().GetModRevision() {
		i--
	}
	evs = append(evs, nil)
	copy(evs[i+1:], evs[i:])
	evs[i] = ev
	return evs
}

// fail ends the feed with err once what it holds is taken.
func (f *Feed) fail(err error) {
	f.mu.Lock()
	if f.mu.err == nil {
		f.mu.err = err
	}
	f.mu.Unlock()
	select {
	case f.signal <- struct{}{}:
	default:
	}
}

func cloneEvent(ev *kvpb.Event) *kvpb.Event {
	kv := ev.GetKv() // the value bytes are shared: nothing writes them
	return &kvpb.Event{Type: ev.GetType(), Kv: &kvpb.KeyValue{Key: kv.GetKey(), CreateRevision: kv.GetCreateRevision(), ModRevision: kv.GetModRevision(), Version: kv.GetVersion(), Value: kv.GetValue(), Lease: kv.GetLease()}}
}

// publishLocked hands the events of one Apply round to every feed, with
// the range's newest applied and compacted revisions. Called with r.mu
// held, after the round's batch is committed and before its waiters are
// woken. recorded says whether the round recorded its events: one that
// began before the first feed opened did not, and a feed that opened while
// it ran (its history read stops below the round) would miss the round's
// changes while its resolved revision passed them, so it ends instead
// (UNAVAILABLE) and its reader opens it again, reading them as history.
func (r *Replica) publishLocked(evs []*kvpb.Event, recorded bool, compacted int64) {
	if !r.feeds.active.Load() {
		return
	}
	r.feeds.mu.Lock()
	defer r.feeds.mu.Unlock()
	for f := range r.feeds.set {
		resolved := r.feedResolvedLocked(f.span)
		if !recorded && resolved > f.openRev {
			f.fail(kvpb.Errorf(kvpb.ErrorCode_UNAVAILABLE, "replica: range %d: feed opened during an apply round; open it again", r.RangeID))
			delete(r.feeds.set, f)
			continue
		}
		f.push(evs, resolved, compacted)
	}
	r.feeds.active.Store(len(r.feeds.set) > 0)
}

// feedResolvedLocked is the revision a feed of span may call resolved now
// (every change at or below it has applied: freeResolvedLocked, below the
// txns that may still commit there), recorded in the timestamp cache as a
// read of span at it, so that no txn stages below it there later.
func (r *Replica) feedResolvedLocked(span keys.Span) int64 {
	resolved := r.freeResolvedLocked()
	if c := r.txnCapLocked(span); c > 0 {
		resolved = min(resolved, c)
	}
	if r.leadsLocked() {
		r.mu.tsc.bump([]keys.Span{span}, resolved)
	}
	return resolved
}

// endFeedsLocked ends every feed with err (see the feed comment for
// when). Called with r.mu held.
func (r *Replica) endFeedsLocked(err error) {
	if !r.feeds.active.Load() {
		return
	}
	r.feeds.mu.Lock()
	defer r.feeds.mu.Unlock()
	for f := range r.feeds.set {
		f.fail(err)
		delete(r.feeds.set, f)
	}
	r.feeds.active.Store(false)
}
