package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"sort"
	"time"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
)

// Source is how a merger reaches ranges. Implementations must be safe for
// concurrent use.
type Source interface {
	// Covering returns the user ranges holding span's keys, in key order
	// and without a gap; fresh reloads them from the meta range first.
	Covering(ctx context.Context, span keys.Span, fresh bool) ([]*metapb.RangeDescriptor, error)
	// OpenFeed opens req's feed on the leader of range d and returns once
	// the leader accepted it. Errors are *kvpb.Error where the range
	// answered (NOT_LEADER after trying its replicas, KEY_MISMATCH,
	// RANGE_NOT_FOUND, COMPACTED with CompactRevision), else transport or
	// context errors.
	OpenFeed(ctx context.Context, d *metapb.RangeDescriptor, req *rpcpb.RangeFeedCreate) (FeedStream, error)
	// Current returns the cluster's newest revision.
	Current(ctx context.Context) (int64, error)
}

// FeedStream is one open range feed. Recv is called from one goroutine;
// Resolve and Close may be called from another.
type FeedStream interface {
	// Recv returns the feed's next message. A message with an error is the
	// last; io.EOF follows a bounded feed's end.
	Recv() (*rpcpb.RangeFeedEvent, error)
	// Resolve asks the feed to resolve up to rev (see rpcpb.RangeFeedClose).
	Resolve(rev int64) error
	// Close ends the feed.
	Close()
}

// CompactedError ends a merger whose span's history above its start was
// compacted away: Revision is the compaction's.
type CompactedError struct{ Revision int64 }

func (e *CompactedError) Error() string {
	return fmt.Sprintf("watch: required revision has been compacted (compacted at %d)", e.Revision)
}

// Batch is what a merger releases: the changes with revisions in
// (previous Frontier, Frontier], in revision order (the changes of one
// revision together), with user keys. Events may be empty when only the
// frontier moved. The receiver must not modify the events: a hub shares
// them between watchers.
type Batch struct {
	Events   []*kvpb.Event
	Frontier int64
}

// MergerConfig configures a Merger.
type MergerConfig struct {
	Source Source
	// Span is the span followed (global keys, non-empty End).
	Span keys.Span
	// From is the revision above which changes are given; To, if > 0, the
	// revision after which the merger ends.
	From, To int64
	PrevKV   bool
	Logger   *slog.Logger

	// stepped, for tests, is called after Run handled each message;
	// reask, if set, replaces reaskInterval.
	stepped func()
	reask   time.Duration
}

// Limits of a merger.
const (
	// maxPendingEvents bounds the changes a merger holds while a slower
	// range's resolved revision keeps them from release; past it Run
	// fails (RESOURCE_EXHAUSTED) and its owner starts again from its
	// frontier.
	maxPendingEvents = 200000
	// minRetryBackoff and maxRetryBackoff bound the wait before a merger
	// opens a failed range feed again.
	minRetryBackoff = 20 * time.Millisecond
	maxRetryBackoff = 2 * time.Second
	// reaskInterval is how often a merger repeats a resolve request a
	// range has not answered (its leader may have changed meanwhile).
	reaskInterval = 500 * time.Millisecond
)

// Merger follows the ranges of a span and releases their changes in
// revision order behind their resolved revisions (see the package doc).
type Merger struct {
	cfg     MergerConfig
	resolve chan int64
}

// NewMerger returns a merger; Run starts it.
func NewMerger(cfg MergerConfig) *Merger {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Merger{cfg: cfg, resolve: make(chan int64, 1)}
}

// Resolve asks the merger to bring its frontier up to rev (a revision the
// TSO handed out): it asks every range behind it to resolve. Safe to call
// from any goroutine; requests are merged.
func (m *Merger) Resolve(rev int64) {
	for {
		select {
		case m.resolve <- rev:
			return
		case old := <-m.resolve:
			rev = max(rev, old)
		}
	}
}

