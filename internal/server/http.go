package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/telemetry"
	"github.com/concorddb/concord/internal/ui"
)

// The HTTP port (--listen-metrics-urls) serves:
//
//	/metrics                   Prometheus exposition of the node's registry
//	/healthz /livez /readyz    probes, as on the client port (and /health)
//	/debug/pprof/...           Go's profiler
//	/                          the dashboard (internal/ui)
//	/api/cluster               the dashboard's cluster view (JSON)
//	/api/events?after=SEQ      this node's recent events (JSON)
//	/api/stats                 this node's client throughput and latency (JSON)
//	/api/fault                 POST {"action","node"}: demo fault buttons

// DemoControl lets the dashboard inject faults into an in-process cluster
// (concord demo). Node numbers are 1-based node ids of the initial members.
type DemoControl interface {
	// DemoStop stops node id; DemoRestart starts it again.
	DemoStop(id uint64) error
	DemoRestart(id uint64) error
	// DemoIsolate cuts (or, with cut false, restores) node id's Raft
	// traffic with every other node.
	DemoIsolate(id uint64, cut bool) error
	// DemoNodes reports, per node id, its dashboard URL, and whether it is
	// stopped or isolated.
	DemoNodes() map[uint64]DemoNode
	// attach is called by every node of the cluster as it starts.
	attach(n *Node)
}

// DemoNode is one node as the demo controls see it.
type DemoNode struct {
	HTTPURL  string `json:"http_url"`
	Stopped  bool   `json:"stopped"`
	Isolated bool   `json:"isolated"`
}

// clusterView is /api/cluster: the cluster as this node sees it.
type clusterView struct {
	Self   uint64      `json:"self"`
	Time   time.Time   `json:"time"`
	Demo   bool        `json:"demo"`
	Nodes  []nodeView  `json:"nodes"`
	Ranges []rangeView `json:"ranges"`
}

type nodeView struct {
	ID         uint64   `json:"id"`
	Name       string   `json:"name"`
	Up         bool     `json:"up"`
	PeerURL    string   `json:"peer_url"`
	ClientURLs []string `json:"client_urls"`
	Ranges     int      `json:"ranges"`
	Leaders    int      `json:"leaders"`
	// Awake is how many of the node's replicas tick (are not quiesced).
	Awake       int   `json:"awake"`
	DBSizeBytes int64 `json:"db_size_bytes"`
	DemoNode
}

type rangeView struct {
	ID       uint64   `json:"id"`
	Start    string   `json:"start"`
	End      string   `json:"end"`
	Replicas []uint64 `json:"replicas"`
	Leader   uint64   `json:"leader"`
	Term     uint64   `json:"term"`
	Commit   uint64   `json:"commit"`
	// Applied is each replica's applied index, by node id.
	Applied map[string]uint64 `json:"applied"`
}

// showSpanKey shows a user range's boundary to people: the etcd key,
// quoted with escapes where not printable, or edge for the start or end of
// the user keyspace.
func showSpanKey(k []byte, edge string) string {
	if e := etcdKey(k); len(e) > 0 {
		return strconv.Quote(string(e))
	}
	return edge
}

