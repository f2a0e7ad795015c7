// Package k8s runs Kubernetes' own storage tests against Concord.
//
// Kubernetes talks to etcd through one package, k8s.io/apiserver's
// pkg/storage/etcd3, and proves that package with one suite, the exported
// RunTest* functions of k8s.io/apiserver/pkg/storage/testing (create, get,
// delete with preconditions, GuaranteedUpdate with conflicts, list with
// pagination and resource versions, consistent list, compaction, watch from
// zero and from a revision, progress notify, bookmarks, watch-list, ...).
// This package runs that suite, at the k8s.io/apiserver version pinned in
// go.mod (v0.37.2, Kubernetes 1.37.2), through the real etcd3 store, against
// two systems started once per test binary:
//
//   - etcd: an embedded etcd (go.etcd.io/etcd/server/v3/embed, the version
//     pinned in go.mod, 3.7.3), configured as apiserver's own test server
//     configures it (no fsync, watch progress notifications every second);
//   - concord: an in-process 3-node Concord cluster, with the same progress
//     notification interval (--watch-progress-notify-interval 1s).
//
// The harness (harness_test.go) builds each test's store as
// pkg/storage/etcd3's own tests build theirs, from the exported
// constructors only: etcd3.New over a go.etcd.io/etcd/client/v3/kubernetes
// client wrapped in the suite's request recorders, the example API group's codec, a prefix transformer,
// the default decoder and versioner, the lease manager config with a 1s
// reuse, and a compactor. Each test gets its own client and its own path
// prefix, so the two shared servers serve every test without one seeing
// another's objects. Two things are shared all the same: compaction is
// cluster-wide (and apiserver's tests, each on a new etcd, watch from
// revision 1), so the cases that compact run after all the others; and a
// few cases compare etcd keys with "/pods/...", so they get a store at
// etcd's root, cleared first.
//
// The case table (storage_test.go) lists every RunTest* that
// pkg/storage/etcd3 runs, with the same arguments and feature gates, plus
// the one it does not (RunTestOptionalWatchBookmarksWithCorrectResourceVersion).
// Each case runs as TestStorage/<case>/etcd and TestStorage/<case>/concord.
// A case that fails against etcd in this harness is skipped on both systems
// with the reason written in the table; every other case runs on Concord,
// and a failure there is a failure. A case that needs a feature Concord does
// not have yet is skipped on Concord only, naming the feature, and only
// while a probe at start-up shows the feature missing (leases: Lease.Grant
// answering Unimplemented), so the case runs by itself once the feature
// lands.
//
// `go test ./test/k8s` runs every case on both systems, about a minute on
// 2 cores (both servers' start included), so there is no separate long
// set. -short leaves out the cases marked slow (they wait seconds for TTLs,
// timeouts or periodic notifications by design). One case on both systems:
// -run 'TestStorage/GuaranteedUpdate/'; every case on one:
// -run 'TestStorage/.*/concord$'.
package k8s
