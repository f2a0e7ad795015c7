// Package server wires one Concord node together: engine, store, transport,
// TSO, router and the etcd API, with their listeners and lifecycle.
//
// Start order: open the engine; bootstrap (first start of an initial
// member), join (first start with --initial-cluster-state existing) or
// restart from the engine; start the peer listener and the store's Ready
// loop; then the client listener. Stop runs the reverse.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/concorddb/concord/internal/auth"
	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/etcdapi"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/replica"
	"github.com/concorddb/concord/internal/router"
	"github.com/concorddb/concord/internal/storage"
	"github.com/concorddb/concord/internal/store"
	"github.com/concorddb/concord/internal/telemetry"
	"github.com/concorddb/concord/internal/transport"
	"github.com/concorddb/concord/internal/tso"
	"github.com/concorddb/concord/internal/txn"
	"github.com/concorddb/concord/internal/watch"
	"github.com/soheilhy/cmux"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"
)

// Version is Concord's version; the etcd API reports EtcdVersion so that
// etcd clients enable every v3 feature: the etcd release its
// compatibility suite compares with (test/compat, etcd 3.7.3).
const (
	Version     = "0.1.0"
	EtcdVersion = "3.7.3"
)

// Node is one running Concord node.
type Node struct {
	cfg   Config
	log   *slog.Logger
	ident storage.Ident
	// bootstrapped is set when this start created the cluster's first
	// state (see electFirst).
	bootstrapped bool

	engine *storage.Engine
	store  *store.Store
	// watchHub serves the watches of this node's clients; feeds counts
	// the range feeds it is served in process.
	watchHub *watch.Hub
	feeds    *localFeeds
	// selfClient is the client of this node's own client port that the
	// Lock and Election services run on (lockelect.go).
	selfClient *clientv3.Client
	transport  *transport.Transport
	oracle     *tso.Oracle
	tsoClient  *tso.Client
	router     *router.Router
	// txns runs the KV requests whose keys lie in several ranges and
	// resolves the txn locks requests meet (internal/txn).
	txns *txn.Coordinator

	peerServer, clientServer *grpc.Server
	peerLis, clientLis       net.Listener
	// clientMux splits the client listener into gRPC and HTTP/1 (the JSON
	// gateway and /health, served by httpServer through gatewayConn).
	clientMux   cmux.CMux
	httpServer  *http.Server
	gatewayConn *grpc.ClientConn

	// addrs is the address book: node id -> record (peer URLs); see
	// members.go. Lock order: bookSave before addrs.
	addrs struct {
		sync.RWMutex
		nodes map[uint64]*metapb.NodeRecord
	}
	// bookSave serialises the saves of the address book, so that the last
	// save holds the newest book.
	bookSave sync.Mutex
	// metaHint is the meta descriptor saved last (owned by the address
	// refresh goroutine).
	metaHint *metapb.RangeDescriptor

	// tel is the node's metrics, health and dashboard state (telemetry.go).
	tel telemetryState

	// joined is set when this start registered the node through Join.
	joined bool

	// leases is the node's lessor (lease.go).
	leases leaseState
	// auth is the node's copy of etcd's auth state, and its checks
	// (auth.go); authCN names the user of a call's client certificate
	// (nil without --client-cert-auth).
	auth   *auth.Store
	authCN func(context.Context) (string, bool)

	// tls holds the client and peer ports' certificates (tls.go).
	tls nodeTLS

	// alarms are the cluster's alarms and this node's space (alarm.go).
	alarms alarmState
	// ap is the AP keyspaces' engine, gossip and Redis port (ap.go).
	ap apState

	// removed is closed once this node learns that its member was
	// removed from the cluster (removedOnce); the node then stops
	// (Removed).
	removed     chan struct{}
	removedOnce sync.Once
	// removalSeen is set while the last address refresh found this
	// node's record gone (refreshAddresses).
	removalSeen atomic.Bool
	// stopOnce runs Stop's work once; a second caller waits for it.
	stopOnce sync.Once

	stop chan struct{}
	wg   sync.WaitGroup
}

