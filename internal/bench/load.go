package bench

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// LoadConfig is one load run (`concord bench load`): it writes Bytes of
// user data, as distinct keys with fresh random values, and at each
// checkpoint pauses the load to measure put and get throughput.
type LoadConfig struct {
	// Config gives the endpoints, connections, clients, key and value
	// sizes, per-op timeout, dial timeout and seed. Its workload, key
	// space, distribution, preload, total, duration and rate do not apply.
	Config

	// Bytes is the user data to load: each put counts its key and value.
	Bytes int64
	// Checkpoints are the loaded sizes at which to measure, in bytes; the
	// last checkpoint is always Bytes, added if missing.
	Checkpoints []int64
	// Measure is how long each measurement (puts, then gets) runs.
	Measure time.Duration
	// MaxDuration bounds the loading: past it the load stops and a last
	// checkpoint is measured where it got to (so a run takes at most
	// MaxDuration plus two Measures).
	MaxDuration time.Duration

	// Probe, if set, is called after each checkpoint's measurements for
	// what a client of the etcd API cannot see: the disk the cluster
	// uses, the number of ranges.
	Probe func(ctx context.Context) Probe
	// Guard, if set, is called every progress interval while loading; an
	// error stops the load (e.g. the disk is nearly full) and becomes
	// the report's stop reason, after a last checkpoint is measured.
	Guard func() error
}

// Probe is what LoadConfig.Probe found; a zero field is unknown.
type Probe struct {
	// DiskBytes is the disk used by the cluster's data directories.
	DiskBytes int64
	// Ranges is the number of ranges (Concord only).
	Ranges int
}

// Load tunables. loadProgressInterval is the default time between
// progress lines while loading, which may last an hour; a measurement
// writes one a second like any run.
const loadProgressInterval = 5 * time.Second

// maxKeyDigits bounds Config.KeySize for a load: the key space 10^KeySize
// must fit in a uint64 for keyPermutation.
const maxKeyDigits = 19

// Stop reasons of a LoadReport: why loading ended before Bytes.
const (
	StopQuota       = "quota"        // the server refused writes: etcd's "database space exceeded"
	StopMaxDuration = "max-duration" // LoadConfig.MaxDuration passed
	StopInterrupted = "interrupted"  // the context ended
)

// LoadCheckpoint is one row of a LoadReport: the state when measuring
// began and the two measurements.
type LoadCheckpoint struct {
	// TargetBytes is the checkpoint; LoadedBytes what was loaded when the
	// measurements began (at least TargetBytes unless the load stopped
	// early), Keys the keys written by then.
	TargetBytes int64 `json:"target_bytes"`
	LoadedBytes int64 `json:"loaded_bytes"`
	Keys        int64 `json:"keys"`
	// ElapsedSec is the time since the run began, when measuring began.
	ElapsedSec float64 `json:"elapsed_s"`
	// LoadMBps is the user data rate of the loading since the previous
	// checkpoint, in MB (10^6 bytes) per second.
	LoadMBps float64 `json:"load_mb_per_s"`
	// Put measured overwrites of loaded keys picked uniformly, with fresh
	// random values (the live data stays at LoadedBytes); Get
	// linearizable reads of them.
	Put     *Report `json:"put"`
	PutMBps float64 `json:"put_mb_per_s"`
	Get     *Report `json:"get"`
	GetMBps float64 `json:"get_mb_per_s"`
	// DiskBytes and Ranges are the Probe's, taken after the gets; zero
	// when unknown.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
	Ranges    int   `json:"ranges,omitempty"`
	// Stop is why the load ended at this row, if it ended before Bytes.
	Stop string `json:"stop,omitempty"`
}

