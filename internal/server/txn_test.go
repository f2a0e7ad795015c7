package server

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/keys"
)

// splitAt splits the cluster's ranges so that a range starts at each key.
func splitAt(t *testing.T, c *LocalCluster, ks ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range ks {
		if _, _, err := c.Node(0).Split(ctx, []byte(k)); err != nil {
			t.Fatalf("split at %s: %v", k, err)
		}
	}
}

// Transfers between accounts that each live in their own range, as
// compare-and-swap txns from every node, while readers sum all accounts in
// one Get: every read sees the same total (no transfer is half visible),
// and every transfer that succeeded is there at the end.
func TestTxnAcrossRangesKeepsTheBankBalanced(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	const accounts, initial = 6, 100
	var ks []string
	for i := range accounts {
		ks = append(ks, fmt.Sprintf("acct/%d", i))
	}
	splitAt(t, c, ks...)
	for _, k := range ks {
		putRetry(t, clis[0], k, strconv.Itoa(initial))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var done, reads int
	errs := make(chan error, 16)
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 1))
			cli := clis[w%3]
			for ctx.Err() == nil {
				a, b := rng.IntN(accounts), rng.IntN(accounts)
				if a == b {
					continue
				}
				tr, err := cli.Txn(ctx).Then(clientv3.OpGet(ks[a]), clientv3.OpGet(ks[b])).Commit()
				if err != nil {
					continue
				}
				ka, kb := tr.Responses[0].GetResponseRange().Kvs[0], tr.Responses[1].GetResponseRange().Kvs[0]
				va, _ := strconv.Atoi(string(ka.Value))
				vb, _ := strconv.Atoi(string(kb.Value))
				amt := rng.IntN(va + 1)
				resp, err := cli.Txn(ctx).If(
					clientv3.Compare(clientv3.ModRevision(ks[a]), "=", ka.ModRevision),
					clientv3.Compare(clientv3.ModRevision(ks[b]), "=", kb.ModRevision),
				).Then(clientv3.OpPut(ks[a], strconv.Itoa(va-amt)), clientv3.OpPut(ks[b], strconv.Itoa(vb+amt))).Commit()
				if err == nil && resp.Succeeded {
					mu.Lock()
					done++
					mu.Unlock()
				} else if err != nil && ctx.Err() == nil {
					t.Logf("transfer: %v", err)
				}
			}
		}()
	}
	for r := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cli := clis[(r+1)%3]
			for ctx.Err() == nil {
				resp, err := cli.Get(ctx, "acct/", clientv3.WithPrefix())
				if err != nil {
					continue
				}
				sum := 0
				for _, kv := range resp.Kvs {
					v, _ := strconv.Atoi(string(kv.Value))
					sum += v
				}
				if len(resp.Kvs) != accounts || sum != accounts*initial {
					errs <- fmt.Errorf("read at revision %d: %d accounts, total %d, want %d", resp.Header.Revision, len(resp.Kvs), sum, accounts*initial)
					return
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	resp := get(t, clis[0], "acct/", clientv3.WithPrefix())
	sum := 0
	for _, kv := range resp.Kvs {
		v, _ := strconv.Atoi(string(kv.Value))
		sum += v
	}
	t.Logf("%d transfers, %d reads", done, reads)
	if sum != accounts*initial || done == 0 || reads == 0 {
		t.Fatalf("after %d transfers and %d reads: total %d", done, reads, sum)
	}
	waitNoLocks(t, c)
}

// waitNoLocks waits until no replica holds a txn lock, or a marker of a
// txn that is not aborted (they resolve and go in the background), and
// fails the test if one still does after 10 s. An aborted txn's record
// stays.
func waitNoLocks(t *testing.T, c *LocalCluster) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		locks, markers := 0, 0
		for i := range len(c.cfgs) {
			for _, r := range c.Node(i).Store().Replicas() {
				locks += r.LockCount()
				ms, err := r.TxnMarkers()
				if err != nil {
					t.Fatal(err)
				}
				markers += ms[kvpb.TxnStatus_STAGING] + ms[kvpb.TxnStatus_COMMITTED]
			}
		}
		if locks == 0 && markers == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d txn locks and %d markers of live or committed txns left", locks, markers)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stagePart stages, as a coordinator would, the part of a txn putting
// key=val at revision ts on key's range, with the txn's record at record
// listing participants.
func stagePart(ctx context.Context, n *Node, id uint64, ts int64, op *kvpb.RequestOp, path []bool, key, record string, participants ...string) error {
	g := keys.User([]byte(key))
	sr := &cmdpb.TxnStageRequest{TxnId: id, Ts: ts, Op: op, Path: path, SpanStart: g, SpanEnd: append(append([]byte(nil), g...), 0),
		Participant: true, Anchor: g, Record: keys.User([]byte(record)), StagedUnixNanos: time.Now().UnixNano()}
	if key == record {
		for _, p := range participants {
			sr.Participants = append(sr.Participants, keys.User([]byte(p)))
		}
	}
	_, err := n.router.Send(ctx, keys.Span{Start: g}, &cmdpb.BatchRequest{TxnStage: sr}, true)
	return err
}

// reserveKeys reserves, as a coordinator does before it draws its
// revision, the keys txn id writes (each on its range).
func reserveKeys(ctx context.Context, n *Node, id uint64, ks ...string) error {
	for _, k := range ks {
		g := keys.User([]byte(k))
		if _, err := n.router.Send(ctx, keys.Span{Start: g}, &cmdpb.BatchRequest{TxnReserve: &cmdpb.TxnReserveRequest{TxnId: id, Spans: []*cmdpb.KeySpan{{Start: g}}, TtlMillis: 1000}}, false); err != nil {
			return err
		}
	}
	return nil
}

// A coordinator that dies in the middle of a commit (here: it staged one
// of two participants, then stopped) leaves nothing visible: a reader that
// meets its lock waits until the txn is presumed abandoned, aborts it
// (preventing the missing staging) and reads on. One that died after its
// commit point (both staged, nothing resolved) left a committed txn: a
// reader resolves it and sees both writes, at the txn's revision.
func TestTxnAbandonedByItsCoordinatorIsResolved(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 1)
	splitAt(t, c, "b")
	putRetry(t, cli, "a", "0")
	putRetry(t, cli, "b", "0")
	n := c.Node(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(k, v string) *kvpb.RequestOp {
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte(v)}}}
	}
	txn := func(a, b string) *kvpb.RequestOp {
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{Success: []*kvpb.RequestOp{put("a", a), put("b", b)}}}}
	}

	// Half staged: the record's participant only.
	if err := reserveKeys(ctx, n, 1001, "a", "b"); err != nil {
		t.Fatal(err)
	}
	ts, err := n.tsoClient.Next(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	op := txn("half", "half")
	if err := stagePart(ctx, n, 1001, ts, op, []bool{true}, "a", "a", "a", "b"); err != nil {
		t.Fatalf("stage: %v", err)
	}
	start := time.Now()
	resp := get(t, cli, "", clientv3.WithFromKey())
	if len(resp.Kvs) != 2 || string(resp.Kvs[0].Value) != "0" || string(resp.Kvs[1].Value) != "0" {
		t.Fatalf("a half-staged txn shows: %v", resp.Kvs)
	}
	if waited := time.Since(start); waited > 10*time.Second {
		t.Fatalf("the reader waited %v for an abandoned txn", waited)
	}
	// Its missing part can no longer stage.
	if err := stagePart(ctx, n, 1001, ts, op, []bool{true}, "b", "a"); kvpb.CodeOf(err) != kvpb.ErrorCode_TXN_ABORTED {
		t.Fatalf("staging the aborted txn's other part: %v, want TXN_ABORTED", err)
	}

	// Staged everywhere, never resolved: committed.
	if err := reserveKeys(ctx, n, 1002, "a", "b"); err != nil {
		t.Fatal(err)
	}
	ts, err = n.tsoClient.Next(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	op = txn("both", "both")
	for _, k := range []string{"a", "b"} {
		if err := stagePart(ctx, n, 1002, ts, op, []bool{true}, k, "a", "a", "b"); err != nil {
			t.Fatalf("stage %s: %v", k, err)
		}
	}
	resp = get(t, cli, "", clientv3.WithFromKey())
	if len(resp.Kvs) != 2 || string(resp.Kvs[0].Value) != "both" || string(resp.Kvs[1].Value) != "both" || resp.Kvs[0].ModRevision != ts || resp.Kvs[1].ModRevision != ts {
		t.Fatalf("a txn staged everywhere reads as %v, want both at %d", resp.Kvs, ts)
	}
	waitNoLocks(t, c)
}

// A txn whose coordinator died after its commit point, whose locks no
// client request meets, is resolved all the same (the node's own readers,
// and at the latest the leaseholders' lock sweeper, meet them): a lock
// holds its range's feeds, and so the watches of its keys, below its
// revision until it resolves.
func TestTxnNobodyMeetsIsResolved(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	splitAt(t, c, "b")
	putRetry(t, cli, "a", "0")
	putRetry(t, cli, "b", "0")
	n := c.Node(0)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	put := func(k string) *kvpb.RequestOp {
		return &kvpb.RequestOp{Request: &kvpb.RequestOp_Put{Put: &kvpb.PutRequest{Key: []byte(k), Value: []byte("swept")}}}
	}
	op := &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{Success: []*kvpb.RequestOp{put("a"), put("b")}}}}
	if err := reserveKeys(ctx, n, 2001, "a", "b"); err != nil {
		t.Fatal(err)
	}
	ts, err := n.tsoClient.Next(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b"} {
		if err := stagePart(ctx, n, 2001, ts, op, []bool{true}, k, "a", "a", "b"); err != nil {
			t.Fatalf("stage %s: %v", k, err)
		}
	}
	waitNoLocks(t, c) // no client read
	resp := get(t, cli, "", clientv3.WithFromKey())
	if len(resp.Kvs) != 2 || string(resp.Kvs[0].Value) != "swept" || resp.Kvs[1].ModRevision != ts {
		t.Fatalf("after the sweep: %v, want both swept at %d", resp.Kvs, ts)
	}
}
