// Package rpcpb holds the gRPC services: Peer (everything one node says to
// another: Raft batches, forwarded requests, revisions, joins, status) and
// Admin (Concord's operator API on the client port).
package rpcpb
