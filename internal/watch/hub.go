package watch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// Limits of a hub.
const (
	// maxRingEvents and maxRingBytes bound the released changes a hub
	// keeps for watchers that join it (whole revisions are dropped,
	// oldest first). A watcher starting below the ring reads the history
	// from the ranges instead.
	maxRingEvents = 16384
	maxRingBytes  = 32 << 20
	// StreamQueueLen bounds the responses queued for one watch stream. A
	// synced watcher whose stream is full is moved aside (etcd's victims)
	// and catches up alone once the stream drains: it never holds up the
	// hub, writes or other watchers.
	StreamQueueLen = 256
	// maxCatchUps bounds the watchers of a node catching up at once (each
	// reads its span's history from the ranges).
	maxCatchUps = 16
	// idleStop is how long a hub without watchers keeps following the
	// keyspace before it stops (its ranges may then quiesce).
	idleStop = time.Minute
)

// Hub is one node's watchers and the merger they share (see the package
// doc). Safe for concurrent use.
type Hub struct {
	src       Source
	log       *slog.Logger
	catchUps  chan struct{} // a token per catch-up running
	victims   atomic.Int64  // watchers moved aside since the hub began
	delivered atomic.Int64  // events queued for watchers since the hub began
	restartMu sync.Mutex    // serializes starts of the merger

	// mu guards everything below. Lock order: Hub.mu, then a Stream's mu.
	mu struct {
		sync.Mutex
		// running is set while a merger follows the keyspace; merger is
		// it and cancel stops it. closed is set by Close: nothing starts
		// after it.
		running, closed bool
		merger          *Merger
		cancel          context.CancelFunc
		// frontier is the revision up to which the hub has released
		// every change. The ring holds every released change with a
		// revision in (ringStart, frontier].
		// Invariant: ringStart <= frontier.
		frontier, ringStart int64
		ring                []*Event
		ringBytes           int
		// ringByKey holds the ring's changes again by user key, each in
		// revision order, for the watchers of one key.
		ringByKey map[string][]*Event
		// compacted is the newest compaction the hub heard of: a watcher
		// starting below it is canceled, as etcd's, and one starting at
		// or above it but inside the ring reads the history instead (the
		// ring's prev_kv below it may be gone from the store).
		// Invariant: ringStart >= compacted, or ringStart == frontier.
		compacted int64
		// keyWatchers are the synced watchers of one key, by user key;
		// spanWatchers those of a span.
		keyWatchers  map[string]map[*watcher]struct{}
		spanWatchers map[*watcher]struct{}
		// watchers counts every registered watcher, synced or not.
		watchers int
		// idleSince is when watchers last dropped to zero.
		idleSince time.Time
		// progress are the requests waiting for the frontier to pass a
		// revision.
		progress []progressWait
	}
}

type progressWait struct {
	rev  int64
	done chan int64 // buffered(1): the frontier once past rev
}

// containsUser reports whether w's span holds the user key k (w.span is
// of global keys: the user prefix, then the user key).
func (w *watcher) containsUser(k []byte) bool {
	start, end := w.span.Start[1:], w.span.End
	if bytes.Compare(k, start) < 0 {
		return false
	}
	if len(end) == 0 || end[0] != w.span.Start[0] {
		return true // the end of the user keyspace
	}
	return bytes.Compare(k, end[1:]) < 0
}

// watcher is one etcd watch: a span and the next revision it needs.
type watcher struct {
	id     int64
	s      *Stream
	span   keys.Span
	single bool // span is one key: it is in keyWatchers
	opaque any
	// Guarded by Hub.mu:
	// minRev is the lowest revision it still needs; while synced it
	// needs every change above the frontier too.
	minRev   int64
	synced   bool
	canceled bool
	counted  bool // in Hub.mu.watchers
}

// NewHub returns a hub reaching ranges through src. It starts following
// the keyspace with its first watcher.
func NewHub(src Source, log *slog.Logger) *Hub {
	if log == nil {
		log = slog.Default()
	}
	h := &Hub{src: src, log: log, catchUps: make(chan struct{}, maxCatchUps)}
	h.mu.keyWatchers = map[string]map[*watcher]struct{}{}
	h.mu.ringByKey = map[string][]*Event{}
	h.mu.spanWatchers = map[*watcher]struct{}{}
	return h
}

// Close stops the hub's merger. Streams still open get nothing more.
func (h *Hub) Close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.mu.closed = true
	if h.mu.running {
		h.mu.cancel()
		h.mu.running = false
	}
}

// errClosed refuses to start a closed hub.
var errClosed = errors.New("watch: hub closed")

