package telemetry

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/noop"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Namespace prefixes every Concord metric name.
const Namespace = "concord"

// DefaultSlowFsync is the fsync duration above which a group commit is
// logged as slow: well above a healthy SSD's fsync (well under 10 ms) and
// below the 100 ms heartbeat, past which followers start missing beats.
const DefaultSlowFsync = 50 * time.Millisecond

// Options configures a Metrics.
type Options struct {
	// Logger receives slow-fsync warnings. Nil means slog.Default().
	Logger *slog.Logger
	// SlowFsync is the group-commit fsync duration logged at warn; 0 means
	// DefaultSlowFsync.
	SlowFsync time.Duration
	// Process adds the Go runtime and process collectors. Only a real
	// process should set it: in-process clusters would report the same
	// process once per node.
	Process bool
	// TracerProvider makes the spans of this node; nil means no tracing.
	TracerProvider trace.TracerProvider
	// EventCapacity bounds the event log; 0 means DefaultEventCapacity.
	EventCapacity int
}

// Metrics is one node's instruments: its Prometheus registry, its tracer
// and its event log. All methods are safe for concurrent use and on a nil
// receiver (then they do nothing).
type Metrics struct {
	reg *prometheus.Registry
	// clientReg holds only the client gRPC metrics (ClientTotals).
	clientReg *prometheus.Registry
	log       *slog.Logger
	slowFsync time.Duration
	tracer    trace.Tracer
	events    *Events

	proposals        prometheus.Counter
	proposalsDropped prometheus.Counter
	entriesCommitted prometheus.Counter
	entriesApplied   prometheus.Counter
	leaderChanges    prometheus.Counter

	fsyncSeconds       prometheus.Histogram
	batchCommitSeconds prometheus.Histogram
	bytesWritten       prometheus.Counter
	slowFsyncs         prometheus.Counter

	rpcRequests *prometheus.CounterVec
	rpcSeconds  *prometheus.HistogramVec

	tsoIssued    prometheus.Counter
	tsoBatchSize prometheus.Histogram

	routerRetries *prometheus.CounterVec
}

// latencyBuckets span 100 µs to about 6.5 s, doubling: fsyncs, commits and
// client requests all fall in it.
var latencyBuckets = prometheus.ExponentialBuckets(0.0001, 2, 17)

// New creates a node's Metrics with its own registry.
func New(opts Options) *Metrics {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.SlowFsync <= 0 {
		opts.SlowFsync = DefaultSlowFsync
	}
	tp := opts.TracerProvider
	if tp == nil {
		tp = noop.NewTracerProvider()
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),

		log:       opts.Logger,
		slowFsync: opts.SlowFsync,
		tracer:    tp.Tracer("github.com/concorddb/concord"),
		events:    NewEvents(opts.EventCapacity),
	}
	counter := func(sub, name, help string) prometheus.Counter {
		c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help})
		m.reg.MustRegister(c)
		return c
	}
	histogram := func(sub, name, help string, buckets []float64) prometheus.Histogram {
		h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: sub, Name: name, Help: help, Buckets: buckets})
		m.reg.MustRegister(h)
		return h
	}
	m.proposals = counter("raft", "proposals_total", "Commands proposed to Raft by this node's leaders.")
	m.proposalsDropped = counter("raft", "proposals_dropped_total", "Proposals Raft refused (no leader, transfer, uncommitted size limit).")
	m.entriesCommitted = counter("raft", "committed_entries_total", "Raft entries that became committed on this node's replicas.")
	m.entriesApplied = counter("raft", "applied_entries_total", "Raft entries applied to this node's state machines.")
	m.leaderChanges = counter("raft", "leader_changes_total", "Leader changes seen by this node's replicas.")
	m.fsyncSeconds = histogram("storage", "fsync_duration_seconds", "Duration of the Ready loop's synced group commits (write and fsync).", latencyBuckets)
	m.batchCommitSeconds = histogram("storage", "batch_commit_duration_seconds", "Duration of every Ready loop batch commit, synced or not.", latencyBuckets)
	m.bytesWritten = counter("storage", "written_bytes_total", "Bytes of Raft log and state committed by the Ready loop.")
	m.slowFsyncs = counter("storage", "slow_fsyncs_total", "Group commits whose fsync took longer than the slow-fsync threshold.")
	m.rpcRequests = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "grpc", Name: "requests_total",
		Help: "Client gRPC requests handled, by full method and status code."}, []string{"method", "code"})
	m.rpcSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "grpc", Name: "request_duration_seconds",
		Help: "Client gRPC request latency, by full method.", Buckets: latencyBuckets}, []string{"method"})
	m.reg.MustRegister(m.rpcRequests, m.rpcSeconds)
	// ClientTotals gathers these alone: the node's registry also holds
	// collectors whose cost grows with the ranges.
	m.clientReg = prometheus.NewRegistry()
	m.clientReg.MustRegister(m.rpcRequests, m.rpcSeconds)
	m.tsoIssued = counter("tso", "timestamps_issued_total", "Revisions handed out by this node's revision oracle (TSO).")
	m.tsoBatchSize = histogram("tso", "batch_size", "Revisions per oracle call.", prometheus.ExponentialBuckets(1, 4, 10))
	m.routerRetries = prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: Namespace, Subsystem: "router", Name: "retries_total",
		Help: "Router attempts that failed and were retried or surfaced, by error code."}, []string{"code"})
	m.reg.MustRegister(m.routerRetries)
	// The usual retry causes exist from the start, so dashboards and
	// alerts see a zero rather than no series.
	for _, code := range []string{"NOT_LEADER", "UNAVAILABLE"} {
		m.routerRetries.WithLabelValues(code)
	}
	if opts.Process {
		m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	return m
}

