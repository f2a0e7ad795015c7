package main

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/concorddb/concord/internal/bench"
)

// TestBenchWatchCommand runs `concord bench watch` against an in-process
// node: the flags reach the benchmark and every event is delivered.
func TestBenchWatchCommand(t *testing.T) {
	cmd := benchCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetArgs([]string{"watch", "--local-cluster", "1", "--watchers", "20", "--streams", "2", "--watched-keys", "5",
		"--clients", "2", "--total", "50", "--json", "--quiet"})
	if err := cmd.Execute(); err != nil {
		t.Fatal(err)
	}
	var rep bench.WatchReport
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, out.String())
	}
	if rep.Watchers != 20 || rep.Streams != 2 || rep.WatchedKeys != 5 || rep.Puts.Ops != 50 {
		t.Errorf("watchers %d streams %d keys %d puts %d; want 20, 2, 5, 50", rep.Watchers, rep.Streams, rep.WatchedKeys, rep.Puts.Ops)
	}
	if rep.Expected != 200 || rep.Delivered != 200 || rep.Memory != nil {
		t.Errorf("delivered %d of %d, memory %v; want 200 of 200 (4 watchers a key) and no memory figures without --local-compare", rep.Delivered, rep.Expected, rep.Memory)
	}
	table := watchMarkdown([]watchSample{{System: "concord", Round: 1, Report: &rep}})
	if !strings.Contains(table, "| 20 | concord | 1 |") || !strings.Contains(table, "| 200 / 200 |") {
		t.Errorf("table:\n%s", table)
	}
}
