package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/concorddb/concord/internal/chaos"
	"github.com/spf13/cobra"
)

func chaosCmd() *cobra.Command {
	cfg := chaos.DefaultConfig()
	var workloads, nemesis string
	cmd := &cobra.Command{
		Use:   "chaos",
		Short: "Run a real cluster in network namespaces, inject faults, check the clients' history for linearizability (root)",
		Long: `chaos starts --nodes concord processes, each in its own network namespace on a
bridge it creates, runs --clients etcd clients (each pinned to one node) with
the chosen workloads while the nemesis kills, pauses and partitions nodes
(and splits and merges ranges),
then checks the recorded history with porcupine, key by key, and the bank
workload's transfers across ranges by their money (the total never changes,
every acknowledged transfer is seen). The AP workloads (ap-counter, ap-set)
run INCRBY and SADD/SREM over every node's Redis port; after the faults the
replicas of each key (CONCORD REPLICA on every node) must agree within
--ap-converge-timeout, keep every acknowledged increment and add, and hold
nothing never written. It exits non-zero on a violation or a node crash, and writes the history, the node logs and (on a violation)
porcupine's visualisation to --out.
Needs root, iproute2 and iptables. Faults: kill, pause, partition, clock,
split, all, none, or single ones: kill-node, kill-leader, pause-node,
pause-leader, partition-node, partition-leader, partition-halves,
partition-bridge, clock-jump, clock-jump-leader, split-range, merge-range.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if cfg.Faults, err = chaos.ParseNemesis(nemesis); err != nil {
				return err
			}
			cfg.Workloads = splitURLs(workloads)
			if cfg.Binary == "" {
				if cfg.Binary, err = os.Executable(); err != nil {
					return err
				}
			}
			if cfg.OutDir == "" {
				cfg.OutDir = filepath.Join(os.TempDir(), fmt.Sprintf("concord-chaos-%d-%s", cfg.Seed, time.Now().Format("20060102-150405")))
			}
			cfg.Logf = func(format string, args ...any) { fmt.Fprintf(os.Stderr, format+"\n", args...) }
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			sum, err := chaos.Run(ctx, cfg)
			if sum.Ops != nil {
				sum.Write(os.Stdout)
			}
			if err != nil {
				return err
			}
			if sum.Failed() {
				return fmt.Errorf("chaos: FAIL (seed %d): %d anomalies, %d AP violations, %d crashes", cfg.Seed, len(sum.Report.Anomalies()), sum.AP.Found, len(sum.Crashes))
			}
			if sum.Interrupted {
				return context.Canceled
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&cfg.Nodes, "nodes", cfg.Nodes, "number of concord start processes (3 or more)")
	f.IntVar(&cfg.ReplicationFactor, "replication-factor", 0, "replicas per range (default: --nodes, so every node holds every range)")
	f.IntVar(&cfg.Clients, "clients", cfg.Clients, "concurrent clients, client i pinned to node i mod --nodes")
	f.StringVar(&workloads, "workload", strings.Join(cfg.Workloads, ","), "workloads, comma-separated: register, append, lock (etcd locks on leases, appends fenced by the lock), bank (Txn transfers between accounts in many ranges, readers summing them), ap-counter (INCRBY on AP counters over RESP), ap-set (SADD/SREM of unique elements on AP sets over RESP)")
	f.StringVar(&nemesis, "nemesis", "all", "faults, comma-separated (see above)")
	f.DurationVar(&cfg.Duration, "duration", cfg.Duration, "length of the workload")
	f.DurationVar(&cfg.Interval, "interval", cfg.Interval, "mean quiet gap between faults and mean length of a fault")
	f.Int64Var(&cfg.Seed, "seed", cfg.Seed, "seed of the fault schedule and the clients' operations")
	f.IntVar(&cfg.Keys, "keys", cfg.Keys, "keys per workload in use at a time (few keys: more contention)")
	f.DurationVar(&cfg.KeyLifetime, "key-lifetime", cfg.KeyLifetime, "how long a key is used before clients move to fresh keys (bounds the checker's work)")
	f.DurationVar(&cfg.OpTimeout, "op-timeout", cfg.OpTimeout, "timeout of one client operation")
	f.DurationVar(&cfg.ThinkTime, "think-time", cfg.ThinkTime, "mean pause of a client between operations")
	f.DurationVar(&cfg.CheckTimeout, "check-timeout", cfg.CheckTimeout, "checker time limit per key (past it the key is unknown)")
	f.IntVar(&cfg.BankAccounts, "bank-accounts", cfg.BankAccounts, "bank workload: number of accounts")
	f.IntVar(&cfg.BankRanges, "bank-ranges", 0, "bank workload: ranges the accounts are split over at setup (default: --bank-accounts, one account per range; 1 keeps them together)")
	f.DurationVar(&cfg.APAntiEntropyInterval, "ap-anti-entropy-interval", 0, "AP workloads: the nodes' --ap-anti-entropy-interval (default: theirs, 10s)")
	f.DurationVar(&cfg.APConvergeTimeout, "ap-converge-timeout", 0, "AP workloads: how long after the workload every key's replicas get to agree (default: the anti-entropy interval plus 5s)")
	f.StringVar(&cfg.Binary, "binary", "", "concord binary for the nodes (default: this executable)")
	f.StringVar(&cfg.OutDir, "out", "", "output folder (default: a new folder under $TMPDIR)")
	f.BoolVar(&cfg.UnsafeNoReadLease, "unsafe-no-read-lease", false, "TEST ONLY: start the nodes with --unsafe-no-read-lease (stale reads on purpose: the check must fail)")
	f.BoolVar(&cfg.UnsafeLockNoFence, "unsafe-lock-no-fence", false, "TEST ONLY: the lock workload writes without its lock in the guard (a holder that lost its lock still writes: the check must fail)")
	f.BoolVar(&cfg.UnsafeTxnNoRecord, "unsafe-txn-no-record", false, "TEST ONLY: start the nodes with --unsafe-txn-no-record (a txn across ranges commits range by range, with no txn record: the bank check must fail)")
	f.BoolVar(&cfg.UnsafeAPDropHints, "unsafe-ap-drop-hints", false, "TEST ONLY: start the nodes with --unsafe-ap-drop-hints (hints acknowledged and dropped: under partitions the AP check must fail)")
	return cmd
}

func init() { subcommands = append(subcommands, chaosCmd) }
