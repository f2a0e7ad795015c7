package bench

import (
	"context"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/server"
)

func TestWatchersOf(t *testing.T) {
	for _, tc := range []struct{ n, keys int }{{10, 10}, {10, 3}, {100_000, 1000}, {7, 1}, {1001, 1000}} {
		sum := 0
		for k := 0; k < tc.keys; k++ {
			// Count by the assignment itself: watcher g on key g mod keys.
			want := 0
			for g := k; g < tc.n; g += tc.keys {
				want++
			}
			got := watchersOf(k, tc.n, tc.keys)
			if got != want {
				t.Errorf("watchersOf(%d, %d, %d) = %d, want %d", k, tc.n, tc.keys, got, want)
			}
			sum += got
		}
		if sum != tc.n {
			t.Errorf("%d watchers on %d keys: fan-outs sum to %d", tc.n, tc.keys, sum)
		}
	}
}

// TestTrackerAccounting drives the tracker through every case it tells
// apart: events after the ack, before it, missing, beyond the fan-out,
// and of a put never acknowledged.
func TestTrackerAccounting(t *testing.T) {
	tr := newTracker(6, 3) // 2 watchers per key
	h, hs := NewHistogram(), NewHistogram()
	t0 := time.Unix(1000, 0)

	tr.acked(10, 0, t0.Add(-time.Millisecond), t0) // both events after the ack
	tr.event(10, t0.Add(3*time.Millisecond), h, hs)
	tr.event(10, t0.Add(5*time.Millisecond), h, hs)

	tr.event(11, t0, h, hs) // one before the ack, one after
	tr.acked(11, 1, t0.Add(-time.Millisecond), t0.Add(time.Millisecond))
	tr.event(11, t0.Add(2*time.Millisecond), h, hs)

	tr.acked(12, 2, t0.Add(-time.Millisecond), t0) // one of two missing
	tr.event(12, t0.Add(time.Millisecond), h, hs)

	tr.acked(13, 0, t0.Add(-time.Millisecond), t0) // three events for a fan-out of two
	for range 3 {
		tr.event(13, t0, h, hs)
	}

	tr.event(14, t0, h, hs) // never acknowledged

	if got := tr.expected.Load(); got != 8 {
		t.Errorf("expected %d events, want 8 (4 acked puts x 2 watchers)", got)
	}
	if got := tr.delivered.Load(); got != 8 {
		t.Errorf("delivered %d, want 8 (2 + 2 + 1 + 3, 1 of them before its ack; none unacked)", got)
	}
	if got := tr.beforeAck.Load(); got != 1 {
		t.Errorf("before ack %d, want 1", got)
	}
	if got := tr.outstanding.Load(); got != 0 {
		// 12 owes one and 13 one too many: they cancel out here, which is
		// why the report takes missing and extra from account.
		t.Errorf("outstanding %d, want 0", got)
	}
	missing, extra, unacked := tr.account()
	if missing != 1 || extra != 1 || unacked != 1 {
		t.Errorf("account: missing %d extra %d unacked %d, want 1 1 1", missing, extra, unacked)
	}
	// 2 + 1 + 1 + 3 events after their ack; the early one is counted
	// apart (beforeAck) and recorded by RunWatch.
	if h.Count() != 7 {
		t.Fatalf("histogram has %d latencies, want 7", h.Count())
	}
	if s := h.Summary(); s.MaxMs != 5 {
		t.Errorf("max latency %vms, want 5 (rev 10's second event)", s.MaxMs)
	}
	// From the sending, every put 1 ms before its ack: the same events,
	// and the early one in the tracker's own histogram.
	if s := hs.Summary(); hs.Count() != 7 || s.MaxMs != 6 {
		t.Errorf("from put: %d latencies, max %vms; want 7, 6", hs.Count(), s.MaxMs)
	}
	if s := tr.early.Summary(); tr.early.Count() != 1 || s.MaxMs != 1 {
		t.Errorf("early from put: %d latencies, max %vms; want 1 of 1ms (rev 11's first)", tr.early.Count(), s.MaxMs)
	}
}

