package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/anishathalye/porcupine"
	"github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/logging"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Summary is what a run found.
type Summary struct {
	Seed              int64
	Nodes             int
	Workloads         []string
	UnsafeNoReadLease bool
	UnsafeLockNoFence bool
	UnsafeTxnNoRecord bool
	UnsafeAPDropHints bool
	// Elapsed is the workload's actual length.
	Elapsed time.Duration
	// Interrupted is set when the run was cut short by its context.
	Interrupted bool

	// Ops counts operations per workload and result.
	Ops map[string]map[Result]int
	// Events are the faults injected, in order.
	Events []Event
	Report Report
	// RevisionOrder lists acknowledged writes whose revisions go against
	// real time (at most maxRevisionViolations).
	RevisionOrder []RevisionOrderViolation
	// Crashes lists nodes that exited without being killed.
	Crashes []string
	// Watchers is the number of watchers that followed the run, Watched
	// the events they saw, and Watch what they got wrong (at most
	// maxWatchViolations): see watch.go.
	Watchers, Watched int
	Watch             []string
	// Lock lists holds that overlapped in a lock's data (the lock
	// workload; see lock.go), at most maxWatchViolations.
	Lock []string
	// Bank is the bank workload's verdict (see bank.go).
	Bank BankReport
	// AP is the AP workloads' verdict (see ap.go).
	AP APReport

	// Availability: operations whose whole interval fell while a majority
	// of nodes was up and connected, and how many of those succeeded;
	// likewise for operations through a node inside that majority.
	MajorityOps, MajorityOK int
	InsideOps, InsideOK     int

	OutDir string
}

// Failed reports whether the run found a consistency violation or a
// node crash.
func (s Summary) Failed() bool {
	return len(s.Report.Anomalies()) > 0 || len(s.Crashes) > 0 || len(s.RevisionOrder) > 0 || len(s.Watch) > 0 || len(s.Lock) > 0 || s.Bank.Found > 0 || s.AP.Found > 0
}

