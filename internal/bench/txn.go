package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The txn-put benchmark (RunTxn) measures etcd Txns of several puts and
// how their cost grows with the number of ranges their keys lie in (issue
// 15): the same load, with each txn's keys forced into 1, 2, ... ranges,
// side by side against one cluster.
//
//  1. Lay out every configuration (one per RangesPerTxn) on a key prefix
//     of its own (TxnLayout) and split the cluster's ranges at its
//     SplitKeys through Admin; then read the ranges back and count, for
//     every txn's keys, the ranges they lie in (LayoutCheck).
//  2. With Preload, write every key once, in txns that stay in one range.
//  3. Warm each configuration up for Warmup, unmeasured: the ranges the
//     splits made elect their leaders and fill the routers' caches.
//  4. Run the configurations in turn, Rounds times, each for Duration (or
//     Total txns): in the given order in odd rounds and in the reverse
//     order in even ones, so that a machine slowing down or speeding up
//     over the run weighs on every configuration alike.
//  5. Read the ranges back again (splits by load would show), then merge
//     each configuration's rounds into its report, with its median txn
//     latency and throughput as ratios to the baseline's (RangesPerTxn 1,
//     or the first configuration).
//
// A txn that fails (a txn across ranges the server cannot do yet answers
// Unimplemented) is counted by gRPC code, with its first message, and its
// client pauses for errorBackoff: a configuration that always fails ends
// on time with its errors, like the others.

// RangeAdmin lays out and lists a cluster's ranges for RunTxn: Concord's
// Admin service (cmd/concord implements it over rpcpb.AdminClient). RunTxn
// calls it from one goroutine, never while txns are measured. A server
// without it (etcd) answers gRPC Unimplemented.
type RangeAdmin interface {
	// Split makes a range start at key; a key a range already starts at
	// is not an error.
	Split(ctx context.Context, key string) error
	// RangeStarts returns the start key of every range of the keyspace.
	RangeStarts(ctx context.Context) ([]string, error)
}

// TxnConfig is one txn-put benchmark. DefaultTxnConfig gives its defaults.
type TxnConfig struct {
	// Load is the client side: its Endpoints, LeaderOnly, Conns, Clients,
	// ValueSize, Dist, Total or Duration (of each measured run), Rate,
	// Timeout, DialTimeout and Seed apply; KeySpace is the number of
	// groups (distinct txns' key sets) of each configuration, and KeySize
	// the digits group numbers are padded to. Its Workload, Mix,
	// Serializable and Preload do not apply.
	Load Config
	// KeysPerTxn is the number of puts in each txn.
	KeysPerTxn int
	// RangesPerTxn lists the configurations, in their run order: the
	// number of ranges each txn's keys lie in.
	RangesPerTxn []int
	// Ranges is the number of ranges each configuration's keys are
	// spread over, a multiple of every RangesPerTxn; 0 means their least
	// common multiple, so that every configuration writes as many ranges.
	Ranges int
	// CAS makes each txn compare the mod revision of each of its keys
	// with the one this benchmark last saw for it (from a txn's own
	// puts, its Else reads or the preload; 0, a missing key, at first):
	// If(all equal) Then(the puts) Else(a get of each key). A failed
	// compare counts as a CAS conflict, not an error.
	CAS bool
	// Preload writes every key once before the first measured run.
	Preload bool
	// Rounds is the number of measured runs of each configuration.
	Rounds int
	// Warmup is how long each configuration runs, unmeasured, before the
	// first round; 0 skips it.
	Warmup time.Duration
	// Prefix starts every key; configuration R writes under Prefix +
	// "r<R>/".
	Prefix string
	// Admin splits and lists ranges. With nil, or against a server that
	// answers Unimplemented, nothing is split or checked, which only a
	// layout of one range (Ranges 1) allows: etcd's one keyspace.
	Admin RangeAdmin
	// Log, if set, gets a line per setup step and per measured run.
	Log io.Writer
}

// DefaultTxnConfig returns 2 keys per txn in 1 range, 2 rounds, a second
// of warm-up under "bench-txn/", with DefaultConfig's load.
func DefaultTxnConfig() TxnConfig {
	return TxnConfig{
		Load:         DefaultConfig(),
		KeysPerTxn:   2,
		RangesPerTxn: []int{1},
		Rounds:       2,
		Warmup:       time.Second,
		Prefix:       "bench-txn/",
	}
}

