// Package transport delivers Raft messages between Concord nodes and hands
// out the gRPC client connections that the other Peer RPCs use.
//
// It owns, per destination node, one bounded queue, one sender goroutine and
// one long-lived client stream (Peer.Raft). Every message queued for a node
// while the previous batch was on the wire leaves in the next RaftBatch, so
// many ranges and many Ready rounds share each network write. On the
// receiving side, ServeRaft checks every batch before the Handler sees it.
//
// The order of things for one node:
//
//  1. Build a Transport with New and register a Peer server whose Raft method
//     returns t.ServeRaft(stream), on a grpc.Server built with
//     t.ServerOptions() (size limits, MaxPeerStreams, keepalive, the cluster
//     id check).
//  2. The Ready loop calls t.Send(to, msgs) once per destination node, AFTER
//     the entries and hard state of that Ready are durable. Send never blocks
//     and takes ownership of msgs.
//  3. The transport calls back on its own goroutines: HandleRaftBatch for
//     each accepted incoming batch, ReportUnreachable when the stream to a
//     node fails, ReportSnapshot for every MsgSnap once it was written to the
//     stream (ok) or dropped (!ok).
//  4. t.Close stops every sender goroutine and closes every connection.
//
// Guarantees: messages from one node to another arrive in the order they
// were given to Send, with gaps: a message is dropped, never reordered or
// duplicated, when the queue is full, the stream fails, the peer is in
// backoff, or a Fault says so. Raft tolerates such loss; the Handler learns
// about it through ReportUnreachable and ReportSnapshot.
//
// Refusal: a batch is accepted only if it names our cluster id, our node id
// as to_node, and a non-zero from_node other than ours; every Peer RPC must
// carry the caller's cluster id in the "concord-cluster-id" metadata, except
// Join, which may carry 0 (the joiner does not know it yet). Refusals are
// logged once per peer at warn level and answered with a gRPC status, so the
// node keeps serving everyone else.
//
// A Transport whose ClusterID and NodeID are both 0 is in join mode: it can
// only dial (ConnTo, Conn) to call Join; the node builds a new Transport
// once it knows its ids.
package transport