// segment is the part of the span one range feed follows.
type segment struct {
	span     keys.Span
	desc     *metapb.RangeDescriptor
	resolved int64 // every change of span at or below it was received
	asked    int64 // the newest Resolve sent on stream
	stream   FeedStream
	done     bool // a bounded feed that ended
	failures int
	cancel   context.CancelFunc
}

// segMsg is what a segment's goroutine tells Run.
type segMsg struct {
	seg    *segment
	stream FeedStream // set once the feed is open
	ev     *rpcpb.RangeFeedEvent
	err    error
	retry  bool // the backoff after a failure is over
}

// Run follows the span until ctx ends (returning its error), the merger
// reaches To (nil), a range reports the span's history compacted
// (*CompactedError) or emit fails (its error). emit is called from Run's
// goroutine, in order.
func (m *Merger) Run(ctx context.Context, emit func(Batch) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	msgs := make(chan segMsg, 64)
	segs := map[*segment]struct{}{}
	defer func() {
		for s := range segs {
			s.cancel()
		}
	}()
	open := func(s *segment) {
		sctx, scancel := context.WithCancel(ctx)
		s.cancel = scancel
		segs[s] = struct{}{}
		go m.follow(sctx, s, msgs)
	}
	// cover opens the segments of span from rev.
	cover := func(span keys.Span, rev int64, fresh bool) error {
		descs, err := m.cfg.Source.Covering(ctx, span, fresh)
		if err != nil {
			return err
		}
		for _, d := range descs {
			sub := span.Intersect(keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()})
			if !sub.Empty() {
				open(&segment{span: sub, desc: d, resolved: rev})
			}
		}
		return nil
	}
	for {
		if err := cover(m.cfg.Span, m.cfg.From, false); err == nil {
			break
		} else if ctx.Err() != nil {
			return ctx.Err()
		}
		select {
		case <-time.After(minRetryBackoff):
		case <-ctx.Done():
			return ctx.Err()
		}
	}

	released := m.cfg.From
	var pending []*kvpb.Event
	want := int64(0) // the newest revision asked for through Resolve
	reask := reaskInterval
	if m.cfg.reask > 0 {
		reask = m.cfg.reask
	}
	tick := time.NewTicker(reask)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case rev := <-m.resolve:
			want = max(want, rev)
		case <-tick.C:
			for s := range segs {
				s.asked = min(s.asked, s.resolved) // ask again, whether or not answered
			}
		case msg := <-msgs:
			s := msg.seg
			if _, ok := segs[s]; !ok {
				if msg.stream != nil {
					msg.stream.Close()
				}
				continue // a segment replaced meanwhile
			}
			switch {
			case msg.stream != nil:
				s.stream, s.failures = msg.stream, 0
			case msg.ev != nil:
				pending = append(pending, msg.ev.GetEvents()...)
				s.resolved = max(s.resolved, msg.ev.GetResolved())
				if len(pending) > maxPendingEvents {
					return kvpb.Errorf(kvpb.ErrorCode_RESOURCE_EXHAUSTED, "watch: %d changes wait for a range to resolve", len(pending))
				}
			case msg.retry:
				delete(segs, s)
				if err := cover(s.span, s.resolved, true); err != nil {
					// Try again later, from the same segment.
					segs[s] = struct{}{}
					go m.backoff(ctx, s, msgs)
				}
			case errors.Is(msg.err, io.EOF):
				s.done, s.resolved = true, max(s.resolved, m.cfg.To)
			default:
				if rev, ok := compactedOf(msg.err); ok {
					return &CompactedError{Revision: rev}
				}
				if ctx.Err() != nil {
					return ctx.Err()
				}
				m.cfg.Logger.Debug("range feed ended; opening it again", "range", s.desc.GetRangeId(), "resolved", s.resolved, "err", msg.err)
				s.cancel()
				if s.stream != nil {
					s.stream.Close()
					s.stream = nil
				}
				s.failures++
				go m.backoff(ctx, s, msgs)
			}
		}
		frontier := int64(-1)
		for s := range segs {
			if frontier < 0 || s.resolved < frontier {
				frontier = s.resolved
			}
		}
		if m.cfg.To > 0 {
			frontier = min(frontier, m.cfg.To)
		}
		if frontier > released {
			var out []*kvpb.Event
			out, pending = take(pending, frontier)
			released = frontier
			if err := emit(Batch{Events: out, Frontier: frontier}); err != nil {
				return err
			}
		}
		if m.cfg.To > 0 && released >= m.cfg.To {
			return nil
		}
		// Ask the ranges behind to resolve up to what waits for them.
		target := want
		for _, ev := range pending {
			target = max(target, ev.GetKv().GetModRevision())
		}
		for s := range segs {
			// One request at a time per range (the last one answered, or
			// forgotten by the tick): a busy keyspace asks each idle
			// range once per round trip, not once per change.
			if s.stream != nil && !s.done && s.resolved < target && s.asked < target && s.resolved >= s.asked {
				if err := s.stream.Resolve(target); err == nil {
					s.asked = target
				}
			}
		}
		if m.cfg.stepped != nil {
			m.cfg.stepped()
		}
	}
}

