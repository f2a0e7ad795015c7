package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	osexec "os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/concorddb/concord/internal/meta"
)

func leaseCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// waitGone waits until key is gone in every node's own replica
// (serializable reads) and returns how long that took.
func waitGone(t *testing.T, c *LocalCluster, key string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for i := 0; i < c.Size(); i++ {
		cli := client(t, c, i)
		for {
			if len(get(t, cli, key, clientv3.WithSerializable()).Kvs) == 0 {
				break
			}
			if time.Since(start) > within {
				t.Fatalf("%s still on node %d after %v", key, i+1, within)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return time.Since(start)
}

// The Lease service end to end through clientv3, on gateways that do not
// lead the meta range as well as the one that does: grant (etcd's rules),
// attach by put, time-to-live with keys, keepalive, list, revoke and
// expiry deleting the keys on every node, and a concurrency.Session.
func TestLeases(t *testing.T) {
	c := startCluster(t, 3, nil)
	ctx := leaseCtx(t)
	cli := client(t, c, 2)
	other := client(t, c, 0)
	putRetry(t, cli, "warm", "up")

	g, err := cli.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID <= 0 || g.TTL != 10 {
		t.Fatalf("grant: id %x ttl %d", g.ID, g.TTL)
	}
	// Below the minimum TTL (1.5 election timeouts: 2 s here) a grant is
	// raised to it, as etcd.
	if short, err := other.Grant(ctx, 1); err != nil || short.TTL != 2 {
		t.Fatalf("grant of 1 s: %+v %v, want TTL 2", short, err)
	}
	if _, err := other.Lease.Grant(ctx, 10); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Do(ctx, clientv3.OpPut("x", "y")); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Grant(ctx, 9000000001); !errors.Is(err, rpctypes.ErrLeaseTTLTooLarge) {
		t.Fatalf("grant above MaxLeaseTTL: %v", err)
	}
	if _, err := cli.Put(ctx, "nolease", "v", clientv3.WithLease(12345)); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("put with a lease that does not exist: %v", err)
	}
	if _, err := cli.Put(ctx, "a", "1", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Put(ctx, "b", "2", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	if _, err := other.Txn(ctx).Then(clientv3.OpPut("c", "3", clientv3.WithLease(g.ID))).Commit(); err != nil {
		t.Fatal(err)
	}
	if kv := get(t, other, "a").Kvs; len(kv) != 1 || kv[0].Lease != int64(g.ID) {
		t.Fatalf("a: %v", kv)
	}
	if _, err := other.Put(ctx, "c", "re-put without the lease"); err != nil {
		t.Fatal(err)
	}
	ttl, err := other.TimeToLive(ctx, g.ID, clientv3.WithAttachedKeys())
	if err != nil {
		t.Fatal(err)
	}
	if ttl.GrantedTTL != 10 || ttl.TTL < 8 || ttl.TTL > 10 || fmt.Sprintf("%q", ttl.Keys) != `["a" "b"]` {
		t.Fatalf("time to live: granted %d ttl %d keys %q", ttl.GrantedTTL, ttl.TTL, ttl.Keys)
	}
	if ka, err := other.KeepAliveOnce(ctx, g.ID); err != nil || ka.TTL != 10 {
		t.Fatalf("keepalive: %+v %v", ka, err)
	}
	ls, err := cli.Leases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range ls.Leases {
		found = found || l.ID == g.ID
	}
	if len(ls.Leases) != 3 || !found {
		t.Fatalf("leases: %v", ls.Leases)
	}

	// Revoke returns once the keys are gone (a linearizable read right
	// after sees none), and every node's replica loses them.
	if _, err := other.Revoke(ctx, g.ID); err != nil {
		t.Fatal(err)
	}
	if kv := get(t, cli, "a").Kvs; len(kv) != 0 {
		t.Fatalf("a after revoke: %v", kv)
	}
	waitGone(t, c, "b", 5*time.Second)
	if kv := get(t, cli, "c").Kvs; len(kv) != 1 {
		t.Fatal("a key re-put without the lease was deleted with it")
	}
	if _, err := cli.Revoke(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v", err)
	}
	if ttl, err := cli.TimeToLive(ctx, g.ID); err != nil || ttl.TTL != -1 {
		t.Fatalf("time to live after revoke: %+v %v", ttl, err)
	}
	if _, err := cli.KeepAliveOnce(ctx, g.ID); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keepalive after revoke: %v", err)
	}

	// Expiry: a 2 s lease nobody keeps alive; its key goes on every node,
	// not before the TTL.
	e, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	if _, err := other.Put(ctx, "e", "v", clientv3.WithLease(e.ID)); err != nil {
		t.Fatal(err)
	}
	// Kept alive over a stream: outlives its TTL several times.
	kctx, kcancel := context.WithCancel(ctx)
	k, err := cli.Grant(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, "k", "v", clientv3.WithLease(k.ID)); err != nil {
		t.Fatal(err)
	}
	ch, err := other.KeepAlive(kctx, k.ID)
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for range ch {
		}
	}()
	time.Sleep(time.Second)
	if kv := get(t, cli, "e").Kvs; len(kv) != 1 {
		t.Fatalf("e gone %v after a 2 s grant", time.Since(granted))
	}
	waitGone(t, c, "e", 10*time.Second)
	if took := time.Since(granted); took < 2*time.Second {
		t.Fatalf("lease of 2 s expired after %v", took)
	}
	time.Sleep(3 * time.Second)
	if kv := get(t, cli, "k").Kvs; len(kv) != 1 {
		t.Fatal("a lease kept alive over a stream expired")
	}
	kcancel()
	waitGone(t, c, "k", 10*time.Second)

	// concurrency: a session's lock key lives on the session's lease, and
	// closing the session revokes it.
	s, err := concurrency.NewSession(other, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	m := concurrency.NewMutex(s, "/lock/")
	if err := m.Lock(ctx); err != nil {
		t.Fatal(err)
	}
	if kv := get(t, cli, m.Key()).Kvs; len(kv) != 1 || kv[0].Lease != int64(s.Lease()) {
		t.Fatalf("lock key %s: %v", m.Key(), kv)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if kv := get(t, cli, m.Key()).Kvs; len(kv) != 0 {
		t.Fatal("the lock key outlived its closed session")
	}
}

// A lease survives the failover of the node whose lessor served it, with
// its remaining TTL from the last checkpoint (not reset to its full TTL,
// not expired early), and its keys stay.
func TestLeaseSurvivesLessorFailover(t *testing.T) {
	c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.LeaseCheckpointInterval = 500 * time.Millisecond })
	leader := leaderOf(t, c, meta.MetaRangeID)
	survivor := (leader + 1) % 3
	cli := client(t, c, survivor)
	ctx := leaseCtx(t)
	putRetry(t, cli, "warm", "up")
	g, err := cli.Grant(ctx, 30)
	if err != nil {
		t.Fatal(err)
	}
	granted := time.Now()
	if _, err := cli.Put(ctx, "held", "v", clientv3.WithLease(g.ID)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(4 * time.Second) // several checkpoints
	stopped := time.Since(granted)
	c.StopNode(leader)
	var ttl *clientv3.LeaseTimeToLiveResponse
	for {
		rctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		ttl, err = cli.TimeToLive(rctx, g.ID)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("time to live after the failover: %v", err)
		}
	}
	elapsed := time.Since(granted)
	// The new lessor resumes from a checkpoint at most 0.6 s (the interval
	// and a tick) older than the stop, rounded up to a second, and adds the
	// election timeout (1 s); a reset would give 31.
	maxTTL := int64((30*time.Second - stopped + 3*time.Second).Seconds())
	t.Logf("after the failover, %v after the grant: TTL %d (granted %d)", elapsed.Round(time.Millisecond), ttl.TTL, ttl.GrantedTTL)
	if ttl.TTL <= 0 || ttl.TTL > maxTTL || ttl.TTL < 30-int64(elapsed.Seconds())-1 {
		t.Fatalf("TTL %d after the failover %v after the grant: want about %d, not reset to 30 nor expired", ttl.TTL, elapsed, 30-int64(elapsed.Seconds()))
	}
	if kv := get(t, cli, "held").Kvs; len(kv) != 1 {
		t.Fatal("the lease's key is gone after the failover")
	}
	if ka, err := cli.KeepAliveOnce(ctx, g.ID); err != nil || ka.TTL != 30 {
		t.Fatalf("keepalive on the new lessor: %+v %v", ka, err)
	}
}

// etcdctl's lease commands against Concord print what they print against
// etcd.
func TestEtcdctlLease(t *testing.T) {
	ctl, err := osexec.LookPath("etcdctl")
	if err != nil {
		t.Skip("etcdctl not installed (Debian package etcd-client): skipping")
	}
	c := startCluster(t, 1, nil)
	putRetry(t, client(t, c, 0), "warm", "up")
	run := func(args ...string) string {
		t.Helper()
		cmd := osexec.Command(ctl, append([]string{"--endpoints=" + c.ClientAddrs()[0], "--command-timeout=15s"}, args...)...)
		cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		if err := cmd.Run(); err != nil {
			return "error: " + strings.TrimSpace(errOut.String())
		}
		return out.String()
	}
	m := regexp.MustCompile(`^lease ([0-9a-f]+) granted with TTL\(60s\)\n$`).FindStringSubmatch(run("lease", "grant", "60"))
	if m == nil {
		t.Fatal("lease grant printed something else")
	}
	id := m[1]
	for _, tc := range []struct {
		args []string
		want string // a regexp
	}{
		{[]string{"put", "k1", "v", "--lease=" + id}, `^OK\n$`},
		{[]string{"put", "k2", "v", "--lease=" + id}, `^OK\n$`},
		{[]string{"put", "k3", "v", "--lease=1234"}, `(?s)^error: .*Error: etcdserver: requested lease not found$`},
		{[]string{"lease", "timetolive", id}, `^lease ` + id + ` granted with TTL\(60s\), remaining\((59|60)s\)\n$`},
		{[]string{"lease", "timetolive", id, "--keys"}, `^lease ` + id + ` granted with TTL\(60s\), remaining\((59|60)s\), attached keys\(\[k1 k2\]\)\n$`},
		{[]string{"lease", "keep-alive", "--once", id}, `^lease ` + id + ` keepalived with TTL\(60\)\n$`},
		{[]string{"lease", "list"}, `^found 1 leases\n` + id + `\n$`},
		{[]string{"lease", "revoke", id}, `^lease ` + id + ` revoked\n$`},
		{[]string{"get", "k1"}, `^$`},
		{[]string{"lease", "timetolive", id}, `^lease ` + id + ` already expired\n$`},
		{[]string{"lease", "revoke", id}, `(?s)^error: .*Error: failed to revoke lease \(etcdserver: requested lease not found\)$`},
		{[]string{"lease", "list"}, `^found 0 leases\n$`},
		// etcd's Lock service (lockelect.go) holds its key on a session's
		// lease, and releases it by revoking the lease.
		{[]string{"lock", "L", "echo", "locked"}, `^locked\n$`},
		{[]string{"get", "L", "--prefix", "--keys-only"}, `^$`},
	} {
		if got := run(tc.args...); !regexp.MustCompile(tc.want).MatchString(got) {
			t.Errorf("etcdctl %v: %q, want %s", tc.args, got, tc.want)
		}
	}
}

// The JSON gateway serves etcd's /v3/lease/ paths.
func TestLeaseJSONGateway(t *testing.T) {
	c := startCluster(t, 1, nil)
	putRetry(t, client(t, c, 0), "warm", "up")
	post := func(path, body string) string {
		t.Helper()
		resp, err := http.Post(c.ClientURLs()[0]+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		data, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s %v", path, resp.StatusCode, data, err)
		}
		return string(data)
	}
	var g struct{ ID, TTL string }
	if err := json.Unmarshal([]byte(post("/v3/lease/grant", `{"TTL":"30"}`)), &g); err != nil || g.ID == "" || g.TTL != "30" {
		t.Fatalf("grant: %+v %v", g, err)
	}
	if out := post("/v3/lease/timetolive", `{"ID":"`+g.ID+`","keys":true}`); !strings.Contains(out, `"grantedTTL":"30"`) {
		t.Fatalf("timetolive: %s", out)
	}
	if out := post("/v3/lease/leases", `{}`); !strings.Contains(out, `"ID":"`+g.ID+`"`) {
		t.Fatalf("leases: %s", out)
	}
	if out := post("/v3/lease/keepalive", `{"ID":"`+g.ID+`"}`); !strings.Contains(out, `"TTL":"30"`) {
		t.Fatalf("keepalive: %s", out)
	}
	post("/v3/lease/revoke", `{"ID":"`+g.ID+`"}`)
	if out := post("/v3/lease/timetolive", `{"ID":"`+g.ID+`"}`); !strings.Contains(out, `"TTL":"-1"`) {
		t.Fatalf("timetolive after revoke: %s", out)
	}
}

// A lease with keys in several ranges: revoke deletes them all, in one txn
// across the ranges, and so does expiry.
func TestLeaseKeysAcrossRanges(t *testing.T) {
	c := startCluster(t, 1, nil)
	cli := client(t, c, 0)
	ctx := leaseCtx(t)
	putRetry(t, cli, "warm", "up")
	if _, _, err := c.Node(0).Split(ctx, []byte("l/m")); err != nil {
		t.Fatal(err)
	}
	for _, revoke := range []bool{true, false} {
		g, err := cli.Grant(ctx, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"l/a", "l/b", "l/x", "l/y"} {
			if _, err := cli.Put(ctx, k, "v", clientv3.WithLease(g.ID)); err != nil {
				t.Fatal(err)
			}
		}
		if revoke {
			if _, err := cli.Revoke(ctx, g.ID); err != nil {
				t.Fatal(err)
			}
			if n := len(get(t, cli, "l/", clientv3.WithPrefix()).Kvs); n != 0 {
				t.Fatalf("%d keys after revoke", n)
			}
			continue
		}
		for _, k := range []string{"l/a", "l/y"} {
			waitGone(t, c, k, 10*time.Second)
		}
	}
}

// TestLeaseSweepPagesEveryKeyAcrossRanges restarts the only node, so the
// new term's first sweep must rebuild the lease's keys from the keyspace
// alone: more keys than a sweep page, in two ranges, read in uncounted
// pages (router.WithoutCount). Revoke then deletes every one of them, and
// the key without a lease stays.
func TestLeaseSweepPagesEveryKeyAcrossRanges(t *testing.T) {
	c := startCluster(t, 1, nil)
	cli := client(t, c, 0)
	ctx := leaseCtx(t)
	putRetry(t, cli, "warm", "up")
	if _, _, err := c.Node(0).Split(ctx, []byte("s/k0300")); err != nil {
		t.Fatal(err)
	}
	g, err := cli.Grant(ctx, 600)
	if err != nil {
		t.Fatal(err)
	}
	const n = 2*scanPageKeys + 100
	for i := 0; i < n; i++ {
		if _, err := cli.Put(ctx, fmt.Sprintf("s/k%04d", i), "v", clientv3.WithLease(g.ID)); err != nil {
			t.Fatal(err)
		}
	}
	putRetry(t, cli, "s/unleased", "stays")
	c.StopNode(0)
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	cli = client(t, c, 0)
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := cli.Revoke(ctx, g.ID)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoke after restart: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp := get(t, cli, "s/", clientv3.WithPrefix())
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Key) != "s/unleased" {
		t.Fatalf("after revoke, s/ holds %d keys (first %q), want only s/unleased", len(resp.Kvs), resp.Kvs[0].Key)
	}
}
