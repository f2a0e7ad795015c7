// Package telemetry owns what Concord shows of itself while it runs:
// Prometheus metrics, OpenTelemetry tracing, the event log behind the
// dashboard and the slog handler that puts trace ids on log lines.
//
// One node, one Metrics: the demo runs several nodes in one process, so
// Concord's metrics never go to Prometheus' global default registry. The
// server creates a Metrics per node (New), hands it to every component's
// Config (store, replica, transport, router, tso) and serves its registry
// on the node's HTTP port. Every observation method is safe on a nil
// *Metrics, so components built without one (unit tests, tools) pay
// nothing and need no branches.
//
// The order of things on a node:
//
//  1. New creates the registry and the instruments;
//  2. the server calls SetSource with a function that samples the node
//     (ranges, engine, transport, peers); it runs at scrape time only;
//  3. components observe on their hot paths (one call each: a counter
//     add or a histogram observation);
//  4. the HTTP port serves Handler at /metrics.
//
// Tracing is off unless the standard OTEL_* environment variables name an
// OTLP endpoint (SetupTracing); spans then follow a client request from
// the gateway node to the leaseholder, its Raft proposal and its apply,
// carried between nodes by W3C trace context in gRPC metadata.
package telemetry
