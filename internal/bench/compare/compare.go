// Package compare measures Concord against etcd side by side on one
// machine: it starts a 3-member cluster of each as real processes on
// loopback, runs the same bench workloads against each in turn (A B A B, so
// drift on a shared machine hits both), samples every member's CPU time and
// peak RSS from /proc, and renders the ratios as a Markdown table for
// BENCHMARKS.md.
//
// It owns the process lifecycle of the clusters under test and the
// accounting around them; the load itself is package bench's. Each run
// gets a fresh cluster with its durable defaults (fsync on commit), so no
// run inherits another's data, heap or compaction debt.
//
// Linux only: CPU and memory come from /proc/<pid>/stat and status.
package compare

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/bench"
)

// Workload is one named bench configuration; Run fills in the endpoints,
// the duration and the measurement hooks.
type Workload struct {
	Name   string
	Config bench.Config
}

// workload builds a Workload from the default bench config: 8-byte keys,
// 256-byte values, a 100k-key space.
func workload(name string, w bench.Workload, clients, conns int, tweak func(*bench.Config)) Workload {
	c := bench.DefaultConfig()
	c.Workload, c.Clients, c.Conns = w, clients, conns
	c.Preload = w.WantsPreload()
	if tweak != nil {
		tweak(&c)
	}
	return Workload{Name: name, Config: c}
}

// DefaultWorkloads are the ones that matter first: put and linearizable
// range with one client and with 100 clients over 10 connections,
// serializable range and compare-and-swap with 100 over 10.
func DefaultWorkloads() []Workload {
	serializable := func(c *bench.Config) { c.Serializable = true }
	return []Workload{
		workload("put 1/1", bench.Put, 1, 1, nil),
		workload("put 100/10", bench.Put, 100, 10, nil),
		workload("range-lin 1/1", bench.Range, 1, 1, nil),
		workload("range-lin 100/10", bench.Range, 100, 10, nil),
		workload("range-ser 100/10", bench.Range, 100, 10, serializable),
		workload("txn-cas 100/10", bench.TxnPut, 100, 10, nil),
	}
}

// LeaseWorkloads renew 10k leases, one random lease per op, with 100
// clients over 10 connections (etcd's benchmark lease-keepalive, over
// many leases).
func LeaseWorkloads() []Workload {
	return []Workload{workload("lease-keepalive 10k 100/10", bench.LeaseKeepAlive, 100, 10, func(c *bench.Config) { c.KeySpace = 10000 })}
}

// YCSBWorkloads are the YCSB A, B, C and F mixes, zipfian keys, 100
// clients over 10 connections.
func YCSBWorkloads() []Workload {
	var out []Workload
	for _, m := range []bench.Mix{bench.MixA, bench.MixB, bench.MixC, bench.MixF} {
		out = append(out, workload(fmt.Sprintf("ycsb-%s zipf 100/10", m), bench.Mixed, 100, 10, func(c *bench.Config) {
			c.Mix, c.Dist = m, bench.Zipfian
		}))
	}
	return out
}

// Config is one comparison.
type Config struct {
	// Systems are run in this order within each workload of each round;
	// the first is the numerator of every ratio.
	Systems []System
	// Members per cluster.
	Members   int
	Workloads []Workload
	// Rounds is how many times each workload runs against each system.
	Rounds int
	// Duration of each measured run.
	Duration time.Duration
	// Dir holds the clusters' data directories and logs; it should be on
	// the disk under test, not a tmpfs, or fsync costs nothing.
	Dir string
	// Log receives a line per run; nil is silent.
	Log io.Writer
	// ProfileDir, when set, starts every member with --enable-pprof,
	// takes a CPU profile of each over the measured part of every run,
	// keeps them there (<workload>-<system>-r<round>-<member>.pb.gz) and
	// breaks each run's CPU down by component (Sample.Components).
	ProfileDir string
}

