package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fakeTxnCluster is a keyspace in memory, split at the keys its RangeAdmin
// side is told, whose KV side serves Txns as a single range of etcd does
// (mod revision compares, the puts at one new revision, gets) and fails a
// Txn whose keys lie in more than one range with Unimplemented, as
// Concord's gateway does until txns across ranges exist.
type fakeTxnCluster struct {
	clientv3.KV // nil: only Txn is served

	// noAdmin makes the admin side answer Unimplemented, as etcd does.
	noAdmin bool
	// bumpEvery, if set, has another writer put the first key of every
	// bumpEvery-th txn just before it is served.
	bumpEvery int

	mu     sync.Mutex
	starts []string // sorted, "" first
	rev    int64
	modRev map[string]int64
	served int // txns that reached commit
	bumped int
}

var _ RangeAdmin = (*fakeTxnCluster)(nil)

func newFakeTxnCluster() *fakeTxnCluster {
	return &fakeTxnCluster{starts: []string{""}, rev: 1, modRev: map[string]int64{}}
}

func (c *fakeTxnCluster) Split(_ context.Context, key string) error {
	if c.noAdmin {
		return status.Error(codes.Unimplemented, "unknown service concordpb.Admin")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if i, found := slices.BinarySearch(c.starts, key); !found {
		c.starts = slices.Insert(c.starts, i, key)
	}
	return nil
}

func (c *fakeTxnCluster) RangeStarts(context.Context) ([]string, error) {
	if c.noAdmin {
		return nil, status.Error(codes.Unimplemented, "unknown service concordpb.Admin")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.starts), nil
}

func (c *fakeTxnCluster) Txn(context.Context) clientv3.Txn { return &fakeTxn{c: c} }

type fakeTxn struct {
	c            *fakeTxnCluster
	cmps         []clientv3.Cmp
	thens, elses []clientv3.Op
}

func (t *fakeTxn) If(cs ...clientv3.Cmp) clientv3.Txn { t.cmps = append(t.cmps, cs...); return t }
func (t *fakeTxn) Then(ops ...clientv3.Op) clientv3.Txn {
	t.thens = append(t.thens, ops...)
	return t
}
func (t *fakeTxn) Else(ops ...clientv3.Op) clientv3.Txn {
	t.elses = append(t.elses, ops...)
	return t
}

func (t *fakeTxn) Commit() (*clientv3.TxnResponse, error) {
	c := t.c
	c.mu.Lock()
	defer c.mu.Unlock()
	rangeOf := func(k []byte) int {
		i, found := slices.BinarySearch(c.starts, string(k))
		if !found {
			i--
		}
		return i
	}
	var ranges []int
	for _, op := range append(slices.Clone(t.thens), t.elses...) {
		ranges = append(ranges, rangeOf(op.KeyBytes()))
	}
	for i := range t.cmps {
		ranges = append(ranges, rangeOf(t.cmps[i].KeyBytes()))
	}
	slices.Sort(ranges)
	if len(slices.Compact(ranges)) > 1 {
		return nil, status.Error(codes.Unimplemented, "fake: a txn or delete across ranges is not supported yet")
	}
	c.served++
	if c.bumpEvery > 0 && c.served%c.bumpEvery == 0 {
		c.rev++
		c.modRev[string(t.thens[0].KeyBytes())] = c.rev
		c.bumped++
	}
	ok := true
	for i := range t.cmps {
		cmp := t.cmps[i].GetCompare()
		if cmp.Target != pb.Compare_MOD || cmp.Result != pb.Compare_EQUAL {
			return nil, status.Errorf(codes.InvalidArgument, "fake: only mod_revision = compares, not %v", cmp)
		}
		ok = ok && c.modRev[string(cmp.Key)] == cmp.GetModRevision()
	}
	resp := &clientv3.TxnResponse{Header: &pb.ResponseHeader{}, Succeeded: ok}
	if !ok {
		for _, op := range t.elses {
			rr := &pb.RangeResponse{}
			if rev, found := c.modRev[string(op.KeyBytes())]; found {
				rr.Kvs = []*mvccpb.KeyValue{{Key: op.KeyBytes(), ModRevision: rev}}
			}
			resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponseRange{ResponseRange: rr}})
		}
		resp.Header.Revision = c.rev
		return resp, nil
	}
	c.rev++
	for _, op := range t.thens {
		c.modRev[string(op.KeyBytes())] = c.rev
		resp.Responses = append(resp.Responses, &pb.ResponseOp{Response: &pb.ResponseOp_ResponsePut{ResponsePut: &pb.PutResponse{}}})
	}
	resp.Header.Revision = c.rev
	return resp, nil
}

// fakeTxnConfig is a short run against c: 4 clients, runs of total txns.
func fakeTxnConfig(c *fakeTxnCluster, total int64, rangesPerTxn ...int) TxnConfig {
	cfg := DefaultTxnConfig()
	cfg.Load.Endpoints = []string{"fake"}
	cfg.Load.Clients = 4
	cfg.Load.KeySpace = 100
	cfg.Load.Total = total
	cfg.Warmup = 0
	cfg.RangesPerTxn = rangesPerTxn
	cfg.Admin = c
	return cfg
}

