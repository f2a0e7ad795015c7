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

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/concorddb/concord/internal/server"
)

// runRange runs `concord range ARGS...` and returns what it printed.
func runRange(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := rangeCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestRangeSplitAndList(t *testing.T) {
	c, err := server.StartLocalCluster(3, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ep := "--endpoints=" + strings.Join(c.ClientAddrs(), ",")
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.ClientAddrs(), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	for _, k := range []string{"users/a", "users/b", "users/x"} {
		if _, err := cli.Put(context.Background(), k, "v"); err != nil {
			t.Fatal(err)
		}
	}
	out, err := runRange(t, "split", "users/m", ep)
	if err != nil || !strings.Contains(out, `split range 2 at "users/m": new range 3`) {
		t.Fatalf("split: %q %v", out, err)
	}
	if out, err := runRange(t, "split", "users/m", ep); err != nil || !strings.Contains(out, `range 3 already starts at "users/m"`) {
		t.Fatalf("split again: %q %v", out, err)
	}
	if _, err := runRange(t, "split", "", ep); err == nil {
		t.Fatal("a split at the empty key was accepted")
	}
	out, err = runRange(t, "list", ep, "-w", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got struct{ Ranges []rangeJSON }
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if len(got.Ranges) != 2 || got.Ranges[0].StartKey != "" || got.Ranges[0].EndKey != "users/m" ||
		got.Ranges[1].StartKey != "users/m" || got.Ranges[1].EndKey != "" || len(got.Ranges[1].Replicas) != 3 ||
		got.Ranges[0].Keys != 2 || got.Ranges[1].Keys != 1 || got.Ranges[0].ApproximateBytes <= 0 || got.Ranges[0].Leaseholder == 0 || got.Ranges[0].QPS < 0 {
		t.Fatalf("ranges after the split: %+v", got.Ranges)
	}
	out, err = runRange(t, "list", ep)
	if err != nil || !strings.Contains(out, "RANGE") || !strings.Contains(out, `"users/m"  <end>`) {
		t.Fatalf("table: %q %v", out, err)
	}
	if _, err := runRange(t, "list", ep, "-w", "yaml"); err == nil {
		t.Fatal("-w yaml accepted")
	}
	out, err = runRange(t, "merge", "users/m", ep)
	if err != nil || !strings.Contains(out, "merged into range 2 [<start>, <end>)") {
		t.Fatalf("merge: %q %v", out, err)
	}
	if _, err := runRange(t, "merge", "users/m", ep); err == nil {
		t.Fatal("a merge at a key that starts no range was accepted")
	}
	out, err = runRange(t, "list", ep)
	if err != nil || strings.Count(out, "\n") != 2 {
		t.Fatalf("after the merge: %q %v", out, err)
	}
}
