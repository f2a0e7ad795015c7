package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/concorddb/concord/internal/bench"
	"github.com/concorddb/concord/internal/server"
	"github.com/spf13/cobra"
)

// benchFlags are the flags every workload shares.
type benchFlags struct {
	cfg          bench.Config
	endpoints    string
	consistency  string
	jsonOut      bool
	quiet        bool
	localCluster int
	cpuProfile   string
	memProfile   string
}

// defaultBenchLeases is lease-keepalive's number of leases: the issue's
// 10k.
const defaultBenchLeases = 10000

func benchCmd() *cobra.Command {
	bf := &benchFlags{cfg: bench.DefaultConfig()}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Load-test any etcd v3 API cluster (Concord or etcd) and report throughput and latency",
		Long: `bench drives a cluster through the etcd v3 client, as etcd's benchmark tool does,
and reports throughput, latency percentiles from an HDR histogram and errors by
gRPC code. It works against Concord and etcd alike.

  concord bench put --endpoints 127.0.0.1:2379 --clients 100 --conns 10
  concord bench range --consistency s --clients 100 --conns 10 --json
  concord bench mixed --ycsb f --dist zipfian --duration 30s
  concord bench txn-put --compare-ranges 1,2 --rounds 3   # txns whose keys lie in 1 range vs 2
  concord bench load --bytes 10GiB --checkpoints 100MiB,1GiB --local-cluster 3
  concord bench watch --watchers 100000 --streams 100 --watched-keys 1000
  concord bench compare     # Concord against etcd on this machine, into BENCHMARKS.md

Range, txn-cas and mixed write every key of the key space once before
measuring (--preload=false to skip). --rate makes the run open-loop: latency
then counts from each op's scheduled start.`,
	}
	f := cmd.PersistentFlags()
	f.StringVar(&bf.endpoints, "endpoints", "127.0.0.1:2379", "comma-separated client endpoints (host:port)")
	f.BoolVar(&bf.cfg.LeaderOnly, "target-leader", false, "send everything to the endpoint that reports itself leader, instead of spreading connections over all endpoints")
	f.IntVar(&bf.cfg.Conns, "conns", bf.cfg.Conns, "number of gRPC connections")
	f.IntVar(&bf.cfg.Clients, "clients", bf.cfg.Clients, "number of concurrent clients (each one op in flight), sharing the connections")
	f.IntVar(&bf.cfg.KeySize, "key-size", bf.cfg.KeySize, "key size in bytes")
	f.IntVar(&bf.cfg.ValueSize, "val-size", bf.cfg.ValueSize, "value size in bytes")
	f.IntVar(&bf.cfg.KeySpace, "key-space-size", bf.cfg.KeySpace, "number of distinct keys")
	f.StringVar((*string)(&bf.cfg.Dist), "dist", string(bf.cfg.Dist), "key distribution: uniform or zipfian")
	f.Int64Var(&bf.cfg.Total, "total", 0, "stop after this many ops (0: run for --duration)")
	f.DurationVar(&bf.cfg.Duration, "duration", bf.cfg.Duration, "how long to run when --total is 0")
	f.Float64Var(&bf.cfg.Rate, "rate", 0, "target ops/s over all clients, open loop (0: as fast as possible)")
	f.DurationVar(&bf.cfg.Timeout, "timeout", bf.cfg.Timeout, "per-op timeout")
	f.Uint64Var(&bf.cfg.Seed, "seed", bf.cfg.Seed, "random seed for keys and values")
	f.BoolVar(&bf.jsonOut, "json", false, "print the report as JSON")
	f.BoolVar(&bf.quiet, "quiet", false, "no progress line on stderr")
	f.IntVar(&bf.localCluster, "local-cluster", 0, "ignore --endpoints and run against an in-process Concord cluster of this many nodes (for profiling)")
	f.StringVar(&bf.cpuProfile, "cpuprofile", "", "write a CPU profile of this process over the measured part of the run; with --local-cluster it covers the Concord nodes too")
	f.StringVar(&bf.memProfile, "memprofile", "", "write an allocation profile of this process over the whole run (go tool pprof -sample_index=alloc_space); with --local-cluster it covers the Concord nodes too")

	put := &cobra.Command{Use: "put", Short: "Put random keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return bf.run(cmd, bench.Put) }}
	// Each workload has its own --preload default, so the flag is read
	// per command in run (one variable bound to all of them took the last
	// registered default).
	put.Flags().Bool("preload", false, "write the whole key space before measuring")
	keepalivePreload := false // set by the lease-keepalive command's flag; it grants its leases whatever it says
	rng := &cobra.Command{Use: "range", Short: "Get one random key per op", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return bf.run(cmd, bench.Range) }}
	txn := &cobra.Command{Use: "txn-cas", Short: "Compare-and-swap: Txn(if mod_revision(k) = last seen then put else get)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return bf.run(cmd, bench.TxnPut) }}
	keepalive := &cobra.Command{Use: "lease-keepalive", Short: "Grant --key-space-size leases, then renew one random lease per op (etcd's benchmark lease-keepalive over many leases)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("key-space-size") {
				bf.cfg.KeySpace = defaultBenchLeases
			}
			return bf.run(cmd, bench.LeaseKeepAlive)
		}}
	keepalive.Flags().BoolVar(&keepalivePreload, "preload", false, "also write the key space before measuring (the leases are granted anyway)")
	mixed := &cobra.Command{Use: "mixed", Short: "A YCSB core mix: a (50/50 read/update), b (95/5), c (read only), f (50/50 read/read-modify-write)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return bf.run(cmd, bench.Mixed) }}
	mixed.Flags().StringVar((*string)(&bf.cfg.Mix), "ycsb", string(bf.cfg.Mix), "YCSB mix: a, b, c or f")
	for _, c := range []*cobra.Command{rng, txn, mixed} {
		c.Flags().Bool("preload", true, "write the whole key space before measuring")
	}
	for _, c := range []*cobra.Command{rng, mixed} {
		c.Flags().StringVar(&bf.consistency, "consistency", "l", "read consistency: l (linearizable) or s (serializable)")
	}
	cmd.AddCommand(put, rng, txn, txnPutCmd(bf), keepalive, mixed, loadCmd(bf), watchCmd(bf), compareCmd())
	return cmd
}

