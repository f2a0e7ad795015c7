package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/concorddb/concord/internal/bench"
	"github.com/concorddb/concord/internal/bench/compare"
	"github.com/spf13/cobra"
)

// watchFlags are `concord bench watch`'s own flags.
type watchFlags struct {
	cfg          bench.WatchConfig
	watchers     []int
	localCompare int
	rounds       int
	etcdBin      string
	concordBin   string
	dir          string
}

func watchCmd(bf *benchFlags) *cobra.Command {
	wf := &watchFlags{cfg: bench.DefaultWatchConfig()}
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Many watchers on one node while puts write the watched keys: events/s, delivery latency, creation time, memory per watcher",
		Long: `watch creates --watchers watchers over --streams watch streams on one endpoint
(--watch-endpoint, default the first of --endpoints), watcher g on key g mod
--watched-keys, then runs the put workload on the watched keys (--clients,
--conns, --val-size, --duration or --total, --rate). Every acknowledged put
must reach each watcher of its key: it reports the events delivered against
those expected, events/s, puts/s while watched, the time to create every
watcher and the delivery latency (put acknowledged -> event received, HDR
histogram). --slow-stream runs the puts again beside one more stream that
never reads: a slow watcher must not slow the writes.

With --local-compare N it ignores --endpoints and, for every --watchers count
and --rounds times, starts a fresh N-member Concord cluster and a fresh
N-member etcd cluster (processes on loopback, as bench compare does) in turn,
A B A B, puts every watcher on member 1 and also reads that member's RSS from
/proc before and after --probe-streams one-watcher streams and before and
after the watchers: memory per stream and per watcher. It prints each
report and a Markdown table of both systems.

  concord bench watch --endpoints 127.0.0.1:2379 --watchers 10000 --streams 10 --watched-keys 1000
  concord bench watch --local-compare 3 --watchers 10000,100000 --duration 30s --clients 16 --conns 4`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return wf.run(cmd, bf) },
	}
	f := cmd.Flags()
	f.IntSliceVar(&wf.watchers, "watchers", []int{wf.cfg.Watchers}, "number of watchers; a comma-separated list runs each in turn")
	f.IntVar(&wf.cfg.Streams, "streams", wf.cfg.Streams, "watch streams the watchers are spread over")
	f.IntVar(&wf.cfg.WatchConns, "watch-conns", wf.cfg.WatchConns, "gRPC connections the watch streams are spread over")
	f.IntVar(&wf.cfg.WatchedKeys, "watched-keys", wf.cfg.WatchedKeys, "distinct keys watched, and written by the puts (the key space)")
	f.StringVar(&wf.cfg.WatchEndpoint, "watch-endpoint", "", "the endpoint every watcher is on (default: the first of --endpoints)")
	f.DurationVar(&wf.cfg.CreateTimeout, "create-timeout", wf.cfg.CreateTimeout, "give up when the watchers are not all created by then")
	f.DurationVar(&wf.cfg.DrainTimeout, "drain-timeout", wf.cfg.DrainTimeout, "after the last put, how long to wait for the events still due")
	f.IntVar(&wf.cfg.ProbeStreams, "probe-streams", wf.cfg.ProbeStreams, "with --local-compare: one-watcher streams opened to measure the memory per stream (0: skip)")
	f.BoolVar(&wf.cfg.SlowStream, "slow-stream", false, "run the puts again beside one more stream, watching every watched key, that never reads")
	f.IntVar(&wf.localCompare, "local-compare", 0, "ignore --endpoints: run against fresh Concord and etcd clusters of this many members, in turn (processes, etcd built from go.mod unless --etcd-bin)")
	f.IntVar(&wf.rounds, "rounds", 1, "with --local-compare: runs of each watcher count against each system")
	f.StringVar(&wf.etcdBin, "etcd-bin", "", "with --local-compare: the etcd binary (default: go build "+etcdMainPkg+", run from the repository)")
	f.StringVar(&wf.concordBin, "concord-bin", "", "with --local-compare: the concord binary (default: this one)")
	f.StringVar(&wf.dir, "dir", "", "with --local-compare: where the clusters keep their data, on a real disk (default: the system temp dir)")
	return cmd
}

// watchSample is one run of `bench watch --local-compare`.
type watchSample struct {
	System string             `json:"system"`
	Round  int                `json:"round"`
	Report *bench.WatchReport `json:"report"`
}