// TestRunTxnSideBySide runs a one-range and a two-range layout against a
// cluster that cannot do txns across ranges: the first succeeds, the
// second is all errors, counted by code with its first message, and the
// run ends on time, with the layout checked and made by the splits.
func TestRunTxnSideBySide(t *testing.T) {
	c := newFakeTxnCluster()
	cfg := fakeTxnConfig(c, 50, 1, 2)
	rep, err := runTxn(context.Background(), cfg, []clientv3.KV{c, c})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Configs) != 2 || rep.Ranges != 2 || !rep.LayoutChecked || rep.Baseline != 1 {
		t.Fatalf("%d configs over %d ranges, checked %v, baseline %d; want 2 over 2, checked, baseline 1", len(rep.Configs), rep.Ranges, rep.LayoutChecked, rep.Baseline)
	}
	// Both layouts' splits, and only those, were made.
	var want []string
	for _, r := range []int{1, 2} {
		l, _ := NewTxnLayout(cfg.prefixOf(r), 100, 2, r, 2, cfg.Load.KeySize)
		want = append(want, l.SplitKeys()...)
	}
	if got, _ := c.RangeStarts(context.Background()); !slices.Equal(got[1:], want) {
		t.Errorf("splits %q, want %q", got[1:], want)
	}
	one, two := rep.Configs[0], rep.Configs[1]
	if one.RangesPerTxn != 1 || one.Txns != 100 || one.Errors != 0 || one.Latency.Count != 100 || one.Throughput <= 0 || len(one.Rounds) != 2 {
		t.Errorf("one range: %+v; want 100 txns over 2 rounds, no errors", one)
	}
	if r := one.P50Ratio; r == nil || *r != 1 || *one.ThroughputRatio != 1 {
		t.Errorf("one range's ratios to itself: %v %v", one.P50Ratio, one.ThroughputRatio)
	}
	if two.Txns != 0 || two.Errors != 100 || two.ErrorsByCode["Unimplemented"] != 100 || two.FirstErrorCode != "Unimplemented" ||
		!strings.Contains(two.FirstError, "across ranges is not supported") || two.P50Ratio != nil || two.ThroughputRatio != nil {
		t.Errorf("two ranges: %+v; want 100 Unimplemented errors, the first kept, no ratios", two)
	}
	for _, cr := range rep.Configs {
		if cr.Layout == nil || !cr.Layout.OK() || cr.Layout.Ranges != 2 || cr.LayoutAfter == nil || !cr.LayoutAfter.OK() {
			t.Errorf("R=%d layout %+v, after %+v; want every txn in exactly %d of 2 ranges", cr.RangesPerTxn, cr.Layout, cr.LayoutAfter, cr.RangesPerTxn)
		}
	}
	// Rounds alternate the order: 1 2, then 2 1.
	if got := []int{one.Rounds[0].Round, one.Rounds[1].Round, two.Rounds[0].Round, two.Rounds[1].Round}; !slices.Equal(got, []int{1, 2, 1, 2}) {
		t.Errorf("rounds %v", got)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Unimplemented: 100 of 100 txns", "R=2: first error: ", "across ranges is not supported yet",
		"R=1: 100 of 100 txns' keys lie in exactly 1 range, 2 ranges hold them: as laid out"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if _, err := json.Marshal(rep); err != nil {
		t.Errorf("JSON: %v", err)
	}
}

// TestRunTxnCAS: with CAS, the preload's revisions match, a key another
// writer changed fails the compare once (a conflict, not an error), and
// the Else reads bring the next txn on it back in line.
func TestRunTxnCAS(t *testing.T) {
	for _, bumpEvery := range []int{0, 10} {
		c := newFakeTxnCluster()
		c.bumpEvery = bumpEvery
		cfg := fakeTxnConfig(c, 200, 1)
		cfg.Load.Clients, cfg.Load.KeySpace, cfg.KeysPerTxn = 1, 20, 3
		cfg.CAS, cfg.Preload, cfg.Rounds = true, true, 1
		rep, err := runTxn(context.Background(), cfg, []clientv3.KV{c})
		if err != nil {
			t.Fatal(err)
		}
		cr := rep.Configs[0]
		if cr.Txns != 200 || cr.Errors != 0 || cr.CASConflicts != int64(c.bumped) || (bumpEvery > 0) != (c.bumped > 0) {
			t.Errorf("bump every %d: %d txns, %d errors, %d conflicts, %d bumped; want 200 txns, a conflict per bump", bumpEvery, cr.Txns, cr.Errors, cr.CASConflicts, c.bumped)
		}
		if len(c.modRev) != 20*3 {
			t.Errorf("%d keys written, want 60 (the preload)", len(c.modRev))
		}
	}
}

