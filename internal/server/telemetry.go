package server

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/google.golang.org/grpc/otelgrpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/telemetry"
)

// A node's telemetry: one telemetry.Metrics handed to every component, the
// gRPC health service on the client port, and a watcher goroutine that
// every watchInterval polls every node's NodeStatus (the dashboard's
// cluster view, peer up/down events and the concord_peer_up gauge),
// samples client throughput and flips the health service to SERVING once
// the node is ready.

// watchInterval is the watcher's period: the dashboard's refresh rate and
// how fast a node down is noticed.
const watchInterval = time.Second

// statusTimeout bounds one NodeStatus poll; a node slower than this counts
// as down.
const statusTimeout = 800 * time.Millisecond

// throughputPoints is how many seconds of client traffic the dashboard
// charts.
const throughputPoints = 120

// telemetryState is a node's telemetry, owned by the Node.
type telemetryState struct {
	metrics    *telemetry.Metrics
	throughput *telemetry.Throughput
	health     *health.Server

	httpLis    interface{ Close() error }
	httpServer *http.Server

	mu struct {
		sync.Mutex
		// view is the last cluster view the watcher built.
		view clusterView
		// up is each known node's last poll result.
		up map[uint64]bool
	}
	// viewMu guards fullView, the last view with ranges (clusterView).
	// Taken before mu, never under it.
	viewMu   sync.Mutex
	fullView clusterView
}

// newTelemetry creates the node's Metrics; call it once the node id is
// known.
func (n *Node) newTelemetry() {
	n.tel.metrics = telemetry.New(telemetry.Options{
		Logger:         n.log,
		SlowFsync:      n.cfg.SlowFsync,
		Process:        n.cfg.ProcessMetrics,
		TracerProvider: n.cfg.TracerProvider,
	})
	n.tel.throughput = telemetry.NewThroughput(throughputPoints)
	n.tel.mu.up = make(map[uint64]bool)
	n.tel.metrics.SetSource(n.sample)
}

// Metrics returns the node's metrics.
func (n *Node) Metrics() *telemetry.Metrics { return n.tel.metrics }

// grpcFilter keeps the long-lived Raft and Forward streams and the status
// polls out of traces: they would be noise around the request spans (each
// forwarded request carries its own trace context, see router.ServeForward).
func grpcFilter(info *stats.RPCTagInfo) bool {
	m := info.FullMethodName
	return !strings.HasSuffix(m, "/Raft") && !strings.HasSuffix(m, "/Forward") && !strings.HasSuffix(m, "/NodeStatus") && !strings.HasPrefix(m, "/grpc.health.")
}

func (n *Node) otelOptions() []otelgrpc.Option {
	return []otelgrpc.Option{otelgrpc.WithPropagators(telemetry.Propagator), otelgrpc.WithFilter(grpcFilter), otelgrpc.WithTracerProvider(n.cfg.TracerProvider)}
}

// The gRPC trace handlers are installed only when the node traces: with
// tracing off they would still extract, wrap and time every RPC for
// nothing (about 1% of a node's CPU under load).

// peerDialOptions carry trace context on the node's calls to its peers.
func (n *Node) peerDialOptions() []grpc.DialOption {
	if n.cfg.TracerProvider == nil {
		return nil
	}
	return []grpc.DialOption{grpc.WithStatsHandler(otelgrpc.NewClientHandler(n.otelOptions()...))}
}

// peerServerOptions continue the callers' traces on the peer port.
func (n *Node) peerServerOptions() []grpc.ServerOption {
	if n.cfg.TracerProvider == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.StatsHandler(otelgrpc.NewServerHandler(n.otelOptions()...))}
}

// clientStreamWorkers is the number of goroutines kept to serve client RPCs.
const clientStreamWorkers = 32