// Write prints the summary for people.
func (s Summary) Write(w io.Writer) {
	knob := ""
	if s.UnsafeNoReadLease {
		knob = ", --unsafe-no-read-lease"
	}
	if s.UnsafeLockNoFence {
		knob += ", --unsafe-lock-no-fence"
	}
	if s.UnsafeTxnNoRecord {
		knob += ", --unsafe-txn-no-record"
	}
	if s.UnsafeAPDropHints {
		knob += ", --unsafe-ap-drop-hints"
	}
	fmt.Fprintf(w, "chaos summary (seed %d, %d nodes, %s, %.0fs%s)\n", s.Seed, s.Nodes, strings.Join(s.Workloads, "+"), s.Elapsed.Seconds(), knob)
	if s.Interrupted {
		fmt.Fprintln(w, "  INTERRUPTED before the end of the run")
	}
	total := map[Result]int{}
	wls := make([]string, 0, len(s.Ops))
	for wl := range s.Ops {
		wls = append(wls, wl)
	}
	sort.Strings(wls)
	for _, wl := range wls {
		m := s.Ops[wl]
		fmt.Fprintf(w, "  ops %-9s ok %d, fail %d, info %d\n", wl, m[Ok], m[Fail], m[Info])
		for r, n := range m {
			total[r] += n
		}
	}
	fmt.Fprintf(w, "  ops total     ok %d, fail %d, info %d\n", total[Ok], total[Fail], total[Info])
	faults := map[string]int{}
	for _, e := range s.Events {
		faults[e.Kind]++
	}
	var fs []string
	for _, k := range faultGroups["all"] {
		if faults[k] > 0 {
			fs = append(fs, fmt.Sprintf("%s %d", k, faults[k]))
		}
	}
	if len(fs) == 0 {
		fs = []string{"none"}
	}
	fmt.Fprintf(w, "  faults        %s\n", strings.Join(fs, ", "))
	fmt.Fprintf(w, "  availability  %s of %d ops while a majority was connected; %s of %d through a node inside it\n",
		ratio(s.MajorityOK, s.MajorityOps), s.MajorityOps, ratio(s.InsideOK, s.InsideOps), s.InsideOps)
	an := s.Report.Anomalies()
	fmt.Fprintf(w, "  keys checked  %d (%d linearizable, %d not, %d unknown: checker timeout)\n",
		len(s.Report.Keys), len(s.Report.Keys)-len(an)-s.Report.Unknown(), len(an), s.Report.Unknown())
	for _, k := range an {
		fmt.Fprintf(w, "  ANOMALY       %s key %s (%d ops): not linearizable; see %s\n", k.Workload, k.Key, k.Ops, k.HTML)
	}
	fmt.Fprintf(w, "  revisions     %s\n", map[bool]string{true: "increase with real time over every acknowledged write", false: "GO BACKWARDS"}[len(s.RevisionOrder) == 0])
	for _, v := range s.RevisionOrder {
		fmt.Fprintf(w, "  ANOMALY       write of %s (revision %d, began %.3fs) after write of %s (revision %d, ended %.3fs)\n",
			v.Later.Key, v.Later.Revision, float64(v.Later.Start)/1e9, v.Earlier.Key, v.Earlier.Revision, float64(v.Earlier.End)/1e9)
	}
	fmt.Fprintf(w, "  watches       %d watchers saw %d events: %s\n", s.Watchers, s.Watched, map[bool]string{true: "every acknowledged write once, in order", false: "WRONG"}[len(s.Watch) == 0])
	for _, v := range s.Watch {
		fmt.Fprintf(w, "  ANOMALY       %s\n", v)
	}
	if contains(s.Workloads, WorkloadLock) {
		fmt.Fprintf(w, "  locks         %s\n", map[bool]string{true: "no two holders wrote at once", false: "TWO HOLDERS AT ONCE"}[len(s.Lock) == 0])
	}
	for _, v := range s.Lock {
		fmt.Fprintf(w, "  ANOMALY       %s\n", v)
	}
	if contains(s.Workloads, WorkloadBank) {
		b := s.Bank
		verdict := fmt.Sprintf("total %d kept, every acknowledged transfer seen", b.Total)
		if b.Found > 0 {
			verdict = fmt.Sprintf("MONEY WRONG (%d violations, the first %d below)", b.Found, len(b.Violations))
		}
		fmt.Fprintf(w, "  bank          %d accounts in %d range(s) at setup; %d reads, %d transfers acknowledged, %d lost a race: %s\n",
			b.Accounts, b.Ranges, b.Reads, b.Transfers, b.Raced, verdict)
	}
	for _, v := range s.Bank.Violations {
		fmt.Fprintf(w, "  ANOMALY       %s\n", v)
	}
	if hasAP(s.Workloads) {
		a := s.AP
		verdict := "every acknowledged increment and add kept, nothing else"
		if a.Found > 0 {
			verdict = fmt.Sprintf("AP WRONG (%d violations, the first %d below)", a.Found, len(a.Violations))
		}
		fmt.Fprintf(w, "  ap            %d keys, %d with their replicas agreeing within %v (slowest %.1fs); %d increments and %d adds acknowledged: %s\n",
			a.Keys, a.Converged, a.Bound, a.Slowest.Seconds(), a.Increments, a.Adds, verdict)
	}
	for _, v := range s.AP.Violations {
		fmt.Fprintf(w, "  ANOMALY       %s\n", v)
	}
	for _, c := range s.Crashes {
		fmt.Fprintf(w, "  CRASH         %s\n", c)
	}
	verdict := "PASS"
	if s.Failed() {
		verdict = "FAIL"
	}
	fmt.Fprintf(w, "  %s; history and node logs in %s\n", verdict, s.OutDir)
}

func ratio(a, b int) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.3f", float64(a)/float64(b))
}