// Registry returns the node's registry, to register more collectors or to
// gather in tests.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// Handler serves the registry in the Prometheus exposition format.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

// Events returns the node's event log (nil on a nil Metrics).
func (m *Metrics) Events() *Events {
	if m == nil {
		return nil
	}
	return m.events
}

// StartSpan starts a span named name as a child of ctx's span. On a nil
// Metrics it returns ctx and a span that records nothing.
func (m *Metrics) StartSpan(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if m == nil {
		return ctx, noop.Span{}
	}
	return m.tracer.Start(ctx, name, opts...)
}

// ObserveProposals counts n commands proposed to Raft.
func (m *Metrics) ObserveProposals(n int) {
	if m != nil {
		m.proposals.Add(float64(n))
	}
}

// ObserveProposalDropped counts a proposal Raft refused.
func (m *Metrics) ObserveProposalDropped() {
	if m != nil {
		m.proposalsDropped.Inc()
	}
}

// ObserveCommitted counts n entries that became committed.
func (m *Metrics) ObserveCommitted(n int) {
	if m != nil && n > 0 {
		m.entriesCommitted.Add(float64(n))
	}
}

// ObserveApplied counts n entries applied.
func (m *Metrics) ObserveApplied(n int) {
	if m != nil && n > 0 {
		m.entriesApplied.Add(float64(n))
	}
}

// LeaderChanged records that a replica of rangeID saw its leader become
// leader (0: none) in term: a counter and an event.
func (m *Metrics) LeaderChanged(rangeID, leader, term uint64) {
	if m == nil {
		return
	}
	m.leaderChanges.Inc()
	msg := "range " + strconv.FormatUint(rangeID, 10) + ": no leader"
	if leader != 0 {
		msg = "range " + strconv.FormatUint(rangeID, 10) + ": leader is node " + strconv.FormatUint(leader, 10) + " (term " + strconv.FormatUint(term, 10) + ")"
	}
	m.events.Add(Event{Kind: EventLeader, Range: rangeID, Node: leader, Message: msg})
}

// ObserveBatchCommit records one Ready-loop batch commit of size bytes
// that took d; sync says whether it was fsynced. A synced commit slower
// than the threshold is logged at warn.
func (m *Metrics) ObserveBatchCommit(d time.Duration, bytes int, sync bool) {
	if m == nil {
		return
	}
	s := d.Seconds()
	m.batchCommitSeconds.Observe(s)
	m.bytesWritten.Add(float64(bytes))
	if !sync {
		return
	}
	m.fsyncSeconds.Observe(s)
	if d > m.slowFsync {
		m.slowFsyncs.Inc()
		m.log.Warn("slow fsync", "duration", d, "threshold", m.slowFsync, "bytes", bytes)
	}
}

// ObserveTimestamps records one oracle call that handed out n revisions.
func (m *Metrics) ObserveTimestamps(n int) {
	if m != nil {
		m.tsoIssued.Add(float64(n))
		m.tsoBatchSize.Observe(float64(n))
	}
}

// ObserveRouterRetry counts one failed router attempt with its error code.
func (m *Metrics) ObserveRouterRetry(code string) {
	if m != nil {
		m.routerRetries.WithLabelValues(code).Inc()
	}
}

// ObserveRPC records one client RPC.
func (m *Metrics) ObserveRPC(method, code string, d time.Duration) {
	if m != nil {
		m.rpcRequests.WithLabelValues(method, code).Inc()
		m.rpcSeconds.WithLabelValues(method).Observe(d.Seconds())
	}
}

// UnaryServerInterceptor counts and times every unary client RPC.
func (m *Metrics) UnaryServerInterceptor() grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		start := time.Now()
		resp, err := handler(ctx, req)
		m.ObserveRPC(info.FullMethod, status.Code(err).String(), time.Since(start))
		return resp, err
	}
}

// StreamServerInterceptor counts and times every streaming client RPC
// (the duration is the stream's life).
func (m *Metrics) StreamServerInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		start := time.Now()
		err := handler(srv, ss)
		m.ObserveRPC(info.FullMethod, status.Code(err).String(), time.Since(start))
		return err
	}
}