// Event is a change as a hub hands it to its watchers: one value shared
// by all of them, so that a front end derives what it needs from it (its
// wire form, say) once, not once per watcher (see Memo).
type Event struct {
	*kvpb.Event
	memo [2]atomic.Pointer[any]
}

// Memo returns what slot i (0 or 1) of e holds, computing it with f the
// first time; f may run more than once when watchers race, and must give
// equal values. The value is shared: callers must not modify it.
func (e *Event) Memo(i int, f func() any) any {
	if p := e.memo[i].Load(); p != nil {
		return *p
	}
	v := f()
	e.memo[i].Store(&v)
	return v
}

// wrap makes hub events of a merger's.
func wrap(evs []*kvpb.Event) []*Event {
	out := make([]*Event, len(evs))
	all := make([]Event, len(evs)) // one allocation for the batch
	for i, ev := range evs {
		all[i].Event = ev
		out[i] = &all[i]
	}
	return out
}

// Victims counts the watchers moved aside because their stream was full.
func (h *Hub) Victims() int64 { return h.victims.Load() }

// Stats is a hub's state, for metrics.
type Stats struct {
	// Watchers are the registered watchers, Synced those served from the
	// hub's merger (the others catch up alone).
	Watchers, Synced int
	// Frontier is the revision up to which the hub released every change.
	Frontier int64
	// Victims and Delivered count, since the hub began, the watchers moved
	// aside for a full stream and the events queued for watchers.
	Victims, Delivered int64
}

// Stats returns the hub's state now.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	synced := len(h.mu.spanWatchers)
	for _, set := range h.mu.keyWatchers {
		synced += len(set)
	}
	return Stats{Watchers: h.mu.watchers, Synced: synced, Frontier: h.mu.frontier, Victims: h.victims.Load(), Delivered: h.delivered.Load()}
}

// ensureRunning starts the merger if it does not run, from the cluster's
// current revision.
func (h *Hub) ensureRunning(ctx context.Context) error {
	h.mu.Lock()
	running := h.mu.running
	h.mu.Unlock()
	if running {
		return nil
	}
	h.restartMu.Lock()
	defer h.restartMu.Unlock()
	h.mu.Lock()
	running = h.mu.running
	h.mu.Unlock()
	if running {
		return nil
	}
	cur, err := h.src.Current(ctx)
	if err != nil {
		return err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.closed {
		return errClosed
	}
	h.mu.frontier, h.mu.ringStart = cur, cur
	h.mu.ring, h.mu.ringBytes, h.mu.ringByKey = nil, 0, map[string][]*Event{}
	h.startLocked(cur)
	return nil
}

// startLocked starts a merger from rev. Called with mu held.
func (h *Hub) startLocked(rev int64) {
	ctx, cancel := context.WithCancel(context.Background())
	m := NewMerger(MergerConfig{Source: h.src, Span: keys.UserSpan, From: rev, PrevKV: true, Logger: h.log})
	h.mu.running, h.mu.merger, h.mu.cancel = true, m, cancel
	go h.run(ctx, m)
}

// run follows the keyspace until the hub stops or idles out.
func (h *Hub) run(ctx context.Context, m *Merger) {
	err := m.Run(ctx, func(b Batch) error { return h.release(b) })
	if ctx.Err() != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.merger != m {
		return
	}
	h.mu.running = false
	if errors.Is(err, errIdle) {
		return
	}
	var ce *CompactedError
	if errors.As(err, &ce) {
		// The history above the frontier is gone: every synced watcher
		// finds out on its own, catching up (those below the compaction
		// are canceled there).
		h.log.Warn("watch hub fell below a compaction; watchers catch up alone", "frontier", h.mu.frontier, "compacted", ce.Revision)
		h.unsyncAllLocked()
		h.mu.cancel()
		go func() {
			if err := h.ensureRunning(context.Background()); err != nil {
				h.log.Warn("watch hub did not restart", "err", err)
			}
		}()
		return
	}
	if h.mu.closed {
		return
	}
	h.log.Info("watch hub merger stopped; starting again from its frontier", "frontier", h.mu.frontier, "err", err)
	h.startLocked(h.mu.frontier)
}

// errIdle stops a hub that has had no watcher for idleStop.
var errIdle = errors.New("watch: hub idle")

// release hands a merger's batch to the synced watchers and the ring.
func (h *Hub) release(b Batch) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.mu.watchers == 0 && !h.mu.idleSince.IsZero() && time.Since(h.mu.idleSince) > idleStop {
		return errIdle
	}
	prev := h.mu.frontier
	h.mu.frontier = max(h.mu.frontier, b.Frontier)
	if b.Compacted > 0 {
		h.noteCompactedLocked(b.Compacted)
	}
	if len(b.Events) > 0 {
		evs := wrap(b.Events)
		h.dispatchLocked(evs, prev)
		h.appendRingLocked(evs)
	}
	kept := h.mu.progress[:0]
	for _, p := range h.mu.progress {
		if h.mu.frontier >= p.rev {
			p.done <- h.mu.frontier
		} else {
			kept = append(kept, p)
		}
	}
	clear(h.mu.progress[len(kept):])
	h.mu.progress = kept
	return nil
}