// TestRunTxnPreloadStaysInRanges: the preload of a two-range layout goes
// through on a cluster that refuses txns across ranges.
func TestRunTxnPreloadStaysInRanges(t *testing.T) {
	c := newFakeTxnCluster()
	cfg := fakeTxnConfig(c, 1, 2)
	cfg.KeysPerTxn, cfg.Ranges, cfg.Preload, cfg.Rounds = 4, 4, true, 1
	cfg.Load.KeySpace = 1000 // several batches per range
	if _, err := runTxn(context.Background(), cfg, []clientv3.KV{c}); err != nil {
		t.Fatal(err)
	}
	if len(c.modRev) != 4000 {
		t.Errorf("preload wrote %d keys, want 4000", len(c.modRev))
	}
}

// TestRunTxnWithoutAdmin: without an Admin service (etcd) a one-range
// layout runs unsplit and unchecked, and a layout of several ranges is
// refused before any txn.
func TestRunTxnWithoutAdmin(t *testing.T) {
	for _, nilAdmin := range []bool{true, false} {
		c := newFakeTxnCluster()
		c.noAdmin = true
		cfg := fakeTxnConfig(c, 10, 1)
		cfg.Rounds = 1
		if nilAdmin {
			cfg.Admin = nil
		}
		rep, err := runTxn(context.Background(), cfg, []clientv3.KV{c})
		if err != nil {
			t.Fatal(err)
		}
		if rep.LayoutChecked || rep.Configs[0].Layout != nil || rep.Configs[0].Txns != 10 {
			t.Errorf("nil admin %v: checked %v, layout %+v, %d txns; want 10 txns, unchecked", nilAdmin, rep.LayoutChecked, rep.Configs[0].Layout, rep.Configs[0].Txns)
		}
		cfg.RangesPerTxn = []int{1, 2}
		if _, err := runTxn(context.Background(), cfg, []clientv3.KV{c}); err == nil || !strings.Contains(err.Error(), "Admin service") {
			t.Errorf("nil admin %v, two layouts: err %v, want one naming the Admin service", nilAdmin, err)
		}
		if c.served != 10 {
			t.Errorf("%d txns served, want the 10 of the one-range run", c.served)
		}
	}
}

// TestRunTxnDuration: a run of layouts that always fail still ends after
// its duration per run.
func TestRunTxnDuration(t *testing.T) {
	c := newFakeTxnCluster()
	cfg := fakeTxnConfig(c, 0, 2)
	cfg.Load.Duration, cfg.Rounds = 100*time.Millisecond, 2
	start := time.Now()
	rep, err := runTxn(context.Background(), cfg, []clientv3.KV{c})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("two 100ms runs took %v", d)
	}
	if cr := rep.Configs[0]; cr.Errors == 0 || cr.Txns != 0 || cr.DurationSec < 0.2 {
		t.Errorf("%d errors, %d txns in %.2fs; want only errors over 0.2s", cr.Errors, cr.Txns, cr.DurationSec)
	}
}

func TestTxnConfigValidate(t *testing.T) {
	ok := DefaultTxnConfig()
	ok.Load.Endpoints = []string{"127.0.0.1:2379"}
	ok.KeysPerTxn, ok.RangesPerTxn = 8, []int{1, 2, 8}
	if err := ok.Validate(); err != nil || ok.ranges() != 8 {
		t.Fatalf("8 keys in 1, 2, 8 ranges: %v, %d ranges; want valid over 8", err, ok.ranges())
	}
	if c := ok; true {
		c.RangesPerTxn = []int{1, 3, 8}
		if c.ranges() != 24 || c.Validate() != nil {
			t.Errorf("1, 3, 8: %d ranges, %v; want 24", c.ranges(), c.Validate())
		}
	}
	for name, mutate := range map[string]func(c *TxnConfig){
		"no configuration":         func(c *TxnConfig) { c.RangesPerTxn = nil },
		"twice the same":           func(c *TxnConfig) { c.RangesPerTxn = []int{1, 2, 1} },
		"more ranges than keys":    func(c *TxnConfig) { c.KeysPerTxn = 2 },
		"spread not a multiple":    func(c *TxnConfig) { c.Ranges = 4 },
		"least common multiple ":   func(c *TxnConfig) { c.KeysPerTxn, c.RangesPerTxn = 128, []int{127, 128} },
		"no rounds":                func(c *TxnConfig) { c.Rounds = 0 },
		"negative warm-up":         func(c *TxnConfig) { c.Warmup = -time.Second },
		"no endpoints":             func(c *TxnConfig) { c.Load.Endpoints = nil },
		"no clients":               func(c *TxnConfig) { c.Load.Clients = 0 },
		"no duration nor total":    func(c *TxnConfig) { c.Load.Duration = 0 },
		"unknown key distribution": func(c *TxnConfig) { c.Load.Dist = "pareto" },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: valid", name)
		}
	}
	short := ok
	short.Load.KeySize = 2 // pads group numbers, never cuts them
	if err := short.Validate(); err != nil {
		t.Errorf("key size 2 for 100k groups: %v", err)
	}
}

func TestRoundOrder(t *testing.T) {
	for round, want := range map[int][]int{1: {0, 1, 2}, 2: {2, 1, 0}, 3: {0, 1, 2}} {
		if got := roundOrder(3, round); !slices.Equal(got, want) {
			t.Errorf("round %d: %v, want %v", round, got, want)
		}
	}
}
