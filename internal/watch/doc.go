// Package watch owns etcd's watches on a sharded keyspace: the per-range
// change feeds (opened on each range's leader, see replica.Feed) merged in
// revision order behind each range's resolved revision, and the watchers
// of one node that share them.
//
// # The order of things
//
//  1. A Merger follows every range covering a span through a Source: one
//     feed per range, each giving changes in revision order and resolved
//     revisions (no change at or below one can still come). The merger's
//     frontier is the least resolved revision of its feeds; it releases
//     the changes at or below the frontier, whole revisions at a time, in
//     revision order. When a range splits, merges or changes leader its
//     feed ends, and the merger opens feeds on the ranges now covering its
//     span from that feed's resolved revision: no change is lost or given
//     twice. When released changes wait on a range that is idle, the
//     merger asks that range to resolve up to them (a read at that
//     revision's wait, see replica.Feed.Resolve).
//  2. A Hub is one node's merger over the whole user keyspace, started
//     with the node's first watcher, and a ring of the changes it released
//     last. Synced watchers get the hub's changes as it releases them.
//  3. A watcher that starts below what the ring holds, or that fell behind
//     (its stream's queue was full: etcd's victims), catches up alone with
//     a bounded Merger over its own span, then joins the synced watchers
//     from the ring. Writes never wait for a watcher.
//
// Keys here are global keys (internal/keys); events leave with user keys.
package watch