// Start starts a node and returns once it serves clients.
func Start(cfg Config) (_ *Node, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: slog.New(telemetry.NewLogHandler(cfg.Logger.Handler())), stop: make(chan struct{}), removed: make(chan struct{})}
	n.addrs.nodes = make(map[uint64]*metapb.NodeRecord)
	defer func() {
		if err != nil {
			n.Stop()
		}
	}()
	// What the data dir holds decides, before anything is written there,
	// whether this start bootstraps, joins or restarts a member.
	sopts, err := cfg.storageOptions()
	if err != nil {
		return nil, err
	}
	held, isMember, err := storage.Inspect(cfg.DataDir, sopts)
	if err != nil {
		return nil, fmt.Errorf("server: refusing to start: %w", err)
	}
	// Before the identity check, which calls the peers.
	if err := n.setupTLS(); err != nil {
		return nil, err
	}
	if isMember {
		if err := n.checkHeldIdentity(held); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("server: data dir: %w", err)
	}
	sopts.CacheBytes = cfg.CacheBytes
	n.engine, err = storage.Open(cfg.DataDir, sopts)
	if err != nil {
		return nil, err
	}
	n.logEncryption(sopts)
	if err := n.listen(); err != nil {
		return nil, err
	}
	var meta *metapb.RangeDescriptor
	if isMember {
		meta, err = n.restart(held)
	} else {
		meta, err = n.bootstrapOrJoin()
	}
	if err != nil {
		return nil, err
	}
	n.log = n.log.With("node", n.ident.NodeID)
	n.newTelemetry()

	rcfg := replica.DefaultConfig()
	rcfg.NodeID = n.ident.NodeID
	rcfg.Engine = n.engine
	rcfg.Logger = n.log
	rcfg.TickInterval = cfg.HeartbeatInterval
	rcfg.HeartbeatTicks = 1
	rcfg.ElectionTicks = int(cfg.ElectionTimeout / cfg.HeartbeatInterval)
	n.tsoClient = tso.NewClient(func(ctx context.Context, k int) (int64, error) { return n.router.Timestamp(ctx, k) })
	rcfg.Revisions = n.tsoClient
	rcfg.LogTruncateEntries = cfg.RaftLogTruncateEntries
	rcfg.LogTruncateBytes = cfg.RaftLogTruncateBytes
	rcfg.UnsafeNoReadLease = cfg.UnsafeNoReadLease
	if cfg.UnsafeNoReadLease {
		n.log.Warn("UNSAFE: --unsafe-no-read-lease is on: linearizable reads may be stale")
	}
	rcfg.Signal = func(uint64) {} // replaced by store.New
	rcfg.OnSpanLost = func(rangeID uint64, lost keys.Span) {
		n.log.Info("a snapshot showed splits this node missed; looking for their ranges", "range", rangeID, "span", lost.String())
		n.wg.Add(1)
		go n.adoptRanges(lost)
	}
	rcfg.Metrics = n.tel.metrics
	n.store, err = store.New(rcfg, nil)
	if err != nil {
		return nil, err
	}
	n.transport, err = transport.New(transport.Config{
		ClusterID:   n.ident.ClusterID,
		NodeID:      n.ident.NodeID,
		Addr:        cfg.InitialAdvertisePeerURLs[0],
		Resolve:     n.resolve,
		Logger:      n.log,
		DialOptions: n.peerDialOptions(),
		Credentials: n.peerCredentials(),
	}, n.store)
	if err != nil {
		return nil, err
	}
	n.store.SetSender(n.transport)
	n.oracle, err = tso.New(tso.Config{Window: metaWindow{n}, Metrics: n.tel.metrics})
	if err != nil {
		return nil, err
	}
	n.router, err = router.New(router.Config{
		NodeID: n.ident.NodeID,
		Local:  local{n},
		Dial:   n.transport.Conn,
		Meta:   meta,
		Logger: n.log,

		UnsafeLocalReads: cfg.UnsafeNoReadLease,
		Metrics:          n.tel.metrics,
		Current:          n.tsoClient.Current,
	})
	if err != nil {
		return nil, err
	}
	if n.txns, err = txn.New(txn.Config{Router: n.router, Revisions: n.tsoClient, Logger: n.log, UnsafeNoRecord: cfg.UnsafeTxnNoRecord}); err != nil {
		return nil, err
	}
	n.router.SetLockResolver(n.txns)

	if err := n.startLeases(); err != nil {
		return nil, err
	}
	if err := n.startAuth(); err != nil {
		return nil, err
	}

	// Both servers' Stop waits for their handlers to return (it cancels
	// them first): the engine closes after, with no read still open on it
	// (Pebble panics at Close on an open snapshot or iterator).
	peerOpts := append(n.transport.ServerOptions(), n.peerServerOptions()...)
	n.peerServer = grpc.NewServer(append(append(peerOpts, n.peerTLSOptions()...), grpc.WaitForHandlers(true))...)
	rpcpb.RegisterPeerServer(n.peerServer, &peerService{n: n})
	if err := n.startAP(); err != nil {
		return nil, err
	}
	n.serve(n.peerServer, n.peerLis)
	n.store.Start()
	if n.bootstrapped && n.ident.NodeID == 1 {
		n.wg.Add(1)
		go n.electFirst()
	}

	ecfg := etcdapi.Config{
		ClusterID:       n.ident.ClusterID,
		MemberID:        n.ident.NodeID,
		MaxRequestBytes: cfg.MaxRequestBytes,
		MaxTxnOps:       cfg.MaxTxnOps,
		Version:         EtcdVersion,

		MaxConcurrentStreams:   cfg.MaxConcurrentStreams,
		ProgressNotifyInterval: cfg.WatchProgressNotifyInterval,
		Auth:                   n.auth,
		LeaseKeys:              n.leaseKeysOf,
	}
	clientOpts := append(etcdapi.ServerOptions(ecfg), n.clientServerOptions()...)
	n.clientServer = grpc.NewServer(append(append(clientOpts, n.clientTLSOptions()...), grpc.WaitForHandlers(true))...)
	etcdapi.Register(n.clientServer, backend{n}, ecfg)
	n.feeds = &localFeeds{}
	n.watchHub = watch.NewHub(feedSource{n: n, servers: n.feeds}, n.log)
	etcdapi.RegisterWatch(n.clientServer, n.watchHub, ecfg)
	n.registerWatchMetrics(n.tel.metrics.Registry())
	if err := n.registerLockElection(); err != nil {
		return nil, err
	}
	rpcpb.RegisterAdminServer(n.clientServer, adminService{n: n})
	n.registerAPAdmin()
	n.registerGRPCHealth()
	if err := n.serveClient(); err != nil {
		return nil, err
	}
	if err := n.startTelemetry(); err != nil {
		return nil, err
	}

	n.wg.Add(4)
	go n.runAuthRefresh()
	go n.runAddressRefresh()
	go n.runRangeRepair()
	n.store.SetAppendGuard(n.alarms.critical.Load)
	go n.runAlarms()
	if cfg.RangeMaxBytes > 0 || cfg.RangeMinBytes > 0 || cfg.RangeSplitQPS > 0 {
		n.wg.Add(1)
		go n.runSizeQueue()
	}
	if cfg.PlacementInterval > 0 {
		n.wg.Add(1)
		go n.runPlacement()
	}
	if !n.joined {
		// A node that joined in this start registered its URLs through
		// Join already; registering again later could undo a
		// MemberUpdate made in between.
		n.wg.Add(1)
		go n.registerSelf()
	}
	if p, _ := parseCompaction(cfg.AutoCompactionMode, cfg.AutoCompactionRetention); p.period > 0 || p.writes > 0 {
		n.wg.Add(1)
		go n.runCompactor(p)
	}
	n.log.Info("node started", "name", cfg.Name, "cluster", fmt.Sprintf("%x", n.ident.ClusterID),
		"client", n.clientLis.Addr().String(), "peer", n.peerLis.Addr().String())
	return n, nil
}

