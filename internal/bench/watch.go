package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The watch benchmark (RunWatch) measures a server's Watch service the way
// etcd's `benchmark watch` does, and checks it as it goes:
//
//  1. Dial WatchConns connections to WatchEndpoint, the one server every
//     watcher is on. With RSS set, read the member's resident memory,
//     open ProbeStreams streams of one idle watcher each and read it
//     again: the difference over ProbeStreams is the memory per stream.
//  2. Create Watchers watchers over Streams streams, watcher g on stream
//     g mod Streams watching key g mod WatchedKeys, and time it until the
//     last created response. With RSS set, read the memory again: the
//     difference over Watchers is the memory per watcher.
//  3. Run the put workload on the watched keys. Every acknowledged put
//     must reach each watcher of its key: the run tracks, per revision,
//     the events still due, and times each event from its put's
//     acknowledgement. After the last put it waits for the events still
//     due (DrainTimeout), then reports what arrived, what is missing and
//     what came twice.
//  4. With SlowStream, open one more stream (on a connection of its own)
//     watching every watched key that never reads, and run the put load
//     again: a slow watcher must not slow down the writes.
//
// The streams are etcd's raw Watch RPC on clientv3's connections, not
// clientv3.Watcher: that one spends two goroutines and a buffer per
// watcher in the load generator, which for 100k watchers on a machine it
// shares with the servers would measure the client more than the server.

// Watch benchmark defaults and bounds.
const (
	// probeKey is the key the memory probe streams watch: outside the
	// key space (keys are digits), so no put reaches them.
	probeKey = "bench-watch-probe"
	// memSettle is how long the server is left alone before a memory
	// reading, so that the work of the step before it has ended.
	memSettle = 2 * time.Second
	// drainPoll is how often the drain checks for the events still due.
	drainPoll = 20 * time.Millisecond
)

// WatchConfig is one watch benchmark. DefaultWatchConfig gives its
// defaults.
type WatchConfig struct {
	// Put is the write load on the watched keys: its Endpoints, Conns,
	// Clients, KeySize, ValueSize, Dist, Total or Duration, Rate, Timeout
	// and Seed apply; its key space is the watched keys (RunWatch sets
	// Workload Put and KeySpace WatchedKeys).
	Put Config
	// WatchEndpoint is the host:port every watcher is on; empty means
	// Put.Endpoints[0].
	WatchEndpoint string
	// Watchers is the number of watchers; Streams the number of watch
	// streams they are spread over (round-robin), and WatchConns the
	// connections the streams are spread over.
	Watchers, Streams, WatchConns int
	// WatchedKeys is the number of distinct keys watched (keys 0 to
	// WatchedKeys-1 of the key space); each has Watchers/WatchedKeys
	// watchers, give or take one.
	WatchedKeys int
	// CreateTimeout bounds creating every watcher, and DrainTimeout the
	// wait after the last put for the events still due.
	CreateTimeout, DrainTimeout time.Duration
	// ProbeStreams is how many one-watcher streams measure the memory per
	// stream; 0 skips it. Only with RSS.
	ProbeStreams int
	// SlowStream runs the put load a second time with one more stream
	// that watches every watched key and never reads.
	SlowStream bool
	// RSS, if set, returns the resident memory in bytes of the member
	// serving the watchers and of the whole cluster, for the memory
	// figures. It is called between steps, never during the put load.
	RSS func() (member, cluster int64, err error)
	// Log, if set, gets a line per step and the put load's progress.
	Log io.Writer
}

// DefaultWatchConfig returns 10,000 watchers over 10 streams on one
// connection, on 1000 keys, with DefaultConfig's put load.
func DefaultWatchConfig() WatchConfig {
	return WatchConfig{
		Put:           DefaultConfig(),
		Watchers:      10_000,
		Streams:       10,
		WatchConns:    1,
		WatchedKeys:   1000,
		CreateTimeout: 5 * time.Minute,
		DrainTimeout:  time.Minute,
		ProbeStreams:  1000,
	}
}

