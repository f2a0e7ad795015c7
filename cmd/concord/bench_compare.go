package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/bench/compare"
	"github.com/spf13/cobra"
)

// etcdMainPkg is the tiny etcd main built for comparisons when --etcd-bin
// is not given: etcd's server at the version pinned in go.mod.
const etcdMainPkg = "github.com/concorddb/concord/bench/etcd"

func compareCmd() *cobra.Command {
	var (
		rounds, members             int
		duration                    time.Duration
		etcdBin, concordBin, dir    string
		out, jsonOut, workloadsFlag string
		profileDir                  string
	)
	cmd := &cobra.Command{
		Use:   "compare",
		Short: "Run Concord and etcd side by side on this machine and write the ratios into BENCHMARKS.md",
		Long: `compare starts a fresh 3-member Concord cluster and a fresh 3-member etcd cluster
(processes on loopback, free ports, durable defaults) for every run, runs each
workload against each in turn (A B A B) --rounds times, samples every member's
CPU time and peak RSS from /proc, and prints a Markdown table of Concord/etcd
ratios and absolute figures, which it also writes into --out between its
markers. etcd is built from the go.etcd.io/etcd/server/v3 module in go.mod
(run from the repository), unless --etcd-bin names a binary.

The bench flags (--endpoints, --clients, ...) do not apply: the workloads are
fixed, see --workloads.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := benchContext(cmd)
			defer stop()
			var workloads []compare.Workload
			switch workloadsFlag {
			case "default":
				workloads = compare.DefaultWorkloads()
			case "ycsb":
				workloads = compare.YCSBWorkloads()
			case "lease":
				workloads = compare.LeaseWorkloads()
			case "all":
				workloads = append(append(compare.DefaultWorkloads(), compare.YCSBWorkloads()...), compare.LeaseWorkloads()...)
			default:
				// A comma-separated list of workload names.
				all := append(append(compare.DefaultWorkloads(), compare.YCSBWorkloads()...), compare.LeaseWorkloads()...)
				for _, name := range strings.Split(workloadsFlag, ",") {
					name = strings.TrimSpace(name)
					i := slices.IndexFunc(all, func(w compare.Workload) bool { return w.Name == name })
					if i < 0 {
						var names []string
						for _, w := range all {
							names = append(names, strconv.Quote(w.Name))
						}
						return fmt.Errorf("--workloads: no workload %q: give default, ycsb, all, or a comma-separated list of %s", name, strings.Join(names, ", "))
					}
					workloads = append(workloads, all[i])
				}
			}
			if concordBin == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				concordBin = exe
			}
			tmp, err := os.MkdirTemp(dir, "concord-compare-")
			if err != nil {
				return err
			}
			defer os.RemoveAll(tmp)
			if etcdBin == "" {
				if etcdBin, err = buildEtcd(tmp); err != nil {
					return err
				}
			}
			cfg := compare.Config{
				Systems: []compare.System{
					{Name: "concord", Command: []string{concordBin, "start"}},
					{Name: "etcd", Command: []string{etcdBin}},
				},
				Members:    members,
				Workloads:  workloads,
				Rounds:     rounds,
				Duration:   duration,
				Dir:        tmp,
				Log:        os.Stderr,
				ProfileDir: profileDir,
			}
			samples, err := compare.Run(ctx, cfg)
			if err != nil {
				return err
			}
			var names []string
			for _, w := range workloads {
				names = append(names, w.Name)
			}
			env := compare.CurrentEnvironment("concord "+strings.Join(os.Args[1:], " "), rounds, duration)
			table := compare.Markdown(env, "concord", "etcd", names, samples)
			fmt.Fprint(cmd.OutOrStdout(), table)
			if jsonOut != "" {
				b, err := json.MarshalIndent(samples, "", "  ")
				if err != nil {
					return err
				}
				if err := os.WriteFile(jsonOut, b, 0o644); err != nil {
					return err
				}
			}
			if out != "" {
				return compare.WriteInto(out, table)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&rounds, "rounds", 2, "runs of each workload against each system")
	f.IntVar(&members, "members", 3, "members per cluster")
	f.DurationVar(&duration, "run-duration", 10*time.Second, "measured length of each run")
	f.StringVar(&workloadsFlag, "workloads", "default", "default (put, range, txn-cas), ycsb (A, B, C, F zipfian), lease (keepalives over 10k leases), all, or a comma-separated list of workload names (\"put 1/1,put 100/10\")")
	f.StringVar(&etcdBin, "etcd-bin", "", "etcd binary (default: go build "+etcdMainPkg+")")
	f.StringVar(&concordBin, "concord-bin", "", "concord binary (default: this one)")
	f.StringVar(&dir, "dir", "", "where the clusters keep their data; must be a real disk, not tmpfs (default: the system temp dir)")
	f.StringVar(&out, "out", "BENCHMARKS.md", "file to write the table into, between its markers (empty: print only)")
	f.StringVar(&profileDir, "profile", "", "take a CPU profile of every member over every measured run (members start with --enable-pprof), keep them in this directory, and add a table of CPU per op by component")
	f.StringVar(&jsonOut, "samples-json", "", "also write every run's full report and resource samples to this JSON file")
	return cmd
}

// buildEtcd builds etcdMainPkg into dir and returns the binary's path. It
// must run from the repository, where go.mod pins etcd's version.
func buildEtcd(dir string) (string, error) {
	bin := filepath.Join(dir, "etcd")
	fmt.Fprintf(os.Stderr, "building %s\n", etcdMainPkg)
	b := exec.Command("go", "build", "-o", bin, etcdMainPkg)
	if out, err := b.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build %s (run from the repository, or pass --etcd-bin): %w\n%s", etcdMainPkg, err, out)
	}
	return bin, nil
}
