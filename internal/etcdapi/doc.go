// Package etcdapi serves the etcd v3 gRPC API at Concord's client edge, so
// etcdctl and go.etcd.io/etcd/client/v3 work against a Concord node unchanged.
//
// It owns the translation between etcd's wire types (etcdserverpb, mvccpb)
// and Concord's KV model (concordpb), and nothing else: every request is
// served by a Backend (the node's router), which knows no etcd types.
//
// The order of things for each KV request:
//
//  1. Validate the request exactly as etcd's v3rpc layer does (empty key,
//     sort options, ignore_value/ignore_lease, max txn ops per branch,
//     duplicate keys in a txn), returning etcd's own gRPC errors
//     (rpctypes.ErrGRPC...), so clients see the errors they expect.
//  2. Reject writes whose marshalled size exceeds Config.MaxRequestBytes with
//     ErrGRPCRequestTooLarge, as etcd does BEFORE proposing to Raft. Reads are
//     bounded only by the gRPC receive limit (see ServerOptions), as in etcd.
//  3. Translate to a concordpb.RequestOp and call Backend.Do.
//  4. Translate the response back and fill the header (cluster id, member id,
//     revision, raft term); nested txn responses carry the revision only, as
//     in etcd. Backend errors become etcd errors at this edge and nowhere else
//     (see toGRPCError for the table).
//
// Register installs the KV, Maintenance and Cluster services. Compaction,
// membership changes, snapshots and the other maintenance calls answer
// codes.Unimplemented with a message saying so, until their issues land.
package etcdapi
