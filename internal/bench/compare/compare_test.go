package compare

import (
	"bufio"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/bench"
)

func TestParseStatCPU(t *testing.T) {
	// A real line's shape; the name holds a space and a ')'.
	stat := "4242 (etcd (x) y) S 1 4242 4242 0 -1 4194560 9170 0 0 0 250 130 0 0 20 0 12 0 1234 123456 789 18446744073709551615"
	got, err := parseStatCPU(stat)
	if err != nil {
		t.Fatal(err)
	}
	if got != 3.8 {
		t.Fatalf("cpu %v s, want (250+130)/100 = 3.8", got)
	}
	if _, err := parseStatCPU("4242 (x) S 1 2"); err == nil {
		t.Fatal("short stat line accepted")
	}
}

func TestParseVmHWM(t *testing.T) {
	status := "Name:\tconcord\nVmPeak:\t  900000 kB\nVmHWM:\t   51200 kB\nVmRSS:\t   40000 kB\n"
	got, err := parseVmHWM(bufio.NewScanner(strings.NewReader(status)))
	if err != nil {
		t.Fatal(err)
	}
	if got != 50<<20 {
		t.Fatalf("VmHWM %d bytes, want 50 MiB", got)
	}
	if got, err := parseStatusKB(bufio.NewScanner(strings.NewReader(status)), "VmRSS"); err != nil || got != 40000<<10 {
		t.Fatalf("VmRSS %d bytes (%v), want 40000 KiB", got, err)
	}
	if _, err := parseVmHWM(bufio.NewScanner(strings.NewReader("Name:\tx\n"))); err == nil {
		t.Fatal("status without VmHWM accepted")
	}
}

func TestOwnProcessIsMeasurable(t *testing.T) {
	cpu, err := cpuSeconds(os.Getpid())
	if err != nil || cpu < 0 {
		t.Fatalf("cpu %v, %v", cpu, err)
	}
	rss, err := peakRSS(os.Getpid())
	if err != nil || rss < 1<<20 {
		t.Fatalf("peak RSS %d, %v", rss, err)
	}
}

func sample(sys, w string, round int, ops int64, opsPerSec, p99 float64, cpu float64, rss ...int64) Sample {
	return Sample{System: sys, Workload: w, Round: round, CPUSeconds: cpu, LoadGenCPUSeconds: cpu / 4, PeakRSS: rss,
		Report: &bench.Report{Ops: ops, Throughput: opsPerSec, Latency: bench.Latency{P50Ms: p99 / 2, P99Ms: p99}}}
}

func TestMarkdownRatiosAreMeansOverRounds(t *testing.T) {
	samples := []Sample{
		sample("concord", "put 100/10", 1, 1000, 300, 10, 1, 100<<20, 100<<20),
		sample("etcd", "put 100/10", 1, 1000, 100, 20, 2, 50<<20, 50<<20),
		sample("concord", "put 100/10", 2, 1000, 500, 30, 1, 100<<20, 100<<20),
		sample("etcd", "put 100/10", 2, 1000, 100, 20, 2, 50<<20, 50<<20),
	}
	env := Environment{Date: time.Date(2026, 1, 2, 3, 4, 0, 0, time.UTC), CPUs: 2, CPUModel: "Test CPU",
		Commit: "abc", Go: "go1.26", Command: "concord bench compare", Rounds: 2, Duration: 10 * time.Second}
	md := Markdown(env, "concord", "etcd", []string{"put 100/10"}, samples)
	for _, want := range []string{
		"| put 100/10 | 4.00× | 1.00× | 0.50× | 2.00× |", // 400/100, 20/20, 1000µs/2000µs, 200/100 MiB
		"| put 100/10 | concord | 400 [300, 500] |",
		"| 1000.0 | 250.0 | 200 (100) | 0 |", // CPU per op of the members and of the load generator, RSS
		"2 × Test CPU", "commit `abc`", "2026-01-02 03:04 UTC", "concord bench compare",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("table lacks %q:\n%s", want, md)
		}
	}
}

func TestWriteIntoReplacesOnlyTheGeneratedBlock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "BENCHMARKS.md")
	if err := WriteInto(path, "first\n"); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	doc := "# Benchmarks\n\nintro\n\n" + strings.TrimPrefix(string(b), "# Benchmarks\n\n") + "\n## Analysis\n\nkept\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := WriteInto(path, "second\n"); err != nil {
		t.Fatal(err)
	}
	b, _ = os.ReadFile(path)
	got := string(b)
	want := "# Benchmarks\n\nintro\n\n" + beginMarker + "\nsecond\n" + endMarker + "\n\n## Analysis\n\nkept\n"
	if got != want {
		t.Fatalf("got:\n%s\nwant:\n%s", got, want)
	}
	if s := splice("prose", "t\n"); s != "prose\n\n"+beginMarker+"\nt\n"+endMarker+"\n" {
		t.Fatalf("append to a file without markers: %q", s)
	}
}
