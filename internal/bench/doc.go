// Package bench is Concord's load generator: it drives any etcd v3 API
// server (Concord or etcd alike) through go.etcd.io/etcd/client/v3 and
// reports throughput, an HDR latency histogram and errors by gRPC code.
//
// It owns the workloads (put, range, txn-put, YCSB mixes), the key
// distributions, the open-loop rate limiter and the report; it knows nothing
// of Concord's internals and talks to a cluster only as a user would.
// Running clusters side by side is package compare's job.
//
// The order of things in Run:
//
//  1. Validate the Config and dial Conns clients, each pinned to one
//     endpoint (round-robin over Endpoints, or the leader's only).
//  2. Preload the key space when the workload reads or compares existing
//     keys (Config.Preload), in batched Txns, remembering each key's
//     mod revision for the compare-and-swap workload.
//  3. Start Clients workers sharing the connections; each takes an op
//     ticket (Total) or runs until Duration, waits for its Limiter slot when
//     a Rate is set, and records latency into its own histogram. With a
//     Rate, latency counts from the slot's intended start, not the actual
//     one, so a stalled server cannot hide its queueing (no coordinated
//     omission).
//  4. Merge the histograms and error counts into a Report.
package bench
