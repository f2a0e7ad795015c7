package server

import (
	"bytes"
	"context"
	"math"
	"sort"
	"time"

	"google.golang.org/grpc"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/etcdapi"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/lease"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/router"
)

// Leases: one lessor per node (internal/lease), serving while the node
// leads the meta range. Every gateway sends its lease requests to it
// (router.OnMetaLeader, then Peer.Lease), and a put with a lease attaches
// its keys there first (attachLeases).

// leaseTick is how often the lessor follows the meta range's leadership
// and does its periodic work (expiries are decided at this granularity).
const leaseTick = 100 * time.Millisecond

// leaseState is the node's lease wiring.
type leaseState struct {
	lessor *lease.Lessor
}

// startLeases creates the lessor and the goroutine that promotes it when
// this node leads the meta range and demotes it when it stops.
func (n *Node) startLeases() error {
	l, err := lease.New(lease.Config{
		Records:            leaseRecords{n},
		Keys:               leaseKeys{n},
		MinTTL:             minLeaseTTL(n.cfg),
		Extend:             n.cfg.ElectionTimeout,
		CheckpointInterval: n.cfg.LeaseCheckpointInterval,
		Logger:             n.log,
	})
	if err != nil {
		return err
	}
	n.leases.lessor = l
	n.wg.Add(1)
	go n.runLessor()
	n.wg.Add(1)
	go n.runLockSweeper()
	return nil
}

// minLeaseTTL is etcd's minimum lease TTL: 1.5 election timeouts (counted
// in heartbeats), in whole seconds rounded up. A lease shorter than the
// time a leader change takes would expire during every election.
func minLeaseTTL(cfg Config) int64 {
	ticks := int64(cfg.ElectionTimeout / cfg.HeartbeatInterval)
	d := time.Duration(3*ticks/2) * cfg.HeartbeatInterval
	return int64(math.Ceil(d.Seconds()))
}

// runLessor follows the meta range's leadership: it promotes the lessor in
// each new term this node leads, demotes it when another node leads, and
// ticks it meanwhile. Only Raft leadership decides (not the read lease,
// which may lapse for a moment under load): a demotion forgets the
// in-memory expiries, and a promotion extends every lease.
func (n *Node) runLessor() {
	defer n.wg.Done()
	l := n.leases.lessor
	defer l.Demote()
	t := time.NewTicker(leaseTick)
	defer t.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
		var term uint64
		if r := n.store.Replica(meta.MetaRangeID); r != nil {
			if st := r.Status(); st.IsLeader {
				term = st.Term
			}
		}
		switch {
		case term == 0:
			if l.Term() != 0 {
				l.Demote()
			}
		case l.Term() != term:
			ctx, cancel := context.WithTimeout(context.Background(), n.cfg.ElectionTimeout*5)
			if err := l.Promote(ctx, term); err != nil {
				n.log.Warn("lessor not promoted yet", "term", term, "err", err)
			}
			cancel()
		default:
			l.Tick()
		}
	}
}

// serveLease serves a lease request on this node, if it leads the meta
// range (NOT_LEADER with a hint otherwise).
func (n *Node) serveLease(ctx context.Context, req *rpcpb.LeaseRequest) (*rpcpb.LeaseResponse, error) {
	r := n.store.Replica(meta.MetaRangeID)
	if r == nil {
		return nil, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "server: node %d holds no meta replica", n.ident.NodeID)
	}
	st := r.Status()
	if !st.IsLeader {
		hint := st.Leader
		if hint == n.ident.NodeID {
			hint = 0
		}
		return nil, &kvpb.Error{Code: kvpb.ErrorCode_NOT_LEADER, Message: "server: not the meta leader", LeaderHint: hint}
	}
	if !st.LeaseValid {
		// Serve only under the leader's read lease: a deposed leader that
		// does not know it yet must not renew leases the new lessor
		// expires. A linearizable read waits for the lease (or fails).
		if _, err := (metaWindow{n}).Load(ctx); err != nil {
			return nil, err
		}
	}
	l := n.leases.lessor
	if l.Term() != st.Term {
		if err := l.Promote(ctx, st.Term); err != nil {
			return nil, err
		}
	}
	out := &rpcpb.LeaseResponse{Id: req.GetId(), RaftTerm: st.Term}
	var err error
	switch req.GetOp() {
	case rpcpb.LeaseOp_LEASE_GRANT:
		out.Id, out.Ttl, err = l.Grant(ctx, req.GetId(), req.GetTtl())
	case rpcpb.LeaseOp_LEASE_REVOKE:
		err = l.Revoke(ctx, req.GetId())
	case rpcpb.LeaseOp_LEASE_KEEP_ALIVE:
		out.Ttl, err = l.KeepAlive(ctx, req.GetId())
	case rpcpb.LeaseOp_LEASE_TIME_TO_LIVE:
		var s lease.Status
		s, err = l.TimeToLive(req.GetId(), req.GetKeys())
		out.Ttl, out.GrantedTtl, out.Keys = s.TTL, s.GrantedTTL, s.Keys
	case rpcpb.LeaseOp_LEASE_LIST:
		out.Leases, err = l.Leases()
	case rpcpb.LeaseOp_LEASE_ATTACH:
		err = l.Attach(req.GetId(), req.GetAttach())
	default:
		err = kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "server: unknown lease op %v", req.GetOp())
	}
	if err != nil {
		return nil, err
	}
	if out.Revision, err = n.oracle.Current(ctx, st.Term); err != nil {
		return nil, err
	}
	return out, nil
}