// clientServerOptions trace (when tracing is on), count and time every
// client RPC.
func (n *Node) clientServerOptions() []grpc.ServerOption {
	opts := []grpc.ServerOption{
		// A fixed set of goroutines serves the client RPCs and keeps the
		// stacks they grew through the store; a fresh goroutine per RPC
		// regrows its stack every time (runtime.copystack was ~5% of a
		// read profile). When all are busy (writes wait for Raft), gRPC
		// starts a goroutine as before.
		grpc.NumStreamWorkers(clientStreamWorkers),
		grpc.ChainUnaryInterceptor(n.tel.metrics.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(n.tel.metrics.StreamServerInterceptor()),
	}
	if n.cfg.TracerProvider != nil {
		opts = append(opts, grpc.StatsHandler(otelgrpc.NewServerHandler(n.otelOptions()...)))
	}
	return opts
}

// registerGRPCHealth serves grpc.health.v1 on the client port: NOT_SERVING
// until the node is ready (see ready), SERVING after.
func (n *Node) registerGRPCHealth() {
	n.tel.health = health.NewServer()
	n.tel.health.SetServingStatus("", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(n.clientServer, n.tel.health)
}

// startTelemetry starts the HTTP port, if configured, and the watcher.
func (n *Node) startTelemetry() error {
	if err := n.serveHTTP(); err != nil {
		return err
	}
	if n.cfg.Demo != nil {
		n.cfg.Demo.attach(n)
	}
	n.wg.Add(1)
	go n.runWatcher()
	return nil
}

// stopTelemetry closes the HTTP port and reports NOT_SERVING; safe on a
// node that never started it.
func (n *Node) stopTelemetry() {
	if n.tel.health != nil {
		n.tel.health.Shutdown()
	}
	if n.tel.httpServer != nil {
		closeHTTP(n.tel.httpServer)
	}
	if n.tel.httpLis != nil {
		n.tel.httpLis.Close()
	}
}

func (n *Node) runWatcher() {
	defer n.wg.Done()
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	for {
		n.watchOnce()
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// watchOnce polls the cluster, samples throughput and updates health.
func (n *Node) watchOnce() {
	n.tel.throughput.Sample(time.Now(), n.tel.metrics.ClientTotals())
	// Only the nodes' summaries: a poll every second must not cost more
	// with every range (the dashboard asks for the ranges when shown).
	view := n.pollCluster(false)
	n.tel.mu.Lock()
	prev := n.tel.mu.up
	next := make(map[uint64]bool, len(view.Nodes))
	for _, nv := range view.Nodes {
		next[nv.ID] = nv.Up
	}
	n.tel.mu.up = next
	n.tel.mu.view = view
	n.tel.mu.Unlock()
	for id, up := range next {
		was, known := prev[id]
		switch {
		case id == n.ident.NodeID, known && was == up, !known && up:
		case up:
			n.log.Info("node up", "peer", id)
			n.tel.metrics.Events().Add(telemetry.Event{Kind: telemetry.EventNodeUp, Node: id, Message: fmt.Sprintf("node %d is up", id)})
		default:
			n.log.Warn("node down", "peer", id)
			n.tel.metrics.Events().Add(telemetry.Event{Kind: telemetry.EventNodeDown, Node: id, Message: fmt.Sprintf("node %d is down", id)})
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), healthTimeout)
	defer cancel()
	status := healthpb.HealthCheckResponse_SERVING
	if n.ready(ctx) != nil {
		status = healthpb.HealthCheckResponse_NOT_SERVING
	}
	n.tel.health.SetServingStatus("", status)
}

// sample is the metrics' view of the node at scrape time.
func (n *Node) sample() telemetry.NodeSample {
	es := n.engine.Stats()
	ss := n.store.Stats()
	ts := n.transport.Stats()
	s := telemetry.NodeSample{
		DiskUsageBytes: es.DiskUsageBytes, Compactions: es.Compactions, L0Files: es.L0Files,
		SentMsgs: ts.SentMsgs, DroppedMsgs: ts.DroppedMsgs, ReceivedMsgs: ts.ReceivedMsgs,
		GroupCommits: ss.GroupCommits, ReadyRounds: ss.ReadyRounds,
		Peers: map[uint64]bool{},
	}
	n.addrs.RLock()
	s.ReplicationFactor = min(n.cfg.ReplicationFactor, len(n.addrs.nodes))
	n.addrs.RUnlock()
	for _, r := range n.store.Replicas() {
		st := r.Status()
		s.Ranges = append(s.Ranges, telemetry.RangeSample{
			RangeID: st.RangeID, Replicas: len(r.Descriptor().GetReplicas()), ActiveVoters: r.ActiveVoters(),
			Leader: st.Leader, Term: st.Term, Commit: st.Commit, Applied: st.Applied,
			IsLeader: st.IsLeader, LeaseValid: st.LeaseValid, PendingProposals: st.PendingProposals,
		})
	}
	n.tel.mu.Lock()
	for id, up := range n.tel.mu.up {
		if id != n.ident.NodeID {
			s.Peers[id] = up
		}
	}
	n.tel.mu.Unlock()
	return s
}

// nodeStatus asks node id for its NodeStatus (this node answers itself).
func (n *Node) nodeStatus(ctx context.Context, id uint64) (*rpcpb.NodeStatusResponse, error) {
	return n.nodeStatusOf(ctx, id, false)
}

// nodeStatusOf asks node id for its status; summary leaves out the
// per-replica states.
func (n *Node) nodeStatusOf(ctx context.Context, id uint64, summary bool) (*rpcpb.NodeStatusResponse, error) {
	req := &rpcpb.NodeStatusRequest{Summary: summary}
	if id == n.ident.NodeID {
		return (&peerService{n: n}).NodeStatus(ctx, req)
	}
	conn, err := n.transport.Conn(ctx, id)
	if err != nil {
		return nil, err
	}
	return rpcpb.NewPeerClient(conn).NodeStatus(ctx, req)
}

// statusesOf asks every node of ids for its status at once, each within
// healthProbeTimeout, and returns the answers of those that answered.
func (n *Node) statusesOf(ctx context.Context, ids []uint64, summary bool) map[uint64]*rpcpb.NodeStatusResponse {
	ctx, cancel := context.WithTimeout(ctx, healthProbeTimeout)
	defer cancel()
	var mu sync.Mutex
	out := make(map[uint64]*rpcpb.NodeStatusResponse, len(ids))
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			if st, err := n.nodeStatusOf(ctx, id, summary); err == nil {
				mu.Lock()
				out[id] = st
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return out
}

// allDescriptors reloads the range index and returns every range's
// descriptor, the meta range's first.
func (n *Node) allDescriptors(ctx context.Context) ([]*metapb.RangeDescriptor, error) {
	if err := n.router.Refresh(ctx); err != nil {
		return nil, err
	}
	ranges, err := n.router.Ranges(ctx)
	if err != nil {
		return nil, err
	}
	if md := n.router.MetaDescriptor(); md != nil {
		ranges = append([]*metapb.RangeDescriptor{md}, ranges...)
	}
	return ranges, nil
}
