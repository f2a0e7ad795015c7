package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// fillUntilNoSpace puts 64 KiB values through cli until a put fails with
// NOSPACE, and returns the keys it acknowledged; it fails the test on any
// other error or if no NOSPACE comes within maxPuts.
func fillUntilNoSpace(t *testing.T, cli *clientv3.Client, prefix string, maxPuts int) map[string]string {
	t.Helper()
	acked := map[string]string{}
	for i := range maxPuts {
		k := fmt.Sprintf("%s/%05d", prefix, i)
		raw := make([]byte, 48<<10)
		rand.Read(raw)
		v := base64.StdEncoding.EncodeToString(raw) // 64 KiB Pebble cannot compress away
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := cli.Put(ctx, k, v)
		cancel()
		if err == nil {
			acked[k] = v
			continue
		}
		if !errors.Is(err, rpctypes.ErrNoSpace) || err.Error() != "etcdserver: mvcc: database space exceeded" {
			t.Fatalf("put %d: %v; want etcd's NOSPACE error", i, err)
		}
		return acked
	}
	t.Fatalf("no NOSPACE after %d puts of 64 KiB", maxPuts)
	return nil
}

// alarmsOn waits until node i lists exactly want, and fails the test if it
// does not within 10 s.
func alarmsOn(t *testing.T, c *LocalCluster, i int, want []*pb.AlarmMember) {
	t.Helper()
	cli := client(t, c, i)
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := cli.AlarmList(ctx)
		cancel()
		if err == nil && fmt.Sprint(resp.Alarms) == fmt.Sprint(want) {
			return
		}
		if time.Now().After(deadline) {
			got := []*pb.AlarmMember(nil)
			if resp != nil {
				got = resp.Alarms
			}
			t.Fatalf("node %d lists alarms %v (err %v); want %v", i+1, got, err, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A node past --quota-backend-bytes raises NOSPACE for itself; every
// node then refuses puts, txns with puts and lease grants with etcd's
// error, and still serves reads, deletes and compaction; the alarm
// survives a restart, comes back when disarmed while the node is still
// over, and once the node has room again a disarm lets writes through.
func TestQuotaRaisesNoSpaceClusterWide(t *testing.T) {
	t.Parallel()
	c := startCluster(t, 3, func(i int, cfg *Config) {
		if i == 0 {
			cfg.QuotaBackendBytes = 4 << 20
		}
	})
	cli0 := client(t, c, 0)
	acked := fillUntilNoSpace(t, cli0, "fill", 1000)
	if len(acked) == 0 {
		t.Fatal("the quota refused the first put: the test's quota is below a fresh node's engine")
	}
	noSpace := []*pb.AlarmMember{{MemberID: c.Node(0).ident.NodeID, Alarm: pb.AlarmType_NOSPACE}}
	for i := range 3 {
		alarmsOn(t, c, i, noSpace)
	}

	cli1 := client(t, c, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli1.Put(ctx, "other", "v"); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("put on another node: %v; want NOSPACE", err)
	}
	if _, err := cli1.Txn(ctx).Then(clientv3.OpPut("t", "v")).Commit(); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("txn with a put: %v; want NOSPACE", err)
	}
	if _, err := cli1.Grant(ctx, 60); !errors.Is(err, rpctypes.ErrNoSpace) {
		t.Fatalf("lease grant: %v; want NOSPACE", err)
	}
	t.Logf("%d puts of 64 KiB acknowledged before NOSPACE (quota 4 MiB)", len(acked))
	readsAll(t, c, 1, acked)
	if _, err := cli1.Txn(ctx).Then(clientv3.OpGet("fill/00000")).Commit(); err != nil {
		t.Fatalf("read-only txn: %v", err)
	}
	var last int64
	for k := range acked {
		resp, err := cli1.Delete(ctx, k)
		if err != nil {
			t.Fatalf("delete under NOSPACE: %v", err)
		}
		last = resp.Header.Revision
	}
	if _, err := cli1.Compact(ctx, last, clientv3.WithCompactPhysical()); err != nil {
		t.Fatalf("compact under NOSPACE: %v", err)
	}

	// The alarm is in the meta range: a restarted node still lists it.
	c.StopNode(2)
	if err := c.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	alarmsOn(t, c, 2, noSpace)

	// Disarmed while node 1 is still over its quota, the alarm comes back.
	if _, err := cli1.AlarmDisarm(ctx, &clientv3.AlarmMember{}); err != nil {
		t.Fatal(err)
	}
	alarmsOn(t, c, 1, noSpace)

	// With room (a larger quota), a disarm lets writes through again.
	c.StopNode(0)
	c.cfgs[0].QuotaBackendBytes = 1 << 30
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	resp, err := cli1.AlarmDisarm(ctx, &clientv3.AlarmMember{})
	if err != nil || len(resp.Alarms) != 1 {
		t.Fatalf("disarm: %v, %v", resp, err)
	}
	for i := range 3 {
		alarmsOn(t, c, i, nil)
	}
	putRetry(t, cli1, "after", "disarm")
	if _, err := cli1.Grant(ctx, 60); err != nil {
		t.Fatalf("lease grant after disarm: %v", err)
	}
}
