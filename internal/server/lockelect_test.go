package server

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
)

func TestLockService(t *testing.T) {
	c := startCluster(t, 3, nil)
	a, b := client(t, c, 0), client(t, c, 2)
	putRetry(t, a, "ready", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	la, lb := v3lockpb.NewLockClient(a.ActiveConnection()), v3lockpb.NewLockClient(b.ActiveConnection())
	lease, err := a.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	held, err := la.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: int64(lease.ID)})
	if err != nil {
		t.Fatal(err)
	}
	// A second locker on another node waits until the first unlocks.
	got := make(chan *v3lockpb.LockResponse, 1)
	go func() {
		lease2, err := b.Grant(ctx, 10)
		if err != nil {
			t.Error(err)
			return
		}
		r, err := lb.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("mylock"), Lease: int64(lease2.ID)})
		if err != nil {
			t.Error(err)
			return
		}
		got <- r
	}()
	select {
	case <-got:
		t.Fatal("a second holder got the lock while the first held it")
	case <-time.After(500 * time.Millisecond):
	}
	if _, err := la.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.Key}); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-got:
		// Fencing: the new holder's key was created after the first's.
		if r.Header.Revision <= held.Header.Revision {
			t.Fatalf("second holder at revision %d, first at %d", r.Header.Revision, held.Header.Revision)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the second locker never got the lock")
	}
}

func TestElectionService(t *testing.T) {
	c := startCluster(t, 3, nil)
	a, b := client(t, c, 0), client(t, c, 1)
	putRetry(t, a, "ready", "1")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// clientv3/concurrency's Election, and the Election service, on one
	// election.
	sa, err := concurrency.NewSession(a, concurrency.WithTTL(5))
	if err != nil {
		t.Fatal(err)
	}
	defer sa.Close()
	ea := concurrency.NewElection(sa, "/election/e1")
	if err := ea.Campaign(ctx, "alice"); err != nil {
		t.Fatal(err)
	}
	eb := v3electionpb.NewElectionClient(b.ActiveConnection())
	leader, err := eb.Leader(ctx, &v3electionpb.LeaderRequest{Name: []byte("/election/e1")})
	if err != nil || string(leader.Kv.Value) != "alice" {
		t.Fatalf("leader: %v %v", leader, err)
	}
	obs, err := eb.Observe(ctx, &v3electionpb.LeaderRequest{Name: []byte("/election/e1")})
	if err != nil {
		t.Fatal(err)
	}
	if first, err := obs.Recv(); err != nil || string(first.Kv.Value) != "alice" {
		t.Fatalf("observe: %v %v", first, err)
	}
	if err := ea.Proclaim(ctx, "alice-2"); err != nil {
		t.Fatal(err)
	}
	if next, err := obs.Recv(); err != nil || string(next.Kv.Value) != "alice-2" {
		t.Fatalf("observe after proclaim: %v %v", next, err)
	}
	// Bob campaigns through the service: he wins once Alice resigns.
	lease, err := b.Grant(ctx, 5)
	if err != nil {
		t.Fatal(err)
	}
	won := make(chan *v3electionpb.CampaignResponse, 1)
	go func() {
		r, err := eb.Campaign(ctx, &v3electionpb.CampaignRequest{Name: []byte("/election/e1"), Lease: int64(lease.ID), Value: []byte("bob")})
		if err != nil {
			t.Error(err)
			return
		}
		won <- r
	}()
	select {
	case <-won:
		t.Fatal("bob won while alice leads")
	case <-time.After(500 * time.Millisecond):
	}
	if err := ea.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r := <-won:
		if _, err := eb.Resign(ctx, &v3electionpb.ResignRequest{Leader: r.Leader}); err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("bob never won")
	}
	if next, err := obs.Recv(); err != nil || string(next.Kv.Value) != "bob" {
		t.Fatalf("observe after bob won: %v %v", next, err)
	}
}

// clientv3/concurrency's STM (serializable transactions over Txn
// compares) keeps a transfer between two keys atomic under contention.
func TestSTM(t *testing.T) {
	c := startCluster(t, 3, nil)
	clis := []*clientv3.Client{client(t, c, 0), client(t, c, 1), client(t, c, 2)}
	putRetry(t, clis[0], "stm/a", "100")
	putRetry(t, clis[0], "stm/b", "0")
	var wg sync.WaitGroup
	for i := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				_, err := concurrency.NewSTM(clis[i%3], func(s concurrency.STM) error {
					a, _ := strconv.Atoi(s.Get("stm/a"))
					b, _ := strconv.Atoi(s.Get("stm/b"))
					s.Put("stm/a", strconv.Itoa(a-1))
					s.Put("stm/b", strconv.Itoa(b+1))
					return nil
				})
				if err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	a, b := get(t, clis[1], "stm/a"), get(t, clis[2], "stm/b")
	if string(a.Kvs[0].Value) != "40" || string(b.Kvs[0].Value) != "60" {
		t.Fatalf("after 60 transfers: a=%s b=%s, want 40 and 60", a.Kvs[0].Value, b.Kvs[0].Value)
	}
}