func (n *Node) listen() error {
	var err error
	n.peerLis = n.cfg.PeerListener
	if n.peerLis == nil {
		hp, herr := listenHostPort(n.cfg.ListenPeerURLs[0])
		if herr != nil {
			return herr
		}
		if n.peerLis, err = net.Listen("tcp", hp); err != nil {
			return fmt.Errorf("server: listen peer: %w", err)
		}
	}
	n.clientLis = n.cfg.ClientListener
	if n.clientLis == nil {
		hp, herr := listenHostPort(n.cfg.ListenClientURLs[0])
		if herr != nil {
			return herr
		}
		if n.clientLis, err = net.Listen("tcp", hp); err != nil {
			return fmt.Errorf("server: listen client: %w", err)
		}
	}
	return nil
}

// closeHTTP stops an HTTP server, letting its handlers (health checks read
// through the router) finish for up to a second: the engine closes after.
func closeHTTP(s *http.Server) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if s.Shutdown(ctx) != nil {
		s.Close()
	}
}

func (n *Node) serve(s *grpc.Server, l net.Listener) {
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		// A stopping node closes its listeners (and the client port's
		// multiplexer) under the server: not an error.
		if err := s.Serve(l); err != nil && !errors.Is(err, grpc.ErrServerStopped) && !errors.Is(err, cmux.ErrServerClosed) && !errors.Is(err, cmux.ErrListenerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error("grpc server stopped", "addr", l.Addr().String(), "err", err)
		}
	}()
}

