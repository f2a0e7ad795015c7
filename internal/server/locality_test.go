package server

import (
	"context"
	"testing"
	"time"
)

// A node's --locality reaches its member record, for placement and
// concord node status.
func TestLocalityIsRecorded(t *testing.T) {
	zones := []string{"region=eu,zone=a", "region=eu,zone=b", "region=us,zone=c"}
	c := startCluster(t, 3, func(i int, cfg *Config) { cfg.Locality = zones[i] })
	cli := client(t, c, 0)
	putRetry(t, cli, "k", "v")
	deadline := time.Now().Add(20 * time.Second)
	for {
		ms, err := c.Node(0).members(context.Background())
		ok := err == nil && len(ms) == 3
		for i, m := range ms {
			ok = ok && m.GetLocality() == zones[i]
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("member records: %v %v", ms, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