func (wf *watchFlags) run(cmd *cobra.Command, bf *benchFlags) error {
	cfg := wf.cfg
	cfg.Put = bf.cfg
	cfg.Put.Endpoints = splitURLs(bf.endpoints)
	if !bf.quiet {
		cfg.Log = os.Stderr
	}
	if len(wf.watchers) == 0 {
		return errors.New("--watchers: give at least one count")
	}
	for _, n := range wf.watchers {
		c := cfg
		c.Watchers = n
		if err := c.Validate(); err != nil {
			return err // before a cluster is started for nothing
		}
	}
	ctx, stop := benchContext(cmd)
	defer stop()
	switch {
	case wf.localCompare > 0 && bf.localCluster > 0:
		return errors.New("--local-compare and --local-cluster exclude each other")
	case wf.localCompare > 0:
		return wf.compare(ctx, cmd, bf, cfg)
	case bf.localCluster > 0:
		lc, dir, err := bf.startLocal("", nil, false /* http */)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		defer lc.Stop()
		cfg.Put.Endpoints = lc.ClientAddrs()
	}
	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	var reps []*bench.WatchReport
	for _, n := range wf.watchers {
		c := cfg
		c.Watchers = n
		rep, err := bench.RunWatch(ctx, c)
		if err != nil {
			return err
		}
		reps = append(reps, rep)
	}
	if bf.jsonOut && len(reps) > 1 {
		return writeJSON(cmd.OutOrStdout(), reps)
	}
	for _, rep := range reps {
		if err := bf.writeReport(cmd, rep); err != nil {
			return err
		}
	}
	return nil
}

// compare runs every watcher count against a fresh cluster of each
// system in turn, --rounds times, and prints the reports and a table.
func (wf *watchFlags) compare(ctx context.Context, cmd *cobra.Command, bf *benchFlags, cfg bench.WatchConfig) error {
	concordBin := wf.concordBin
	if concordBin == "" {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		concordBin = exe
	}
	tmp, err := os.MkdirTemp(wf.dir, "concord-bench-watch-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	etcdBin := wf.etcdBin
	if etcdBin == "" {
		if etcdBin, err = buildEtcd(tmp); err != nil {
			return err
		}
	}
	systems := []compare.System{
		{Name: "concord", Command: []string{concordBin, "start"}},
		{Name: "etcd", Command: []string{etcdBin}},
	}
	var samples []watchSample
	for round := 1; round <= wf.rounds; round++ {
		for _, n := range wf.watchers {
			for _, sys := range systems {
				c := cfg
				c.Watchers = n
				rep, err := watchOnce(ctx, sys, tmp, wf.localCompare, c)
				if err != nil && ctx.Err() == nil {
					// One retry on a fresh cluster, as bench compare does:
					// on a shared machine a start can time out without
					// saying anything about the system.
					fmt.Fprintf(os.Stderr, "round %d, %d watchers, %s failed, retrying once: %v\n", round, n, sys.Name, err)
					rep, err = watchOnce(ctx, sys, tmp, wf.localCompare, c)
				}
				if err != nil {
					return fmt.Errorf("%d watchers on %s, round %d: %w", n, sys.Name, round, err)
				}
				fmt.Fprintf(os.Stderr, "round %d, %d watchers, %s:\n", round, n, sys.Name)
				if err := rep.WriteText(os.Stderr); err != nil {
					return err
				}
				samples = append(samples, watchSample{System: sys.Name, Round: round, Report: rep})
			}
		}
	}
	if bf.jsonOut {
		return writeJSON(cmd.OutOrStdout(), samples)
	}
	_, err = io.WriteString(cmd.OutOrStdout(), watchMarkdown(samples))
	return err
}

// watchOnce starts a fresh cluster of sys under dir, runs cfg with every
// watcher on its first member and that member's memory read from /proc,
// and stops the cluster.
func watchOnce(ctx context.Context, sys compare.System, dir string, members int, cfg bench.WatchConfig) (*bench.WatchReport, error) {
	d, err := os.MkdirTemp(dir, sys.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(d)
	c, err := compare.StartCluster(ctx, sys, d, members)
	if err != nil {
		return nil, err
	}
	defer c.Stop()
	cfg.Put.Endpoints = c.Endpoints()
	cfg.WatchEndpoint = cfg.Put.Endpoints[0]
	cfg.RSS = func() (int64, int64, error) { return c.RSS(0) }
	return bench.RunWatch(ctx, cfg)
}

// watchMarkdown is the table of a --local-compare run: a row per run.
func watchMarkdown(samples []watchSample) string {
	var b strings.Builder
	b.WriteString("| watchers | system | round | create (s) | puts/s | puts/s, stalled stream beside | events/s | delivered / expected | ack -> event p50 / p99 (ms) | put sent -> event p50 / p99 (ms) | member B/watcher | member B/stream |\n")
	b.WriteString("|---:|---|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|\n")
	for _, s := range samples {
		r := s.Report
		slow := "-"
		if r.SlowStream != nil {
			slow = fmt.Sprintf("%.0f", r.SlowStream.Throughput)
		}
		var perWatcher, perStream string
		if m := r.Memory; m != nil {
			perWatcher = fmt.Sprintf("%.0f", m.PerWatcher)
			perStream = fmt.Sprintf("%.0f", m.PerStream)
		}
		fmt.Fprintf(&b, "| %d | %s | %d | %.2f | %.0f | %s | %.0f | %d / %d | %.2f / %.2f | %.2f / %.2f | %s | %s |\n",
			r.Watchers, s.System, s.Round, r.CreateSec, r.Puts.Throughput, slow, r.EventsPerSec,
			r.Delivered, r.Expected, r.Latency.P50Ms, r.Latency.P99Ms, r.LatencyFromPut.P50Ms, r.LatencyFromPut.P99Ms, perWatcher, perStream)
	}
	return b.String()
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
