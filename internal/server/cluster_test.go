package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/meta"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// quietLogger discards the nodes' logs, unless CONCORD_TEST_LOG names a
// level (debug, info, warn) to write them to stderr at: what a failing
// test's cluster did.
func quietLogger() *slog.Logger {
	var level slog.Level
	if err := level.UnmarshalText([]byte(os.Getenv("CONCORD_TEST_LOG"))); err == nil && os.Getenv("CONCORD_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

func startCluster(t testing.TB, n int, tune func(i int, c *Config)) *LocalCluster {
	t.Helper()
	c, err := StartLocalCluster(n, t.TempDir(), LocalOptions{Logger: quietLogger(), Tune: tune})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// client returns an etcd client pinned to node i.
func client(t testing.TB, c *LocalCluster, i int) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{c.ClientAddrs()[i]},
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// putRetry writes until it succeeds or the deadline passes: what a client
// does across a failover.
func putRetry(t testing.TB, cli *clientv3.Client, key, val string) int64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := cli.Put(ctx, key, val)
		cancel()
		if err == nil {
			return resp.Header.Revision
		}
		if time.Now().After(deadline) {
			t.Fatalf("put %s: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t testing.TB, cli *clientv3.Client, key string, opts ...clientv3.OpOption) *clientv3.GetResponse {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		resp, err := cli.Get(ctx, key, opts...)
		cancel()
		if err == nil {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("get %s: %v", key, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestWriteOnOneNodeReadOnAnother(t *testing.T) {
	c := startCluster(t, 3, nil)
	rev1 := putRetry(t, client(t, c, 0), "greeting", "hello")
	resp := get(t, client(t, c, 2), "greeting")
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "hello" {
		t.Fatalf("node 3 read %v, want greeting=hello", resp.Kvs)
	}
	kv := resp.Kvs[0]
	if kv.ModRevision != rev1 || kv.CreateRevision != rev1 || kv.Version != 1 {
		t.Fatalf("kv %+v: want create=mod=%d version=1", kv, rev1)
	}
	// A second write has a larger revision and bumps the version.
	rev2 := putRetry(t, client(t, c, 1), "greeting", "bonjour")
	if rev2 <= rev1 {
		t.Fatalf("revision went from %d to %d", rev1, rev2)
	}
	resp = get(t, client(t, c, 2), "greeting")
	if kv := resp.Kvs[0]; string(kv.Value) != "bonjour" || kv.Version != 2 || kv.CreateRevision != rev1 || kv.ModRevision != rev2 {
		t.Fatalf("after second put: %+v", kv)
	}
	// Prefix and delete with prev_kv through a third node.
	putRetry(t, client(t, c, 2), "greetings/a", "1")
	putRetry(t, client(t, c, 2), "greetings/b", "2")
	resp = get(t, client(t, c, 0), "greetings/", clientv3.WithPrefix())
	if len(resp.Kvs) != 2 {
		t.Fatalf("prefix read %d keys, want 2", len(resp.Kvs))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	del, err := client(t, c, 1).Delete(ctx, "greetings/", clientv3.WithPrefix(), clientv3.WithPrevKV())
	if err != nil {
		t.Fatal(err)
	}
	if del.Deleted != 2 || len(del.PrevKvs) != 2 {
		t.Fatalf("delete: deleted %d prev %d, want 2 and 2", del.Deleted, len(del.PrevKvs))
	}
	if resp := get(t, client(t, c, 0), "greetings/", clientv3.WithPrefix()); len(resp.Kvs) != 0 {
		t.Fatalf("after delete, %d keys remain", len(resp.Kvs))
	}
}

// leaderOf returns the index of the node leading rangeID, waiting for one.
func leaderOf(t *testing.T, c *LocalCluster, rangeID uint64) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for i := 0; i < c.Size(); i++ {
			n := c.Node(i)
			if n == nil {
				continue
			}
			if r := n.Store().Replica(rangeID); r != nil && r.Status().IsLeader {
				return i
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no leader for range %d", rangeID)
	return -1
}

func TestLeaderFailover(t *testing.T) {
	c := startCluster(t, 3, nil)
	putRetry(t, client(t, c, 0), "before", "1")
	leader := leaderOf(t, c, meta.UserRangeID)
	c.StopNode(leader)
	start := time.Now()
	// Any surviving node keeps accepting writes once a new leader is up.
	other := (leader + 1) % 3
	cli := client(t, c, other)
	for i := 0; i < 20; i++ {
		putRetry(t, cli, fmt.Sprintf("after/%d", i), "v")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("writes resumed only after %v", took)
	}
	newLeader := leaderOf(t, c, meta.UserRangeID)
	if newLeader == leader {
		t.Fatalf("stopped node %d still leads", leader)
	}
	resp := get(t, client(t, c, (leader+2)%3), "after/", clientv3.WithPrefix())
	if len(resp.Kvs) != 20 {
		t.Fatalf("read %d keys after failover, want 20", len(resp.Kvs))
	}
	if resp := get(t, cli, "before"); len(resp.Kvs) != 1 {
		t.Fatal("write from before the failover is gone")
	}
}

func TestFullRestartKeepsEverything(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	var lastRev int64
	for i := 0; i < 50; i++ {
		lastRev = putRetry(t, cli, fmt.Sprintf("k%03d", i), fmt.Sprint(i))
	}
	cli.Close()
	c.Stop()
	for i := 0; i < 3; i++ {
		if err := c.RestartNode(i); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		resp := get(t, client(t, c, i), "k", clientv3.WithPrefix())
		if len(resp.Kvs) != 50 {
			t.Fatalf("node %d: %d keys after restart, want 50", i+1, len(resp.Kvs))
		}
	}
	// Revisions keep increasing across the full restart.
	if rev := putRetry(t, client(t, c, 1), "after-restart", "x"); rev <= lastRev {
		t.Fatalf("revision %d after restart not above %d", rev, lastRev)
	}
}

func TestDownNodeCatchesUp(t *testing.T) {
	for _, tc := range []struct {
		name     string
		truncate uint64
	}{
		{"from-log", 100000},
		// A leader keeps the log for a follower that was live a moment
		// ago, up to 8 times the bound: 1000 writes are past 8*100.
		{"from-snapshot", 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.RaftLogTruncateEntries = tc.truncate })
			putRetry(t, client(t, c, 0), "warmup", "x")
			down := (leaderOf(t, c, meta.UserRangeID) + 1) % 3
			c.StopNode(down)
			cli := client(t, c, (down+1)%3)
			const writes = 1000
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			for i := 0; i < writes; i++ {
				if _, err := cli.Put(ctx, fmt.Sprintf("w/%04d", i), fmt.Sprint(i)); err != nil {
					t.Fatalf("write %d: %v", i, err)
				}
			}
			if err := c.RestartNode(down); err != nil {
				t.Fatal(err)
			}
			// The restarted node's own replica (a serializable read is
			// served locally) must reach every write.
			local := client(t, c, down)
			deadline := time.Now().Add(20 * time.Second)
			for {
				resp := get(t, local, "w/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
				// Caught up: the data is there and Raft knows it (a
				// snapshot's data is visible a moment before the replica
				// has finished installing it).
				st := c.Node(down).Store().Replica(meta.UserRangeID).Status()
				if resp.Count == writes && st.Applied >= writes {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("restarted node has %d of %d writes", resp.Count, writes)
				}
				time.Sleep(50 * time.Millisecond)
			}
			snaps := c.Node(down).Store().Replica(meta.UserRangeID).Status().SnapshotsApplied
			if wantSnap := tc.truncate < writes; (snaps > 0) != wantSnap {
				for i := 0; i < 3; i++ {
					t.Logf("node %d: %+v", i+1, c.Node(i).Store().Replica(meta.UserRangeID).Status())
				}
				t.Fatalf("restarted node %d applied %d snapshots; want a snapshot: %v", down+1, snaps, wantSnap)
			}
		})
	}
}

// A bulk load writes few, large entries: the Raft log, which Raft holds in
// memory, must be bounded by its size, not only by its entry count.
func TestBulkLoadKeepsTheRaftLogSmall(t *testing.T) {
	const limit = 256 << 10
	c := startCluster(t, 3, func(_ int, cfg *Config) { cfg.RaftLogTruncateBytes = limit })
	cli := client(t, c, 0)
	putRetry(t, cli, "warmup", "x")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	value := strings.Repeat("v", 1024)
	const txns, perTxn = 40, 32 // 40 entries of ~33 KiB: 1.3 MiB
	for i := 0; i < txns; i++ {
		ops := make([]clientv3.Op, perTxn)
		for j := range ops {
			ops[j] = clientv3.OpPut(fmt.Sprintf("bulk/%02d/%02d", i, j), value)
		}
		if _, err := cli.Txn(ctx).Then(ops...).Commit(); err != nil {
			t.Fatalf("txn %d: %v", i, err)
		}
	}
	for i := 0; i < 3; i++ {
		st := c.Node(i).Store().Replica(meta.UserRangeID).Status()
		// One entry past the limit triggers a truncation.
		if st.AppliedLogBytes > uint64(limit+perTxn*(len(value)+64)) || st.Truncated == 0 {
			t.Errorf("node %d: %d bytes applied past truncation index %d; want at most ~%d", i+1, st.AppliedLogBytes, st.Truncated, limit)
		}
	}
	if resp := get(t, cli, "bulk/", clientv3.WithPrefix(), clientv3.WithCountOnly()); resp.Count != txns*perTxn {
		t.Fatalf("%d keys after the load, want %d", resp.Count, txns*perTxn)
	}
}

func TestMemberListAndJoin(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	putRetry(t, cli, "k", "v")
	// Every member's record carries its client URL once it has registered.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		ml, err := cli.MemberList(ctx)
		cancel()
		complete := err == nil && len(ml.Members) == 3
		if complete {
			for i, m := range ml.Members {
				complete = complete && m.ID == uint64(i+1) && len(m.ClientURLs) == 1 && m.ClientURLs[0] == c.ClientURLs()[i]
			}
		}
		if complete {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("member list incomplete: %v %v", ml, err)
		}
		time.Sleep(50 * time.Millisecond)
	}

	// A fourth node joins through the existing members and serves clients.
	cfg := DefaultConfig()
	cfg.Name = "n4"
	cfg.DataDir = t.TempDir()
	cfg.Logger = quietLogger()
	cfg.InitialClusterState = "existing"
	cfg.InitialCluster = c.cfgs[0].InitialCluster
	var err error
	if cfg.ClientListener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	if cfg.PeerListener, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	cfg.AdvertiseClientURLs = []string{"http://" + cfg.ClientListener.Addr().String()}
	cfg.ListenClientURLs = cfg.AdvertiseClientURLs
	cfg.InitialAdvertisePeerURLs = []string{"http://" + cfg.PeerListener.Addr().String()}
	cfg.ListenPeerURLs = cfg.InitialAdvertisePeerURLs
	n4, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Stop()
	if n4.ID() != 4 || n4.ClusterID() != c.Node(0).ClusterID() {
		t.Fatalf("joined as node %d of cluster %x, want node 4 of %x", n4.ID(), n4.ClusterID(), c.Node(0).ClusterID())
	}
	cli4, err := clientv3.New(clientv3.Config{Endpoints: []string{n4.ClientAddr()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli4.Close()
	if resp := get(t, cli4, "k"); len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("new node reads %v", resp.Kvs)
	}
	putRetry(t, cli4, "from-n4", "hi")
	if resp := get(t, client(t, c, 2), "from-n4"); len(resp.Kvs) != 1 {
		t.Fatal("write through the new node not visible on node 3")
	}
	// etcdctl endpoint status on the node that holds no replica finds the
	// leader and draws no revision: the next write is the next revision.
	before := putRetry(t, cli4, "before-status", "x")
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := cli4.Status(sctx, n4.ClientAddr())
	scancel()
	if err != nil || st.Leader == 0 {
		t.Fatalf("status of the node without replicas: %v, %v", st, err)
	}
	if after := putRetry(t, cli4, "after-status", "x"); after != before+1 {
		t.Fatalf("revision %d after a status call, want %d: the call drew a revision", after, before+1)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 4 || ml.Members[3].Name != "n4" {
		t.Fatalf("member list after join: %v %v", ml, err)
	}
	// Restarting the joined node keeps its identity.
	n4.Stop()
	if cfg.ClientListener, err = net.Listen("tcp", n4.ClientAddr()); err != nil {
		t.Fatal(err)
	}
	if cfg.PeerListener, err = net.Listen("tcp", n4.PeerAddr()); err != nil {
		t.Fatal(err)
	}
	n4b, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n4b.Stop()
	if n4b.ID() != 4 {
		t.Fatalf("restarted joined node has id %d", n4b.ID())
	}
}

// isolate cuts every Raft message to and from node id, on every node.
func isolate(c *LocalCluster, id uint64, cut bool) {
	for i := 0; i < c.Size(); i++ {
		n := c.Node(i)
		if n == nil {
			continue
		}
		if !cut {
			n.Transport().SetFault(nil)
			continue
		}
		n.Transport().SetFault(func(from, to uint64) bool { return from == id || to == id })
	}
}

func TestIsolatedLeaderServesNoStaleReads(t *testing.T) {
	c := startCluster(t, 3, nil)
	putRetry(t, client(t, c, 0), "x", "old")
	li := leaderOf(t, c, meta.UserRangeID)
	old := c.Node(li)
	isolate(c, old.ID(), true)
	// The majority elects a new leader and takes a new write.
	other := (li + 1) % 3
	putRetry(t, client(t, c, other), "x", "new")
	// The isolated replica must never answer a linearizable read with the
	// old value: its lease has lapsed, so it refuses.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	resp, err := old.Store().Execute(ctx, &cmdpb.BatchRequest{RangeId: meta.UserRangeID, Op: &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte("x")}}}})
	if err == nil {
		t.Fatalf("isolated old leader served a linearizable read: %v", resp)
	}
	if code := kvpb.CodeOf(err); code != kvpb.ErrorCode_NOT_LEADER && code != kvpb.ErrorCode_UNAVAILABLE {
		t.Fatalf("isolated old leader: %v, want NOT_LEADER or UNAVAILABLE", err)
	}
	// Writes proposed to it fail too, without being applied anywhere.
	wctx, wcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer wcancel()
	if _, err := old.Store().Execute(wctx, &cmdpb.BatchRequest{RangeId: meta.UserRangeID, Op: &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte("x"), Value: []byte("minority")}}}}); err == nil {
		t.Fatal("isolated old leader acknowledged a write")
	}
	// Healed, it catches up with the majority.
	isolate(c, old.ID(), false)
	deadline := time.Now().Add(15 * time.Second)
	for {
		r := get(t, client(t, c, li), "x", clientv3.WithSerializable())
		if len(r.Kvs) == 1 && string(r.Kvs[0].Value) == "new" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("healed node still reads %v", r.Kvs)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r := get(t, client(t, c, 0), "x"); string(r.Kvs[0].Value) != "new" {
		t.Fatalf("the minority write leaked: %s", r.Kvs[0].Value)
	}
}

func TestCompaction(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	var revs []int64
	for i := 0; i < 4; i++ {
		revs = append(revs, putRetry(t, cli, "k", fmt.Sprint(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cli.Compact(ctx, revs[2], clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	// Below the compaction: gone, with etcd's error; at it and above: there.
	if _, err := cli.Get(ctx, "k", clientv3.WithRev(revs[1])); err == nil || err.Error() != "etcdserver: mvcc: required revision has been compacted" {
		t.Fatalf("read below compaction: %v", err)
	}
	for i := 2; i < 4; i++ {
		resp, err := client(t, c, i-1).Get(ctx, "k", clientv3.WithRev(revs[i]))
		if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != fmt.Sprint(i) {
			t.Fatalf("read at revision %d: %v %v", i, resp, err)
		}
	}
	if _, err := cli.Compact(ctx, revs[2]); err == nil || err.Error() != "etcdserver: mvcc: required revision has been compacted" {
		t.Fatalf("compacting twice: %v", err)
	}
	if _, err := cli.Compact(ctx, revs[3]+1000); err == nil || err.Error() != "etcdserver: mvcc: required revision is a future revision" {
		t.Fatalf("compacting the future: %v", err)
	}
	// The compaction is replicated: every node refuses the old revision on
	// its own replica.
	for i := 0; i < 3; i++ {
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := client(t, c, i).Get(ctx, "k", clientv3.WithRev(revs[0]), clientv3.WithSerializable())
			if err != nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d still serves a compacted revision", i+1)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

func TestHashKVAgreesAcrossReplicas(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	var rev, mid int64
	for i := 0; i < 30; i++ {
		rev = putRetry(t, cli, fmt.Sprintf("h/%d", i%7), fmt.Sprint(i))
		if i == 15 {
			mid = rev
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var compacted int64
	hashes := func(at int64) []uint32 {
		var out []uint32
		for i := 0; i < 3; i++ {
			cli := client(t, c, i)
			var resp *clientv3.HashKVResponse
			var err error
			for attempt := 0; attempt < 100; attempt++ {
				// A follower may not have applied rev (future revision) or
				// the compaction yet.
				if resp, err = cli.HashKV(ctx, c.ClientAddrs()[i], at); err == nil && resp.CompactRevision >= compacted {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatalf("node %d hashkv at %d: %v", i+1, at, err)
			}
			if resp.HashRevision != at {
				t.Fatalf("node %d hashed revision %d, want %d", i+1, resp.HashRevision, at)
			}
			out = append(out, resp.Hash)
		}
		return out
	}
	at := hashes(rev)
	if at[0] != at[1] || at[1] != at[2] {
		t.Fatalf("replicas disagree at %d: %v", rev, at)
	}
	if before := hashes(mid); before[0] == at[0] || before[0] != before[2] {
		t.Fatalf("hash at an older revision: %v (newest %v)", before, at)
	}
	if _, err := cli.Compact(ctx, mid); err != nil {
		t.Fatal(err)
	}
	compacted = mid
	after := hashes(rev)
	if after[0] != after[1] || after[1] != after[2] {
		t.Fatalf("replicas disagree after compaction: %v", after)
	}
	// Defragment is accepted and keeps the data.
	if _, err := cli.Defragment(ctx, c.ClientAddrs()[0]); err != nil {
		t.Fatal(err)
	}
	if again := hashes(rev); again[0] != after[0] {
		t.Fatalf("defragment changed the hash: %v -> %v", after, again)
	}
}

func TestMemberAddUpdatePromoteRemove(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	putRetry(t, cli, "k", "v")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	peerL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	clientL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	peerURL := "http://" + peerL.Addr().String()
	add, err := cli.MemberAddAsLearner(ctx, []string{peerURL})
	if err != nil {
		t.Fatal(err)
	}
	if add.Member.ID != 4 || !add.Member.IsLearner || add.Member.Name != "" || len(add.Members) != 4 {
		t.Fatalf("member add: %+v", add)
	}
	if _, err := cli.MemberAdd(ctx, []string{peerURL}); err == nil || err.Error() != "etcdserver: Peer URLs already exists" {
		t.Fatalf("adding the same peer URL twice: %v", err)
	}
	if _, err := cli.MemberPromote(ctx, 1); err == nil || err.Error() != "etcdserver: can only promote a learner member" {
		t.Fatalf("promoting a voter: %v", err)
	}

	// The added member starts and takes over the pre-registered id.
	cfg := DefaultConfig()
	cfg.Name = "n4"
	cfg.DataDir = t.TempDir()
	cfg.Logger = quietLogger()
	cfg.InitialClusterState = "existing"
	cfg.InitialCluster = c.cfgs[0].InitialCluster + ",n4=" + peerURL
	cfg.ClientListener, cfg.PeerListener = clientL, peerL
	cfg.AdvertiseClientURLs = []string{"http://" + clientL.Addr().String()}
	cfg.ListenClientURLs = cfg.AdvertiseClientURLs
	cfg.InitialAdvertisePeerURLs = []string{peerURL}
	cfg.ListenPeerURLs = cfg.InitialAdvertisePeerURLs
	n4, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer n4.Stop()
	if n4.ID() != 4 {
		t.Fatalf("pre-registered member joined as %d", n4.ID())
	}
	// A starting node registers its own URLs in the background; wait for
	// that before updating them, or the registration may land after the
	// update.
	for {
		ml, err := cli.MemberList(ctx)
		if err == nil && len(ml.Members) == 4 && len(ml.Members[3].ClientURLs) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("n4 never registered its client URL: %v %v", ml, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := cli.MemberPromote(ctx, 4); err != nil {
		t.Fatalf("promote: %v", err)
	}
	newURL := "http://127.0.0.1:1"
	if _, err := cli.MemberUpdate(ctx, 4, []string{newURL}); err != nil {
		t.Fatalf("update: %v", err)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 4 {
		t.Fatalf("member list: %v %v", ml, err)
	}
	m4 := ml.Members[3]
	if m4.Name != "n4" || m4.IsLearner || len(m4.PeerURLs) != 1 || m4.PeerURLs[0] != newURL {
		t.Fatalf("member 4 after promote and update: %+v", m4)
	}
	// A member without replicas can be removed.
	n4.Stop()
	rm, err := cli.MemberRemove(ctx, 4)
	if err != nil || len(rm.Members) != 3 {
		t.Fatalf("remove: %v %v", rm, err)
	}
}

// A new cluster elects at once, without waiting out an election timeout,
// and its first member leads both the meta range (the TSO) and the user
// range, so write timestamps are local calls. With a 30 s election timeout
// nothing else could elect a leader within the test.
func TestNewClusterLeadsFromTheTSONode(t *testing.T) {
	start := time.Now()
	c := startCluster(t, 3, func(_ int, cfg *Config) {
		cfg.HeartbeatInterval = 100 * time.Millisecond
		cfg.ElectionTimeout = 30 * time.Second
	})
	putRetry(t, client(t, c, 2), "k", "v")
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("first write took %v", took)
	}
	meta, user := leaderOf(t, c, meta.MetaRangeID), leaderOf(t, c, meta.UserRangeID)
	if meta != 0 || user != 0 {
		t.Fatalf("meta range led by node %d, user range by node %d; want both on node 1", meta+1, user+1)
	}
}

// Reads racing compactions that drop the very versions they would read
// still see the key at the revision they report: a read either sees the
// engine without such a change in flight or falls back to a snapshot (see
// replica.dropSeq).
func TestReadsDuringCompactionsSeeTheKey(t *testing.T) {
	c := startCluster(t, 3, nil)
	w := client(t, c, 0)
	first := putRetry(t, w, "k", "0")
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
	defer cancel()
	errs := make(chan error, 16)
	done := make(chan struct{})
	for i := 0; i < 3; i++ {
		for _, opts := range [][]clientv3.OpOption{nil, {clientv3.WithSerializable()}} {
			go func() {
				cli := client(t, c, i)
				for {
					select {
					case <-done:
						errs <- nil
						return
					default:
					}
					resp, err := cli.Get(ctx, "k", opts...)
					if err != nil {
						if ctx.Err() != nil {
							errs <- nil
							return
						}
						continue // a retryable error (leadership, lease)
					}
					if resp.Header.Revision < first {
						continue // a serializable read of a follower that has not applied the first put yet
					}
					if len(resp.Kvs) != 1 || resp.Kvs[0].ModRevision > resp.Header.Revision {
						errs <- fmt.Errorf("node %d (opts %d): got %v at header revision %d", i+1, len(opts), resp.Kvs, resp.Header.Revision)
						return
					}
				}
			}()
		}
	}
	for n := 1; ctx.Err() == nil && n < 2000; n++ {
		resp, err := w.Put(ctx, "k", fmt.Sprint(n))
		if err != nil {
			break
		}
		if _, err := w.Compact(ctx, resp.Header.Revision); err != nil && ctx.Err() == nil && !strings.Contains(err.Error(), "compacted") {
			t.Fatalf("compact: %v", err)
		}
	}
	close(done)
	for i := 0; i < 6; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// etcd's --strict-reconfig-check, on by default: a member is added only
// while every voting member answers, and a voter only if the members that
// started are a quorum with it.
func TestStrictReconfigCheck(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	putRetry(t, cli, "k", "v")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	learner, err := cli.MemberAddAsLearner(ctx, []string{"http://127.0.0.1:11"})
	if err != nil {
		t.Fatalf("a learner with every member up: %v", err)
	}
	voter, err := cli.MemberAdd(ctx, []string{"http://127.0.0.1:12"})
	if err != nil {
		t.Fatalf("a voter with every member up: %v", err)
	}
	// The voter added has not started: it does not answer.
	if _, err := cli.MemberAdd(ctx, []string{"http://127.0.0.1:13"}); !errors.Is(err, rpctypes.ErrUnhealthy) {
		t.Fatalf("a second voter before the first started: %v, want %v", err, rpctypes.ErrUnhealthy)
	}
	for _, id := range []uint64{learner.Member.ID, voter.Member.ID} {
		if _, err := cli.MemberRemove(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	c.StopNode(2)
	if _, err := cli.MemberAddAsLearner(ctx, []string{"http://127.0.0.1:14"}); !errors.Is(err, rpctypes.ErrUnhealthy) {
		t.Fatalf("a learner with a member down: %v, want %v", err, rpctypes.ErrUnhealthy)
	}
	if _, err := cli.MemberAdd(ctx, []string{"http://127.0.0.1:15"}); !errors.Is(err, rpctypes.ErrUnhealthy) {
		t.Fatalf("a voter with a member down: %v, want %v", err, rpctypes.ErrUnhealthy)
	}
	ml, err := cli.MemberList(ctx)
	if err != nil || len(ml.Members) != 3 {
		t.Fatalf("members after the refusals: %v %v", ml, err)
	}
}