// pollCluster builds the cluster view from every known node's NodeStatus:
// with the ranges if withRanges, else the nodes only.
func (n *Node) pollCluster(withRanges bool) clusterView {
	view := clusterView{Self: n.ident.NodeID, Time: time.Now(), Demo: n.cfg.Demo != nil}
	n.addrs.RLock()
	recs := make([]*metapb.NodeRecord, 0, len(n.addrs.nodes))
	for _, r := range n.addrs.nodes {
		recs = append(recs, r)
	}
	n.addrs.RUnlock()
	sort.Slice(recs, func(i, j int) bool { return recs[i].GetNodeId() < recs[j].GetNodeId() })
	statuses := make([]*rpcpb.NodeStatusResponse, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
			defer cancel()
			if st, err := n.nodeStatusOf(ctx, rec.GetNodeId(), !withRanges); err == nil {
				statuses[i] = st
			}
		}()
	}
	wg.Wait()
	var demo map[uint64]DemoNode
	if n.cfg.Demo != nil {
		demo = n.cfg.Demo.DemoNodes()
	}
	ranges := map[uint64]*rangeView{}
	var descs []*metapb.RangeDescriptor
	if withRanges {
		descs = n.descriptors()
	}
	for _, d := range descs {
		rv := &rangeView{ID: d.GetRangeId(), Start: showSpanKey(d.GetStartKey(), "<start>"), End: showSpanKey(d.GetEndKey(), "<end>"), Applied: map[string]uint64{}}
		if keys.MetaSpan.Contains(d.GetStartKey()) {
			rv.Start, rv.End = "(meta range)", ""
		}
		for _, rd := range d.GetReplicas() {
			rv.Replicas = append(rv.Replicas, rd.GetNodeId())
		}
		ranges[rv.ID] = rv
	}
	for i, rec := range recs {
		nv := nodeView{ID: rec.GetNodeId(), Name: rec.GetName(), ClientURLs: rec.GetClientUrls(), DemoNode: demo[rec.GetNodeId()]}
		if len(rec.GetPeerUrls()) > 0 {
			nv.PeerURL = rec.GetPeerUrls()[0]
		}
		if st := statuses[i]; st != nil {
			nv.Up, nv.DBSizeBytes, nv.Ranges, nv.Awake = true, st.GetDbSizeBytes(), int(st.GetReplicaCount()), int(st.GetAwakeCount())
			if !withRanges {
				nv.Leaders = int(st.GetLeaderCount())
			}
			for _, rs := range st.GetReplicas() {
				rv := ranges[rs.GetRangeId()]
				if rv == nil {
					rv = &rangeView{ID: rs.GetRangeId(), Applied: map[string]uint64{}}
					ranges[rv.ID] = rv
				}
				rv.Applied[strconv.FormatUint(nv.ID, 10)] = rs.GetApplied()
				rv.Commit = max(rv.Commit, rs.GetCommit())
				// A node that says it leads, in the highest term, wins;
				// else the follower view of the highest term.
				self := rs.GetLeader() == nv.ID
				if self {
					nv.Leaders++
				}
				if rs.GetTerm() > rv.Term || (rs.GetTerm() == rv.Term && self) || rv.Leader == 0 {
					rv.Leader, rv.Term = rs.GetLeader(), max(rv.Term, rs.GetTerm())
				}
			}
		}
		view.Nodes = append(view.Nodes, nv)
	}
	for _, rv := range ranges {
		view.Ranges = append(view.Ranges, *rv)
	}
	sort.Slice(view.Ranges, func(i, j int) bool { return view.Ranges[i].ID < view.Ranges[j].ID })
	return view
}

// descriptors returns the meta range's and the cached user ranges'
// descriptors.
func (n *Node) descriptors() []*metapb.RangeDescriptor {
	out := []*metapb.RangeDescriptor{n.router.MetaDescriptor()}
	ctx, cancel := context.WithTimeout(context.Background(), statusTimeout)
	defer cancel()
	if rs, err := n.router.Ranges(ctx); err == nil {
		out = append(out, rs...)
	}
	return out
}

// serveHTTP starts the HTTP port if one is configured.
func (n *Node) serveHTTP() error {
	lis := n.cfg.MetricsListener
	if lis == nil {
		if len(n.cfg.ListenMetricsURLs) == 0 {
			return nil
		}
		hp, err := listenHostPort(n.cfg.ListenMetricsURLs[0])
		if err != nil {
			return err
		}
		if lis, err = net.Listen("tcp", hp); err != nil {
			return fmt.Errorf("server: listen metrics: %w", err)
		}
	}
	if len(n.cfg.ListenMetricsURLs) > 0 && strings.HasPrefix(n.cfg.ListenMetricsURLs[0], "https://") {
		lis = n.tls.client.Listener(lis, "http/1.1")
	}
	n.tel.httpLis = lis
	mux := http.NewServeMux()
	mux.Handle("/metrics", n.tel.metrics.Handler())
	n.registerHealth(mux)
	registerPprof(mux)
	mux.HandleFunc("GET /api/cluster", n.handleCluster)
	mux.HandleFunc("GET /api/events", n.handleEvents)
	mux.HandleFunc("GET /api/stats", n.handleStats)
	mux.HandleFunc("POST /api/fault", n.handleFault)
	mux.Handle("/", ui.Handler())
	n.tel.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := n.tel.httpServer.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error("metrics http server stopped", "err", err)
		}
	}()
	n.log.Info("serving metrics and dashboard", "http", lis.Addr().String())
	return nil
}