// Lease serves another node's lease request (Peer.Lease).
func (s *peerService) Lease(ctx context.Context, req *rpcpb.LeaseRequest) (*rpcpb.LeaseResponse, error) {
	resp, err := s.n.serveLease(ctx, req)
	if err != nil {
		return &rpcpb.LeaseResponse{Error: kvpb.AsError(err)}, nil
	}
	return resp, nil
}

// leaseCall sends a lease request to the lessor, wherever it runs. Grants
// and revokes are writes: a failure after sending surfaces as AMBIGUOUS.
func (n *Node) leaseCall(ctx context.Context, req *rpcpb.LeaseRequest) (*rpcpb.LeaseResponse, error) {
	write := req.GetOp() == rpcpb.LeaseOp_LEASE_GRANT || req.GetOp() == rpcpb.LeaseOp_LEASE_REVOKE
	var out *rpcpb.LeaseResponse
	err := n.router.OnMetaLeader(ctx, write, func(ctx context.Context) error {
		resp, err := n.serveLease(ctx, req)
		out = resp
		return err
	}, func(ctx context.Context, conn *grpc.ClientConn) error {
		resp, err := rpcpb.NewPeerClient(conn).Lease(ctx, req)
		if err != nil {
			return err
		}
		if resp.GetError() != nil {
			return resp.GetError()
		}
		out = resp
		return nil
	})
	return out, err
}

// attachLeases attaches the keys of op's puts with a lease to their
// leases, before op is sent: a Put whose lease does not exist fails with
// LEASE_NOT_FOUND; in a txn, the puts of both branches are attached and
// those whose lease does not exist are marked lease_unknown, so that the
// range fails the txn only if such a put's branch runs, as etcd does.
func (n *Node) attachLeases(ctx context.Context, op *kvpb.RequestOp) error {
	if put := op.GetPut(); put != nil {
		if id := put.GetLease(); id != 0 {
			_, err := n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_ATTACH, Id: id, Attach: [][]byte{put.GetKey()}})
			return err
		}
		return nil
	}
	// In a txn only the branches that run must have live leases, and
	// only the range knows which run: a put whose lease is not found is
	// marked, and fails there if its branch runs.
	byLease := map[int64][]*kvpb.PutRequest{}
	var walk func(op *kvpb.RequestOp)
	walk = func(op *kvpb.RequestOp) {
		switch r := op.GetRequest().(type) {
		case *kvpb.RequestOp_Put:
			if id := r.Put.GetLease(); id != 0 {
				byLease[id] = append(byLease[id], r.Put)
			}
		case *kvpb.RequestOp_Txn:
			for _, o := range r.Txn.GetSuccess() {
				walk(o)
			}
			for _, o := range r.Txn.GetFailure() {
				walk(o)
			}
		}
	}
	walk(op)
	for id, puts := range byLease {
		ks := make([][]byte, len(puts))
		for i, p := range puts {
			ks[i] = p.GetKey()
		}
		_, err := n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_ATTACH, Id: id, Attach: ks})
		switch {
		case kvpb.CodeOf(err) == kvpb.ErrorCode_LEASE_NOT_FOUND:
			for _, p := range puts {
				p.LeaseUnknown = true
			}
		case err != nil:
			return err
		}
	}
	return nil
}

