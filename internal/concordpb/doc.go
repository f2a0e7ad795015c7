// Package concordpb holds no code: its sub-packages are Concord's protobuf
// types, one per layer, so that each layer imports only the messages it
// owns and only the service package pulls in gRPC:
//
//	kvpb    the KV model (etcd's, without its packages) and its errors
//	metapb  the meta range's schema: range descriptors, node records
//	cmdpb   what a range's leaseholder serves and Raft replicates
//	rpcpb   the Peer and Admin gRPC services
//
// Regenerate them with gen.sh.
package concordpb
