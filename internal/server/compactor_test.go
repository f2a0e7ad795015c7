package server

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestParseRetention(t *testing.T) {
	for in, want := range map[string]time.Duration{
		"": 0, "0": 0, "1": time.Hour, "0.5": 30 * time.Minute, "30m": 30 * time.Minute, "2s": 2 * time.Second,
	} {
		got, err := parseRetention(in)
		if err != nil || got != want {
			t.Errorf("parseRetention(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"-1", "soon", "-3m"} {
		if _, err := parseRetention(bad); err == nil {
			t.Errorf("parseRetention(%q) accepted", bad)
		}
	}
	if got := compactionInterval(72 * time.Hour); got != time.Hour {
		t.Errorf("interval for 72h: %v", got)
	}
}

func TestParseCompaction(t *testing.T) {
	if p, err := parseCompaction("revision", "1000"); err != nil || p.writes != 1000 || p.period != 0 {
		t.Fatalf("revision 1000: %+v %v", p, err)
	}
	if p, err := parseCompaction("", "1"); err != nil || p.period != time.Hour {
		t.Fatalf("default mode: %+v %v", p, err)
	}
	for _, bad := range [][2]string{{"revision", "1h"}, {"revision", "-5"}, {"weekly", "1"}} {
		if _, err := parseCompaction(bad[0], bad[1]); err == nil {
			t.Errorf("parseCompaction(%q, %q) accepted", bad[0], bad[1])
		}
	}
}

func TestRevisionAutoCompaction(t *testing.T) {
	defer func(d time.Duration) { revisionCompactionInterval = d }(revisionCompactionInterval)
	revisionCompactionInterval = 200 * time.Millisecond
	c := startCluster(t, 3, func(_ int, cfg *Config) {
		cfg.AutoCompactionMode = "revision"
		cfg.AutoCompactionRetention = "100"
	})
	cli := client(t, c, 0)
	var revs []int64
	for i := 0; i < 400; i++ {
		revs = append(revs, putRetry(t, cli, "k", fmt.Sprint(i)))
	}
	// As on etcd, the compactor compacts at the current revision minus
	// the retention: every revision from there on stays readable, every
	// one before it goes.
	last := revs[len(revs)-1]
	readAt := func(rev int64) error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err := cli.Get(ctx, "k", clientv3.WithRev(rev))
		return err
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := readAt(last - 101)
		if err != nil && strings.Contains(err.Error(), "required revision has been compacted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision mode never compacted up to %d (err %v)", last-100, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for rev := last - 100; rev <= last; rev++ {
		if err := readAt(rev); err != nil {
			t.Fatalf("revision %d, one of the newest 100 after %d, is gone: %v", rev, last, err)
		}
	}
}

func TestPeriodicAutoCompaction(t *testing.T) {
	c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.AutoCompactionRetention = "2s" })
	cli := client(t, c, 0)
	old := putRetry(t, cli, "k", "1")
	putRetry(t, cli, "k", "2")
	deadline := time.Now().Add(20 * time.Second)
	for {
		// Keep the range moving so that its newest revision passes old.
		putRetry(t, cli, "tick", "x")
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := cli.Get(ctx, "k", clientv3.WithRev(old))
		cancel()
		if err != nil && strings.Contains(err.Error(), "required revision has been compacted") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revision %d still readable long after the 2s retention (err %v)", old, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// The newest data is untouched.
	if resp := get(t, cli, "k"); string(resp.Kvs[0].Value) != "2" || resp.Kvs[0].Version != 2 {
		t.Fatalf("after auto compaction: %+v", resp.Kvs[0])
	}
}

// The periodic compactor's time-to-revision index answers the newest
// revision sampled at or before a moment, and keeps a bounded number of
// samples.
func TestRevSamples(t *testing.T) {
	s := revSamples{max: 3}
	t0 := time.Unix(1000, 0)
	if s.before(t0) != 0 {
		t.Fatal("an empty index answered a revision")
	}
	for i := 0; i < 5; i++ {
		s.add(t0.Add(time.Duration(i)*time.Second), int64(10*(i+1)))
	}
	if len(s.samples) != 3 {
		t.Fatalf("%d samples kept, want 3", len(s.samples))
	}
	for _, c := range []struct {
		at   time.Duration
		want int64
	}{{1 * time.Second, 0}, {2 * time.Second, 30}, {3500 * time.Millisecond, 40}, {time.Hour, 50}} {
		if got := s.before(t0.Add(c.at)); got != c.want {
			t.Errorf("before(t0+%v) = %d, want %d", c.at, got, c.want)
		}
	}
}