// take removes from pending, and returns in revision order, the changes at
// or below rev.
func take(pending []*kvpb.Event, rev int64) (out, rest []*kvpb.Event) {
	sort.SliceStable(pending, func(i, j int) bool {
		return pending[i].GetKv().GetModRevision() < pending[j].GetKv().GetModRevision()
	})
	n := sort.Search(len(pending), func(i int) bool { return pending[i].GetKv().GetModRevision() > rev })
	out = pending[:n:n]
	rest = append([]*kvpb.Event(nil), pending[n:]...)
	return out, rest
}

// follow opens s's feed and passes on what it says until it ends.
func (m *Merger) follow(ctx context.Context, s *segment, msgs chan<- segMsg) {
	send := func(msg segMsg) bool {
		select {
		case msgs <- msg:
			return true
		case <-ctx.Done():
			return false
		}
	}
	req := &rpcpb.RangeFeedCreate{RangeId: s.desc.GetRangeId(), StartKey: s.span.Start, EndKey: s.span.End, FromRevision: s.resolved, ToRevision: m.cfg.To, PrevKv: m.cfg.PrevKV}
	st, err := m.cfg.Source.OpenFeed(ctx, s.desc, req)
	if err != nil {
		send(segMsg{seg: s, err: err})
		return
	}
	if !send(segMsg{seg: s, stream: st}) {
		st.Close()
		return
	}
	for {
		ev, err := st.Recv()
		if err == nil && ev.GetError() != nil {
			err = ev.GetError()
			if ev.GetError().GetCode() == kvpb.ErrorCode_COMPACTED {
				err = &CompactedError{Revision: ev.GetCompactRevision()}
			}
		}
		if err != nil {
			send(segMsg{seg: s, err: err})
			return
		}
		if !send(segMsg{seg: s, ev: ev}) {
			return
		}
	}
}

// backoff waits before s's span is looked up and opened again.
func (m *Merger) backoff(ctx context.Context, s *segment, msgs chan<- segMsg) {
	d := min(minRetryBackoff<<min(s.failures, 10), maxRetryBackoff)
	d = d/2 + time.Duration(rand.Int64N(int64(d/2)+1))
	select {
	case <-time.After(d):
	case <-ctx.Done():
		return
	}
	select {
	case msgs <- segMsg{seg: s, retry: true}:
	case <-ctx.Done():
	}
}

// compactedOf reports the compaction revision of a COMPACTED error.
func compactedOf(err error) (int64, bool) {
	var ce *CompactedError
	if errors.As(err, &ce) {
		return ce.Revision, true
	}
	return 0, false
}