// LoadReport is the outcome of Load. Its JSON form is
// `concord bench load --json`.
type LoadReport struct {
	Endpoints   []string `json:"endpoints"`
	LeaderOnly  bool     `json:"leader_only,omitempty"`
	Conns       int      `json:"conns"`
	Clients     int      `json:"clients"`
	KeySize     int      `json:"key_size"`
	ValueSize   int      `json:"value_size"`
	Bytes       int64    `json:"bytes"`
	Checkpoints []int64  `json:"checkpoints"`
	MeasureSec  float64  `json:"measure_s"`

	// LoadedBytes and Keys are the distinct keys the run wrote (the
	// measured puts overwrite them), DurationSec how long it took.
	LoadedBytes int64            `json:"loaded_bytes"`
	Keys        int64            `json:"keys"`
	DurationSec float64          `json:"duration_s"`
	Rows        []LoadCheckpoint `json:"checkpoints_measured"`
	// StopReason is why loading ended before Bytes (a Stop constant, or
	// the Guard's error); empty when all of Bytes was loaded.
	StopReason string `json:"stop_reason,omitempty"`
	// QuotaExceededAtBytes is the loaded bytes when the server first
	// refused a write for lack of space (etcd's NOSPACE); 0 if it never
	// did. QuotaError is the error it answered.
	QuotaExceededAtBytes int64  `json:"quota_exceeded_at_bytes,omitempty"`
	QuotaError           string `json:"quota_error,omitempty"`
	// Errors, ErrorsByCode and ErrorSamples are the loading's failed puts
	// (each row's reports hold the measurements' errors).
	Errors       int64             `json:"errors"`
	ErrorsByCode map[string]int64  `json:"errors_by_code,omitempty"`
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// Alarms are the cluster's alarms at the end (Maintenance.AlarmList),
	// e.g. "NOSPACE on member 8e9e05c52164694d"; AlarmError is why they
	// could not be listed.
	Alarms     []string `json:"alarms,omitempty"`
	AlarmError string   `json:"alarm_error,omitempty"`
}

// checkpoint is a planned stop of the load.
type checkpoint struct {
	bytes int64 // as asked
	keys  int64 // keys to have written to reach it
}

// planCheckpoints turns checkpoint sizes into the key counts that reach
// them with perKey bytes a key: sorted, without duplicates (two sizes
// reached by the same key count are one checkpoint), and ending at total.
func planCheckpoints(total int64, sizes []int64, perKey int64) ([]checkpoint, error) {
	if total <= 0 || perKey <= 0 {
		return nil, fmt.Errorf("bench: load of %d bytes at %d bytes a key", total, perKey)
	}
	sizes = slices.Sorted(slices.Values(append(sizes, total)))
	var out []checkpoint
	for _, s := range sizes {
		switch {
		case s <= 0:
			return nil, fmt.Errorf("bench: checkpoint %d is not positive", s)
		case s > total:
			return nil, fmt.Errorf("bench: checkpoint %s is past --bytes %s", FormatBytes(s), FormatBytes(total))
		}
		keys := (s + perKey - 1) / perKey
		if len(out) > 0 && out[len(out)-1].keys == keys {
			out[len(out)-1].bytes = s
			continue
		}
		out = append(out, checkpoint{bytes: s, keys: keys})
	}
	return out, nil
}

// Validate reports the first problem with c.
func (c *LoadConfig) Validate() error {
	switch {
	case len(c.Endpoints) == 0:
		return errors.New("bench: no endpoints")
	case c.Conns < 1:
		return fmt.Errorf("bench: conns %d < 1", c.Conns)
	case c.Clients < 1:
		return fmt.Errorf("bench: clients %d < 1", c.Clients)
	case c.KeySize < 1 || c.KeySize > maxKeyDigits:
		return fmt.Errorf("bench: load key size %d not in [1, %d]", c.KeySize, maxKeyDigits)
	case c.ValueSize < 1:
		return fmt.Errorf("bench: load value size %d < 1", c.ValueSize)
	case c.Bytes <= 0:
		return fmt.Errorf("bench: load of %d bytes", c.Bytes)
	case c.Measure <= 0:
		return fmt.Errorf("bench: measure %v <= 0", c.Measure)
	case c.MaxDuration <= 0:
		return fmt.Errorf("bench: max duration %v <= 0", c.MaxDuration)
	case c.Timeout <= 0:
		return fmt.Errorf("bench: timeout %v <= 0", c.Timeout)
	}
	// A few more keys than Bytes needs: puts that fail are not retried
	// but skipped, each taking a key.
	keys := 2 * float64(c.Bytes) / float64(c.KeySize+c.ValueSize)
	if space := math.Pow10(c.KeySize); keys > space {
		return fmt.Errorf("bench: %d-byte keys cannot name twice the keys of %s of %d-byte values; use a larger --key-size",
			c.KeySize, FormatBytes(c.Bytes), c.ValueSize)
	}
	_, err := planCheckpoints(c.Bytes, c.Checkpoints, int64(c.KeySize+c.ValueSize))
	return err
}

