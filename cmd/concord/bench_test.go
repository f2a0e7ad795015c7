package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/bench"
	"github.com/concorddb/concord/internal/server"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestBenchAgainstLocalCluster runs every `concord bench` workload, briefly,
// against an in-process 3-node cluster and checks the JSON reports.
func TestBenchAgainstLocalCluster(t *testing.T) {
	lc, err := server.StartLocalCluster(3, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	endpoints := strings.Join(lc.ClientAddrs(), ",")
	common := []string{"--endpoints", endpoints, "--clients", "8", "--conns", "2", "--total", "200",
		"--key-space-size", "500", "--json", "--quiet"}
	for _, tc := range []struct {
		name string
		args []string
		kind string // an op kind the mixed report must list
		// maxKeys, if set, bounds the keys in the cluster after the run:
		// put runs first and does not preload unless asked.
		maxKeys int64
	}{
		{name: "put", args: []string{"put"}, maxKeys: 200},
		{name: "range(linearizable)", args: []string{"range"}},
		{name: "range(serializable)", args: []string{"range", "--consistency", "s"}},
		{name: "txn-put", args: []string{"txn-cas"}}, // the workload is still bench.TxnPut
		{name: "mixed(ycsb-f,zipfian)", args: []string{"mixed", "--ycsb", "f", "--dist", "zipfian"}, kind: "rmw"},
		{name: "put", args: []string{"put", "--target-leader", "--rate", "400"}},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			cmd := benchCmd()
			var out bytes.Buffer
			cmd.SetOut(&out)
			cmd.SetArgs(append(tc.args, common...))
			if err := cmd.Execute(); err != nil {
				t.Fatal(err)
			}
			var rep bench.Report
			if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
				t.Fatalf("report is not JSON: %v\n%s", err, out.String())
			}
			if rep.Name() != tc.name {
				t.Errorf("workload %q, want %q", rep.Name(), tc.name)
			}
			if rep.Ops != 200 || rep.Errors != 0 || len(rep.ErrorsByCode) != 0 {
				t.Errorf("ops %d, errors %d %v; want 200 ops and no errors", rep.Ops, rep.Errors, rep.ErrorSamples)
			}
			l := rep.Latency
			if rep.Throughput <= 0 || l.Count != 200 || !(0 < l.P50Ms && l.P50Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
				t.Errorf("insane report: throughput %v latency %+v", rep.Throughput, l)
			}
			if tc.maxKeys > 0 {
				cli, err := clientv3.New(clientv3.Config{Endpoints: lc.ClientAddrs(), DialTimeout: 5 * time.Second})
				if err != nil {
					t.Fatal(err)
				}
				defer cli.Close()
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey(), clientv3.WithCountOnly())
				if err != nil {
					t.Fatal(err)
				}
				if resp.Count > tc.maxKeys {
					t.Errorf("%d keys after %v, want at most %d (preloaded?)", resp.Count, tc.args, tc.maxKeys)
				}
			}
			if tc.kind != "" && rep.ByKind[tc.kind].Count == 0 {
				t.Errorf("mixed report has no %s ops: %+v", tc.kind, rep.ByKind)
			}
			if rep.Workload == bench.TxnPut && rep.CASConflicts > rep.Ops/2 {
				t.Errorf("%d of %d compare-and-swaps failed: revisions not tracked", rep.CASConflicts, rep.Ops)
			}
		})
	}
}