// Shutdown stops the node gracefully: it first settles the revision
// oracle's window if it serves it (so the next leader continues without a
// gap) and hands the leadership of every range it leads to a follower (so
// clients see a leader change, not an election timeout), bounded by ctx,
// then stops.
func (n *Node) Shutdown(ctx context.Context) {
	if r := n.store.Replica(meta.MetaRangeID); r != nil {
		if st := r.Status(); st.IsLeader {
			// The next TSO leader continues from the next revision, with
			// no gap.
			if err := n.oracle.Settle(ctx, st.Term); err != nil {
				n.log.Warn("revision window not settled before stopping", "err", err)
			}
		}
	}
	if err := n.leases.lessor.Settle(ctx); err != nil {
		n.log.Warn("leases not checkpointed before stopping", "err", err)
	}
	var wg sync.WaitGroup
	for _, r := range n.store.Replicas() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := r.TransferLeadership(ctx); err != nil {
				n.log.Warn("leadership not handed over before stopping", "range", r.RangeID, "err", err)
			}
		}()
	}
	wg.Wait()
	n.Stop()
}

// Stop stops the node. An acknowledged write is already durable; Stop only
// releases resources. It may be called more than once and at once from
// several goroutines; every call returns once the node has stopped.
func (n *Node) Stop() { n.stopOnce.Do(n.stopNow) }

func (n *Node) stopNow() {
	close(n.stop)
	if n.leases.lessor != nil {
		// Ends a sweep or revocation in progress (their contexts are the
		// lessor's): the lessor's goroutine, which Stop waits for, would
		// otherwise retry against the stopping store until their
		// timeouts, up to 100 s.
		n.leases.lessor.Demote()
	}
	n.stopTelemetry()
	if n.httpServer != nil {
		closeHTTP(n.httpServer)
	}
	if n.gatewayConn != nil {
		n.gatewayConn.Close()
	}
	if n.clientMux != nil {
		n.clientMux.Close()
	}
	if n.clientServer != nil {
		n.clientServer.Stop()
	}
	n.stopAP()
	if n.selfClient != nil {
		n.selfClient.Close()
	}
	if n.watchHub != nil {
		n.watchHub.Close()
		n.feeds.closeAndWait()
	}
	if n.peerServer != nil {
		n.peerServer.Stop()
	}
	if n.txns != nil {
		n.txns.Close()
	}
	if n.store != nil {
		n.store.Stop()
	}
	if n.router != nil {
		n.router.Close()
	}
	if n.transport != nil {
		n.transport.Close()
	}
	for _, l := range []net.Listener{n.clientLis, n.peerLis} {
		if l != nil {
			l.Close()
		}
	}
	n.wg.Wait()
	if n.engine != nil {
		if err := n.engine.Close(); err != nil {
			n.log.Error("close engine", "err", err)
		}
	}
}

// ID returns the node's id.
func (n *Node) ID() uint64 { return n.ident.NodeID }

// ClusterID returns the cluster's id.
func (n *Node) ClusterID() uint64 { return n.ident.ClusterID }

// ClientAddr returns the address the client listener is bound to.
func (n *Node) ClientAddr() string { return n.clientLis.Addr().String() }

