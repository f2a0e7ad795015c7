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

// runLoad runs `concord bench load` with args and returns its JSON report.
func runLoad(t *testing.T, args ...string) *bench.LoadReport {
	t.Helper()
	cmd := benchCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs(append([]string{"load", "--json", "--quiet"}, args...))
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep bench.LoadReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	return &rep
}

// TestBenchLoad loads 2 MiB into an in-process 3-node cluster with
// checkpoints at 256 KiB and 1 MiB and checks the rows, then that the
// cluster holds exactly the keys the report counts, with values of their
// own.
func TestBenchLoad(t *testing.T) {
	lc, err := server.StartLocalCluster(3, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer lc.Stop()
	const valSize, keySize = 4096, 8
	rep := runLoad(t, "--endpoints", strings.Join(lc.ClientAddrs(), ","), "--bytes", "2MiB", "--checkpoints", "256KiB,1MiB",
		"--val-size", "4096", "--measure", "300ms", "--clients", "4", "--conns", "2")

	const perKey = valSize + keySize
	wantKeys := int64((2<<20 + perKey - 1) / perKey)
	if rep.StopReason != "" || rep.Keys != wantKeys || rep.LoadedBytes != wantKeys*perKey || rep.Errors != 0 {
		t.Fatalf("loaded %d keys (%d bytes), stop %q, %d errors %v; want %d keys", rep.Keys, rep.LoadedBytes, rep.StopReason, rep.Errors, rep.ErrorSamples, wantKeys)
	}
	if len(rep.Rows) != 3 {
		t.Fatalf("%d rows, want 3 (256KiB, 1MiB, 2MiB)", len(rep.Rows))
	}
	for i, row := range rep.Rows {
		if want := []int64{256 << 10, 1 << 20, 2 << 20}[i]; row.TargetBytes != want || row.LoadedBytes < want || row.LoadedBytes >= want+perKey {
			t.Errorf("row %d: target %d, loaded %d; want target %d, loaded within a key of it", i, row.TargetBytes, row.LoadedBytes, want)
		}
		if row.Put.Ops == 0 || row.Get.Ops == 0 || row.Put.Errors+row.Get.Errors != 0 || row.PutMBps <= 0 || row.GetMBps <= 0 {
			t.Errorf("row %d: put %d ops, get %d ops, %d+%d errors %v %v", i, row.Put.Ops, row.Get.Ops, row.Put.Errors, row.Get.Errors,
				row.Put.ErrorSamples, row.Get.ErrorSamples)
		}
		if row.Ranges < 1 || row.DiskBytes != 0 {
			t.Errorf("row %d: %d ranges, %d disk bytes; want Concord's ranges counted and no disk (not a local cluster)", i, row.Ranges, row.DiskBytes)
		}
	}
	if len(rep.Alarms) != 0 {
		t.Errorf("alarms %v", rep.Alarms)
	}

	cli, err := clientv3.New(clientv3.Config{Endpoints: lc.ClientAddrs(), DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "\x00", clientv3.WithFromKey())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != wantKeys {
		t.Errorf("%d keys in the cluster, want %d", resp.Count, wantKeys)
	}
	seen := map[string]string{}
	for _, kv := range resp.Kvs {
		if len(kv.Key) != keySize || len(kv.Value) != valSize {
			t.Fatalf("key %q has %d bytes, value %d; want %d and %d", kv.Key, len(kv.Key), len(kv.Value), keySize, valSize)
		}
		if other, ok := seen[string(kv.Value)]; ok {
			t.Fatalf("keys %q and %q hold the same value", other, kv.Key)
		}
		seen[string(kv.Value)] = string(kv.Key)
	}
}

// TestBenchLoadLocalCluster runs the load against --local-cluster 1: the
// probe then measures the data directory's disk too.
func TestBenchLoadLocalCluster(t *testing.T) {
	rep := runLoad(t, "--local-cluster", "1", "--bytes", "512KiB", "--val-size", "4096", "--measure", "200ms",
		"--clients", "2", "--data-dir", t.TempDir(), "--range-max-bytes", "64MiB")
	if len(rep.Rows) != 1 || rep.Rows[0].DiskBytes <= 0 || rep.Rows[0].Ranges < 1 || rep.StopReason != "" {
		t.Fatalf("report %+v; want one row with disk and ranges", rep)
	}
}

// TestBenchLoadRefusesBadFlags: sizes are checked before any cluster
// starts.
func TestBenchLoadRefusesBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"--bytes", "ten"},
		{"--bytes", "1MiB", "--checkpoints", "2MiB"},
		{"--bytes", "1GiB", "--key-size", "2"},
		{"--local-cluster", "1", "--local-etcd", "1"},
	} {
		cmd := benchCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(append([]string{"load", "--quiet", "--endpoints", "127.0.0.1:1"}, args...))
		if err := cmd.Execute(); err == nil {
			t.Errorf("load %v ran", args)
		}
	}
}