// Validate reports the first problem with c.
func (c *TxnConfig) Validate() error {
	load := c.Load
	// Group numbers are padded, not cut, to KeySize: any size numbers
	// the key space.
	load.Workload, load.KeySize = Put, max(load.KeySize, len(strconv.Itoa(load.KeySpace-1)))
	if err := load.Validate(); err != nil {
		return err
	}
	switch {
	case c.Rounds < 1:
		return fmt.Errorf("bench: rounds %d < 1", c.Rounds)
	case c.Warmup < 0:
		return fmt.Errorf("bench: warm-up %v < 0", c.Warmup)
	case len(c.RangesPerTxn) == 0:
		return errors.New("bench: no ranges-per-txn configuration")
	case c.Ranges < 0:
		return fmt.Errorf("bench: ranges %d < 0", c.Ranges)
	}
	seen := map[int]bool{}
	for _, r := range c.RangesPerTxn {
		if seen[r] {
			return fmt.Errorf("bench: ranges per txn %d listed twice", r)
		}
		seen[r] = true
	}
	for _, r := range c.RangesPerTxn {
		if _, err := NewTxnLayout(c.prefixOf(r), c.Load.KeySpace, c.KeysPerTxn, r, c.ranges(), c.Load.KeySize); err != nil {
			return err
		}
	}
	return nil
}

// ranges is the number of ranges of each configuration's layout.
func (c *TxnConfig) ranges() int {
	if c.Ranges > 0 {
		return c.Ranges
	}
	n := 1
	for _, r := range c.RangesPerTxn {
		if r < 1 {
			return 0 // Validate says why
		}
		n = n / gcd(n, r) * r
		if n > maxLayoutRanges {
			return n // too many: NewTxnLayout says so
		}
	}
	return n
}

// prefixOf is the key prefix of configuration r.
func (c *TxnConfig) prefixOf(r int) string { return c.Prefix + "r" + strconv.Itoa(r) + "/" }

// baseline is the index of the configuration the ratios are to.
func (c *TxnConfig) baseline() int {
	for i, r := range c.RangesPerTxn {
		if r == 1 {
			return i
		}
	}
	return 0
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// RunTxn runs the txn-put benchmark cfg describes and returns its report.
// Cancelling ctx ends it early; the report then covers the runs done so
// far. It fails before measuring when the layout cannot be made (no
// Admin for a layout of several ranges, a split that fails), never
// because txns fail: those are counted in the report.
func RunTxn(ctx context.Context, cfg TxnConfig) (*TxnReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clis, err := connect(ctx, &cfg.Load)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	kvs := make([]clientv3.KV, len(clis))
	for i, c := range clis {
		kvs[i] = c
	}
	return runTxn(ctx, cfg, kvs)
}

// Setup bounds: a split or a listing of the ranges retries a few times
// (a leader may change during the splits a run makes), each attempt
// within adminTimeout: listing every range took more than 10 s on this
// 2-core machine under load.
const (
	adminAttempts = 5
	adminTimeout  = time.Minute
)

// txnCase is one configuration: its layout and what its runs gathered.
type txnCase struct {
	index  int // in TxnConfig.RangesPerTxn
	layout *TxnLayout
	// revs is, with CAS, the mod revision last seen of slot j of group g
	// at g*KeysPerTxn+j.
	revs   []atomic.Int64
	runs   []*txnRun // measured, in round order
	before *LayoutCheck
	after  *LayoutCheck
}

// txnBench is one RunTxn; its fields are read-only once the runs start.
type txnBench struct {
	cfg   TxnConfig
	kvs   []clientv3.KV
	value string
	keys  *keyGenParams
	cases []*txnCase
	// noAdmin is set when the cluster has no Admin service (or cfg none):
	// nothing split, nothing checked.
	noAdmin bool
}

// runTxn is RunTxn over clients already connected, which the caller
// closes.
func runTxn(ctx context.Context, cfg TxnConfig, kvs []clientv3.KV) (*TxnReport, error) {
	rng := rand.New(rand.NewPCG(cfg.Load.Seed, 0))
	value := make([]byte, cfg.Load.ValueSize)
	fillRandom(rng, value)
	b := &txnBench{cfg: cfg, kvs: kvs, value: string(value), keys: newKeyGenParams(cfg.Load.Dist, cfg.Load.KeySpace)}
	for _, r := range cfg.RangesPerTxn {
		l, err := NewTxnLayout(cfg.prefixOf(r), cfg.Load.KeySpace, cfg.KeysPerTxn, r, cfg.ranges(), cfg.Load.KeySize)
		if err != nil {
			return nil, err
		}
		c := &txnCase{index: len(b.cases), layout: l}
		if cfg.CAS {
			c.revs = make([]atomic.Int64, l.Groups*l.KeysPerTxn)
		}
		b.cases = append(b.cases, c)
	}
	if err := b.split(ctx); err != nil {
		return nil, err
	}
	if err := b.check(ctx, func(c *txnCase, lc *LayoutCheck) { c.before = lc }); err != nil {
		return nil, err
	}
	if cfg.Preload {
		for _, c := range b.cases {
			b.logf("preload %s: %d keys", c.layout.Prefix, c.layout.Groups*c.layout.KeysPerTxn)
			if err := b.preload(ctx, c); err != nil {
				return nil, err
			}
		}
	}
	if cfg.Warmup > 0 {
		for _, c := range b.cases {
			run := b.measure(ctx, c, 0, cfg.Warmup, 0)
			b.logf("warm-up %s: %d txns, %d errors in %.1fs", c.layout.Prefix, run.hist.Count(), run.errs, run.elapsed.Seconds())
		}
	}
	for round := 1; round <= cfg.Rounds && ctx.Err() == nil; round++ {
		for _, i := range roundOrder(len(b.cases), round) {
			if ctx.Err() != nil {
				break
			}
			c := b.cases[i]
			run := b.measure(ctx, c, round, cfg.Load.Duration, cfg.Load.Total)
			c.runs = append(c.runs, run)
			b.logRun(round, c, run)
		}
	}
	if ctx.Err() == nil {
		if err := b.check(ctx, func(c *txnCase, lc *LayoutCheck) { c.after = lc }); err != nil {
			b.logf("ranges after the runs: %v", err)
		}
	}
	return b.report(), nil
}

// roundOrder is the order of n configurations in round (from 1): as
// given in odd rounds, reversed in even ones (A B C, C B A, ...).
func roundOrder(n, round int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
		if round%2 == 0 {
			out[i] = n - 1 - i
		}
	}
	return out
}

