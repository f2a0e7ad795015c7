// Package concordpb holds Concord's internal protobuf types: the KV request
// model routed from gateway to leaseholder, the Raft command, the meta range
// schema and the node-to-node Peer gRPC service. Regenerate with gen.sh.
package concordpb
