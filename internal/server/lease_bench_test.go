package server

import (
	"context"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concorddb/concord/internal/meta"
)

// BenchmarkLeaseSweep measures a sweep's scan of the user keyspace (what a
// new lessor does once, and then every SweepInterval): 10,000 keys of
// 100 bytes, one in ten with a lease, on a one-node cluster.
//
//	go test -run '^$' -bench BenchmarkLeaseSweep -benchtime 5x ./internal/server
func BenchmarkLeaseSweep(b *testing.B) {
	c := startCluster(b, 1, nil)
	cli := client(b, c, 0)
	ctx := context.Background()
	g, err := cli.Grant(ctx, 600)
	if err != nil {
		b.Fatal(err)
	}
	const keys = 10000
	val := string(make([]byte, 100))
	for i := 0; i < keys; i++ {
		var opts []clientv3.OpOption
		if i%10 == 0 {
			opts = append(opts, clientv3.WithLease(g.ID))
		}
		if _, err := cli.Put(ctx, fmt.Sprintf("sweep/%06d", i), val, opts...); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		found := 0
		if err := (leaseKeys{c.Node(0)}).Scan(ctx, func([]byte, int64) error { found++; return nil }); err != nil {
			b.Fatal(err)
		}
		if found != keys/10 {
			b.Fatalf("found %d keys with a lease, want %d", found, keys/10)
		}
	}
	b.ReportMetric(float64(keys)*float64(b.N)/b.Elapsed().Seconds(), "keys/s")
}

// BenchmarkLeaseKeepAlive measures one keepalive round trip through a
// gateway that does not lead the meta range (3 nodes).
//
//	go test -run '^$' -bench BenchmarkLeaseKeepAlive ./internal/server
func BenchmarkLeaseKeepAlive(b *testing.B) {
	c := startCluster(b, 3, nil)
	putRetry(b, client(b, c, 0), "warm", "up")
	cli := client(b, c, (leaderOfB(b, c)+1)%3)
	ctx := context.Background()
	g, err := cli.Grant(ctx, 600)
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := cli.KeepAliveOnce(ctx, g.ID); err != nil {
			b.Fatal(err)
		}
	}
}

// leaderOfB is the index of the node leading the meta range.
func leaderOfB(b *testing.B, c *LocalCluster) int {
	b.Helper()
	for i := 0; i < c.Size(); i++ {
		if r := c.Node(i).Store().Replica(meta.MetaRangeID); r != nil && r.Status().IsLeader {
			return i
		}
	}
	return 0
}