// Validate reports the first problem with c.
func (c *WatchConfig) Validate() error {
	put := c.put()
	if err := put.Validate(); err != nil {
		return err
	}
	switch {
	case c.Watchers < 1:
		return fmt.Errorf("bench: watchers %d < 1", c.Watchers)
	case c.Streams < 1 || c.Streams > c.Watchers:
		return fmt.Errorf("bench: streams %d not in [1, watchers %d]", c.Streams, c.Watchers)
	case c.WatchConns < 1 || c.WatchConns > c.Streams:
		return fmt.Errorf("bench: watch conns %d not in [1, streams %d]", c.WatchConns, c.Streams)
	case c.WatchedKeys < 1 || c.WatchedKeys > c.Watchers:
		return fmt.Errorf("bench: watched keys %d not in [1, watchers %d]", c.WatchedKeys, c.Watchers)
	case c.CreateTimeout <= 0 || c.DrainTimeout <= 0:
		return errors.New("bench: create and drain timeouts must be positive")
	case c.ProbeStreams < 0:
		return fmt.Errorf("bench: probe streams %d < 0", c.ProbeStreams)
	}
	return nil
}

// put is the put load's config as RunWatch runs it.
func (c *WatchConfig) put() Config {
	p := c.Put
	p.Workload, p.KeySpace, p.Preload = Put, c.WatchedKeys, false
	return p
}

// watchersOf returns how many of n watchers watch key k of keys, watcher
// g watching key g mod keys.
func watchersOf(k, n, keys int) int {
	w := n / keys
	if k < n%keys {
		w++
	}
	return w
}

// WatchReport is the outcome of RunWatch. Its JSON form is `concord bench
// watch --json`.
type WatchReport struct {
	WatchEndpoint string   `json:"watch_endpoint"`
	PutEndpoints  []string `json:"put_endpoints"`
	Watchers      int      `json:"watchers"`
	Streams       int      `json:"streams"`
	WatchConns    int      `json:"watch_conns"`
	WatchedKeys   int      `json:"watched_keys"`
	KeySize       int      `json:"key_size"`
	ValueSize     int      `json:"value_size"`
	Clients       int      `json:"clients"`
	Conns         int      `json:"conns"`
	// Rate is the put load's target ops/s; 0 for a closed loop.
	Rate float64 `json:"target_rate,omitempty"`

	// CreateSec is from the first create request sent to the last created
	// response received.
	CreateSec float64 `json:"create_s"`

	// Puts is the put load while every watcher watched.
	Puts *Report `json:"puts"`
	// Expected is the events due, over both put loads with SlowStream:
	// for each acknowledged put, the number
	// of watchers of its key. Delivered counts the events received for
	// acknowledged puts, at most one per watcher and revision; Missing =
	// Expected - Delivered, what had not arrived DrainTimeout after the
	// last put. Duplicates are events a watcher got for a revision at or
	// below one it had already got (twice, or out of order), WrongKey
	// events for a key the watcher does not watch, and Unacked events of
	// puts whose acknowledgement the client never got (a timeout whose
	// put committed anyway): none of the three counts as delivered.
	Expected   int64 `json:"events_expected"`
	Delivered  int64 `json:"events_delivered"`
	Missing    int64 `json:"events_missing"`
	Duplicates int64 `json:"events_duplicate,omitempty"`
	WrongKey   int64 `json:"events_wrong_key,omitempty"`
	Unacked    int64 `json:"events_unacked,omitempty"`
	// DeliverySec is from the first put's start to the last event
	// received of the first put load (the one without SlowStream);
	// EventsPerSec is the events delivered by then over it.
	DeliverySec  float64 `json:"delivery_s"`
	EventsPerSec float64 `json:"events_per_s"`
	// Latency is from a put's acknowledgement to each of its events'
	// arrival. An event that came before its put's acknowledgement
	// counts as 0 (the floor of 1 µs) and in BeforeAck.
	Latency   Latency `json:"delivery_latency"`
	BeforeAck int64   `json:"events_before_ack,omitempty"`
	// LatencyFromPut is from a put's sending to each of its events'
	// arrival: the write's commit and the watch's delivery together,
	// never below 0. On one machine an event often beats its put's
	// acknowledgement, and then only this one says how long it took.
	LatencyFromPut Latency `json:"delivery_latency_from_put"`

	// SlowStream is the put load run again with one more stream watching
	// every watched key that never reads (WatchConfig.SlowStream).
	SlowStream *Report `json:"puts_with_slow_stream,omitempty"`

	// The memory of the member serving the watchers (and of the whole
	// cluster) with RSS set: resident bytes before the probe streams,
	// after them and after the watchers; per stream is the probe
	// streams' difference over their number (one idle watcher each
	// included), per watcher the watchers' over theirs (their Streams
	// streams included).
	Memory *WatchMemory `json:"memory,omitempty"`

	// StreamErrors counts watch streams that failed, by gRPC code, with
	// a sample message each.
	StreamErrors       map[string]int64  `json:"stream_errors,omitempty"`
	StreamErrorSamples map[string]string `json:"stream_error_samples,omitempty"`
}

