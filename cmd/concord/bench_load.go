package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/concorddb/concord/internal/bench"
	"github.com/concorddb/concord/internal/bench/compare"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/server"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Load defaults. defaultLoadValueBytes: 64 KiB values make gigabytes out
// of a few hundred thousand keys, so the load measures the storage, not
// the per-request cost. defaultRangeMaxBytes: a range splits past 128 MiB
// into two of about 64 MiB, so 10 GiB ends as 80 to 160 ranges. Not 512
// MiB (CockroachDB's): a Raft snapshot is a whole range built in memory
// (storage.ExportRange), and each range's Raft log keeps only 4 MiB, 64
// puts of 64 KiB, so with 512 MiB ranges a follower a second behind
// needs one, and a 10 GiB load at 512 MiB ran the process to 20 GiB of
// RSS (BENCHMARKS.md, "10 GiB load"); more ranges also spread the writes
// over more logs, each then covering more seconds of lag.
// defaultMinFreeDisk stops a local load well before the disk is full,
// which would take the machine's other users down with it.
const (
	defaultLoadValueBytes = 64 << 10
	defaultLoadBytes      = 1 << 30
	defaultFirstCheck     = 100 << 20
	defaultRangeMaxBytes  = 128 << 20
	defaultMinFreeDisk    = 10 << 30
	defaultEtcdQuota      = 2 << 30 // etcd's own default --quota-backend-bytes
)

// loadFlags are `concord bench load`'s own flags.
type loadFlags struct {
	bytes         bench.ByteSize
	checkpoints   string
	measure       time.Duration
	maxDuration   time.Duration
	rangeMaxBytes bench.ByteSize
	dataDir       string
	minFreeDisk   bench.ByteSize
	localEtcd     int
	etcdBin       string
	etcdQuota     bench.ByteSize
}

func loadCmd(bf *benchFlags) *cobra.Command {
	lf := &loadFlags{
		bytes:         defaultLoadBytes,
		rangeMaxBytes: defaultRangeMaxBytes,
		minFreeDisk:   defaultMinFreeDisk,
		etcdQuota:     defaultEtcdQuota,
	}
	cmd := &cobra.Command{
		Use:   "load",
		Short: "Load --bytes of distinct keys and measure put and get throughput at checkpoints on the way",
		Long: `load writes --bytes of user data (keys and values; values random, each its own)
as distinct keys spread over the key space, and at every checkpoint pauses to
measure puts of new keys, then linearizable gets of loaded keys, for --measure
each. It prints a row per checkpoint: bytes loaded, put and get ops/s, MB/s
and p99, the disk the data directories use (with --local-cluster or
--local-etcd) and the number of ranges (Concord only). --val-size defaults to
64 KiB here.

Loading stops early, and a last checkpoint is measured where it got to, when
the server refuses writes for lack of space (etcd's "database space
exceeded": the bytes loaded then are reported, and the alarms), after
--max-duration, or when the local data directories' disk has less than
--min-free-disk free.

  concord bench load --local-cluster 3 --bytes 10GiB --checkpoints 100MiB,1GiB,5GiB --clients 32 --conns 8
  concord bench load --local-etcd 3 --bytes 4GiB --checkpoints 100MiB,1GiB --clients 32 --conns 8`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return lf.run(cmd, bf) },
	}
	f := cmd.Flags()
	f.Var(&lf.bytes, "bytes", "user data to load (keys and values): 10GiB, 100MiB, 1.5GB or a number of bytes")
	f.StringVar(&lf.checkpoints, "checkpoints", "", "comma-separated loaded sizes to measure at, besides --bytes (default 100MiB, if below --bytes)")
	f.DurationVar(&lf.measure, "measure", 10*time.Second, "how long each measurement (puts, then gets) runs at a checkpoint")
	f.DurationVar(&lf.maxDuration, "max-duration", 2*time.Hour, "stop loading after this long and measure where the load got to")
	f.Var(&lf.rangeMaxBytes, "range-max-bytes", "with --local-cluster: split a range past this size (concord start --range-max-bytes; 0: no splits)")
	f.StringVar(&lf.dataDir, "data-dir", "", "with --local-cluster or --local-etcd: where the data goes, on a real disk (default: the system temp dir); removed afterwards")
	f.Var(&lf.minFreeDisk, "min-free-disk", "with --local-cluster or --local-etcd: stop loading when the data's disk has less free (0: never)")
	f.IntVar(&lf.localEtcd, "local-etcd", 0, "ignore --endpoints and run against a new etcd cluster of this many members (processes, built from go.mod's etcd unless --etcd-bin)")
	f.StringVar(&lf.etcdBin, "etcd-bin", "", "with --local-etcd: the etcd binary (default: go build "+etcdMainPkg+", run from the repository)")
	f.Var(&lf.etcdQuota, "quota-backend-bytes", "with --local-etcd: etcd's --quota-backend-bytes")
	return cmd
}