func TestWatchMemoryFill(t *testing.T) {
	m := WatchMemory{ProbeStreams: 100, MemberBase: 100 << 20, MemberAfterStreams: 100<<20 + 1_800_000,
		MemberAfterWatchers: 100<<20 + 1_800_000 + 35_000_000,
		ClusterBase:         300 << 20, ClusterAfterStreams: 300<<20 + 2_000_000, ClusterAfterWatchers: 300<<20 + 2_000_000 + 40_000_000}
	m.fill(100_000)
	if m.PerStream != 18_000 || m.PerWatcher != 350 || m.ClusterPerStream != 20_000 || m.ClusterPerWatcher != 400 {
		t.Fatalf("per stream %v (cluster %v), per watcher %v (cluster %v); want 18000 (20000), 350 (400)",
			m.PerStream, m.ClusterPerStream, m.PerWatcher, m.ClusterPerWatcher)
	}
}

func TestWatchConfigValidate(t *testing.T) {
	ok := DefaultWatchConfig()
	ok.Put.Endpoints = []string{"127.0.0.1:2379"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, tweak := range map[string]func(*WatchConfig){
		"no watchers":            func(c *WatchConfig) { c.Watchers = 0 },
		"more streams":           func(c *WatchConfig) { c.Streams = c.Watchers + 1 },
		"more conns than stream": func(c *WatchConfig) { c.WatchConns = c.Streams + 1 },
		"more keys than watcher": func(c *WatchConfig) { c.WatchedKeys = c.Watchers + 1 },
		"keys too short":         func(c *WatchConfig) { c.Put.KeySize = 2 },
		"no endpoints":           func(c *WatchConfig) { c.Put.Endpoints = nil },
	} {
		c := ok
		tweak(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestRunWatchLocalCluster runs the whole benchmark, small, against an
// in-process 3-node Concord cluster: every put reaches each watcher of
// its key once, with the stalled stream too, and the memory figures come
// from the RSS readings.
func TestRunWatchLocalCluster(t *testing.T) {
	lc, err := server.StartLocalCluster(3, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	cfg := DefaultWatchConfig()
	cfg.Put.Endpoints = lc.ClientAddrs()
	cfg.Put.Clients, cfg.Put.Conns, cfg.Put.Total = 4, 2, 200
	cfg.Watchers, cfg.Streams, cfg.WatchConns, cfg.WatchedKeys = 50, 3, 2, 10
	cfg.ProbeStreams, cfg.SlowStream = 5, true
	var reading atomic.Int64 // a fake RSS: 1 MiB more per reading
	cfg.RSS = func() (int64, int64, error) {
		n := reading.Add(1)
		return n << 20, 3 * n << 20, nil
	}
	rep, err := RunWatch(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	// 200 puts per load, two loads, 5 watchers per key.
	if rep.Expected != 2000 || rep.Delivered != 2000 || rep.Missing != 0 || rep.Duplicates != 0 || rep.WrongKey != 0 || rep.Unacked != 0 {
		t.Errorf("expected %d, delivered %d, missing %d, duplicates %d, wrong key %d, unacked %d; want 2000 delivered of 2000 and nothing else",
			rep.Expected, rep.Delivered, rep.Missing, rep.Duplicates, rep.WrongKey, rep.Unacked)
	}
	if rep.Puts.Ops != 200 || rep.SlowStream == nil || rep.SlowStream.Ops != 200 {
		t.Errorf("puts %d, with the stalled stream %v; want 200 each", rep.Puts.Ops, rep.SlowStream)
	}
	if rep.Latency.Count != rep.Delivered || rep.LatencyFromPut.Count != rep.Delivered || rep.EventsPerSec <= 0 || rep.CreateSec <= 0 {
		t.Errorf("latency count %d (delivered %d), %.0f events/s, create %.3fs", rep.Latency.Count, rep.Delivered, rep.EventsPerSec, rep.CreateSec)
	}
	if m := rep.Memory; m == nil || m.PerStream != float64(1<<20)/5 || m.PerWatcher != float64(1<<20)/50 || m.ClusterPerWatcher != float64(3<<20)/50 {
		t.Errorf("memory %+v: want 1 MiB over 5 streams and over 50 watchers (3 MiB for the cluster)", rep.Memory)
	}
	if len(rep.StreamErrors) != 0 {
		t.Errorf("stream errors %v", rep.StreamErrorSamples)
	}
	if err := rep.WriteText(io.Discard); err != nil {
		t.Fatal(err)
	}
}
