package server

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/redis/go-redis/v9"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concorddb/concord/internal/ap/crdt"
)

func redisClients(t *testing.T, c *LocalCluster) []*redis.Client {
	t.Helper()
	var out []*redis.Client
	for _, addr := range c.RedisAddrs() {
		// One attempt per command: an error is a refused write, counted
		// as not acknowledged (a retry could apply it twice).
		r := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true, MaxRetries: -1, ReadTimeout: 10 * time.Second})
		t.Cleanup(func() { _ = r.Close() })
		out = append(out, r)
	}
	return out
}

// waitAPMembers waits until every node's gossip sees all n nodes alive.
func waitAPMembers(t *testing.T, c *LocalCluster, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := true
		for i := range c.Size() {
			node := c.Node(i)
			if node == nil {
				continue
			}
			alive := 0
			for _, m := range node.ap.gossip.Members() {
				if m.Alive {
					alive++
				}
			}
			ok = ok && alive == n
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("AP gossip did not see %d nodes alive", n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestAPPartition is the partition scenario: INCR and SADD through
// every node; isolate node 3 (the demo's isolation: Raft, AP calls and
// gossip to and from it are dropped); both sides keep acknowledging INCR
// and SADD; heal; every replica converges to the sum of the acknowledged
// increments and the union of the acknowledged adds.
func TestAPPartition(t *testing.T) {
	if testing.Short() {
		t.Skip("a partition and its healing take seconds")
	}
	c, err := StartLocalCluster(3, t.TempDir(), LocalOptions{Logger: quietLogger(), Redis: true, Faults: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	waitAPMembers(t, c, 3)
	rs := redisClients(t, c)
	ctx := context.Background()

	var (
		mu      sync.Mutex
		acked   int64
		members []string
	)
	// round sends INCRBY and SADD through node i and counts what was
	// acknowledged.
	round := func(i int, tag string) {
		for j := range 20 {
			if err := rs[i].IncrBy(ctx, "hits", int64(j%3+1)).Err(); err != nil {
				t.Errorf("INCRBY through node %d (%s): %v", i+1, tag, err)
				continue
			}
			m := fmt.Sprintf("%s-n%d-%d", tag, i+1, j)
			if err := rs[i].SAdd(ctx, "cart", m).Err(); err != nil {
				t.Errorf("SADD through node %d (%s): %v", i+1, tag, err)
				continue
			}
			mu.Lock()
			acked += int64(j%3 + 1)
			members = append(members, m)
			mu.Unlock()
		}
	}
	for i := range 3 {
		round(i, "before")
	}
	if v, err := rs[2].Get(ctx, "hits").Int64(); err != nil || v != acked {
		t.Fatalf("before the partition node 3 reads %d (%v), want %d", v, err, acked)
	}

	if err := c.DemoIsolate(3, true); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			round(i, "during")
		}()
	}
	wg.Wait()
	// The isolated side sees its own writes, not the majority's.
	if v, err := rs[2].Get(ctx, "hits").Int64(); err != nil || v >= acked {
		t.Fatalf("isolated node reads %d (%v); the majority's increments cannot reach it (total %d)", v, err, acked)
	}

	if err := c.DemoIsolate(3, false); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	sort.Strings(members)
	want := strconv.FormatInt(acked, 10)
	deadline := healed.Add(20 * time.Second)
	for {
		diff := ""
		for i := range c.Size() {
			local := c.Node(i).AP().Local()
			h, err := local.Get(0, []byte("hits"))
			if err != nil {
				t.Fatal(err)
			}
			s, err := local.Get(0, []byte("cart"))
			if err != nil {
				t.Fatal(err)
			}
			if got, _ := h.Str.Get(); string(got) != want {
				diff += fmt.Sprintf("node %d: hits %s, want %s; ", i+1, got, want)
			}
			if got := s.Set.Members(); !slices.Equal(got, members) {
				diff += fmt.Sprintf("node %d: cart has %d of %d members; ", i+1, len(got), len(members))
			}
			if h.Kind(0) != crdt.KindString || s.Kind(0) != crdt.KindSet {
				diff += fmt.Sprintf("node %d: wrong kinds; ", i+1)
			}
		}
		if diff == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replicas did not converge within 20 s of healing: %s", diff)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("every replica converged %v after healing: hits=%s, cart of %d", time.Since(healed).Round(time.Millisecond), want, len(members))
	for i, r := range rs {
		if v, err := r.Get(ctx, "hits").Result(); err != nil || v != want {
			t.Fatalf("node %d reads hits %q (%v), want %s", i+1, v, err, want)
		}
		if n, err := r.SCard(ctx, "cart").Result(); err != nil || n != int64(len(members)) {
			t.Fatalf("node %d reads a cart of %d (%v), want %d", i+1, n, err, len(members))
		}
	}
}

// TestAPRedisAcrossNodes: a write through one node is read through the
// others, and a node's restart keeps its data (hinted handoff brings what
// it missed).
func TestAPRedisAcrossNodes(t *testing.T) {
	if testing.Short() {
		t.Skip("restarts a node")
	}
	c, err := StartLocalCluster(3, t.TempDir(), LocalOptions{Logger: quietLogger(), Redis: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	waitAPMembers(t, c, 3)
	rs := redisClients(t, c)
	ctx := context.Background()
	if err := rs[0].Set(ctx, "greeting", "hello", 0).Err(); err != nil {
		t.Fatal(err)
	}
	for i, r := range rs {
		if v, err := r.Get(ctx, "greeting").Result(); err != nil || v != "hello" {
			t.Fatalf("node %d reads %q (%v)", i+1, v, err)
		}
	}
	c.StopNode(1)
	for j := range 10 {
		if err := rs[j%2*2].Incr(ctx, "n").Err(); err != nil {
			t.Fatalf("INCR with node 2 down: %v", err)
		}
	}
	if err := c.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	rs = redisClients(t, c)
	deadline := time.Now().Add(20 * time.Second)
	for {
		o, err := c.Node(1).AP().Local().Get(0, []byte("n"))
		if err != nil {
			t.Fatal(err)
		}
		v, _ := o.Str.Get()
		g, err := c.Node(1).AP().Local().Get(0, []byte("greeting"))
		if err != nil {
			t.Fatal(err)
		}
		gv, _ := g.Str.Get()
		if string(v) == "10" && string(gv) == "hello" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restarted node holds n=%q greeting=%q", v, gv)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if v, err := rs[1].Get(ctx, "n").Result(); err != nil || v != "10" {
		t.Fatalf("restarted node reads n=%q (%v)", v, err)
	}
}

// While the cluster has a NOSPACE alarm the Redis port refuses writes, as
// the etcd API does, and reads go on; once it is gone writes are taken
// again.
func TestAPWritesRefusedUnderNoSpace(t *testing.T) {
	c, err := StartLocalCluster(1, t.TempDir(), LocalOptions{Logger: quietLogger(), Redis: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	r := redis.NewClient(&redis.Options{Addr: c.RedisAddrs()[0], DisableIdentity: true, MaxRetries: -1, ReadTimeout: 10 * time.Second})
	defer r.Close()
	if err := r.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	cli := client(t, c, 0)
	id := c.Node(0).ID()
	if _, err := pb.NewMaintenanceClient(cli.ActiveConnection()).Alarm(ctx, &pb.AlarmRequest{Action: pb.AlarmRequest_ACTIVATE, MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if err := r.Incr(ctx, "n").Err(); err == nil || !strings.Contains(err.Error(), "NOSPACE") {
		t.Fatalf("INCR under NOSPACE: %v", err)
	}
	if v, err := r.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET under NOSPACE: %q %v", v, err)
	}
	if _, err := cli.AlarmDisarm(ctx, &clientv3.AlarmMember{MemberID: id, Alarm: pb.AlarmType_NOSPACE}); err != nil {
		t.Fatal(err)
	}
	if err := r.Incr(ctx, "n").Err(); err != nil {
		t.Fatalf("INCR once the alarm is disarmed: %v", err)
	}
}