func leaseHeader(resp *rpcpb.LeaseResponse) etcdapi.Header {
	return etcdapi.Header{Revision: resp.GetRevision(), RaftTerm: resp.GetRaftTerm()}
}

var _ etcdapi.LeaseBackend = backend{}

func (b backend) LeaseGrant(ctx context.Context, id, ttl int64) (int64, int64, etcdapi.Header, error) {
	if err := b.n.checkSpaceForWrite(ctx); err != nil {
		return 0, 0, etcdapi.Header{}, err
	}
	resp, err := b.n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_GRANT, Id: id, Ttl: ttl})
	if err != nil {
		return 0, 0, etcdapi.Header{}, err
	}
	return resp.GetId(), resp.GetTtl(), leaseHeader(resp), nil
}

func (b backend) LeaseRevoke(ctx context.Context, id int64) (etcdapi.Header, error) {
	resp, err := b.n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_REVOKE, Id: id})
	if err != nil {
		return etcdapi.Header{}, err
	}
	return leaseHeader(resp), nil
}

func (b backend) LeaseKeepAlive(ctx context.Context, id int64) (int64, etcdapi.Header, error) {
	resp, err := b.n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_KEEP_ALIVE, Id: id})
	if err != nil {
		return 0, etcdapi.Header{}, err
	}
	return resp.GetTtl(), leaseHeader(resp), nil
}

// LeaseTimeToLive lists, with keys, only the keys whose lease is still id
// (the lessor's index may list keys re-put without it since).
func (b backend) LeaseTimeToLive(ctx context.Context, id int64, withKeys bool) (etcdapi.LeaseStatus, etcdapi.Header, error) {
	resp, err := b.n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_TIME_TO_LIVE, Id: id, Keys: withKeys})
	if err != nil {
		return etcdapi.LeaseStatus{}, etcdapi.Header{}, err
	}
	st := etcdapi.LeaseStatus{TTL: resp.GetTtl(), GrantedTTL: resp.GetGrantedTtl()}
	if withKeys {
		if st.Keys, err = b.n.keysWithLease(ctx, id, resp.GetKeys()); err != nil {
			return etcdapi.LeaseStatus{}, etcdapi.Header{}, err
		}
	}
	return st, leaseHeader(resp), nil
}

func (b backend) LeaseLeases(ctx context.Context) ([]int64, etcdapi.Header, error) {
	resp, err := b.n.leaseCall(ctx, &rpcpb.LeaseRequest{Op: rpcpb.LeaseOp_LEASE_LIST})
	if err != nil {
		return nil, etcdapi.Header{}, err
	}
	return resp.GetLeases(), leaseHeader(resp), nil
}

// keysWithLease returns those of ks whose current version has lease id,
// reading one key at a time (a lease rarely has more than a few keys;
// MaxKeysPerLease bounds them).
func (n *Node) keysWithLease(ctx context.Context, id int64, ks [][]byte) ([][]byte, error) {
	out := [][]byte{}
	for _, k := range ks {
		resp, _, err := n.router.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: k}}})
		if err != nil {
			return nil, err
		}
		if kvs := resp.GetRange().GetKvs(); len(kvs) == 1 && kvs[0].GetLease() == id {
			out = append(out, k)
		}
	}
	return out, nil
}

// leaseRecords keeps the lease records in the meta range through this
// node's meta replica (the lessor runs only where it leads).
type leaseRecords struct{ n *Node }

var _ lease.Records = leaseRecords{}

func (s leaseRecords) replica() (interface {
	Read(context.Context, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error)
	Write(context.Context, *cmdpb.BatchRequest) (*cmdpb.BatchResponse, error)
}, error) {
	r := s.n.store.Replica(meta.MetaRangeID)
	if r == nil {
		return nil, kvpb.Errorf(kvpb.ErrorCode_NOT_LEADER, "server: no meta replica")
	}
	return r, nil
}