// Sample is one run of one workload against one system.
type Sample struct {
	System   string        `json:"system"`
	Workload string        `json:"workload"`
	Round    int           `json:"round"`
	Report   *bench.Report `json:"report"`
	// CPUSeconds is the user+system CPU every member used over the
	// measured part of the run (not startup or preload).
	CPUSeconds float64 `json:"cpu_s"`
	// LoadGenCPUSeconds is the CPU the load generator (this process) used
	// over the same part. It shares the machine with the members, so it
	// bounds the throughput any system can show here: with N CPUs, at most
	// N / (load generator CPU per op) ops/s even if the members took none.
	LoadGenCPUSeconds float64 `json:"loadgen_cpu_s"`
	// PeakRSS is each member's VmHWM at the end of the run, in bytes: the
	// peak over its whole life, preload included.
	PeakRSS []int64 `json:"peak_rss_bytes"`
	// LoadAvg1 is the machine's 1-minute load average at the end of the
	// run: how much else competed for the CPUs (the clusters and the load
	// generator included).
	LoadAvg1 float64 `json:"loadavg_1m"`
	// Components is the members' CPU seconds by component (see
	// Classify), added up over the members, from profiles of
	// ProfileSeconds each; empty unless Config.ProfileDir is set.
	Components     map[string]float64 `json:"components_cpu_s,omitempty"`
	ProfileSeconds float64            `json:"profile_s,omitempty"`
}

// ComponentPerOp is the members' CPU microseconds per op spent in
// component, from the profiles: the ops in the profiles' window are the
// run's throughput times the window.
func (s *Sample) ComponentPerOp(component string) float64 {
	ops := s.Report.Throughput * s.ProfileSeconds
	if ops == 0 {
		return 0
	}
	return s.Components[component] * 1e6 / ops
}

// CPUPerOp is CPU microseconds per successful op.
func (s *Sample) CPUPerOp() float64 {
	if s.Report.Ops == 0 {
		return 0
	}
	return s.CPUSeconds * 1e6 / float64(s.Report.Ops)
}

// LoadGenCPUPerOp is the load generator's CPU microseconds per successful
// op.
func (s *Sample) LoadGenCPUPerOp() float64 {
	if s.Report.Ops == 0 {
		return 0
	}
	return s.LoadGenCPUSeconds * 1e6 / float64(s.Report.Ops)
}

// RSSSum is the members' peak RSS added up, in bytes.
func (s *Sample) RSSSum() int64 {
	var sum int64
	for _, b := range s.PeakRSS {
		sum += b
	}
	return sum
}

// Run runs every workload against every system, Rounds times, each on a
// fresh cluster, and returns the samples in run order.
func Run(ctx context.Context, cfg Config) ([]Sample, error) {
	if cfg.Members < 1 || cfg.Rounds < 1 || len(cfg.Systems) == 0 || cfg.Duration <= 0 {
		return nil, fmt.Errorf("compare: need members, rounds, systems and a duration: %+v", cfg)
	}
	logf := func(format string, args ...any) {
		if cfg.Log != nil {
			fmt.Fprintf(cfg.Log, format+"\n", args...)
		}
	}
	var out []Sample
	for round := 1; round <= cfg.Rounds; round++ {
		for _, w := range cfg.Workloads {
			for _, sys := range cfg.Systems {
				s, err := runOne(ctx, cfg, sys, w, round)
				if err != nil && ctx.Err() == nil {
					// One retry on a fresh cluster: on a shared machine a
					// start or preload can time out without saying
					// anything about the system.
					logf("round %d  %-20s %-8s failed, retrying once: %v", round, w.Name, sys.Name, err)
					s, err = runOne(ctx, cfg, sys, w, round)
				}
				if err != nil {
					return out, fmt.Errorf("compare: %s on %s, round %d: %w", w.Name, sys.Name, round, err)
				}
				r := s.Report
				logf("round %d  %-20s %-8s %9.0f ops/s  p50 %7.3fms  p99 %7.3fms  cpu %6.1fµs/op  load gen %5.1fµs/op  rss %4d MiB  errors %d",
					round, w.Name, sys.Name, r.Throughput, r.Latency.P50Ms, r.Latency.P99Ms, s.CPUPerOp(), s.LoadGenCPUPerOp(), s.RSSSum()>>20, r.Errors)
				out = append(out, *s)
			}
		}
	}
	return out, nil
}