// run runs workload w with the parsed flags and prints the report.
func (bf *benchFlags) run(cmd *cobra.Command, w bench.Workload) error {
	cfg := bf.cfg
	cfg.Workload = w
	preload, err := cmd.Flags().GetBool("preload")
	if err != nil {
		return err
	}
	cfg.Preload = preload
	switch bf.consistency {
	case "", "l":
	case "s":
		cfg.Serializable = true
	default:
		return fmt.Errorf("--consistency must be l or s, not %q", bf.consistency)
	}
	cfg.Endpoints = splitURLs(bf.endpoints)
	ctx, stop := benchContext(cmd)
	defer stop()
	if bf.localCluster > 0 {
		lc, dir, err := bf.startLocal("", nil, false /* http */)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		defer lc.Stop()
		cfg.Endpoints = lc.ClientAddrs()
	}
	if bf.cpuProfile != "" {
		f, err := os.Create(bf.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		cfg.OnMeasureStart = func() {
			if err := pprof.StartCPUProfile(f); err != nil {
				fmt.Fprintln(os.Stderr, "concord bench: cpuprofile:", err)
			}
		}
		cfg.OnMeasureEnd = pprof.StopCPUProfile
	}
	var progress io.Writer
	if !bf.quiet {
		progress = os.Stderr
	}
	rep, err := bench.Run(ctx, cfg, progress)
	if err != nil {
		return err
	}
	return bf.writeReport(cmd, rep)
}

// writeReport writes the allocation profile if asked, then rep, as JSON
// with --json, else as text.
func (bf *benchFlags) writeReport(cmd *cobra.Command, rep interface{ WriteText(io.Writer) error }) error {
	if bf.memProfile != "" {
		if err := writeAllocProfile(bf.memProfile); err != nil {
			return err
		}
	}
	out := cmd.OutOrStdout()
	if bf.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(rep)
	}
	return rep.WriteText(out)
}

// startLocal starts --local-cluster's in-process Concord cluster with its
// data in a new directory under parent (the system temp dir if empty),
// each node's config adjusted by tune if it is not nil, and with an HTTP
// port (metrics) on each node if http is set. The caller stops
// the cluster and then removes the directory, which it gets back even
// when the start failed.
func (bf *benchFlags) startLocal(parent string, tune func(i int, c *server.Config), http bool) (*server.LocalCluster, string, error) {
	dir, err := os.MkdirTemp(parent, "concord-bench-")
	if err != nil {
		return nil, "", err
	}
	lc, err := server.StartLocalCluster(bf.localCluster, dir, server.LocalOptions{
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
		Tune:   tune,
		HTTP:   http,
	})
	return lc, dir, err
}

// startCPUProfile starts the CPU profile --cpuprofile asks for (nothing
// without it) and returns what stops it and closes its file.
func (bf *benchFlags) startCPUProfile() (stop func(), err error) {
	if bf.cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(bf.cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

// benchContext is cmd's context, cancelled by SIGINT or SIGTERM so a run
// ends with a report and its clusters stopped.
func benchContext(cmd *cobra.Command) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
}

func init() { subcommands = append(subcommands, benchCmd) }

// writeAllocProfile writes the allocations made since the process started.
func writeAllocProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := pprof.Lookup("allocs").WriteTo(f, 0); err != nil {
		f.Close()
		return fmt.Errorf("memprofile: %w", err)
	}
	return f.Close()
}