// Run runs the harness once: network, cluster, clients and nemesis for
// cfg.Duration, then teardown and the check. The teardown runs on every
// path, also when ctx is cancelled (then the partial history is still
// checked). An error means the harness itself failed; a consistency
// violation is reported through Summary.Failed.
func Run(ctx context.Context, cfg Config) (sum Summary, err error) {
	if err := cfg.Validate(); err != nil {
		return sum, err
	}
	if err := CheckPrerequisites(); err != nil {
		return sum, err
	}
	logf := cfg.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	sum = Summary{Seed: cfg.Seed, Nodes: cfg.Nodes, Workloads: cfg.Workloads, UnsafeNoReadLease: cfg.UnsafeNoReadLease, UnsafeLockNoFence: cfg.UnsafeLockNoFence, UnsafeTxnNoRecord: cfg.UnsafeTxnNoRecord, UnsafeAPDropHints: cfg.UnsafeAPDropHints, OutDir: cfg.OutDir}
	if hasAP(cfg.Workloads) {
		// go-redis logs every failed dial to a node that is down; the
		// history records the errors that matter.
		redis.SetLogger(&logging.VoidLogger{})
	}
	if err := CleanLeftovers(ctx); err != nil {
		logf("chaos: cleaning leftovers of earlier runs: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(cfg.OutDir, "logs"), 0o755); err != nil {
		return sum, err
	}
	dataDir, err := os.MkdirTemp("", dataDirPrefix(os.Getpid()))
	if err != nil {
		return sum, err
	}
	defer os.RemoveAll(dataDir)

	w, err := NewNetwork(ctx, os.Getpid(), cfg.Nodes)
	if err != nil {
		return sum, err
	}
	defer func() {
		if cerr := w.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	logf("chaos: network %s0/24 on bridge %s; starting %d nodes", w.prefix, w.bridge(), cfg.Nodes)
	c, err := StartCluster(ctx, w, ClusterOptions{
		Binary:                cfg.Binary,
		DataDir:               dataDir,
		LogDir:                filepath.Join(cfg.OutDir, "logs"),
		ReplicationFactor:     cfg.ReplicationFactor,
		UnsafeNoReadLease:     cfg.UnsafeNoReadLease,
		UnsafeTxnNoRecord:     cfg.UnsafeTxnNoRecord,
		ClockFiles:            hasClockFaults(cfg.Faults),
		Redis:                 hasAP(cfg.Workloads),
		APAntiEntropyInterval: cfg.APAntiEntropyInterval,
		UnsafeAPDropHints:     cfg.UnsafeAPDropHints,
	})
	if err != nil {
		return sum, err
	}
	defer c.Stop()

	var hist History
	clients := make([]*clientv3.Client, cfg.Clients)
	for i := range clients {
		if clients[i], err = newClient(c.ClientAddr(i % cfg.Nodes)); err != nil {
			return sum, err
		}
		defer clients[i].Close()
	}
	// The watchers: one per node, each knowing every node and starting on
	// its own, from the revision before the first operation.
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	var wclis []*clientv3.Client
	for i := range cfg.Nodes {
		var addrs []string
		for j := range cfg.Nodes {
			addrs = append(addrs, c.ClientAddr((i+j)%cfg.Nodes))
		}
		cli, err := newClient(addrs...)
		if err != nil {
			return sum, err
		}
		defer cli.Close()
		wclis = append(wclis, cli)
	}
	if contains(cfg.Workloads, WorkloadBank) {
		if sum.Bank.Ranges, err = setupBank(ctx, c, wclis[0], cfg); err != nil {
			return sum, err
		}
		logf("chaos: bank: %d accounts in %d ranges", cfg.BankAccounts, sum.Bank.Ranges)
	}
	startResp, err := clients[0].Get(ctx, "chaos/")
	if err != nil {
		return sum, fmt.Errorf("chaos: first read: %w", err)
	}
	watchers := startWatchers(wctx, wclis, startResp.Header.Revision+1)
	sum.Watchers = len(watchers)

	sched := Schedule(cfg.Seed, cfg.Faults, cfg.Duration, cfg.Interval)
	logf("chaos: seed %d: %d faults scheduled over %v; %d clients", cfg.Seed, len(sched), cfg.Duration, cfg.Clients)
	t0 := time.Now()
	deadline := t0.Add(cfg.Duration)
	nm := newNemesis(c, w, t0, logf)
	nm.splitKey = func(pick uint64) string {
		if key, ok := bankSplitKey(cfg.Workloads, cfg.BankAccounts, pick); ok {
			return key
		}
		// A key of the current epoch (see client.key), of either workload.
		epoch := int64(time.Since(t0) / cfg.KeyLifetime)
		return fmt.Sprintf("chaos/%s/%d/%d", []string{"r", "a"}[pick%2], epoch, (pick/2)%uint64(cfg.Keys))
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		nm.run(ctx, sched)
	}()
	for i := range clients {
		cl := &client{
			id: i, node: i % cfg.Nodes, workload: cfg.Workloads[i%len(cfg.Workloads)],
			cli: clients[i], cfg: &cfg, t0: t0, hist: &hist, process: i,
			rng:  rand.New(rand.NewPCG(uint64(cfg.Seed), uint64(i)+1)),
			seen: map[string]string{}, added: map[string][]string{}, healed: nm.healed.Load,
		}
		if isAP(cl.workload) {
			cl.rdb = newRedis(c.RedisAddr(cl.node), cfg.OpTimeout)
			defer cl.rdb.Close()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl.run(ctx, deadline)
		}()
	}
	wg.Wait()
	sum.Elapsed = time.Since(t0)
	// Every fault is healed: the AP replicas get their bound to agree.
	apks := apKeys(hist.Ops())
	if len(apks) > 0 {
		logf("chaos: reading the replicas of %d AP keys on every node (bound %v)", len(apks), cfg.convergeTimeout())
		readReplicas(ctx, c, apks, cfg.convergeTimeout())
	}
	var newest int64
	for _, op := range hist.Ops() {
		if op.Result == Ok && op.Revision > newest {
			newest = op.Revision
		}
	}
	waitWatchers(watchers, newest, watchCatchUp)
	wevs, werrs, watched := results(watchers)
	wcancel()
	if contains(cfg.Workloads, WorkloadLock) {
		if sum.Lock, err = checkLocks(ctx, wclis[0], maxWatchViolations); err != nil {
			return sum, err
		}
	}
	sum.Interrupted = ctx.Err() != nil
	sum.Events = nm.events()
	sum.Crashes = c.Crashes()
	// Stop the cluster and free the network before the check, which may
	// take a while.
	c.Stop()
	if cerr := w.Close(); cerr != nil {
		logf("chaos: network teardown: %v", cerr)
	}

	ops := hist.Ops()
	sort.Slice(ops, func(i, j int) bool { return ops[i].Start < ops[j].Start })
	if err := WriteHistory(filepath.Join(cfg.OutDir, "history.jsonl"), ops); err != nil {
		return sum, err
	}
	if err := writeEvents(filepath.Join(cfg.OutDir, "faults.json"), sum.Events); err != nil {
		return sum, err
	}
	sum.Ops = map[string]map[Result]int{}
	for _, op := range ops {
		if sum.Ops[op.Workload] == nil {
			sum.Ops[op.Workload] = map[Result]int{}
		}
		sum.Ops[op.Workload][op.Result]++
	}
	sum.MajorityOps, sum.MajorityOK, sum.InsideOps, sum.InsideOK = availability(ops, nm.timeline())
	logf("chaos: checking %d ops", len(ops))
	sum.RevisionOrder = CheckRevisionOrder(ops, maxRevisionViolations)
	sum.Watched, sum.Watch = watched, CheckWatches(ops, wevs, werrs, maxWatchViolations)
	if hasAP(cfg.Workloads) {
		sum.AP = CheckAP(ops, apks, cfg.convergeTimeout(), maxAPViolations)
	}
	if contains(cfg.Workloads, WorkloadBank) {
		ranges := sum.Bank.Ranges
		sum.Bank = CheckBank(ops, cfg.BankAccounts, bankTotal(cfg.BankAccounts), maxBankViolations)
		sum.Bank.Ranges = ranges
	}
	sum.Report, err = Check(ops, CheckOptions{Timeout: cfg.CheckTimeout, OutDir: cfg.OutDir, Annotations: annotations(sum.Events)})
	if err != nil {
		return sum, err
	}
	for _, op := range ops {
		if op.Result == Ok {
			return sum, nil
		}
	}
	return sum, errNoOps
}

// writeEvents records the faults as injected, beside the history.
func writeEvents(path string, events []Event) error {
	data, err := json.MarshalIndent(events, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// annotations draws the faults on the visualisations.
func annotations(events []Event) []porcupine.Annotation {
	var out []porcupine.Annotation
	for _, e := range events {
		out = append(out, porcupine.Annotation{Tag: "nemesis", Start: e.Start, End: e.End,
			Description: e.Kind + " " + e.Desc, Details: e.Err, BackgroundColor: "#f3c9c9"})
	}
	return out
}

// errNoOps is returned when no client got anything done: the check of
// such a history proves nothing.
var errNoOps = errors.New("chaos: no operation succeeded")

// maxRevisionViolations bounds the revision-order violations reported.
const maxRevisionViolations = 20