// dispatchLocked queues evs for the synced watchers they match; prev is
// the frontier before them. A watcher whose stream is full leaves the
// synced watchers, needing everything above prev.
func (h *Hub) dispatchLocked(evs []*Event, prev int64) {
	delivered := int64(0)
	send := func(w *watcher, wevs []*Event) {
		if !w.s.offer(Response{WatchID: w.id, Events: wevs, Revision: h.mu.frontier, Opaque: w.opaque}) {
			h.victims.Add(1)
			h.unsyncLocked(w, prev+1)
			return
		}
		delivered += int64(len(wevs))
	}
	// The watchers of one key share one slice of its changes (they only
	// read it); only a watcher starting inside the batch gets its own.
	var byKey map[string][]*Event
	for _, ev := range evs {
		k := string(ev.GetKv().GetKey())
		if _, ok := h.mu.keyWatchers[k]; ok {
			if byKey == nil {
				byKey = map[string][]*Event{}
			}
			byKey[k] = append(byKey[k], ev)
		}
	}
	for k, kevs := range byKey {
		for w := range h.mu.keyWatchers[k] {
			if kevs[0].GetKv().GetModRevision() >= w.minRev {
				send(w, kevs)
			} else if own := needed(kevs, w.minRev); len(own) > 0 {
				send(w, own)
			}
		}
	}
	if len(h.mu.spanWatchers) == 0 {
		h.delivered.Add(delivered)
		return
	}
	var per map[*watcher][]*Event
	for _, ev := range evs {
		k := ev.GetKv().GetKey()
		for w := range h.mu.spanWatchers {
			if ev.GetKv().GetModRevision() >= w.minRev && w.containsUser(k) {
				if per == nil {
					per = map[*watcher][]*Event{}
				}
				per[w] = append(per[w], ev)
			}
		}
	}
	for w, wevs := range per {
		send(w, wevs)
	}
	h.delivered.Add(delivered)
}

// needed returns the changes of evs (in revision order) at or above rev.
func needed(evs []*Event, rev int64) []*Event {
	i := sort.Search(len(evs), func(i int) bool { return evs[i].GetKv().GetModRevision() >= rev })
	return evs[i:]
}

// NoteCompacted tells the hub of a compaction at rev (the gateway that
// served it calls this before answering, so a watch through it right
// after sees it; other nodes hear of it through the range feeds).
func (h *Hub) NoteCompacted(rev int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.noteCompactedLocked(rev)
}

// noteCompactedLocked drops the ring's changes at or below rev.
func (h *Hub) noteCompactedLocked(rev int64) {
	if rev <= h.mu.compacted {
		return
	}
	h.mu.compacted = rev
	n := sort.Search(len(h.mu.ring), func(i int) bool { return h.mu.ring[i].GetKv().GetModRevision() > rev })
	h.dropRingLocked(n)
	h.mu.ringStart = min(max(h.mu.ringStart, rev), h.mu.frontier)
}

// appendRingLocked adds released changes to the ring and drops its oldest
// revisions past the bounds.
func (h *Hub) appendRingLocked(evs []*Event) {
	for _, ev := range evs {
		h.mu.ring = append(h.mu.ring, ev)
		h.mu.ringBytes += eventBytes(ev)
		k := string(ev.GetKv().GetKey())
		h.mu.ringByKey[k] = append(h.mu.ringByKey[k], ev)
	}
	n, bytes := 0, h.mu.ringBytes
	for n < len(h.mu.ring) && (len(h.mu.ring)-n > maxRingEvents || bytes > maxRingBytes) {
		rev := h.mu.ring[n].GetKv().GetModRevision()
		for n < len(h.mu.ring) && h.mu.ring[n].GetKv().GetModRevision() == rev {
			bytes -= eventBytes(h.mu.ring[n])
			n++
		}
		h.mu.ringStart = rev
	}
	h.dropRingLocked(n)
}

