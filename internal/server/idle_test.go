package server

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// TestIdleCostOfManyRanges measures what idle ranges cost: it splits a
// 3-node in-process cluster into CONCORD_IDLE_RANGES ranges, waits for them
// to settle, and reports the process's CPU over 10 idle seconds and its Go
// heap (CONCORD_IDLE_CPUPROFILE=FILE profiles the idle seconds). Skipped
// unless the variable is set (it takes minutes for thousands):
//
//	CONCORD_IDLE_RANGES=10000 go test ./internal/server -run TestIdleCostOfManyRanges -v -timeout 30m
func TestIdleCostOfManyRanges(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("CONCORD_IDLE_RANGES"))
	if n < 2 {
		t.Skip("set CONCORD_IDLE_RANGES to the number of ranges to measure")
	}
	c := startCluster(t, 3, nil)
	ctx := context.Background()
	start := time.Now()
	for i := 1; i < n; i++ {
		if _, _, err := c.Node(0).Split(ctx, []byte(fmt.Sprintf("idle/%06d", i))); err != nil {
			t.Fatalf("split %d: %v", i, err)
		}
	}
	t.Logf("%d ranges made in %v", n, time.Since(start).Round(time.Second))
	time.Sleep(5 * time.Second)
	cpu := func() time.Duration {
		var ru syscall.Rusage
		if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
			t.Fatal(err)
		}
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	if path := os.Getenv("CONCORD_IDLE_CPUPROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			t.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	before, t0 := cpu(), time.Now()
	time.Sleep(10 * time.Second)
	used, wall := cpu()-before, time.Since(t0)
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	awake := 0
	for i := range c.Size() {
		awake += c.Node(i).store.Awake()
	}
	t.Logf("%d ranges on 3 in-process nodes, idle: %.3f cores (%.2f%% of one core per node), Go heap %d MiB (%.1f KiB per replica), %d goroutines, %d of %d replicas awake",
		n, used.Seconds()/wall.Seconds(), 100*used.Seconds()/wall.Seconds()/3, ms.HeapInuse>>20, float64(ms.HeapInuse)/1024/float64(3*n), runtime.NumGoroutine(), awake, 3*n)
}