// keyPermutation maps the i-th key written to its key index, a bijection
// of [0, 10^digits): i*mult+offset mod 10^digits with mult coprime to 10.
// Consecutive writes so land all over the key space, in every range, as
// an application's keys would, rather than all at its end.
type keyPermutation struct {
	space, mult, offset uint64
}

func newKeyPermutation(digits int, seed uint64) keyPermutation {
	space := uint64(1)
	for range digits {
		space *= 10
	}
	mult := uint64(0x9E3779B97F4A7C15) % space // the golden ratio's bits
	for mult%2 == 0 || mult%5 == 0 {
		mult++
	}
	return keyPermutation{space: space, mult: mult % space, offset: seed * 0xBF58476D1CE4E5B9 % space}
}

// index is i's key index; i must be below p.space.
func (p keyPermutation) index(i uint64) uint64 {
	hi, lo := bits.Mul64(i, p.mult)
	_, r := bits.Div64(hi%p.space, lo, p.space) // hi < space since i, mult < space
	return (r + p.offset) % p.space
}

// fillRandom fills b from rng: incompressible, and distinct for every
// call.
func fillRandom(rng *rand.Rand, b []byte) {
	i := 0
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], rng.Uint64())
	}
	for v := rng.Uint64(); i < len(b); i, v = i+1, v>>8 {
		b[i] = byte(v)
	}
}

// IsNoSpace reports whether err is the server refusing a write because it
// is out of space: etcd's "etcdserver: mvcc: database space exceeded"
// (NOSPACE alarm, gRPC ResourceExhausted).
func IsNoSpace(err error) bool {
	return errors.Is(err, rpctypes.ErrNoSpace) || errors.Is(err, rpctypes.ErrGRPCNoSpace) ||
		(err != nil && strings.Contains(err.Error(), "database space exceeded"))
}

// loader is one load run's shared state.
type loader struct {
	cfg     LoadConfig
	clis    []*clientv3.Client
	perm    keyPermutation
	workers []*loadWorker

	// next is the next loading put's number, fed to perm: every one
	// takes its own, so the load writes no key twice.
	next atomic.Int64
	// loaded counts successful puts; claimed counts puts under way or
	// done. Invariant: loaded <= claimed <= the phase's target keys.
	loaded, claimed atomic.Int64
	errs            atomic.Int64 // failed loading puts, for progress
	measurements    uint64       // checkpoints measured so far

	quotaOnce  sync.Once
	quotaAt    atomic.Int64 // loaded bytes at the first NOSPACE
	quotaError string       // set in quotaOnce
}

// loadWorker is one loading client's private state.
type loadWorker struct {
	cli       *clientv3.Client
	rng       *rand.Rand
	buf       []byte
	errCodes  map[string]int64
	errSample map[string]string
}

func (l *loader) perKey() int64 { return int64(l.cfg.KeySize + l.cfg.ValueSize) }

func (l *loader) keyName(i int) string {
	return Key(int(l.perm.index(uint64(i))), l.cfg.KeySize)
}