func (s leaseRecords) Load(ctx context.Context) ([]*metapb.LeaseRecord, error) {
	r, err := s.replica()
	if err != nil {
		return nil, err
	}
	span := keys.LeaseSpan()
	resp, err := r.Read(ctx, &cmdpb.BatchRequest{RangeId: meta.MetaRangeID, Sys: &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: span.Start, End: span.End}}}})
	if err != nil {
		return nil, err
	}
	out := make([]*metapb.LeaseRecord, 0, len(resp.GetSys().GetKvs()))
	for _, kv := range resp.GetSys().GetKvs() {
		rec, err := lease.DecodeRecord(kv.GetKey(), kv.GetValue())
		if err != nil {
			return nil, err
		}
		out = append(out, rec)
	}
	return out, nil
}

func (s leaseRecords) Write(ctx context.Context, puts []*metapb.LeaseRecord, deletes []int64) error {
	r, err := s.replica()
	if err != nil {
		return err
	}
	b := &cmdpb.SysBatch{}
	for _, rec := range puts {
		k, v := lease.EncodeRecord(rec)
		b.Puts = append(b.Puts, &cmdpb.SysKV{Key: k, Value: v})
	}
	for _, id := range deletes {
		b.Deletes = append(b.Deletes, keys.Lease(id))
	}
	_, err = r.Write(ctx, &cmdpb.BatchRequest{RangeId: meta.MetaRangeID, Sys: &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Batch{Batch: b}}})
	return err
}

// leaseKeys reaches the user keyspace through the router.
type leaseKeys struct{ n *Node }

var _ lease.Keys = leaseKeys{}

// scanPageKeys bounds one page of a sweep's scan. A page carries values
// (a Range cannot return leases without them), so it is kept small.
const scanPageKeys = 256

// maxDeleteTxnKeys bounds the keys one revoke deletes in one txn: a lease
// with more is deleted in several, each atomic (etcd's limit on a client's
// txn, --max-txn-ops, is 128 too).
const maxDeleteTxnKeys = 128

// Delete deletes ks in one txn (across ranges, internal/txn), or in
// several of maxDeleteTxnKeys keys: each key's delete is a nested txn
// guarded by "the key's lease is still id", so a key re-put without the
// lease meanwhile stays, and all of them are deleted at one revision.
func (k leaseKeys) Delete(ctx context.Context, id int64, ks [][]byte) error {
	ks = append([][]byte(nil), ks...)
	sort.Slice(ks, func(i, j int) bool { return bytes.Compare(ks[i], ks[j]) < 0 })
	for len(ks) > 0 {
		n := min(len(ks), maxDeleteTxnKeys)
		if err := k.deleteTxn(ctx, id, ks[:n]); err != nil {
			return err
		}
		ks = ks[n:]
	}
	return nil
}

func (k leaseKeys) deleteTxn(ctx context.Context, id int64, ks [][]byte) error {
	txn := &kvpb.TxnRequest{}
	for _, key := range ks {
		txn.Success = append(txn.Success, &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: &kvpb.TxnRequest{
			Compare: []*kvpb.Compare{{Result: kvpb.CompareResult_COMPARE_EQUAL, Target: kvpb.CompareTarget_COMPARE_LEASE, Key: key, TargetUnion: &kvpb.Compare_Lease{Lease: id}}},
			Success: []*kvpb.RequestOp{{Request: &kvpb.RequestOp_DeleteRange{DeleteRange: &kvpb.DeleteRangeRequest{Key: key}}}},
		}}})
	}
	_, _, err := k.n.txns.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Txn{Txn: txn}})
	return err
}

// Scan reads the user keyspace in pages of scanPageKeys, each at the
// newest revision, and calls fn for every key with a lease. The pages are
// uncounted (router.WithoutCount): counting the rest of the keyspace on
// every page made one sweep of 100k keys cost seconds of CPU.
func (k leaseKeys) Scan(ctx context.Context, fn func(key []byte, lease int64) error) error {
	ctx = router.WithoutCount(ctx)
	start := []byte{0}
	for {
		resp, _, err := k.n.router.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: start, RangeEnd: []byte{0}, Limit: scanPageKeys}}})
		if err != nil {
			return err
		}
		rr := resp.GetRange()
		for _, kv := range rr.GetKvs() {
			if kv.GetLease() != 0 {
				if err := fn(kv.GetKey(), kv.GetLease()); err != nil {
					return err
				}
			}
		}
		kvs := rr.GetKvs()
		if !rr.GetMore() || len(kvs) == 0 {
			return nil
		}
		start = append(append([]byte(nil), kvs[len(kvs)-1].GetKey()...), 0)
	}
}
