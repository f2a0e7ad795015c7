package compat

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// leaseScenario runs the lease cases on one system and renders what a
// client sees. Lease ids are chosen by the test (each system's own
// random ids would differ) or shown as "auto"; TTLs as they are, since
// both count seconds alike (a remaining TTL may tick down by one between
// the systems, so those are shown as "about N").
func leaseScenario(t *testing.T, s *system, p string, base int64) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli := s.cli
	var out []string
	logf := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	errOf := func(err error) string {
		if err == nil {
			return "ok"
		}
		return errString(err)
	}
	id := clientv3.LeaseID(base)
	g, err := cli.Grant(ctx, 60)
	logf("grant 60 (auto id): ttl=%d err=%s nonzero-id=%v", g.TTL, errOf(err), err == nil && g.ID != 0)
	if err == nil {
		_, err = cli.Revoke(ctx, g.ID)
		logf("revoke it: %s", errOf(err))
	}
	// Grants with a chosen id go through the raw API.
	lc := clientv3.RetryLeaseClient(cli)
	for _, tc := range []struct {
		ttl int64
		id  clientv3.LeaseID
	}{{30, id}, {30, id}, {1, id + 1}, {9000000001, id + 2}, {-5, id + 3}} {
		resp, err := lc.LeaseGrant(ctx, leaseGrantReq(tc.ttl, tc.id))
		if err != nil {
			logf("grant ttl=%d id=b+%d: %s", tc.ttl, tc.id-id, errOf(err))
			continue
		}
		logf("grant ttl=%d id=b+%d: ttl=%d id=b+%d error=%q", tc.ttl, tc.id-id, resp.TTL, clientv3.LeaseID(resp.ID)-id, resp.Error)
	}
	for _, k := range []string{"a", "b"} {
		_, err := cli.Put(ctx, p+k, "v", clientv3.WithLease(id))
		logf("put %s with lease b+0: %s", k, errOf(err))
	}
	_, err = cli.Put(ctx, p+"c", "v", clientv3.WithLease(id+100))
	logf("put c with an unknown lease: %s", errOf(err))
	// In a txn only the branch that runs needs its leases to exist.
	tr, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(p+"a"), "=", 1)).
		Then(clientv3.OpPut(p+"t1", "v")).Else(clientv3.OpPut(p+"t1", "v", clientv3.WithLease(id+100))).Commit()
	logf("txn, unknown lease in the branch not taken: succeeded=%v err=%s", err == nil && tr.Succeeded, errOf(err))
	_, err = cli.Txn(ctx).If(clientv3.Compare(clientv3.Version(p+"a"), "=", 1)).
		Then(clientv3.OpPut(p+"t2", "v", clientv3.WithLease(id+100))).Commit()
	logf("txn, unknown lease in the branch taken: %s", errOf(err))
	ttl, err := cli.TimeToLive(ctx, id, clientv3.WithAttachedKeys())
	if err == nil {
		var ks []string
		for _, k := range ttl.Keys {
			ks = append(ks, strings.TrimPrefix(string(k), p))
		}
		sort.Strings(ks) // etcd lists them in no order

		logf("timetolive b+0 with keys: granted=%d about=%v keys=%v", ttl.GrantedTTL, ttl.TTL >= 28 && ttl.TTL <= 30, ks)
	} else {
		logf("timetolive b+0: %s", errOf(err))
	}
	ttl, err = cli.TimeToLive(ctx, id+100)
	logf("timetolive of an unknown lease: ttl=%d granted=%d err=%s", ttl.TTL, ttl.GrantedTTL, errOf(err))
	ka, err := cli.KeepAliveOnce(ctx, id)
	logf("keepalive once b+0: ttl=%d err=%s", ka.TTL, errOf(err))
	_, err = cli.KeepAliveOnce(ctx, id+100)
	logf("keepalive once of an unknown lease: %s", errOf(err))
	leases, err := cli.Leases(ctx)
	mine := 0
	for _, l := range leases.Leases {
		if l.ID >= id && l.ID < id+10 {
			mine++
		}
	}
	logf("leases: mine=%d err=%s", mine, errOf(err))
	_, err = cli.Revoke(ctx, id)
	logf("revoke b+0: %s", errOf(err))
	got, err := cli.Get(ctx, p, clientv3.WithPrefix())
	logf("keys with a lease after the revoke: %d err=%s", got.Count-1, errOf(err)) // t1 has none
	_, err = cli.Revoke(ctx, id)
	logf("revoke b+0 again: %s", errOf(err))
	_, err = cli.Revoke(ctx, id+1)
	logf("revoke b+1: %s", errOf(err))
	return out
}

func TestLeaseMatchesEtcd(t *testing.T) {
	// Lease ids of their own per system, apart from other runs'.
	base := time.Now().UnixNano() & 0x7fffffff0000
	e := leaseScenario(t, etcdSys, newPrefix(), base)
	c := leaseScenario(t, concordSys, newPrefix(), base+0x1000)
	if strings.Join(e, "\n") != strings.Join(c, "\n") {
		t.Errorf("leases differ.\netcd:\n  %s\nconcord:\n  %s", strings.Join(e, "\n  "), strings.Join(c, "\n  "))
	}
	t.Logf("etcd:\n  %s", strings.Join(e, "\n  "))
}

func leaseGrantReq(ttl int64, id clientv3.LeaseID) *pb.LeaseGrantRequest {
	return &pb.LeaseGrantRequest{TTL: ttl, ID: int64(id)}
}
