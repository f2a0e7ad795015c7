package watch

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/datadriven"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
)

// fakeSource is a keyspace of scripted ranges: the test says what each
// range's feed sends, and sees what the merger asks of them.
type fakeSource struct {
	mu      sync.Mutex
	ranges  []*metapb.RangeDescriptor
	feeds   map[string]*fakeFeed // the newest feed on each range and span start, "<id>/<start>"
	refuse  map[uint64]string    // ranges whose feeds fail to open, with the error code
	log     []string             // opens, in order
	resolve []string             // resolve requests since last taken
	opened  chan struct{}
	current int64 // what Current answers
}

type fakeFeed struct {
	src     *fakeSource
	rangeID uint64
	ch      chan *rpcpb.RangeFeedEvent
	once    sync.Once
	closed  chan struct{}
}

func (f *fakeFeed) Recv() (*rpcpb.RangeFeedEvent, error) {
	select {
	case ev := <-f.ch:
		return ev, nil
	case <-f.closed:
		return nil, context.Canceled
	}
}

func (f *fakeFeed) Resolve(rev int64) error {
	f.src.mu.Lock()
	defer f.src.mu.Unlock()
	f.src.resolve = append(f.src.resolve, fmt.Sprintf("resolve r%d up to %d", f.rangeID, rev))
	return nil
}

func (f *fakeFeed) Close() { f.once.Do(func() { close(f.closed) }) }

func (s *fakeSource) Covering(_ context.Context, span keys.Span, _ bool) ([]*metapb.RangeDescriptor, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*metapb.RangeDescriptor
	for _, d := range s.ranges {
		if !span.Intersect(keys.Span{Start: d.GetStartKey(), End: d.GetEndKey()}).Empty() {
			out = append(out, d)
		}
	}
	return out, nil
}

func (s *fakeSource) OpenFeed(_ context.Context, d *metapb.RangeDescriptor, req *rpcpb.RangeFeedCreate) (FeedStream, error) {
	s.mu.Lock()
	defer func() {
		s.mu.Unlock()
		s.opened <- struct{}{}
	}()
	show := func(k []byte) string {
		if string(k) == string(keys.UserSpan.End) {
			return ""
		}
		return string(keys.StripUser(k))
	}
	line := fmt.Sprintf("open r%d [%s,%s) from %d", d.GetRangeId(), show(req.GetStartKey()), show(req.GetEndKey()), req.GetFromRevision())
	if req.GetToRevision() > 0 {
		line += fmt.Sprintf(" to %d", req.GetToRevision())
	}
	if code, ok := s.refuse[d.GetRangeId()]; ok {
		s.log = append(s.log, line+": refused "+code)
		if code == "COMPACTED" {
			return nil, &CompactedError{Revision: req.GetFromRevision() + 1}
		}
		return nil, kvpb.Errorf(kvpb.ErrorCode(kvpb.ErrorCode_value[code]), "refused")
	}
	s.log = append(s.log, line)
	f := &fakeFeed{src: s, rangeID: d.GetRangeId(), ch: make(chan *rpcpb.RangeFeedEvent), closed: make(chan struct{})}
	s.feeds[fmt.Sprintf("%d/%s", d.GetRangeId(), show(req.GetStartKey()))] = f
	return f, nil
}

func (s *fakeSource) Current(context.Context) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current, nil
}

// user maps a test's key ("a"; "" for the end of the keyspace) to a global
// key.
func user(k string) []byte {
	if k == "" {
		return keys.UserSpan.End
	}
	return keys.User([]byte(k))
}

// mergerHarness drives one Merger.
type mergerHarness struct {
	src      *fakeSource
	steps    chan struct{}
	released []string
	relMu    sync.Mutex
	done     chan error
	cancel   context.CancelFunc
	m        *Merger
}

func (h *mergerHarness) waitStep(t *testing.T) {
	t.Helper()
	select {
	case <-h.steps:
	case err := <-h.done:
		h.done <- err
	case <-time.After(10 * time.Second):
		t.Fatal("the merger did not take the message")
	}
}

func (h *mergerHarness) waitOpens(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-h.src.opened:
		case <-time.After(10 * time.Second):
			t.Fatal("the merger did not open a feed")
		}
	}
}

// output returns, and forgets, what happened since the last command.
func (h *mergerHarness) output() string {
	var b strings.Builder
	h.src.mu.Lock()
	sort.Strings(h.src.log) // opened concurrently
	for _, l := range h.src.log {
		fmt.Fprintln(&b, l)
	}
	sort.Strings(h.src.resolve) // asked in map order: one line per range
	for _, l := range h.src.resolve {
		fmt.Fprintln(&b, l)
	}
	h.src.log, h.src.resolve = nil, nil
	h.src.mu.Unlock()
	h.relMu.Lock()
	for _, l := range h.released {
		fmt.Fprintln(&b, l)
	}
	h.released = nil
	h.relMu.Unlock()
	select {
	case err := <-h.done:
		fmt.Fprintf(&b, "merger ended: %v\n", err)
	default:
	}
	if b.Len() == 0 {
		return "nothing\n"
	}
	return b.String()
}