// Load runs the load described by cfg and returns its report; it writes
// progress lines to progress when that is not nil. Cancelling ctx ends the
// run early, with a report of the checkpoints measured so far.
//
// The order of things: for each checkpoint, load (Clients workers put new
// keys until the checkpoint's bytes are written), then measure puts that
// overwrite loaded keys for Measure, then linearizable gets of them for
// Measure, then Probe. Loading stops early when the server refuses writes
// for lack of space (the bytes loaded then are recorded), when MaxDuration
// has passed or when Guard objects; a last checkpoint is then measured
// where the load got to, so what the cluster still does (reads at etcd's
// quota) is in the report. Last, the cluster's alarms are listed.
func Load(ctx context.Context, cfg LoadConfig, progress io.Writer) (*LoadReport, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	plan, err := planCheckpoints(cfg.Bytes, cfg.Checkpoints, int64(cfg.KeySize+cfg.ValueSize))
	if err != nil {
		return nil, err // Validate planned them already
	}
	clis, err := connect(ctx, &cfg.Config)
	if err != nil {
		return nil, err
	}
	defer func() {
		for _, c := range clis {
			c.Close()
		}
	}()
	l := &loader{cfg: cfg, clis: clis, perm: newKeyPermutation(cfg.KeySize, cfg.Seed)}
	for i := range cfg.Clients {
		l.workers = append(l.workers, &loadWorker{
			cli:       clis[i%len(clis)],
			rng:       rand.New(rand.NewPCG(cfg.Seed, 1<<32+uint64(i))),
			buf:       make([]byte, cfg.ValueSize),
			errCodes:  map[string]int64{},
			errSample: map[string]string{},
		})
	}
	rep := &LoadReport{
		Endpoints: cfg.Endpoints, LeaderOnly: cfg.LeaderOnly, Conns: cfg.Conns, Clients: cfg.Clients,
		KeySize: cfg.KeySize, ValueSize: cfg.ValueSize, Bytes: cfg.Bytes, MeasureSec: cfg.Measure.Seconds(),
	}
	for _, cp := range plan {
		rep.Checkpoints = append(rep.Checkpoints, cp.bytes)
	}
	start := time.Now()
	deadline := start.Add(cfg.MaxDuration)
	for _, cp := range plan {
		phaseStart, phaseBytes := time.Now(), l.loaded.Load()*l.perKey()
		reason := l.loadTo(ctx, cp.keys, deadline, start, progress)
		if reason == StopInterrupted {
			rep.StopReason = reason
			break
		}
		row := LoadCheckpoint{TargetBytes: cp.bytes, Keys: l.loaded.Load(), Stop: reason}
		row.LoadedBytes = row.Keys * l.perKey()
		row.ElapsedSec = time.Since(start).Seconds()
		if d := time.Since(phaseStart).Seconds(); d > 0 {
			row.LoadMBps = float64(row.LoadedBytes-phaseBytes) / d / 1e6
		}
		if progress != nil {
			fmt.Fprintf(progress, "checkpoint %s: %s loaded; measuring puts, then gets, %v each\n",
				FormatBytes(cp.bytes), FormatBytes(row.LoadedBytes), cfg.Measure)
		}
		l.measure(ctx, &row, progress)
		if cfg.Probe != nil {
			p := cfg.Probe(ctx)
			row.DiskBytes, row.Ranges = p.DiskBytes, p.Ranges
		}
		if progress != nil {
			fmt.Fprintf(progress, "checkpoint %s: put %.0f ops/s, get %.0f ops/s\n", FormatBytes(cp.bytes), row.Put.Throughput, row.Get.Throughput)
		}
		rep.Rows = append(rep.Rows, row)
		if ctx.Err() != nil {
			rep.StopReason = StopInterrupted
			break
		}
		if reason != "" {
			rep.StopReason = reason
			break
		}
	}
	rep.DurationSec = time.Since(start).Seconds()
	rep.Keys = l.loaded.Load()
	rep.LoadedBytes = rep.Keys * l.perKey()
	if at := l.quotaAt.Load(); at > 0 {
		rep.QuotaExceededAtBytes, rep.QuotaError = at, l.quotaError
	}
	for _, w := range l.workers {
		addErrors(&rep.ErrorsByCode, &rep.ErrorSamples, &rep.Errors, w.errCodes, w.errSample)
	}
	rep.Alarms, rep.AlarmError = listAlarms(ctx, clis[0], cfg.Timeout)
	return rep, nil
}

// loadTo runs the loading workers until keys puts have succeeded in all,
// and returns "" then, or the reason it stopped first.
func (l *loader) loadTo(ctx context.Context, keys int64, deadline, start time.Time, progress io.Writer) string {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		stop   atomic.Bool
		mu     sync.Mutex
		reason string // guarded by mu; the first reason to stop wins
	)
	stopWith := func(why string) {
		mu.Lock()
		if reason == "" {
			reason = why
		}
		mu.Unlock()
		stop.Store(true)
	}
	if l.quotaAt.Load() > 0 {
		return StopQuota
	}
	var wg sync.WaitGroup
	for _, w := range l.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if l.work(ctx, w, keys, &stop) {
				stopWith(StopQuota)
			}
		}()
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	every := l.cfg.ProgressInterval
	if every <= 0 {
		every = loadProgressInterval
	}
	t := time.NewTicker(every)
	defer t.Stop()
	lastBytes, last := l.loaded.Load()*l.perKey(), time.Now()
	for {
		select {
		case <-done:
			mu.Lock()
			defer mu.Unlock()
			if ctx.Err() != nil && reason == "" {
				return StopInterrupted
			}
			return reason
		case now := <-t.C:
			if now.After(deadline) {
				stopWith(StopMaxDuration)
			}
			if l.cfg.Guard != nil {
				if err := l.cfg.Guard(); err != nil {
					stopWith(err.Error())
				}
			}
			b := l.loaded.Load() * l.perKey()
			if progress != nil {
				fmt.Fprintf(progress, "%7.0fs  loaded %9s  %6.1f MB/s  %d errors\n", now.Sub(start).Seconds(), FormatBytes(b),
					float64(b-lastBytes)/now.Sub(last).Seconds()/1e6, l.errs.Load())
			}
			lastBytes, last = b, now
		}
	}
}

