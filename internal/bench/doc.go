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
//
// Load (`concord bench load`) is a run of runs: it writes LoadConfig.Bytes
// of distinct keys, spread over the key space, with a fresh random value
// each, and at every checkpoint measures puts (overwrites of loaded keys)
// and then linearizable gets with the runner above, for a fixed time each.
// It stops by itself at Bytes or MaxDuration, and early when the server
// refuses writes for lack of space (etcd's NOSPACE at its quota), noting
// the bytes loaded then, so a cluster's throughput can be followed from
// megabytes to gigabytes and compared with etcd's quota.
package bench