func TestMergerDatadriven(t *testing.T) {
	datadriven.Walk(t, "testdata/merger", func(t *testing.T, path string) {
		h := &mergerHarness{src: &fakeSource{feeds: map[string]*fakeFeed{}, refuse: map[uint64]string{}, opened: make(chan struct{}, 100)}, steps: make(chan struct{}, 100), done: make(chan error, 1)}
		defer func() {
			if h.cancel != nil {
				h.cancel()
			}
		}()
		datadriven.RunTest(t, path, func(t *testing.T, td *datadriven.TestData) string {
			arg := func(name string) string {
				for _, a := range td.CmdArgs {
					if a.Key == name && len(a.Vals) > 0 {
						return a.Vals[0]
					}
				}
				return ""
			}
			num := func(name string) int64 {
				n, _ := strconv.ParseInt(arg(name), 10, 64)
				return n
			}
			switch td.Cmd {
			case "ranges":
				// One range per line: "<id> <start> <end>" ("" ends the keyspace).
				var rs []*metapb.RangeDescriptor
				for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
					f := strings.Fields(line)
					id, _ := strconv.ParseUint(f[0], 10, 64)
					end := ""
					if len(f) > 2 {
						end = f[2]
					}
					rs = append(rs, &metapb.RangeDescriptor{RangeId: id, StartKey: user(f[1]), EndKey: user(end)})
				}
				h.src.mu.Lock()
				h.src.ranges = rs
				h.src.mu.Unlock()
				return "ok\n"
			case "refuse":
				h.src.mu.Lock()
				if c := arg("code"); c == "" {
					delete(h.src.refuse, uint64(num("range")))
				} else {
					h.src.refuse[uint64(num("range"))] = c
				}
				h.src.mu.Unlock()
				return "ok\n"
			case "start":
				span := keys.Span{Start: keys.UserSpan.Start, End: user(arg("end"))}
				if a := arg("start"); a != "" {
					span.Start = user(a)
				}
				m := NewMerger(MergerConfig{Source: h.src, Span: span, From: num("from"), To: num("to"),
					stepped: func() { h.steps <- struct{}{} }, reask: time.Hour})
				ctx, cancel := context.WithCancel(context.Background())
				h.cancel, h.m = cancel, m
				go func() {
					h.done <- m.Run(ctx, func(b Batch) error {
						var evs []string
						for _, ev := range b.Events {
							evs = append(evs, fmt.Sprintf("%d:%s %s", ev.GetKv().GetModRevision(), ev.GetType(), ev.GetKv().GetKey()))
						}
						h.relMu.Lock()
						h.released = append(h.released, fmt.Sprintf("released up to %d: [%s]", b.Frontier, strings.Join(evs, " ")))
						h.relMu.Unlock()
						return nil
					})
				}()
				n := int(num("opens"))
				h.waitOpens(t, n)
				for range n {
					h.waitStep(t) // each open feed is announced to Run
				}
				return h.output()
			case "send":
				// Lines "<rev> PUT|DELETE <key>", then resolved=N; or error=CODE.
				ev := &rpcpb.RangeFeedEvent{Resolved: num("resolved")}
				if c := arg("error"); c != "" {
					ev = &rpcpb.RangeFeedEvent{Error: &kvpb.Error{Code: kvpb.ErrorCode(kvpb.ErrorCode_value[c])}}
					if c == "COMPACTED" {
						ev.CompactRevision = num("compacted")
					}
				}
				for _, line := range strings.Split(strings.TrimSpace(td.Input), "\n") {
					if line == "" {
						continue
					}
					f := strings.Fields(line)
					rev, _ := strconv.ParseInt(f[0], 10, 64)
					typ := kvpb.Event_PUT
					if f[1] == "DELETE" {
						typ = kvpb.Event_DELETE
					}
					ev.Events = append(ev.Events, &kvpb.Event{Type: typ, Kv: &kvpb.KeyValue{Key: []byte(f[2]), ModRevision: rev}})
				}
				// at names the feed's span start when a range has two.
				h.src.mu.Lock()
				var f *fakeFeed
				for k, ff := range h.src.feeds {
					id, start, _ := strings.Cut(k, "/")
					if id == arg("range") && (arg("at") == "" || arg("at") == start) {
						if f != nil {
							t.Fatalf("range %s has two feeds: say at=", id)
						}
						f = ff
					}
				}
				h.src.mu.Unlock()
				if f == nil {
					t.Fatalf("no feed on range %s", arg("range"))
				}
				select {
				case f.ch <- ev:
				case <-time.After(10 * time.Second):
					t.Fatal("the merger did not read the feed")
				}
				h.waitStep(t)
				if n := int(num("reopens")); n > 0 {
					h.waitStep(t) // the backoff ended: the span is looked up
					h.waitOpens(t, n)
					for range n {
						h.waitStep(t)
					}
				}
				return h.output()
			case "resolve":
				// The owner asks for progress up to rev.
				h.m.Resolve(num("rev"))
				h.waitStep(t)
				return h.output()
			}
			t.Fatalf("unknown command %q", td.Cmd)
			return ""
		})
	})
}
