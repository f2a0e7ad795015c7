package telemetry

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
)

func TestNilMetricsObserveNothing(t *testing.T) {
	var m *Metrics
	m.ObserveProposals(1)
	m.ObserveProposalDropped()
	m.ObserveCommitted(1)
	m.ObserveApplied(1)
	m.LeaderChanged(1, 2, 3)
	m.ObserveBatchCommit(time.Second, 10, true)
	m.ObserveTimestamps(4)
	m.ObserveRouterRetry("NOT_LEADER")
	m.ObserveRPC("/x", "OK", time.Millisecond)
	m.Events().Add(Event{Kind: EventFault})
	_, span := m.StartSpan(context.Background(), "x")
	span.End()
	if got := m.ClientTotals().Requests; got != 0 {
		t.Fatalf("nil metrics counted %d requests", got)
	}
}

func TestEventsKeepTheNewest(t *testing.T) {
	l := NewEvents(3)
	for i := 0; i < 5; i++ {
		l.Add(Event{Kind: EventLeader})
	}
	evs := l.Since(0)
	if len(evs) != 3 || evs[0].Seq != 3 || evs[2].Seq != 5 {
		t.Fatalf("events %+v, want seqs 3..5", evs)
	}
	if evs := l.Since(4); len(evs) != 1 || evs[0].Seq != 5 {
		t.Fatalf("since 4: %+v", evs)
	}
}

func TestThroughputRatesAndQuantiles(t *testing.T) {
	m := New(Options{})
	tp := NewThroughput(10)
	t0 := time.Now()
	tp.Sample(t0, m.ClientTotals())
	for i := 0; i < 99; i++ {
		m.ObserveRPC("/m", "OK", 150*time.Microsecond)
	}
	m.ObserveRPC("/m", "Unavailable", time.Second)
	tp.Sample(t0.Add(2*time.Second), m.ClientTotals())
	p := tp.Points()
	if len(p) != 1 || p[0].RequestsPerSec != 50 || p[0].ErrorsPerSec != 0.5 {
		t.Fatalf("points %+v", p)
	}
	if p[0].P50Ms != 0.2 || p[0].P99Ms != 0.2 {
		t.Fatalf("p50 %v p99 %v, want the 0.2 ms bucket", p[0].P50Ms, p[0].P99Ms)
	}
}

func TestLogHandlerAddsTraceID(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("node", 1)
	tp := NewTracerProvider(sdktrace.NewSimpleSpanProcessor(tracetest.NewInMemoryExporter()), TracingOptions{SamplingRatio: 1})
	ctx, span := tp.Tracer("t").Start(context.Background(), "op")
	log.InfoContext(ctx, "hello")
	span.End()
	want := `"trace_id":"` + span.SpanContext().TraceID().String() + `"`
	if !strings.Contains(buf.String(), want) || !strings.Contains(buf.String(), `"node":1`) {
		t.Fatalf("log line %s lacks %s or the node", buf.String(), want)
	}
}

func TestTracingOffByDefault(t *testing.T) {
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "")
	t.Setenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "")
	t.Setenv("OTEL_TRACES_EXPORTER", "")
	if TracingEnabled() {
		t.Fatal("tracing on without any OTEL_* variable")
	}
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", "http://localhost:4317")
	if !TracingEnabled() {
		t.Fatal("tracing off with OTEL_EXPORTER_OTLP_ENDPOINT set")
	}
}