// runOne starts a fresh cluster of sys, runs w against it and stops it.
func runOne(ctx context.Context, cfg Config, sys System, w Workload, round int) (*Sample, error) {
	dir, err := os.MkdirTemp(cfg.Dir, sys.Name+"-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	if cfg.ProfileDir != "" {
		if cfg.Duration < 2*time.Second {
			return nil, fmt.Errorf("compare: profiles need runs of at least 2s, not %v", cfg.Duration)
		}
		sys.Command = append(append([]string(nil), sys.Command...), "--enable-pprof")
	}
	c, err := startCluster(ctx, sys, dir, cfg.Members)
	if err != nil {
		return nil, err
	}
	defer c.stop()

	bc := w.Config
	bc.Endpoints = c.endpoints()
	bc.Duration, bc.Total = cfg.Duration, 0
	var cpuStart, cpuEnd, genStart, genEnd float64
	var cpuErr, genErr error
	// The profiles cover whole seconds inside the measured part: they
	// start as it does and stop a second before its end, so that no
	// sample falls after the load stopped.
	profileSecs := int(cfg.Duration/time.Second) - 1
	type profiled struct {
		components map[string]float64
		err        error
	}
	var profileDone chan profiled
	bc.OnMeasureStart = func() {
		cpuStart, cpuErr = c.cpuSeconds()
		genStart, genErr = cpuSeconds(os.Getpid())
		if cfg.ProfileDir == "" {
			return
		}
		profileDone = make(chan profiled, 1)
		prefix := filepath.Join(cfg.ProfileDir, fmt.Sprintf("%s-%s-r%d", fileName(w.Name), sys.Name, round))
		go func() {
			ps, err := profileMembers(ctx, c, time.Duration(profileSecs)*time.Second, prefix)
			if err != nil {
				profileDone <- profiled{err: err}
				return
			}
			profileDone <- profiled{components: ClassifyAll(ps)}
		}()
	}
	bc.OnMeasureEnd = func() {
		if cpuErr == nil {
			cpuEnd, cpuErr = c.cpuSeconds()
		}
		if genErr == nil {
			genEnd, genErr = cpuSeconds(os.Getpid())
		}
	}
	rep, err := bench.Run(ctx, bc, nil)
	var components map[string]float64
	if profileDone != nil {
		// Wait for the profiles even when the run failed, so that no
		// fetch outlives the cluster.
		p := <-profileDone
		if err == nil {
			err = p.err
		}
		components = p.components
	}
	if err != nil {
		return nil, err
	}
	if cpuErr != nil {
		return nil, cpuErr
	}
	if genErr != nil {
		return nil, genErr
	}
	rss, err := c.peakRSS()
	if err != nil {
		return nil, err
	}
	load, err := loadAvg1()
	if err != nil {
		return nil, err
	}
	var profileSeconds float64
	if components != nil {
		profileSeconds = float64(profileSecs)
	}
	return &Sample{System: sys.Name, Workload: w.Name, Round: round, Report: rep,
		CPUSeconds: cpuEnd - cpuStart, LoadGenCPUSeconds: genEnd - genStart, PeakRSS: rss, LoadAvg1: load,
		Components: components, ProfileSeconds: profileSeconds}, nil
}

// fileName makes a workload's name a file name: "put 100/10" is
// "put-100-10".
func fileName(name string) string {
	return strings.NewReplacer(" ", "-", "/", "-").Replace(name)
}
