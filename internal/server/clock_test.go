package server

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOffsetClock(t *testing.T) {
	path := filepath.Join(t.TempDir(), "clock")
	c := &offsetClock{path: path}
	if d := time.Since(c.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("no file: clock off by %v", d)
	}
	if err := os.WriteFile(path, []byte("-1h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * clockOffsetRefresh)
	if d := time.Since(c.Now()); d < 59*time.Minute || d > 61*time.Minute {
		t.Fatalf("-1h: clock off by %v", d)
	}
	if err := os.WriteFile(path, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * clockOffsetRefresh)
	if d := time.Since(c.Now()); d < -time.Second || d > time.Second {
		t.Fatalf("garbage: clock off by %v", d)
	}
}

// A TSO leader whose clock jumps back an hour, and a new leader elected
// on a node whose clock is an hour behind, still hand out increasing
// revisions.
func TestRevisionsSurviveClockJumps(t *testing.T) {
	dir := t.TempDir()
	c := startCluster(t, 3, func(i int, cfg *Config) {
		cfg.UnsafeClockOffsetFile = filepath.Join(dir, cfg.Name+".clock")
	})
	cli := client(t, c, 0)
	last := putRetry(t, cli, "k", "0")
	for i := 0; i < 3; i++ {
		if err := os.WriteFile(filepath.Join(dir, c.cfgs[i].Name+".clock"), []byte("-1h"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(2 * clockOffsetRefresh)
	for i := 1; i <= 5; i++ {
		rev := putRetry(t, cli, "k", "x")
		if rev <= last {
			t.Fatalf("revision %d after a clock jump is not above %d", rev, last)
		}
		last = rev
	}
	// Move the meta range (and so the TSO) to another node.
	li := leaderOf(t, c, 1)
	c.StopNode(li)
	rev := putRetry(t, client(t, c, (li+1)%3), "k", "y")
	if rev <= last {
		t.Fatalf("revision %d from a new TSO leader with a slow clock is not above %d", rev, last)
	}
}