// work puts new keys until keys puts have succeeded, stop is set or ctx
// ends. It reports whether the server refused a write for lack of space.
func (l *loader) work(ctx context.Context, w *loadWorker, keys int64, stop *atomic.Bool) (noSpace bool) {
	for !stop.Load() && ctx.Err() == nil {
		if l.claimed.Add(1) > keys {
			l.claimed.Add(-1)
			return false
		}
		key := l.keyName(int(l.next.Add(1) - 1))
		fillRandom(w.rng, w.buf)
		pctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
		_, err := w.cli.Put(pctx, key, string(w.buf))
		cancel()
		if err == nil {
			l.loaded.Add(1)
			continue
		}
		l.claimed.Add(-1)
		if ctx.Err() != nil {
			return false // interrupted, not failed
		}
		l.errs.Add(1)
		code := ErrorCode(err)
		w.errCodes[code]++
		if _, ok := w.errSample[code]; !ok {
			w.errSample[code] = err.Error()
		}
		if IsNoSpace(err) {
			l.quotaOnce.Do(func() {
				l.quotaError = err.Error()
				l.quotaAt.Store(max(l.loaded.Load()*l.perKey(), 1))
			})
			return true
		}
		time.Sleep(errorBackoff)
	}
	return false
}

// measure fills row's put and get measurements over the keys loaded so
// far: puts that overwrite them with fresh random values (YCSB's update),
// so the live data stays at the checkpoint, then linearizable gets.
func (l *loader) measure(ctx context.Context, row *LoadCheckpoint, progress io.Writer) {
	cfg := l.cfg.Config
	cfg.Total, cfg.Duration, cfg.Rate, cfg.Serializable = 0, l.cfg.Measure, 0, false
	cfg.OnMeasureStart, cfg.OnMeasureEnd = nil, nil
	// A seed of its own for every measurement: the runner seeds each
	// worker's values and keys from cfg.Seed, and two measurements that
	// wrote the same value sequence would store values twice.
	l.measurements++
	cfg.Seed = l.cfg.Seed + l.measurements*0x9E3779B97F4A7C15
	written := int(max(l.next.Load(), 1))
	cfg.KeySpace = written
	keys := func(rng *rand.Rand) KeyGen { return &uniform{n: written, rng: rng} }

	cfg.Workload = Put
	put := &runner{cfg: cfg, clis: l.clis, keys: keys, keyName: l.keyName, freshValues: true}
	row.Put = put.run(ctx, progress)
	for _, msg := range row.Put.ErrorSamples {
		if strings.Contains(msg, "database space exceeded") {
			l.quotaOnce.Do(func() {
				l.quotaError = msg
				l.quotaAt.Store(max(l.loaded.Load()*l.perKey(), 1))
			})
		}
	}

	cfg.Workload = Range
	get := &runner{cfg: cfg, clis: l.clis, keys: keys, keyName: l.keyName}
	row.Get = get.run(ctx, progress)
	perKey := float64(l.perKey())
	row.PutMBps = row.Put.Throughput * perKey / 1e6
	row.GetMBps = row.Get.Throughput * perKey / 1e6
}

// listAlarms lists the cluster's alarms as "NOSPACE on member <id>", or
// says why it could not.
func listAlarms(ctx context.Context, cli *clientv3.Client, timeout time.Duration) ([]string, string) {
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeout)
	defer cancel()
	resp, err := cli.AlarmList(actx)
	if err != nil {
		return nil, err.Error()
	}
	var out []string
	for _, a := range resp.Alarms {
		out = append(out, fmt.Sprintf("%s on member %x", a.Alarm, a.MemberID))
	}
	return out, ""
}