// PeerAddr returns the address the peer listener is bound to.
func (n *Node) PeerAddr() string { return n.peerLis.Addr().String() }

// Store exposes the node's store (tests and status pages).
func (n *Node) Store() *store.Store { return n.store }

// Transport exposes the node's transport (fault injection in tests).
func (n *Node) Transport() *transport.Transport { return n.transport }

// Router exposes the node's router.
func (n *Node) Router() *router.Router { return n.router }

// bootstrapOrJoin establishes the identity of a node whose data dir holds
// no member yet, and returns the meta range's descriptor: it bootstraps the
// cluster (new) or joins a running one (existing).
func (n *Node) bootstrapOrJoin() (*metapb.RangeDescriptor, error) {
	members, err := parseInitialCluster(n.cfg.InitialCluster)
	if err != nil {
		return nil, err
	}
	if n.cfg.InitialClusterState == "new" {
		if !slices.ContainsFunc(members, func(m member) bool { return m.name == n.cfg.Name }) {
			return nil, fmt.Errorf("server: --name %q is not in --initial-cluster %q", n.cfg.Name, n.cfg.InitialCluster)
		}
		return n.bootstrap(members)
	}
	resp, err := n.join(members)
	if err != nil {
		return nil, err
	}
	n.ident = storage.Ident{ClusterID: resp.GetClusterId(), NodeID: resp.GetNodeId(), Name: n.cfg.Name}
	if err := n.saveIdent(n.ident, resp.GetMeta()); err != nil {
		return nil, err
	}
	n.metaHint = resp.GetMeta()
	n.log.Info("joined cluster", "node", n.ident.NodeID, "cluster", fmt.Sprintf("%x", n.ident.ClusterID))
	return resp.GetMeta(), nil
}

// initialRecords are the node records of the initial cluster: node id =
// position in --initial-cluster, generation 1, only what the flags say, so
// that every initial member writes identical state (each node adds its
// client URLs once the cluster runs, registerSelf).
func initialRecords(members []member) []*metapb.NodeRecord {
	return meta.Records(metaMembers(members))
}

func metaMembers(members []member) []meta.Member {
	out := make([]meta.Member, len(members))
	for i, m := range members {
		out[i] = meta.Member{Name: m.name, PeerURL: m.peerURL}
	}
	return out
}