func (lf *loadFlags) run(cmd *cobra.Command, bf *benchFlags) error {
	cfg := bench.LoadConfig{Config: bf.cfg, Bytes: int64(lf.bytes), Measure: lf.measure, MaxDuration: lf.maxDuration}
	if !cmd.Flags().Changed("val-size") {
		cfg.ValueSize = defaultLoadValueBytes
	}
	cps, err := bench.ParseByteList(lf.checkpoints)
	if err != nil {
		return fmt.Errorf("--checkpoints: %w", err)
	}
	if !cmd.Flags().Changed("checkpoints") && cfg.Bytes > defaultFirstCheck {
		cps = []int64{defaultFirstCheck}
	}
	cfg.Checkpoints = cps
	if bf.localCluster > 0 && lf.localEtcd > 0 {
		return errors.New("--local-cluster and --local-etcd exclude each other")
	}
	cfg.Endpoints = splitURLs(bf.endpoints)
	if err := cfg.Validate(); err != nil {
		return err // before a local cluster is started for nothing
	}
	ctx, stop := benchContext(cmd)
	defer stop()

	var dataDir string // the local cluster's, whose disk is probed
	switch {
	case bf.localCluster > 0:
		// The nodes' metrics (the storage engine's level-0 files and
		// compactions among them) show what binds a long load.
		lc, dir, err := bf.startLocal(lf.dataDir, func(_ int, c *server.Config) { c.RangeMaxBytes = int64(lf.rangeMaxBytes) }, true /* http */)
		if dir != "" {
			defer os.RemoveAll(dir)
		}
		if err != nil {
			return err
		}
		defer lc.Stop()
		if !bf.quiet {
			for i := range lc.Size() {
				fmt.Fprintf(os.Stderr, "node %d: metrics at http://%s/metrics, data in %s\n", i+1, lc.Node(i).HTTPAddr(), dir)
			}
		}
		cfg.Endpoints, dataDir = lc.ClientAddrs(), dir
	case lf.localEtcd > 0:
		dir, err := os.MkdirTemp(lf.dataDir, "concord-bench-etcd-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		bin := lf.etcdBin
		if bin == "" {
			if bin, err = buildEtcd(dir); err != nil {
				return err
			}
		}
		sys := compare.System{Name: "etcd", Command: []string{bin, "--quota-backend-bytes", strconv.FormatInt(int64(lf.etcdQuota), 10)}}
		ec, err := compare.StartCluster(ctx, sys, dir, lf.localEtcd)
		if err != nil {
			return err
		}
		defer ec.Stop()
		cfg.Endpoints, dataDir = ec.Endpoints(), dir
	}
	if dataDir != "" && lf.minFreeDisk > 0 {
		cfg.Guard = func() error { return checkFreeDisk(dataDir, int64(lf.minFreeDisk)) }
	}
	probe, closeProbe, err := newLoadProbe(cfg.Endpoints, dataDir, cfg.DialTimeout)
	if err != nil {
		return err
	}
	defer closeProbe()
	cfg.Probe = probe

	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	var progress io.Writer
	if !bf.quiet {
		progress = os.Stderr
	}
	rep, err := bench.Load(ctx, cfg, progress)
	if err != nil {
		return err
	}
	return bf.writeReport(cmd, rep)
}

// probeTimeout bounds the probe's Admin.Ranges call: under a heavy load
// it took more than 10 s on this 2-core machine.
const probeTimeout = time.Minute

// newLoadProbe returns the load's probe: the disk used under dataDir (if
// set) and the number of ranges, which only Concord's Admin service
// answers (etcd says Unimplemented, and the count is left out). The
// caller calls the returned close once the load is done.
func newLoadProbe(endpoints []string, dataDir string, dialTimeout time.Duration) (func(context.Context) bench.Probe, func(), error) {
	cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: dialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return nil, nil, err
	}
	admin := rpcpb.NewAdminClient(cli.ActiveConnection())
	probe := func(ctx context.Context) bench.Probe {
		var p bench.Probe
		if dataDir != "" {
			if n, err := diskUsage(dataDir); err == nil {
				p.DiskBytes = n
			} else {
				fmt.Fprintln(os.Stderr, "concord bench load: disk usage:", err)
			}
		}
		rctx, cancel := context.WithTimeout(ctx, probeTimeout)
		defer cancel()
		if resp, err := admin.Ranges(rctx, &rpcpb.RangesRequest{}); err == nil {
			p.Ranges = len(resp.GetRanges())
		}
		return p
	}
	return probe, func() { cli.Close() }, nil
}

// diskUsage is the disk space the files under dir take (their allocated
// blocks, as du counts them).
func diskUsage(dir string) (int64, error) {
	var sum int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // a file the engine deleted while we walked
			}
			return err
		}
		info, err := d.Info()
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			return err
		}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			sum += st.Blocks * 512
		} else {
			sum += info.Size()
		}
		return nil
	})
	return sum, err
}

// checkFreeDisk fails when the filesystem holding dir has less than min
// bytes free for unprivileged users.
func checkFreeDisk(dir string, min int64) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", dir, err)
	}
	if free := int64(st.Bavail) * st.Bsize; free < min {
		return fmt.Errorf("free disk %s under --min-free-disk %s", bench.FormatBytes(free), bench.FormatBytes(min))
	}
	return nil
}
