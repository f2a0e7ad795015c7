package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Preload tunables: a batch is one Txn of puts, under etcd's and Concord's
// default --max-txn-ops of 128; a few concurrent batches fill a 100k-key
// space in seconds on a durable cluster.
// A batch rewrites the same values, so retrying one that failed (a
// timeout on a loaded machine, a leader change) is safe; preloadAttempts
// bounds the retries.
const (
	preloadBatchKeys = 64
	preloadWorkers   = 16
	preloadAttempts  = 5
	preloadBackoff   = 200 * time.Millisecond
)

// errorBackoff is how long a worker pauses after a failed op, so a cluster
// that is down costs the load generator little CPU and the error counts
// stay readable.
const errorBackoff = 10 * time.Millisecond

// Run runs one benchmark described by cfg and returns its report. While it
// runs it writes a progress line every cfg.ProgressInterval to progress,
// when progress is not nil. Cancelling ctx ends the run early; the report
// then covers the ops done so far.
func Run(ctx context.Context, cfg Config, progress io.Writer) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	clis, err := connect(ctx, &cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()

	rng := rand.New(rand.NewPCG(cfg.Seed, 0))
	value := make([]byte, cfg.ValueSize)
	for i := range value {
		value[i] = byte(rng.UintN(256))
	}
	var revs []atomic.Int64
	if cfg.Workload == TxnPut {
		revs = make([]atomic.Int64, cfg.KeySpace)
	}
	if cfg.Preload {
		if err := preload(ctx, clis, &cfg, string(value), revs); err != nil {
			return nil, err
		}
	}

	r := &runner{
		cfg:   cfg,
		clis:  clis,
		value: string(value),
		revs:  revs,
		keys:  newKeyGenParams(cfg.Dist, cfg.KeySpace).gen,
	}
	if cfg.Workload == LeaseKeepAlive {
		if r.leases, err = grantLeases(ctx, clis, &cfg); err != nil {
			return nil, err
		}
	}
	return r.run(ctx, progress), nil
}

// benchLeaseTTL is the TTL of the leases LeaseKeepAlive renews, in
// seconds: long enough that none expires during a run.
const benchLeaseTTL = 3600

