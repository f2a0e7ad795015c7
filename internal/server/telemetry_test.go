package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/telemetry"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// startHTTPCluster starts n nodes, each with an HTTP port.
func startHTTPCluster(t *testing.T, n int, opts LocalOptions) *LocalCluster {
	t.Helper()
	opts.Logger, opts.HTTP = quietLogger(), true
	c, err := StartLocalCluster(n, t.TempDir(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// scrape returns the samples of node i's /metrics: name{labels} -> value
// text, and the set of metric family names.
func scrape(t *testing.T, c *LocalCluster, i int) (string, map[string]bool) {
	t.Helper()
	code, body := httpGet(t, c.HTTPURLs()[i]+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d", code)
	}
	names := map[string]bool{}
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names[strings.Fields(rest)[0]] = true
		}
	}
	return body, names
}

// sampleSum adds the values of every sample of metric name (exact name,
// any labels) in an exposition body.
func sampleSum(body, name string) float64 {
	var sum float64
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f := strings.Fields(line)
		var v float64
		if _, err := fmt.Sscan(f[len(f)-1], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// wantMetrics are the metric names every node exports.
var wantMetrics = []string{
	"concord_raft_proposals_total", "concord_raft_proposals_dropped_total", "concord_raft_committed_entries_total",
	"concord_raft_applied_entries_total", "concord_raft_leader_changes_total", "concord_raft_term", "concord_raft_has_leader",
	"concord_raft_pending_proposals", "concord_transport_dropped_messages_total", "concord_transport_sent_messages_total",
	"concord_storage_fsync_duration_seconds", "concord_storage_batch_commit_duration_seconds", "concord_storage_written_bytes_total",
	"concord_storage_compactions_total", "concord_storage_l0_files", "concord_storage_disk_usage_bytes",
	"concord_ranges", "concord_range_leaseholders", "concord_range_replicas", "concord_ranges_under_replicated",
	"concord_range_applied_index", "concord_grpc_requests_total", "concord_grpc_request_duration_seconds",
	"concord_tso_timestamps_issued_total", "concord_tso_batch_size", "concord_router_retries_total", "concord_peer_up",
}

func TestMetricsScrapeUnderLoad(t *testing.T) {
	c := startHTTPCluster(t, 3, LocalOptions{})
	cli := client(t, c, 0)
	putRetry(t, cli, "warm", "up")
	body0, _ := scrape(t, c, 0)
	reqs0 := sampleSum(body0, "concord_grpc_requests_total")
	applied0 := sampleSum(body0, "concord_raft_applied_entries_total")
	for i := 0; i < 50; i++ {
		putRetry(t, cli, "k", "v")
	}
	// A router retry is labelled only once one happened: make the family
	// exist on every node by asking one for its metrics after load.
	body, names := scrape(t, c, 0)
	for _, n := range wantMetrics {
		if n == "concord_router_retries_total" {
			continue // a vector: present once a retry happened
		}
		if !names[n] {
			t.Errorf("metric %s missing from the scrape", n)
		}
	}
	if got := sampleSum(body, "concord_grpc_requests_total"); got < reqs0+50 {
		t.Errorf("concord_grpc_requests_total moved from %v to %v after 50 puts", reqs0, got)
	}
	if got := sampleSum(body, "concord_raft_applied_entries_total"); got < applied0+50 {
		t.Errorf("concord_raft_applied_entries_total moved from %v to %v after 50 puts", applied0, got)
	}
	if got := sampleSum(body, "concord_storage_fsync_duration_seconds_count"); got == 0 {
		t.Error("no fsync observed")
	}
	if !strings.Contains(body, `concord_grpc_requests_total{code="OK",method="/etcdserverpb.KV/Put"}`) {
		t.Error("no per-method, per-code request counter for Put")
	}
	// Timestamps are issued on the meta leader only.
	var issued float64
	for i := 0; i < 3; i++ {
		b, _ := scrape(t, c, i)
		issued += sampleSum(b, "concord_tso_timestamps_issued_total")
	}
	if issued < 50 {
		t.Errorf("cluster issued %v timestamps for 50 puts", issued)
	}
	for _, p := range []string{"/healthz", "/livez", "/readyz", "/debug/pprof/cmdline"} {
		if code, body := httpGet(t, c.HTTPURLs()[1]+p); code != http.StatusOK {
			t.Errorf("%s on the HTTP port: %d %s", p, code, body)
		}
	}
}

func TestGRPCHealthServingOnceReady(t *testing.T) {
	c := startCluster(t, 3, nil)
	putRetry(t, client(t, c, 2), "a", "b")
	conn, err := grpc.NewClient(c.ClientAddrs()[2], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{})
		cancel()
		if err == nil && resp.GetStatus() == healthpb.HealthCheckResponse_SERVING {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("health: %v %v", resp, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestOneWriteIsOneTraceAcrossTwoNodes(t *testing.T) {
	exp := tracetest.NewInMemoryExporter()
	c := startCluster(t, 3, func(i int, cfg *Config) {
		tp := telemetry.NewTracerProvider(sdktrace.NewSimpleSpanProcessor(exp), telemetry.TracingOptions{SamplingRatio: 1, NodeName: cfg.Name})
		cfg.TracerProvider = tp
	})
	li := leaderOf(t, c, meta.UserRangeID)
	gw := (li + 1) % 3
	cli := client(t, c, gw)
	putRetry(t, cli, "warm", "up")
	deadline := time.Now().Add(10 * time.Second)
	for {
		exp.Reset()
		if _, err := cli.Put(context.Background(), "traced", "v"); err != nil {
			t.Fatal(err)
		}
		spans := exp.GetSpans()
		if ok, why := connectedAcrossNodes(spans); ok {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("no connected two-node trace for one Put: %s\n%s", why, describe(spans))
		}
		// The leader may have moved: look again.
		time.Sleep(200 * time.Millisecond)
	}
}

// connectedAcrossNodes finds the trace of the Put and checks it: one root
// (the gateway's Put), every other span's parent in the trace, spans from
// two nodes, and the leaseholder's Write and apply in it.
func connectedAcrossNodes(spans tracetest.SpanStubs) (bool, string) {
	var put *tracetest.SpanStub
	for i := range spans {
		if spans[i].Name == "etcdserverpb.KV/Put" && spans[i].SpanKind.String() == "server" {
			put = &spans[i]
		}
	}
	if put == nil {
		return false, "no Put server span"
	}
	tid := put.SpanContext.TraceID()
	ids := map[string]bool{}
	nodes := map[string]bool{}
	names := map[string]bool{}
	var inTrace []tracetest.SpanStub
	for _, s := range spans {
		if s.SpanContext.TraceID() == tid {
			inTrace = append(inTrace, s)
			ids[s.SpanContext.SpanID().String()] = true
			names[s.Name] = true
			for _, a := range s.Resource.Attributes() {
				if a.Key == "service.instance.id" {
					nodes[a.Value.AsString()] = true
				}
			}
		}
	}
	roots := 0
	for _, s := range inTrace {
		if !s.Parent.IsValid() || !ids[s.Parent.SpanID().String()] {
			roots++
		}
	}
	for _, n := range []string{"router.send", "router.serveForward", "replica.Write", "raft.replicate", "replica.apply"} {
		if !names[n] {
			return false, "no " + n + " span in the trace"
		}
	}
	if roots != 1 {
		return false, fmt.Sprintf("trace has %d roots", roots)
	}
	if len(nodes) < 2 {
		return false, "trace spans one node"
	}
	return true, ""
}

func describe(spans tracetest.SpanStubs) string {
	var b strings.Builder
	for _, s := range spans {
		b.WriteString(s.Name + " trace=" + s.SpanContext.TraceID().String() + " parent=" + s.Parent.SpanID().String() + " id=" + s.SpanContext.SpanID().String() + "\n")
	}
	return b.String()
}

// The dashboard's API shows ranges by their etcd keys, and its events
// show splits and merges.
func TestDashboardShowsSplitsAndMerges(t *testing.T) {
	c := startHTTPCluster(t, 3, LocalOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := c.Node(0).Split(ctx, []byte("users/m")); err != nil {
		t.Fatal(err)
	}
	// The view is rebuilt every second.
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, body := httpGet(t, c.HTTPURLs()[0]+"/api/cluster")
		if code == http.StatusOK && strings.Contains(body, `"start":"\"users/m\""`) && strings.Contains(body, `"end":"\u003cend\u003e"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/api/cluster after a split: %d %s", code, body)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.Node(0).Merge(ctx, []byte("users/m")); err != nil {
		t.Fatal(err)
	}
	code, body := httpGet(t, c.HTTPURLs()[0]+"/api/events")
	if code != http.StatusOK || !strings.Contains(body, `"kind":"split"`) || !strings.Contains(body, `"kind":"merge"`) {
		t.Fatalf("/api/events after a split and a merge: %d %s", code, body)
	}
}