// WatchMemory is the memory figures of a WatchReport.
type WatchMemory struct {
	ProbeStreams         int     `json:"probe_streams"`
	MemberBase           int64   `json:"member_rss_base_bytes"`
	MemberAfterStreams   int64   `json:"member_rss_after_streams_bytes"`
	MemberAfterWatchers  int64   `json:"member_rss_after_watchers_bytes"`
	ClusterBase          int64   `json:"cluster_rss_base_bytes"`
	ClusterAfterStreams  int64   `json:"cluster_rss_after_streams_bytes"`
	ClusterAfterWatchers int64   `json:"cluster_rss_after_watchers_bytes"`
	PerStream            float64 `json:"member_bytes_per_stream"`
	PerWatcher           float64 `json:"member_bytes_per_watcher"`
	ClusterPerStream     float64 `json:"cluster_bytes_per_stream"`
	ClusterPerWatcher    float64 `json:"cluster_bytes_per_watcher"`
}

// fill computes the per-stream and per-watcher figures from the readings.
func (m *WatchMemory) fill(watchers int) {
	if m.ProbeStreams > 0 {
		m.PerStream = float64(m.MemberAfterStreams-m.MemberBase) / float64(m.ProbeStreams)
		m.ClusterPerStream = float64(m.ClusterAfterStreams-m.ClusterBase) / float64(m.ProbeStreams)
	}
	m.PerWatcher = float64(m.MemberAfterWatchers-m.MemberAfterStreams) / float64(watchers)
	m.ClusterPerWatcher = float64(m.ClusterAfterWatchers-m.ClusterAfterStreams) / float64(watchers)
}