// HTTPAddr returns the address of the HTTP port ("" without one).
func (n *Node) HTTPAddr() string {
	if l, ok := n.tel.httpLis.(net.Listener); ok {
		return l.Addr().String()
	}
	return ""
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(v)
}

// clusterView returns the view with ranges, polled at most once a second
// however many dashboards ask.
func (n *Node) clusterView() clusterView {
	n.tel.viewMu.Lock()
	defer n.tel.viewMu.Unlock()
	if time.Since(n.tel.fullView.Time) > watchInterval {
		n.tel.fullView = n.pollCluster(true)
	}
	return n.tel.fullView
}

func (n *Node) handleCluster(w http.ResponseWriter, _ *http.Request) {
	view := n.clusterView()
	if n.cfg.Demo != nil {
		// Fault buttons must show their effect at once, not a poll later.
		demo := n.cfg.Demo.DemoNodes()
		for i := range view.Nodes {
			view.Nodes[i].DemoNode = demo[view.Nodes[i].ID]
		}
	}
	writeJSON(w, view)
}

func (n *Node) handleEvents(w http.ResponseWriter, r *http.Request) {
	after, _ := strconv.ParseUint(r.URL.Query().Get("after"), 10, 64)
	evs := n.tel.metrics.Events().Since(after)
	if evs == nil {
		evs = []telemetry.Event{}
	}
	writeJSON(w, evs)
}

func (n *Node) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, map[string]any{"node": n.ident.NodeID, "points": n.tel.throughput.Points()})
}

// maxFaultBody bounds a fault request's body.
const maxFaultBody = 1 << 10

func (n *Node) handleFault(w http.ResponseWriter, r *http.Request) {
	if n.cfg.Demo == nil {
		http.Error(w, "fault injection is only offered by concord demo", http.StatusForbidden)
		return
	}
	var req struct {
		Action string `json:"action"`
		Node   uint64 `json:"node"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxFaultBody)).Decode(&req); err != nil {
		http.Error(w, "bad request: "+err.Error(), http.StatusBadRequest)
		return
	}
	var err error
	switch req.Action {
	case "stop":
		if req.Node == n.ident.NodeID {
			// Answer first: stopping this node closes this server.
			writeJSON(w, map[string]string{"result": "stopping"})
			go func() { _ = n.cfg.Demo.DemoStop(req.Node) }()
			return
		}
		err = n.cfg.Demo.DemoStop(req.Node)
	case "restart":
		err = n.cfg.Demo.DemoRestart(req.Node)
	case "isolate":
		err = n.cfg.Demo.DemoIsolate(req.Node, true)
	case "heal":
		err = n.cfg.Demo.DemoIsolate(req.Node, false)
	default:
		err = fmt.Errorf("unknown action %q (stop, restart, isolate, heal)", req.Action)
	}
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	n.log.Warn("fault injected from the dashboard", "action", req.Action, "target", req.Node)
	n.tel.metrics.Events().Add(telemetry.Event{Kind: telemetry.EventFault, Node: req.Node, Message: fmt.Sprintf("%s node %d (from the dashboard)", req.Action, req.Node)})
	writeJSON(w, map[string]string{"result": "ok"})
}

// registerPprof serves Go's profiler under /debug/pprof/ on mux.
func registerPprof(mux *http.ServeMux) {
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
}