// electFirst makes the first member of a cluster bootstrapping now campaign
// for the meta range at once, instead of every member waiting out a random
// election timeout (1 to 2 election timeouts): a new cluster serves in
// milliseconds, and the store's followTSO then leads the user range from
// the same node. The peers may not listen yet, so it tries a few times
// while the meta range has no leader.
func (n *Node) electFirst() {
	defer n.wg.Done()
	mr := n.store.Replica(meta.MetaRangeID)
	if mr == nil {
		return
	}
	for range 10 {
		if mr.Status().Leader != 0 {
			return
		}
		n.store.Campaign(meta.MetaRangeID)
		select {
		case <-n.stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// bootstrap creates the cluster's first state: the meta range and one user
// range, each replicated on the first ReplicationFactor members.
func (n *Node) bootstrap(members []member) (*metapb.RangeDescriptor, error) {
	var self uint64
	for i, m := range members {
		if m.name == n.cfg.Name {
			self = uint64(i + 1)
		}
	}
	n.ident = storage.Ident{ClusterID: clusterID(n.cfg.InitialClusterToken, members), NodeID: self, Name: n.cfg.Name, Token: n.cfg.InitialClusterToken}
	rf := min(n.cfg.ReplicationFactor, len(members))
	init, err := meta.Bootstrap(metaMembers(members), rf)
	if err != nil {
		return nil, err
	}
	if err := store.Bootstrap(n.engine, n.ident, init.Ranges, init.Sys); err != nil {
		return nil, err
	}
	n.learnNodes(init.Records, false /* authoritative */)
	n.bootstrapped = true
	n.log.Info("bootstrapped cluster", "node", self, "members", len(members), "replication", rf)
	return init.Ranges[0], nil
}

// joinTimeout bounds the whole join attempt over every listed peer.
const joinTimeout = 30 * time.Second

// join registers this node with a running cluster through any member of
// --initial-cluster, retrying until one answers.
func (n *Node) join(members []member) (*rpcpb.JoinResponse, error) {
	rec := &metapb.NodeRecord{Name: n.cfg.Name, PeerUrls: n.cfg.InitialAdvertisePeerURLs, ClientUrls: n.cfg.AdvertiseClientURLs, Locality: n.cfg.Locality}
	ctx, cancel := context.WithTimeout(context.Background(), joinTimeout)
	defer cancel()
	var lastErr error
	for attempt := 0; ctx.Err() == nil; attempt++ {
		for _, m := range members {
			if m.name == n.cfg.Name {
				continue
			}
			resp, err := joinVia(ctx, m.peerURL, rec, n.peerCredentials())
			if err != nil {
				lastErr = err
				continue
			}
			if n.ident.ClusterID != 0 && resp.GetClusterId() != n.ident.ClusterID {
				return nil, fmt.Errorf("server: %s belongs to cluster %x, this node to %x", m.peerURL, resp.GetClusterId(), n.ident.ClusterID)
			}
			n.learnNodes(resp.GetNodes(), false /* authoritative */)
			n.joined = true
			return resp, nil
		}
		select {
		case <-time.After(200 * time.Millisecond):
		case <-ctx.Done():
		}
	}
	return nil, fmt.Errorf("server: could not join through %s: %v", n.cfg.InitialCluster, lastErr)
}

func joinVia(ctx context.Context, peerURL string, rec *metapb.NodeRecord, creds credentials.TransportCredentials) (*rpcpb.JoinResponse, error) {
	hp, err := transport.HostPort(peerURL)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := grpc.NewClient(hp, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return rpcpb.NewPeerClient(conn).Join(ctx, &rpcpb.JoinRequest{Node: rec})
}

// resolve is the transport's address book.
func (n *Node) resolve(id uint64) (string, bool) {
	n.addrs.RLock()
	defer n.addrs.RUnlock()
	r, ok := n.addrs.nodes[id]
	if !ok || len(r.GetPeerUrls()) == 0 {
		return "", false
	}
	return r.GetPeerUrls()[0], true
}

// addressRefresh is how often the address book is reloaded from the meta
// range.
const addressRefresh = 2 * time.Second

func (n *Node) runAddressRefresh() {
	defer n.wg.Done()
	t := time.NewTicker(addressRefresh)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), addressRefresh)
		n.refreshAddresses(ctx)
		cancel()
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// registerSelf writes this node's current record (its advertised URLs) into
// the meta range, retrying until it succeeds or the node stops.
func (n *Node) registerSelf() {
	defer n.wg.Done()
	// Under its own id: a member removed while it was down is refused
	// (meta.ErrMemberRemoved) instead of coming back as a new member.
	rec := &metapb.NodeRecord{NodeId: n.ident.NodeID, Name: n.cfg.Name, PeerUrls: n.cfg.InitialAdvertisePeerURLs, ClientUrls: n.cfg.AdvertiseClientURLs, Locality: n.cfg.Locality}
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_AddNode{AddNode: &cmdpb.SysAddNode{Node: rec}}})
		cancel()
		if kvpb.CodeOf(err) == kvpb.ErrorCode_MEMBER_NOT_FOUND {
			n.removedFromCluster()
			return
		}
		if err == nil {
			if id := resp.GetNode().GetNodeId(); id != n.ident.NodeID {
				n.log.Error("meta range knows this node's name under another id", "name", n.cfg.Name, "id", id)
			}
			return
		}
		select {
		case <-n.stop:
			return
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// members reads every node record from the meta range.
func (n *Node) members(ctx context.Context) ([]*metapb.NodeRecord, error) {
	s := keys.NodeSpan()
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: s.Start, End: s.End}}})
	if err != nil {
		return nil, err
	}
	out := make([]*metapb.NodeRecord, 0, len(resp.GetKvs()))
	for _, kv := range resp.GetKvs() {
		rec := &metapb.NodeRecord{}
		if err := proto.Unmarshal(kv.GetValue(), rec); err != nil {
			return nil, fmt.Errorf("server: bad node record %q: %w", kv.GetKey(), err)
		}
		out = append(out, rec)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].GetNodeId() < out[j].GetNodeId() })
	return out, nil
}