// WriteText writes r for a human.
func (r *WatchReport) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "watchers   %d over %d streams, %d conns, on %s; %d keys watched (%d-byte keys, %d-byte values)\n",
		r.Watchers, r.Streams, r.WatchConns, r.WatchEndpoint, r.WatchedKeys, r.KeySize, r.ValueSize)
	fmt.Fprintf(&b, "create     %.2fs (%.0f watchers/s)\n", r.CreateSec, float64(r.Watchers)/max(r.CreateSec, 1e-9))
	if r.Puts != nil {
		fmt.Fprintf(&b, "puts       %d ok, %d errors in %.2fs: %.1f puts/s, %d clients over %d conns, %d endpoints\n",
			r.Puts.Ops, r.Puts.Errors, r.Puts.DurationSec, r.Puts.Throughput, r.Clients, r.Conns, len(r.PutEndpoints))
		writeLatency(&b, "put lat   ", r.Puts.Latency)
	}
	fmt.Fprintf(&b, "events     %d delivered of %d expected (%d missing) in %.2fs: %.1f events/s\n",
		r.Delivered, r.Expected, r.Missing, r.DeliverySec, r.EventsPerSec)
	if r.Duplicates+r.WrongKey+r.Unacked+r.BeforeAck > 0 {
		fmt.Fprintf(&b, "           %d duplicate or out of order, %d for a key not watched, %d of unacknowledged puts, %d before their put's ack\n",
			r.Duplicates, r.WrongKey, r.Unacked, r.BeforeAck)
	}
	writeLatency(&b, "delivery  ", r.Latency)
	writeLatency(&b, " from put ", r.LatencyFromPut)
	if r.SlowStream != nil {
		ratio := 0.0
		if r.Puts != nil && r.Puts.Throughput > 0 {
			ratio = r.SlowStream.Throughput / r.Puts.Throughput
		}
		fmt.Fprintf(&b, "slow       with one non-reading stream: %.1f puts/s (%.2f× without), %d errors\n",
			r.SlowStream.Throughput, ratio, r.SlowStream.Errors)
	}
	if m := r.Memory; m != nil {
		fmt.Fprintf(&b, "memory     member %s -> %s (%d streams) -> %s (watchers): %.0f B/stream, %.0f B/watcher\n",
			FormatBytes(m.MemberBase), FormatBytes(m.MemberAfterStreams), m.ProbeStreams, FormatBytes(m.MemberAfterWatchers), m.PerStream, m.PerWatcher)
		fmt.Fprintf(&b, "           cluster %s -> %s -> %s: %.0f B/stream, %.0f B/watcher\n",
			FormatBytes(m.ClusterBase), FormatBytes(m.ClusterAfterStreams), FormatBytes(m.ClusterAfterWatchers), m.ClusterPerStream, m.ClusterPerWatcher)
	}
	for code, n := range r.StreamErrors {
		fmt.Fprintf(&b, "stream err %s: %d (e.g. %s)\n", code, n, r.StreamErrorSamples[code])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// tracker accounts for the events due per revision and times their
// delivery. Safe for concurrent use: the put workers and the streams'
// receivers share it.
type tracker struct {
	watchers, keys int
	shards         [trackerShards]trackerShard
	// outstanding is the events still due for acknowledged puts;
	// expected all those due so far, delivered those received.
	outstanding, expected, delivered atomic.Int64
	// beforeAck counts events that came before their put's ack.
	beforeAck atomic.Int64
	// earlyMu guards early, the latencies from their put's sending of
	// the events that came before its ack.
	earlyMu   sync.Mutex
	early     *Histogram
	lastEvent atomic.Int64 // unix nanoseconds of the last event received
}

// trackerShards spreads the revisions over locks, so the receivers of
// many streams rarely wait for each other.
const trackerShards = 64

type trackerShard struct {
	mu   sync.Mutex
	revs map[int64]*revEntry // guarded by mu
}

// revEntry is one revision's account.
type revEntry struct {
	acked     bool
	sent, ack time.Time
	// early are the arrival times of the events that came before the ack.
	early []time.Time
	// left is the events still due: +fan-out at the ack, -1 per event.
	// Entries stay until the run ends (one per put, a few tens of bytes),
	// so an event beyond the fan-out is told from one of a put never
	// acknowledged.
	left int
}

func newTracker(watchers, keys int) *tracker {
	t := &tracker{watchers: watchers, keys: keys, early: NewHistogram()}
	for i := range t.shards {
		t.shards[i].revs = map[int64]*revEntry{}
	}
	return t
}

func (t *tracker) shard(rev int64) *trackerShard { return &t.shards[uint64(rev)%trackerShards] }

// acked records the acknowledgement at now of a put of key k at rev, sent
// at sent.
func (t *tracker) acked(rev int64, k int, sent, now time.Time) {
	fan := watchersOf(k, t.watchers, t.keys)
	t.expected.Add(int64(fan))
	s := t.shard(rev)
	s.mu.Lock()
	e := s.revs[rev]
	if e == nil {
		e = &revEntry{}
		s.revs[rev] = e
	}
	e.acked, e.sent, e.ack = true, sent, now
	early := e.early
	e.early = nil
	e.left += fan
	s.mu.Unlock()
	// The early events were for a put not yet acknowledged; they count
	// as delivered now, with a latency of 0 from the ack.
	n := int64(len(early))
	t.outstanding.Add(int64(fan) - n)
	t.delivered.Add(n)
	t.beforeAck.Add(n)
	if n > 0 {
		t.earlyMu.Lock()
		for _, at := range early {
			t.early.Record(at.Sub(sent))
		}
		t.earlyMu.Unlock()
	}
}

// event records one event of rev, received at now: its latency from the
// ack into h, from the sending into hs.
func (t *tracker) event(rev int64, now time.Time, h, hs *Histogram) {
	t.lastEvent.Store(now.UnixNano())
	s := t.shard(rev)
	s.mu.Lock()
	e := s.revs[rev]
	if e == nil {
		e = &revEntry{}
		s.revs[rev] = e
	}
	e.left--
	acked, sent, ack := e.acked, e.sent, e.ack
	if !acked {
		e.early = append(e.early, now)
	}
	s.mu.Unlock()
	if acked {
		t.outstanding.Add(-1)
		t.delivered.Add(1)
		h.Record(now.Sub(ack))
		hs.Record(now.Sub(sent))
	}
}

// account sums what the entries left hold: events still due for
// acknowledged puts, events beyond a put's fan-out, and events of puts
// never acknowledged.
func (t *tracker) account() (missing, extra, unacked int64) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, e := range s.revs {
			switch {
			case !e.acked:
				unacked += int64(len(e.early))
			case e.left > 0:
				missing += int64(e.left)
			case e.left < 0:
				extra += int64(-e.left)
			}
		}
		s.mu.Unlock()
	}
	return missing, extra, unacked
}

