#!/usr/bin/env bash
# Regenerates the Go code of Concord's protos, one package per layer:
#   kvpb    the KV model and its errors (no dependencies)
#   metapb  the meta range's schema (no dependencies)
#   cmdpb   replicated commands and batch requests (kvpb, metapb)
#   rpcpb   the Peer, Admin and AP gRPC services (all of the above, raftpb)
# Needs protoc (Debian's protobuf-compiler), protoc-gen-go and
# protoc-gen-go-grpc on PATH.
set -euo pipefail
cd "$(dirname "$0")"
raft=$(go list -m -f '{{.Dir}}' go.etcd.io/raft/v3)
for p in kvpb/kv.proto metapb/meta.proto cmdpb/cmd.proto rpcpb/rpc.proto rpcpb/ap.proto; do
  protoc -I . -I "$raft/raftpb" \
    --go_out=. --go_opt=paths=source_relative \
    --go-grpc_out=. --go-grpc_opt=paths=source_relative \
    --go_opt=Mraft.proto=go.etcd.io/raft/v3/raftpb \
    --go-grpc_opt=Mraft.proto=go.etcd.io/raft/v3/raftpb \
    "$p"
done
