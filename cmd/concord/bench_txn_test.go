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

// runTxnPut runs `concord bench txn-put` with args and returns its JSON
// report.
func runTxnPut(t *testing.T, args ...string) *bench.TxnReport {
	t.Helper()
	cmd := benchCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(append([]string{"txn-put", "--json", "--quiet"}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep bench.TxnReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	return &rep
}

// TestBenchTxnPut runs `concord bench txn-put` with every txn's keys in
// one range against an in-process 3-node cluster, for a second: the
// report has txns and latencies, the layout was split and checked, and
// every txn wrote all its keys at one revision. Then with --cas.
// Layouts of several ranges wait for txns across ranges (issue 15).
func TestBenchTxnPut(t *testing.T) {
	lc, err := server.StartLocalCluster(3, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	endpoints := strings.Join(lc.ClientAddrs(), ",")

	t.Run("one range", func(t *testing.T) {
		rep := runTxnPut(t, "--endpoints", endpoints, "--ranges-per-txn", "1", "--keys-per-txn", "3", "--key-space-size", "200",
			"--duration", "1s", "--warmup", "200ms", "--clients", "4", "--conns", "2", "--prefix", "t1/")
		if len(rep.Configs) != 1 || rep.KeysPerTxn != 3 || rep.Rounds != 1 || !rep.LayoutChecked || rep.Ranges != 1 {
			t.Fatalf("report %+v; want one configuration of 3 keys, 1 round, checked, 1 range", rep)
		}
		c := rep.Configs[0]
		l := c.Latency
		if c.RangesPerTxn != 1 || c.Txns == 0 || c.Errors != 0 || c.Throughput <= 0 || l.Count != c.Txns || !(0 < l.P50Ms && l.P50Ms <= l.P90Ms && l.P90Ms <= l.P99Ms && l.P99Ms <= l.MaxMs) {
			t.Errorf("R=1: %d txns, %d errors %v, %.1f txns/s, latency %+v; want txns, no errors, sane latencies", c.Txns, c.Errors, c.ErrorSamples, c.Throughput, l)
		}
		if c.Layout == nil || !c.Layout.OK() || c.Layout.Ranges != 1 || c.Layout.Groups != 200 {
			t.Errorf("layout %+v; want all 200 groups in one range", c.Layout)
		}
		if len(c.Rounds) != 1 || c.Rounds[0].Txns != c.Txns || c.P50Ratio == nil || *c.P50Ratio != 1 {
			t.Errorf("rounds %+v, p50 ratio %v; want one round of every txn, ratio 1 to itself", c.Rounds, c.P50Ratio)
		}

		// Every group written holds its 3 keys, at one revision.
		cli, err := clientv3.New(clientv3.Config{Endpoints: lc.ClientAddrs(), DialTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		resp, err := cli.Get(ctx, c.Prefix, clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		groups := map[string][]int64{} // group number -> mod revisions of its keys
		for _, kv := range resp.Kvs {
			parts := strings.Split(strings.TrimPrefix(string(kv.Key), c.Prefix), "/") // range, group, slot
			if len(parts) != 3 || len(kv.Value) != 256 {
				t.Fatalf("key %q with a %d-byte value, want <range>/<group>/<slot> and 256 bytes", kv.Key, len(kv.Value))
			}
			groups[parts[1]] = append(groups[parts[1]], kv.ModRevision)
		}
		if len(groups) == 0 {
			t.Fatal("no keys under the prefix")
		}
		for g, revs := range groups {
			if len(revs) != 3 || revs[0] != revs[1] || revs[1] != revs[2] {
				t.Errorf("group %s: mod revisions %v; want 3 keys written together", g, revs)
			}
		}
	})

	t.Run("cas", func(t *testing.T) {
		rep := runTxnPut(t, "--endpoints", endpoints, "--cas", "--preload", "--key-space-size", "50", "--total", "200",
			"--warmup", "0s", "--clients", "4", "--conns", "2", "--prefix", "t2/")
		c := rep.Configs[0]
		if !rep.CAS || c.Txns != 200 || c.Errors != 0 || c.CASConflicts > c.Txns/2 {
			t.Errorf("cas %v: %d txns, %d errors %v, %d conflicts; want 200 txns, few conflicts (revisions tracked)", rep.CAS, c.Txns, c.Errors, c.ErrorSamples, c.CASConflicts)
		}
	})
}

// TestBenchTxnPutRefuses: bad layouts fail before any cluster is dialled.
func TestBenchTxnPutRefuses(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--compare-ranges", "1,2", "--ranges-per-txn", "2"}, "exclude each other"},
		{[]string{"--ranges-per-txn", "3"}, "at most one range per key"},
		{[]string{"--compare-ranges", "1,2,8"}, "--keys-per-txn 8 or more"},
		{[]string{"--compare-ranges", "1,2", "--spread-ranges", "3"}, "multiple"},
	} {
		cmd := benchCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append([]string{"txn-put", "--endpoints", "127.0.0.1:1", "--quiet"}, tc.args...))
		if err := cmd.Execute(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want one saying %q", tc.args, err, tc.want)
		}
	}
}