// drain waits until no event is due, ctx ends or timeout passes.
func (t *tracker) drain(ctx context.Context, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for t.outstanding.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(drainPoll)
	}
}

// createReq is one watcher to create on a stream.
type createReq struct {
	id       int64
	key, end string
}

// watchSet is a set of raw etcd watch streams and their receivers.
type watchSet struct {
	streams []*watchStream
	wg      sync.WaitGroup // the receivers
	// created counts the created responses; all is closed when it reaches
	// want.
	created atomic.Int64
	want    int64
	all     chan struct{}

	mu      sync.Mutex
	refused string // the first refused create's reason; guarded by mu
}

// watchStream is one stream and its receiver's private state, read by
// others only once the receiver has ended.
type watchStream struct {
	stream pb.Watch_WatchClient
	cancel context.CancelFunc
	// hist and sentHist are the latencies from the put's ack and sending.
	hist, sentHist *Histogram
	// last is the highest revision each of the stream's watchers got, by
	// watch id.
	last           map[int64]int64
	dups, wrongKey int64
	err            error // why Recv ended
}

// openWatchSet opens n streams over clis (stream i on clis[i mod len])
// and sends each the creates plan(i) gives, from a goroutine per stream;
// a receiver per stream accounts for the events with t (nil: events are
// ignored). Watch id g+1 is watcher g, on key g mod t.keys. It returns
// once every watcher is created, or with an error when one was refused or
// timeout passed. The caller closes the set, even on error.
func openWatchSet(ctx context.Context, clis []*clientv3.Client, n int, plan func(i int) []createReq,
	t *tracker, keySize int, timeout time.Duration) (*watchSet, time.Duration, error) {
	ws := &watchSet{all: make(chan struct{})}
	plans := make([][]createReq, n)
	for i := range plans {
		plans[i] = plan(i)
		ws.want += int64(len(plans[i]))
	}
	for i := 0; i < n; i++ {
		sctx, cancel := context.WithCancel(ctx)
		st, err := pb.NewWatchClient(clis[i%len(clis)].ActiveConnection()).Watch(sctx)
		if err != nil {
			cancel()
			return ws, 0, fmt.Errorf("bench: open watch stream: %w", err)
		}
		s := &watchStream{stream: st, cancel: cancel, hist: NewHistogram(), sentHist: NewHistogram(), last: map[int64]int64{}}
		ws.streams = append(ws.streams, s)
	}
	start := time.Now()
	sendErrs := make(chan error, n)
	for i, s := range ws.streams {
		ws.wg.Add(1)
		go func() {
			defer ws.wg.Done()
			ws.recv(s, t, keySize)
		}()
		go func() {
			for _, c := range plans[i] {
				req := &pb.WatchCreateRequest{Key: []byte(c.key), WatchId: c.id}
				if c.end != "" {
					req.RangeEnd = []byte(c.end)
				}
				if err := s.stream.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
					sendErrs <- fmt.Errorf("bench: create watch %d: %w", c.id, err)
					return
				}
			}
		}()
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-ws.all:
	case err := <-sendErrs:
		return ws, 0, err
	case <-timer.C:
		return ws, 0, fmt.Errorf("bench: %d of %d watchers created after %v", ws.created.Load(), ws.want, timeout)
	case <-ctx.Done():
		return ws, 0, ctx.Err()
	}
	took := time.Since(start)
	ws.mu.Lock()
	refused := ws.refused
	ws.mu.Unlock()
	if refused != "" {
		return ws, 0, errors.New("bench: " + refused)
	}
	return ws, took, nil
}