// split makes every configuration's ranges. Without an Admin service only
// a one-range layout can go ahead, unsplit and unchecked.
func (b *txnBench) split(ctx context.Context) error {
	if b.cfg.Admin == nil {
		b.noAdmin = true
		return b.needAdmin(errors.New("no admin service given"))
	}
	for _, c := range b.cases {
		keys := c.layout.SplitKeys()
		for _, k := range keys {
			err := b.admin(ctx, func(ctx context.Context) error { return b.cfg.Admin.Split(ctx, k) })
			if status.Code(err) == codes.Unimplemented {
				b.noAdmin = true
				return b.needAdmin(err)
			}
			if err != nil {
				return fmt.Errorf("bench: split at %q: %w", k, err)
			}
		}
		b.logf("split %s into %d ranges (%d split points)", c.layout.Prefix, c.layout.Ranges, len(keys))
	}
	return nil
}

// needAdmin is split's answer when ranges cannot be split (why says why):
// nil for a one-range layout, else an error.
func (b *txnBench) needAdmin(why error) error {
	if b.cfg.ranges() == 1 {
		b.logf("ranges not split nor checked: %v", why)
		return nil
	}
	return fmt.Errorf("bench: a layout of %d ranges needs Concord's Admin service to split them: %w", b.cfg.ranges(), why)
}