// grantLeases grants cfg.KeySpace leases over the clients, as preload
// writes keys, and returns their ids.
func grantLeases(ctx context.Context, clis []*clientv3.Client, cfg *Config) ([]clientv3.LeaseID, error) {
	ids := make([]clientv3.LeaseID, cfg.KeySpace)
	next := atomic.Int64{}
	errc := make(chan error, preloadWorkers)
	var wg sync.WaitGroup
	for w := range preloadWorkers {
		cli := clis[w%len(clis)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= len(ids) || ctx.Err() != nil {
					return
				}
				var err error
				for attempt := 0; attempt < preloadAttempts; attempt++ {
					gctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
					var resp *clientv3.LeaseGrantResponse
					resp, err = cli.Grant(gctx, benchLeaseTTL)
					cancel()
					if err == nil {
						ids[i] = resp.ID
						break
					}
					time.Sleep(preloadBackoff)
				}
				if err != nil {
					errc <- fmt.Errorf("bench: grant lease %d: %w", i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	if err := <-errc; err != nil {
		return nil, err
	}
	return ids, ctx.Err()
}

// connect dials cfg.Conns clients to cfg's endpoints, or to the leader's
// alone with cfg.LeaderOnly. The caller closes them.
func connect(ctx context.Context, cfg *Config) ([]*clientv3.Client, error) {
	endpoints := cfg.Endpoints
	if cfg.LeaderOnly {
		lctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		leader, err := FindLeader(lctx, cfg.Endpoints, cfg.DialTimeout)
		cancel()
		if err != nil {
			return nil, err
		}
		endpoints = []string{leader}
	}
	return dial(endpoints, cfg.Conns, cfg.DialTimeout)
}

// FindLeader returns the endpoint whose Maintenance.Status names itself
// leader, asking every endpoint in turn until one does (a cluster that just
// started may not have elected a leader yet) or ctx ends.
func FindLeader(ctx context.Context, endpoints []string, dialTimeout time.Duration) (string, error) {
	clis := make([]*clientv3.Client, 0, len(endpoints))
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	for _, ep := range endpoints {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: dialTimeout, Logger: zap.NewNop()})
		if err != nil {
			return "", fmt.Errorf("bench: %s: %w", ep, err)
		}
		clis = append(clis, cli)
	}
	for {
		var errs []error
		for i, ep := range endpoints {
			sctx, cancel := context.WithTimeout(ctx, dialTimeout)
			st, err := clis[i].Status(sctx, ep)
			cancel()
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", ep, err))
				continue
			}
			if st.Leader != 0 && st.Leader == st.Header.MemberId {
				return ep, nil
			}
		}
		select {
		case <-ctx.Done():
			if len(errs) == 0 {
				return "", fmt.Errorf("bench: no endpoint reports itself leader: %w", ctx.Err())
			}
			return "", fmt.Errorf("bench: no endpoint reports itself leader: %w", errors.Join(errs...))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// dial opens n client connections, connection i to endpoint i mod
// len(endpoints). The caller closes them.
func dial(endpoints []string, n int, timeout time.Duration) ([]*clientv3.Client, error) {
	var clis []*clientv3.Client
	for i := 0; i < n; i++ {
		c, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{endpoints[i%len(endpoints)]},
			DialTimeout: timeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			for _, c := range clis {
				c.Close()
			}
			return nil, fmt.Errorf("bench: dial %s: %w", endpoints[i%len(endpoints)], err)
		}
		clis = append(clis, c)
	}
	return clis, nil
}

// preload writes every key once in batched Txns and records each key's mod
// revision (the Txn's header revision) into revs, if revs is not nil.
func preload(ctx context.Context, clis []*clientv3.Client, cfg *Config, value string, revs []atomic.Int64) error {
	batches := make(chan int)
	errc := make(chan error, preloadWorkers)
	var wg sync.WaitGroup
	for w := 0; w < preloadWorkers; w++ {
		cli := clis[w%len(clis)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			for first := range batches {
				var err error
				for attempt := 0; attempt < preloadAttempts; attempt++ {
					if err = preloadBatch(ctx, cli, cfg, value, revs, first); err == nil || ctx.Err() != nil {
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
	for first := 0; first < cfg.KeySpace; first += preloadBatchKeys {
		select {
		case batches <- first:
		case err = <-errc:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(batches)
	wg.Wait()
	close(errc)
	if err == nil {
		err = <-errc // nil when the channel is empty and closed
	}
	if err != nil {
		return fmt.Errorf("bench: preload: %w", err)
	}
	return nil
}

func preloadBatch(ctx context.Context, cli *clientv3.Client, cfg *Config, value string, revs []atomic.Int64, first int) error {
	last := min(first+preloadBatchKeys, cfg.KeySpace)
	ops := make([]clientv3.Op, 0, last-first)
	for i := first; i < last; i++ {
		ops = append(ops, clientv3.OpPut(Key(i, cfg.KeySize), value))
	}
	tctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	resp, err := cli.Txn(tctx).Then(ops...).Commit()
	cancel()
	if err != nil {
		return err
	}
	for i := first; i < last && revs != nil; i++ {
		revs[i].Store(resp.Header.Revision)
	}
	return nil
}

// runner is one measured run; its fields are read-only once run starts.
type runner struct {
	cfg   Config
	clis  []*clientv3.Client
	value string
	revs  []atomic.Int64 // txn-put: the last mod revision seen per key
	// leases are lease-keepalive's leases, one per key index.
	leases []clientv3.LeaseID
	// keys builds each worker's key generator over its private rng.
	keys func(rng *rand.Rand) KeyGen
	// keyName names key index i; nil means Key(i, cfg.KeySize). The load
	// workload spreads its indexes over the key space with it.
	keyName func(i int) string
	// freshValues gives every put a value of its own, random, instead of
	// value: the load workload stores gigabytes, which must not be one
	// value repeated that a storage engine could compress or share.
	freshValues bool
	// onPut, if set, is told of every acknowledged put: its key index,
	// revision and when it was sent. The watch benchmark expects the
	// put's events with it.
	onPut func(i int, rev int64, sent time.Time)

	ops, errs atomic.Int64 // for the progress line
	tickets   atomic.Int64 // ops started, against cfg.Total
	stopped   atomic.Bool  // set when cfg.Duration has passed
}

// worker is one client's private state: nothing here is shared.
type worker struct {
	cli       *clientv3.Client
	keys      KeyGen
	rng       *rand.Rand
	hist      *Histogram
	byKind    map[string]*Histogram
	errCodes  map[string]int64
	errSample map[string]string
	conflicts int64
	buf       []byte // freshValues: the next put's value
}

func (r *runner) run(ctx context.Context, progress io.Writer) *Report {
	cfg := &r.cfg
	if cfg.OnMeasureStart != nil {
		cfg.OnMeasureStart()
	}
	start := time.Now()
	var lim *Limiter
	if cfg.Rate > 0 {
		lim = NewLimiter(start, cfg.Rate)
	}
	if cfg.Total == 0 {
		t := time.AfterFunc(cfg.Duration, func() { r.stopped.Store(true) })
		defer t.Stop()
	}
	workers := make([]*worker, cfg.Clients)
	var wg sync.WaitGroup
	for i := range workers {
		rng := rand.New(rand.NewPCG(cfg.Seed, uint64(i)+1))
		w := &worker{
			cli:       r.clis[i%len(r.clis)],
			keys:      r.keys(rng),
			rng:       rng,
			hist:      NewHistogram(),
			byKind:    map[string]*Histogram{},
			errCodes:  map[string]int64{},
			errSample: map[string]string{},
		}
		workers[i] = w
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.work(ctx, w, lim)
		}()
	}
	done := make(chan struct{})
	var pwg sync.WaitGroup
	if progress != nil {
		pwg.Add(1)
		go func() {
			defer pwg.Done()
			r.progress(progress, start, done)
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if cfg.OnMeasureEnd != nil {
		cfg.OnMeasureEnd()
	}
	close(done)
	pwg.Wait()
	return r.report(workers, elapsed)
}

// progress writes one line per interval until done is closed.
func (r *runner) progress(w io.Writer, start time.Time, done <-chan struct{}) {
	every := r.cfg.ProgressInterval
	if every <= 0 {
		every = time.Second
	}
	t := time.NewTicker(every)
	defer t.Stop()
	var lastOps int64
	last := start
	for {
		select {
		case <-done:
			return
		case now := <-t.C:
			ops := r.ops.Load()
			rate := float64(ops-lastOps) / now.Sub(last).Seconds()
			fmt.Fprintf(w, "%6.1fs  %9d ops  %9.0f ops/s  %d errors\n", now.Sub(start).Seconds(), ops, rate, r.errs.Load())
			lastOps, last = ops, now
		}
	}
}

// work runs w's ops until the run ends. It exits when the tickets run out,
// the duration has passed, or ctx ends.
func (r *runner) work(ctx context.Context, w *worker, lim *Limiter) {
	for !r.stopped.Load() && ctx.Err() == nil {
		if r.cfg.Total > 0 && r.tickets.Add(1) > r.cfg.Total {
			return
		}
		start := time.Now()
		if lim != nil {
			due, err := lim.Wait(ctx)
			if err != nil {
				return
			}
			start = due
		}
		kind, err := r.op(ctx, w)
		lat := time.Since(start)
		if err != nil {
			if ctx.Err() != nil {
				return // interrupted, not failed
			}
			r.errs.Add(1)
			code := ErrorCode(err)
			w.errCodes[code]++
			if _, ok := w.errSample[code]; !ok {
				w.errSample[code] = err.Error()
			}
			time.Sleep(errorBackoff)
			continue
		}
		r.ops.Add(1)
		w.hist.Record(lat)
		if r.cfg.Workload == Mixed {
			h := w.byKind[kind]
			if h == nil {
				h = NewHistogram()
				w.byKind[kind] = h
			}
			h.Record(lat)
		}
	}
}

// op runs one op of the workload and names its kind.
func (r *runner) op(ctx context.Context, w *worker) (string, error) {
	cfg := &r.cfg
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	i := w.keys.Next()
	var key string
	if r.keyName != nil {
		key = r.keyName(i)
	} else {
		key = Key(i, cfg.KeySize)
	}
	switch cfg.Workload {
	case Put:
		sent := time.Now()
		resp, err := w.cli.Put(ctx, key, r.putValue(w))
		if err == nil && r.onPut != nil {
			r.onPut(i, resp.Header.Revision, sent)
		}
		return "update", err
	case Range:
		return "read", r.get(ctx, w, key)
	case TxnPut:
		return "cas", r.cas(ctx, w, i, key)
	case LeaseKeepAlive:
		_, err := w.cli.KeepAliveOnce(ctx, r.leases[i])
		return "keepalive", err
	}
	// Mixed.
	if w.rng.IntN(100) < readPercent[cfg.Mix] {
		return "read", r.get(ctx, w, key)
	}
	if cfg.Mix == MixF {
		if err := r.get(ctx, w, key); err != nil {
			return "rmw", err
		}
		_, err := w.cli.Put(ctx, key, r.value)
		return "rmw", err
	}
	_, err := w.cli.Put(ctx, key, r.value)
	return "update", err
}

// putValue is the value of w's next put: the run's one value, or with
// freshValues a new random one.
func (r *runner) putValue(w *worker) string {
	if !r.freshValues {
		return r.value
	}
	if w.buf == nil {
		w.buf = make([]byte, r.cfg.ValueSize)
	}
	fillRandom(w.rng, w.buf)
	return string(w.buf)
}

func (r *runner) get(ctx context.Context, w *worker, key string) error {
	var opts []clientv3.OpOption
	if r.cfg.Serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	_, err := w.cli.Get(ctx, key, opts...)
	return err
}

// cas is one compare-and-swap on key i: put if its mod revision is the
// last one seen, else read it to learn the new one.
func (r *runner) cas(ctx context.Context, w *worker, i int, key string) error {
	rev := r.revs[i].Load()
	resp, err := w.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", rev)).
		Then(clientv3.OpPut(key, r.value)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return err
	}
	if resp.Succeeded {
		r.revs[i].Store(resp.Header.Revision)
		return nil
	}
	w.conflicts++
	if rs := resp.Responses; len(rs) == 1 {
		if kvs := rs[0].GetResponseRange().GetKvs(); len(kvs) == 1 {
			r.revs[i].Store(kvs[0].ModRevision)
		}
	}
	return nil
}

// report merges the workers' results.
func (r *runner) report(workers []*worker, elapsed time.Duration) *Report {
	cfg := &r.cfg
	rep := &Report{
		Workload:     cfg.Workload,
		Dist:         cfg.Dist,
		Serializable: cfg.Serializable && (cfg.Workload == Range || cfg.Workload == Mixed),
		Endpoints:    cfg.Endpoints,
		LeaderOnly:   cfg.LeaderOnly,
		Conns:        cfg.Conns,
		Clients:      cfg.Clients,
		KeySize:      cfg.KeySize,
		ValueSize:    cfg.ValueSize,
		KeySpace:     cfg.KeySpace,
		Rate:         cfg.Rate,
		DurationSec:  elapsed.Seconds(),
	}
	if cfg.Workload == Mixed {
		rep.Mix = cfg.Mix
	}
	all := NewHistogram()
	kinds := map[string]*Histogram{}
	for _, w := range workers {
		all.Merge(w.hist)
		for k, h := range w.byKind {
			if kinds[k] == nil {
				kinds[k] = NewHistogram()
			}
			kinds[k].Merge(h)
		}
		addErrors(&rep.ErrorsByCode, &rep.ErrorSamples, &rep.Errors, w.errCodes, w.errSample)
		rep.CASConflicts += w.conflicts
	}
	rep.Ops = all.Count()
	rep.Latency = all.Summary()
	if elapsed > 0 {
		rep.Throughput = float64(rep.Ops) / elapsed.Seconds()
	}
	if len(kinds) > 0 {
		rep.ByKind = map[string]Latency{}
		for k, h := range kinds {
			rep.ByKind[k] = h.Summary()
		}
	}
	return rep
}

// addErrors adds one worker's errors (counts and a sample message by gRPC
// code) to a report's, creating its maps on the first error.
func addErrors(byCode *map[string]int64, samples *map[string]string, total *int64, codes map[string]int64, sample map[string]string) {
	for code, n := range codes {
		if *byCode == nil {
			*byCode, *samples = map[string]int64{}, map[string]string{}
		}
		(*byCode)[code] += n
		*total += n
		if _, ok := (*samples)[code]; !ok {
			(*samples)[code] = sample[code]
		}
	}
}