// dropRingLocked drops the ring's n oldest changes.
func (h *Hub) dropRingLocked(n int) {
	if n == 0 {
		return
	}
	for _, ev := range h.mu.ring[:n] {
		h.mu.ringBytes -= eventBytes(ev)
		// The oldest change of the ring is the oldest of its key's too.
		k := string(ev.GetKv().GetKey())
		// The element itself stays as it is (no nil for the collector):
		// ringForLocked hands the key's ring out without copying it. The
		// array lets go of it when an append next grows it.
		if byKey := h.mu.ringByKey[k]; len(byKey) <= 1 {
			delete(h.mu.ringByKey, k)
		} else {
			h.mu.ringByKey[k] = byKey[1:]
		}
	}
	clear(h.mu.ring[:n])
	h.mu.ring = append([]*Event(nil), h.mu.ring[n:]...)
}

func eventBytes(ev *Event) int {
	return 64 + len(ev.GetKv().GetKey()) + len(ev.GetKv().GetValue()) + len(ev.GetPrevKv().GetValue())
}

// unsyncLocked moves w aside: it needs every change from minRev on and
// catches up alone.
func (h *Hub) unsyncLocked(w *watcher, minRev int64) {
	h.removeSyncedLocked(w)
	w.minRev = max(w.minRev, minRev)
	go h.catchUp(w)
}

// unsyncAllLocked moves every synced watcher aside.
func (h *Hub) unsyncAllLocked() {
	var all []*watcher
	for _, set := range h.mu.keyWatchers {
		for w := range set {
			all = append(all, w)
		}
	}
	for w := range h.mu.spanWatchers {
		all = append(all, w)
	}
	for _, w := range all {
		h.unsyncLocked(w, h.mu.frontier+1)
	}
}

func (h *Hub) addSyncedLocked(w *watcher) {
	w.synced = true
	if w.single {
		set := h.mu.keyWatchers[string(w.span.Start[1:])]
		if set == nil {
			set = map[*watcher]struct{}{}
			h.mu.keyWatchers[string(w.span.Start[1:])] = set
		}
		set[w] = struct{}{}
		return
	}
	h.mu.spanWatchers[w] = struct{}{}
}

func (h *Hub) removeSyncedLocked(w *watcher) {
	if !w.synced {
		return
	}
	w.synced = false
	if w.single {
		set := h.mu.keyWatchers[string(w.span.Start[1:])]
		delete(set, w)
		if len(set) == 0 {
			delete(h.mu.keyWatchers, string(w.span.Start[1:]))
		}
		return
	}
	delete(h.mu.spanWatchers, w)
}

// ringCoversLocked reports whether the ring holds every change w needs.
func (h *Hub) ringCoversLocked(w *watcher) bool {
	return h.mu.running && w.minRev-1 >= h.mu.ringStart && w.minRev >= h.mu.compacted
}

// ringForLocked returns the ring's changes that w needs, in order.
func (h *Hub) ringForLocked(w *watcher) []*Event {
	// The ring is in revision order: start at the first change w needs.
	from := func(ring []*Event) []*Event {
		return ring[sort.Search(len(ring), func(i int) bool { return ring[i].GetKv().GetModRevision() >= w.minRev }):]
	}
	var evs []*Event
	shared := false // evs is the ring's own array: copy before a write
	if w.single {
		// The key's ring itself, not a copy: a victim far behind on a hot
		// key asks for thousands of changes at every step of its catch-up.
		// Its capacity ends at its length, so that an append anywhere
		// copies; the ring never writes to the elements it holds
		// (dropRingLocked).
		evs = from(h.mu.ringByKey[string(w.span.Start[1:])])
		evs, shared = evs[:len(evs):len(evs)], true
	} else {
		for _, ev := range from(h.mu.ring) {
			if w.containsUser(ev.GetKv().GetKey()) {
				evs = append(evs, ev)
			}
		}
	}
	// A change at or below a compaction this hub heard of (from the
	// gateway that served it, before the feed brought the change) reaches
	// a watcher joining now without its previous version, which the
	// compaction removed (etcd's watch from the compacted revision sends
	// none). Watchers synced before get the change live, with it.
	for i, ev := range evs {
		if ev.GetKv().GetModRevision() > h.mu.compacted {
			break
		}
		if ev.GetPrevKv() != nil {
			if shared {
				evs, shared = slices.Clone(evs), false
			}
			evs[i] = &Event{Event: &kvpb.Event{Type: ev.GetType(), Kv: ev.GetKv()}}
		}
	}
	return evs
}

