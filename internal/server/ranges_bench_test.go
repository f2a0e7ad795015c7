package server

import (
	"context"
	"fmt"
	"testing"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkRangeOverRanges reads 16 or 1600 keys with one Range, from one
// range and split over 16, on a 3-node in-process cluster:
//
//	go test ./internal/server -run xxx -bench RangeOverRanges -benchtime 200x
func BenchmarkRangeOverRanges(b *testing.B) {
	for _, n := range []int{16, 1600} {
		for _, parts := range []int{1, 16} {
			benchRangeOverRanges(b, n, parts)
		}
	}
}

func benchRangeOverRanges(b *testing.B, n, parts int) {
	{
		b.Run(fmt.Sprintf("keys=%d/ranges=%d", n, parts), func(b *testing.B) {
			c := startCluster(b, 3, nil)
			cli := client(b, c, 0)
			ctx := context.Background()
			for i := 0; i < n; i++ {
				putRetry(b, cli, fmt.Sprintf("bench/%04d", i), "0123456789")
			}
			for p := 1; p < parts; p++ {
				if _, _, err := c.Node(0).Split(ctx, []byte(fmt.Sprintf("bench/%04d", p*n/parts))); err != nil {
					b.Fatal(err)
				}
			}
			get(b, cli, "bench/", clientv3.WithPrefix()) // warm the range cache
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				resp, err := cli.Get(ctx, "bench/", clientv3.WithPrefix())
				if err != nil || len(resp.Kvs) != n {
					b.Fatalf("%v, %d keys", err, len(resp.Kvs))
				}
			}
		})
	}
}