// recv reads s until it ends, accounting for its responses.
func (ws *watchSet) recv(s *watchStream, t *tracker, keySize int) {
	for {
		resp, err := s.stream.Recv()
		if err != nil {
			s.err = err
			return
		}
		switch {
		case resp.Created:
			if resp.Canceled {
				ws.mu.Lock()
				if ws.refused == "" {
					ws.refused = fmt.Sprintf("watch %d refused: %s", resp.WatchId, resp.CancelReason)
				}
				ws.mu.Unlock()
			}
			if ws.created.Add(1) == ws.want {
				close(ws.all)
			}
			continue
		case resp.Canceled:
			s.err = fmt.Errorf("bench: watch %d canceled by the server: %q (compact revision %d)", resp.WatchId, resp.CancelReason, resp.CompactRevision)
			return
		case len(resp.Events) == 0 || t == nil:
			continue
		}
		now := time.Now()
		want := Key(int(resp.WatchId-1)%t.keys, keySize)
		for _, ev := range resp.Events {
			rev := ev.GetKv().GetModRevision()
			switch {
			case string(ev.GetKv().GetKey()) != want:
				s.wrongKey++
			case rev <= s.last[resp.WatchId]:
				s.dups++
			default:
				s.last[resp.WatchId] = rev
				t.event(rev, now, s.hist, s.sentHist)
			}
		}
	}
}

// close ends every stream and waits for the receivers; calling it again
// does nothing more.
func (ws *watchSet) close() {
	for _, s := range ws.streams {
		s.cancel()
	}
	ws.wg.Wait()
}