// tryJoinLocked makes w synced if the ring holds every change it needs,
// queueing those it holds. False if w must read the history first, or its
// stream has no room for what the ring holds for it.
func (h *Hub) tryJoinLocked(w *watcher) bool {
	if !h.ringCoversLocked(w) {
		return false
	}
	evs := h.ringForLocked(w)
	if len(evs) > 0 && !w.s.offer(Response{WatchID: w.id, Events: evs, Revision: h.mu.frontier, Opaque: w.opaque}) {
		return false
	}
	h.delivered.Add(int64(len(evs)))
	h.addSyncedLocked(w)
	return true
}

// catchUp brings w from its minRev to the hub's frontier, from the ring
// while it holds what w needs (waiting for room in w's stream), else by
// reading its span's history from the ranges, then joins it to the synced
// watchers.
func (h *Hub) catchUp(w *watcher) {
	ctx := w.s.ctx
	for failures := 0; ; {
		if failures > 0 {
			select {
			case <-time.After(min(minRetryBackoff<<min(failures, 10), maxRetryBackoff)):
			case <-ctx.Done():
				return
			}
		}
		if err := h.ensureRunning(ctx); err != nil {
			failures++
			continue
		}
		h.mu.Lock()
		if w.canceled || ctx.Err() != nil {
			h.mu.Unlock()
			return
		}
		if h.tryJoinLocked(w) {
			h.mu.Unlock()
			return
		}
		if h.ringCoversLocked(w) {
			// Its stream is full: hand over what the ring holds for it
			// once there is room, then try to join again with less to
			// hand over (etcd's victims, retried from memory).
			evs, rev := h.ringForLocked(w), h.mu.frontier
			h.mu.Unlock()
			if len(evs) > 0 && !w.s.push(ctx, Response{WatchID: w.id, Events: evs, Revision: rev, Opaque: w.opaque}) {
				return
			}
			h.delivered.Add(int64(len(evs)))
			h.mu.Lock()
			w.minRev = max(w.minRev, rev+1)
			h.mu.Unlock()
			failures = 0
			continue
		}
		from, to := w.minRev-1, h.mu.frontier
		h.mu.Unlock()
		if to <= from {
			failures++ // the hub restarted below w; wait for it
			continue
		}
		err := h.readHistory(ctx, w, from, to)
		var ce *CompactedError
		switch {
		case errors.As(err, &ce):
			h.mu.Lock()
			h.dropLocked(w)
			h.mu.Unlock()
			w.s.forget(w.id)
			w.s.push(ctx, Response{WatchID: w.id, CompactRevision: ce.Revision, Canceled: true, Opaque: w.opaque})
			return
		case err != nil && ctx.Err() == nil:
			failures++
			h.log.Debug("watcher catch-up failed; trying again", "watch", w.id, "err", err)
		default:
			failures = 0
		}
	}
}

// readHistory queues for w the changes of its span in (from, to], read
// from the ranges, waiting for room in its stream.
func (h *Hub) readHistory(ctx context.Context, w *watcher, from, to int64) error {
	select {
	case h.catchUps <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-h.catchUps }()
	m := NewMerger(MergerConfig{Source: h.src, Span: w.span, From: from, To: to, PrevKV: true, Logger: h.log})
	return m.Run(ctx, func(b Batch) error {
		if len(b.Events) > 0 {
			if !w.s.push(ctx, Response{WatchID: w.id, Events: wrap(b.Events), Revision: b.Frontier, Opaque: w.opaque}) {
				return ctx.Err()
			}
			h.delivered.Add(int64(len(b.Events)))
		}
		h.mu.Lock()
		w.minRev = max(w.minRev, b.Frontier+1)
		h.mu.Unlock()
		return nil
	})
}

// dropLocked cancels w in the hub: it gets nothing more.
func (h *Hub) dropLocked(w *watcher) {
	if w.canceled {
		return
	}
	w.canceled = true
	h.removeSyncedLocked(w)
	if w.counted {
		h.mu.watchers--
		if h.mu.watchers == 0 {
			h.mu.idleSince = time.Now()
		}
	}
}

// progressAt waits until the hub's frontier is at least the cluster's
// current revision and returns the frontier then.
func (h *Hub) progressAt(ctx context.Context) (int64, error) {
	if err := h.ensureRunning(ctx); err != nil {
		return 0, err
	}
	cur, err := h.src.Current(ctx)
	if err != nil {
		return 0, err
	}
	h.mu.Lock()
	if h.mu.frontier >= cur {
		f := h.mu.frontier
		h.mu.Unlock()
		return f, nil
	}
	p := progressWait{rev: cur, done: make(chan int64, 1)}
	h.mu.progress = append(h.mu.progress, p)
	m := h.mu.merger
	h.mu.Unlock()
	m.Resolve(cur)
	select {
	case f := <-p.done:
		return f, nil
	case <-ctx.Done():
		return 0, ctx.Err()
	}
}