// check reads the cluster's ranges and hands each configuration its
// layout check.
func (b *txnBench) check(ctx context.Context, set func(*txnCase, *LayoutCheck)) error {
	if b.noAdmin {
		return nil
	}
	var starts []string
	err := b.admin(ctx, func(ctx context.Context) error {
		var err error
		starts, err = b.cfg.Admin.RangeStarts(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("bench: list ranges: %w", err)
	}
	for _, c := range b.cases {
		lc := c.layout.Check(starts)
		set(c, lc)
		if !lc.OK() {
			b.logf("WARNING %s: %d of %d txns' keys lie in %d ranges, the others not (by ranges: %v)", c.layout.Prefix, lc.Exact, lc.Groups, c.layout.RangesPerTxn, lc.ByRanges)
		}
	}
	return nil
}

// admin calls f, retrying a failure other than Unimplemented a few times.
func (b *txnBench) admin(ctx context.Context, f func(context.Context) error) error {
	var err error
	for attempt := 0; attempt < adminAttempts; attempt++ {
		actx, cancel := context.WithTimeout(ctx, adminTimeout)
		err = f(actx)
		cancel()
		if err == nil || status.Code(err) == codes.Unimplemented || ctx.Err() != nil {
			return err
		}
		time.Sleep(preloadBackoff)
	}
	return err
}

// preload writes every key of c once, range by range, in txns of up to
// preloadBatchKeys puts that each stay in one range (a txn across ranges
// may not be possible), and records the keys' mod revisions for CAS.
func (b *txnBench) preload(ctx context.Context, c *txnCase) error {
	l := c.layout
	type batch struct{ keys []string }
	batches := make(chan batch)
	errc := make(chan error, preloadWorkers)
	var wg sync.WaitGroup
	for w := range preloadWorkers {
		kv := b.kvs[w%len(b.kvs)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for bt := range batches {
				var err error
				for attempt := 0; attempt < preloadAttempts; attempt++ {
					if err = b.preloadBatch(ctx, kv, c, bt.keys); err == nil || ctx.Err() != nil {
						break
					}
					time.Sleep(preloadBackoff)
				}
				if err != nil {
					errc <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for t := range l.Ranges {
		keys := l.rangeKeys(t)
		for first := 0; first < len(keys); first += preloadBatchKeys {
			select {
			case batches <- batch{keys[first:min(first+preloadBatchKeys, len(keys))]}:
			case err = <-errc:
				break feed
			case <-ctx.Done():
				err = ctx.Err()
				break feed
			}
		}
	}
	close(batches)
	wg.Wait()
	close(errc)
	if err == nil {
		err = <-errc // nil when the channel is empty and closed
	}
	if err != nil {
		return fmt.Errorf("bench: preload %s: %w", l.Prefix, err)
	}
	return nil
}

func (b *txnBench) preloadBatch(ctx context.Context, kv clientv3.KV, c *txnCase, keys []string) error {
	ops := make([]clientv3.Op, len(keys))
	for i, k := range keys {
		ops[i] = clientv3.OpPut(k, b.value)
	}
	tctx, cancel := context.WithTimeout(ctx, b.cfg.Load.Timeout)
	resp, err := kv.Txn(tctx).Then(ops...).Commit()
	cancel()
	if err != nil || c.revs == nil {
		return err
	}
	for _, k := range keys {
		g, j := c.layout.slotOf(k)
		c.revs[g*c.layout.KeysPerTxn+j].Store(resp.Header.Revision)
	}
	return nil
}

// slotOf parses a key of l back into its group and slot.
func (l *TxnLayout) slotOf(key string) (g, j int) {
	rest := key[len(l.Prefix)+rangeDigits+1:]
	g, _ = strconv.Atoi(rest[:l.groupDigits])
	j, _ = strconv.Atoi(rest[l.groupDigits+1:])
	return g, j
}

// txnRun is what one run of one configuration gathered.
type txnRun struct {
	round     int
	hist      *Histogram
	errs      int64
	errCodes  map[string]int64
	errSample map[string]string
	// firstErr is the message of the run's first failed txn, firstCode
	// its gRPC code.
	firstErr, firstCode string
	conflicts           int64
	elapsed             time.Duration
}

// txnWorker is one client's private state during a run.
type txnWorker struct {
	kv        clientv3.KV
	keys      KeyGen
	hist      *Histogram
	errs      int64
	errCodes  map[string]int64
	errSample map[string]string
	conflicts int64
	// Reused per txn; clientv3 copies the ops when they are added.
	names      []string
	puts, gets []clientv3.Op
	cmps       []clientv3.Cmp
}

// measure runs configuration c for d, or for total txns when total > 0,
// with every client, and returns what it saw. Round 0 is the warm-up.
func (b *txnBench) measure(ctx context.Context, c *txnCase, round int, d time.Duration, total int64) *txnRun {
	cfg := &b.cfg.Load
	var stopped atomic.Bool
	var tickets atomic.Int64
	var first atomic.Pointer[error]
	start := time.Now()
	if total == 0 {
		t := time.AfterFunc(d, func() { stopped.Store(true) })
		defer t.Stop()
	}
	var lim *Limiter
	if cfg.Rate > 0 {
		lim = NewLimiter(start, cfg.Rate)
	}
	// Worker seeds differ by configuration and round, so that no two runs
	// draw the same groups in the same order.
	stream := uint64(c.index+1)<<32 | uint64(round)<<16
	workers := make([]*txnWorker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		w := &txnWorker{
			kv:        b.kvs[i%len(b.kvs)],
			keys:      b.keys.gen(rand.New(rand.NewPCG(cfg.Seed, stream|uint64(i+1)))),
			hist:      NewHistogram(),
			errCodes:  map[string]int64{},
			errSample: map[string]string{},
		}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stopped.Load() && ctx.Err() == nil {
				if total > 0 && tickets.Add(1) > total {
					return
				}
				begin := time.Now()
				if lim != nil {
					due, err := lim.Wait(ctx)
					if err != nil {
						return
					}
					begin = due
				}
				conflict, err := b.txn(ctx, c, w, w.keys.Next())
				lat := time.Since(begin)
				if err != nil {
					if ctx.Err() != nil {
						return // interrupted, not failed
					}
					first.CompareAndSwap(nil, &err)
					w.errs++
					code := ErrorCode(err)
					w.errCodes[code]++
					if _, ok := w.errSample[code]; !ok {
						w.errSample[code] = err.Error()
					}
					time.Sleep(errorBackoff)
					continue
				}
				w.hist.Record(lat)
				if conflict {
					w.conflicts++
				}
			}
		}()
	}
	wg.Wait()
	run := &txnRun{round: round, hist: NewHistogram(), elapsed: time.Since(start)}
	for _, w := range workers {
		run.hist.Merge(w.hist)
		run.conflicts += w.conflicts
		var n int64
		addErrors(&run.errCodes, &run.errSample, &n, w.errCodes, w.errSample)
		run.errs += n
	}
	if p := first.Load(); p != nil {
		run.firstErr, run.firstCode = (*p).Error(), ErrorCode(*p)
	}
	return run
}

// txn is one txn of configuration c on group g: its puts, behind a
// compare of each key's mod revision with CAS. conflict reports a
// compare that failed.
func (b *txnBench) txn(ctx context.Context, c *txnCase, w *txnWorker, g int) (conflict bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, b.cfg.Load.Timeout)
	defer cancel()
	l := c.layout
	w.names = l.AppendKeys(w.names[:0], g)
	w.puts = w.puts[:0]
	for _, k := range w.names {
		w.puts = append(w.puts, clientv3.OpPut(k, b.value))
	}
	if !b.cfg.CAS {
		_, err := w.kv.Txn(ctx).Then(w.puts...).Commit()
		return false, err
	}
	base := g * l.KeysPerTxn
	w.cmps, w.gets = w.cmps[:0], w.gets[:0]
	for j, k := range w.names {
		w.cmps = append(w.cmps, clientv3.Compare(clientv3.ModRevision(k), "=", c.revs[base+j].Load()))
		w.gets = append(w.gets, clientv3.OpGet(k))
	}
	resp, err := w.kv.Txn(ctx).If(w.cmps...).Then(w.puts...).Else(w.gets...).Commit()
	if err != nil {
		return false, err
	}
	if resp.Succeeded {
		for j := range w.names {
			c.revs[base+j].Store(resp.Header.Revision)
		}
		return false, nil
	}
	for j, r := range resp.Responses {
		if j >= l.KeysPerTxn {
			break
		}
		var rev int64 // a key that is gone compares as 0
		if kvs := r.GetResponseRange().GetKvs(); len(kvs) == 1 {
			rev = kvs[0].ModRevision
		}
		c.revs[base+j].Store(rev)
	}
	return true, nil
}

func (b *txnBench) logf(format string, args ...any) {
	if b.cfg.Log != nil {
		fmt.Fprintf(b.cfg.Log, format+"\n", args...)
	}
}

// logRun writes one line about a measured run.
func (b *txnBench) logRun(round int, c *txnCase, run *txnRun) {
	if b.cfg.Log == nil {
		return
	}
	l := run.hist.Summary()
	lat := "no latency"
	if l.Count > 0 {
		lat = fmt.Sprintf("p50 %.3fms, p99 %.3fms", l.P50Ms, l.P99Ms)
	}
	line := fmt.Sprintf("round %d/%d, %s per txn: %d txns in %.1fs, %.1f txns/s, %s, %d errors",
		round, b.cfg.Rounds, plural(c.layout.RangesPerTxn, "range"), l.Count, run.elapsed.Seconds(), perSec(l.Count, run.elapsed.Seconds()), lat, run.errs)
	if run.firstErr != "" {
		line += " (first: " + run.firstErr + ")"
	}
	fmt.Fprintln(b.cfg.Log, line)
}
