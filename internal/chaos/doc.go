// Package chaos owns Concord's fault-injection harness and its history
// checkers: it proves the consistency claims by running a real cluster,
// breaking it on a schedule while clients run, and checking what the
// clients saw.
//
// A run, in order:
//
//  1. Clean up leftovers of earlier runs whose harness process is gone
//     (namespaces, links and iptables rules named cc-PID / ccPID…).
//  2. Build the network: a bridge in the root namespace, one network
//     namespace per node with a veth on the bridge and its own address in
//     198.18.0.0/15. Nothing is sent anywhere but these namespaces and
//     loopback.
//  3. Start N `concord start` processes, one per namespace, and wait until
//     each answers a linearizable read.
//  4. Run the clients (go.etcd.io/etcd/client/v3, each pinned to one node)
//     and the nemesis concurrently until the duration ends; every
//     operation is recorded with its real-time interval and result: ok,
//     fail (certainly not applied) or info (may or may not have applied).
//  5. Heal everything, stop the processes, tear the network down (also on
//     error or interrupt).
//  6. Check the history per key with porcupine against a model of etcd's
//     KV semantics; info operations stay open (they may linearize at any
//     point after their invocation, or never). On a violation write the
//     HTML visualisation and the raw history to the output folder.
//
// Everything random (the fault schedule, each client's operations)
// derives from Config.Seed; wall-clock timing is not reproducible, so a
// seed reproduces the schedule, not the interleaving.
//
// The model is deliberately small: registers (read, write, compare-and-set
// via Txn on a value) and append-only lists (read, append via a Txn that
// compares the mod revision); the bank workload's transfers across ranges
// are checked by their money instead (bank.go). Revisions are dense as
// etcd's only without faults, and faults are what the harness injects: the
// checkers never assume they are consecutive.
package chaos