// settledRSS reads rss once the server has been left alone for memSettle.
func settledRSS(ctx context.Context, rss func() (int64, int64, error)) (int64, int64, error) {
	select {
	case <-time.After(memSettle):
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
	m, c, err := rss()
	if err != nil {
		return 0, 0, fmt.Errorf("bench: read server memory: %w", err)
	}
	return m, c, nil
}

// RunWatch runs the watch benchmark described by cfg (see the steps
// above) and returns its report. While the puts run it writes a progress
// line a second to cfg.Log. Cancelling ctx ends it early, with an error.
func RunWatch(ctx context.Context, cfg WatchConfig) (*WatchReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	put := cfg.put()
	ep := cfg.WatchEndpoint
	if ep == "" {
		ep = put.Endpoints[0]
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	rep := &WatchReport{
		WatchEndpoint: ep, PutEndpoints: put.Endpoints, Watchers: cfg.Watchers, Streams: cfg.Streams,
		WatchConns: cfg.WatchConns, WatchedKeys: cfg.WatchedKeys, KeySize: put.KeySize, ValueSize: put.ValueSize,
		Clients: put.Clients, Conns: put.Conns, Rate: put.Rate,
	}
	wclis, err := dial([]string{ep}, cfg.WatchConns, put.DialTimeout)
	if err != nil {
		return nil, err
	}
	defer closeAll(wclis)
	pclis, err := connect(ctx, &put)
	if err != nil {
		return nil, err
	}
	defer closeAll(pclis)

	// 1. The memory per stream.
	var mem *WatchMemory
	if cfg.RSS != nil {
		mem = &WatchMemory{ProbeStreams: cfg.ProbeStreams}
		if mem.MemberBase, mem.ClusterBase, err = settledRSS(ctx, cfg.RSS); err != nil {
			return nil, err
		}
		mem.MemberAfterStreams, mem.ClusterAfterStreams = mem.MemberBase, mem.ClusterBase
		if cfg.ProbeStreams > 0 {
			logf("opening %d probe streams of one watcher each", cfg.ProbeStreams)
			probes, _, err := openWatchSet(ctx, wclis, cfg.ProbeStreams,
				func(int) []createReq { return []createReq{{id: 1, key: probeKey}} }, nil, put.KeySize, cfg.CreateTimeout)
			defer probes.close()
			if err != nil {
				return nil, err
			}
			if mem.MemberAfterStreams, mem.ClusterAfterStreams, err = settledRSS(ctx, cfg.RSS); err != nil {
				return nil, err
			}
		}
	}

	// 2. The watchers.
	t := newTracker(cfg.Watchers, cfg.WatchedKeys)
	logf("creating %d watchers over %d streams on %s", cfg.Watchers, cfg.Streams, ep)
	plan := func(i int) []createReq {
		var out []createReq
		for g := i; g < cfg.Watchers; g += cfg.Streams {
			out = append(out, createReq{id: int64(g) + 1, key: Key(g%cfg.WatchedKeys, put.KeySize)})
		}
		return out
	}
	ws, took, err := openWatchSet(ctx, wclis, cfg.Streams, plan, t, put.KeySize, cfg.CreateTimeout)
	defer ws.close()
	if err != nil {
		return nil, err
	}
	rep.CreateSec = took.Seconds()
	logf("created %d watchers in %.2fs", cfg.Watchers, rep.CreateSec)
	if mem != nil {
		if mem.MemberAfterWatchers, mem.ClusterAfterWatchers, err = settledRSS(ctx, cfg.RSS); err != nil {
			return nil, err
		}
		mem.fill(cfg.Watchers)
		rep.Memory = mem
	}

	// 3. The put load, and the events it is due.
	value := make([]byte, put.ValueSize)
	fillRandom(rand.New(rand.NewPCG(put.Seed, 0)), value)
	puts := func() *Report {
		r := &runner{cfg: put, clis: pclis, value: string(value), keys: newKeyGenParams(put.Dist, put.KeySpace).gen,
			onPut: func(i int, rev int64, sent time.Time) { t.acked(rev, i, sent, time.Now()) }}
		return r.run(ctx, cfg.Log)
	}
	start := time.Now()
	rep.Puts = puts()
	t.drain(ctx, cfg.DrainTimeout)
	if last := t.lastEvent.Load(); last > 0 {
		rep.DeliverySec = time.Unix(0, last).Sub(start).Seconds()
		rep.EventsPerSec = float64(t.delivered.Load()) / rep.DeliverySec
	}

	// 4. The put load again beside a stream that never reads.
	if cfg.SlowStream {
		logf("put load again with one more stream, on a connection of its own, that never reads")
		if rep.SlowStream, err = withStalledStream(ctx, ep, put, cfg.WatchedKeys, puts); err != nil {
			return nil, err
		}
		t.drain(ctx, cfg.DrainTimeout)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	ws.close()

	all, fromPut := NewHistogram(), t.early
	for _, s := range ws.streams {
		all.Merge(s.hist)
		fromPut.Merge(s.sentHist)
		rep.Duplicates += s.dups
		rep.WrongKey += s.wrongKey
		// Every stream ends with the close's cancellation; any other end
		// came before it.
		if s.err != nil && ErrorCode(s.err) != "Canceled" {
			code := ErrorCode(s.err)
			addErrors(&rep.StreamErrors, &rep.StreamErrorSamples, new(int64), map[string]int64{code: 1}, map[string]string{code: s.err.Error()})
		}
	}
	rep.BeforeAck = t.beforeAck.Load()
	for range rep.BeforeAck {
		all.Record(0)
	}
	rep.Latency, rep.LatencyFromPut = all.Summary(), fromPut.Summary()
	missing, extra, unacked := t.account()
	rep.Expected, rep.Delivered = t.expected.Load(), t.delivered.Load()-extra
	rep.Missing, rep.Duplicates, rep.Unacked = missing, rep.Duplicates+extra, unacked
	return rep, nil
}

// withStalledStream opens, on a connection of its own, a stream watching
// keys 0 to keys-1 that never reads, runs puts beside it and closes it.
func withStalledStream(ctx context.Context, ep string, put Config, keys int, puts func() *Report) (*Report, error) {
	clis, err := dial([]string{ep}, 1, put.DialTimeout)
	if err != nil {
		return nil, err
	}
	defer closeAll(clis)
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := pb.NewWatchClient(clis[0].ActiveConnection()).Watch(sctx)
	if err != nil {
		return nil, fmt.Errorf("bench: open the stalled stream: %w", err)
	}
	req := &pb.WatchCreateRequest{Key: []byte(Key(0, put.KeySize)), RangeEnd: []byte(Key(keys-1, put.KeySize) + "\x00")}
	if err := st.Send(&pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: req}}); err != nil {
		return nil, fmt.Errorf("bench: create the stalled watcher: %w", err)
	}
	// Its created response is the one thing it reads, so that it watches
	// before the puts begin.
	if resp, err := st.Recv(); err != nil || !resp.Created || resp.Canceled {
		return nil, fmt.Errorf("bench: the stalled watcher was not created: %v %v", resp, err)
	}
	return puts(), nil
}

func closeAll(clis []*clientv3.Client) {
	for _, c := range clis {
		c.Close()
	}
}
