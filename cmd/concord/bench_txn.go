package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/concorddb/concord/internal/bench"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// txnFlags are `concord bench txn-put`'s own flags.
type txnFlags struct {
	cfg          bench.TxnConfig
	rangesPerTxn int
	compare      []int
	// rounds is --rounds; 0 picks 1 for one configuration, 2 for several.
	rounds int
}

func txnPutCmd(bf *benchFlags) *cobra.Command {
	tf := &txnFlags{cfg: bench.DefaultTxnConfig()}
	cmd := &cobra.Command{
		Use:   "txn-put",
		Short: "Txns of --keys-per-txn puts whose keys lie in --ranges-per-txn ranges; --compare-ranges 1,2,8 runs several layouts side by side",
		Long: `txn-put runs etcd Txns of --keys-per-txn puts each (--val-size values), a txn
on one of --key-space-size key groups (--dist), and lays the keys out so that
the keys of every txn lie in exactly --ranges-per-txn ranges: it splits the
cluster's ranges at setup (Concord's Admin service, as concord range split
does) and checks the layout against the cluster's ranges before and after
the runs. --cas puts each txn behind a compare of every key's mod revision
with the one last seen (If ... Then puts Else gets; a failed compare counts
as a conflict).

--compare-ranges 1,2,8 runs those layouts against the same cluster, each
on a key prefix of its own (--prefix + "r<R>/") and spread over the same
number of ranges (--spread-ranges, default their least common multiple), so
they differ only in the ranges each txn touches. Each runs --duration (or
--total txns) per round, --rounds times, in turn (A B C, then C B A, ...),
after a --warmup. It prints txns/s and latency p50/p90/p99 per layout, over
all rounds and round by round, and their ratios to the one-range layout.

A txn that fails is counted by gRPC code with its first message; a txn
across ranges that the server cannot do yet fails with Unimplemented.

  concord bench txn-put --endpoints 127.0.0.1:2379 --clients 16 --conns 4
  concord bench txn-put --local-cluster 3 --compare-ranges 1,2 --clients 16 --conns 4 --rounds 3
  concord bench txn-put --keys-per-txn 8 --compare-ranges 1,2,8 --cas --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return tf.run(cmd, bf) },
	}
	f := cmd.Flags()
	f.IntVar(&tf.cfg.KeysPerTxn, "keys-per-txn", tf.cfg.KeysPerTxn, "puts in each txn")
	f.IntVar(&tf.rangesPerTxn, "ranges-per-txn", 1, "ranges the keys of each txn lie in (1 to --keys-per-txn)")
	f.IntSliceVar(&tf.compare, "compare-ranges", nil, "run these --ranges-per-txn layouts side by side, e.g. 1,2,8; ratios are to 1 (or the first)")
	f.IntVar(&tf.cfg.Ranges, "spread-ranges", 0, "ranges each layout's keys are spread over, a multiple of every ranges-per-txn (0: their least common multiple)")
	f.BoolVar(&tf.cfg.CAS, "cas", false, "compare each key's mod revision with the one last seen before the puts")
	f.BoolVar(&tf.cfg.Preload, "preload", false, "write every key once before measuring")
	f.IntVar(&tf.rounds, "rounds", 0, "measured runs of each layout, in turn (0: 1 for one layout, 2 for several)")
	f.DurationVar(&tf.cfg.Warmup, "warmup", tf.cfg.Warmup, "unmeasured run of each layout before the first round")
	f.StringVar(&tf.cfg.Prefix, "prefix", tf.cfg.Prefix, "key prefix of the benchmark's keys")
	return cmd
}

func (tf *txnFlags) run(cmd *cobra.Command, bf *benchFlags) error {
	cfg := tf.cfg
	cfg.Load = bf.cfg
	cfg.Load.Endpoints = splitURLs(bf.endpoints)
	switch {
	case len(tf.compare) > 0 && cmd.Flags().Changed("ranges-per-txn"):
		return errors.New("--ranges-per-txn and --compare-ranges exclude each other")
	case len(tf.compare) > 0:
		cfg.RangesPerTxn = tf.compare
	default:
		cfg.RangesPerTxn = []int{tf.rangesPerTxn}
	}
	for _, r := range cfg.RangesPerTxn {
		if r > cfg.KeysPerTxn {
			return fmt.Errorf("%d ranges per txn need --keys-per-txn %d or more: a txn touches at most one range per key", r, r)
		}
	}
	cfg.Rounds = tf.rounds
	if cfg.Rounds == 0 {
		cfg.Rounds = 1
		if len(cfg.RangesPerTxn) > 1 {
			cfg.Rounds = 2
		}
	}
	if !bf.quiet {
		cfg.Log = os.Stderr
	}
	if err := cfg.Validate(); err != nil {
		return err // before a local cluster is started for nothing
	}
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
		cfg.Load.Endpoints = lc.ClientAddrs()
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.Load.Endpoints, DialTimeout: cfg.Load.DialTimeout, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer cli.Close()
	cfg.Admin = adminRanges{rpcpb.NewAdminClient(cli.ActiveConnection())}

	stopProfile, err := bf.startCPUProfile()
	if err != nil {
		return err
	}
	defer stopProfile()
	rep, err := bench.RunTxn(ctx, cfg)
	if err != nil {
		return err
	}
	return bf.writeReport(cmd, rep)
}

// adminRanges is bench.RangeAdmin over Concord's Admin service.
type adminRanges struct{ c rpcpb.AdminClient }

var _ bench.RangeAdmin = adminRanges{}

func (a adminRanges) Split(ctx context.Context, key string) error {
	_, err := a.c.SplitRange(ctx, &rpcpb.SplitRangeRequest{Key: []byte(key)})
	return err
}

func (a adminRanges) RangeStarts(ctx context.Context) ([]string, error) {
	resp, err := a.c.Ranges(ctx, &rpcpb.RangesRequest{})
	if err != nil {
		return nil, err
	}
	starts := make([]string, len(resp.GetRanges()))
	for i, r := range resp.GetRanges() {
		starts[i] = string(r.GetStartKey())
	}
	return starts, nil
}
