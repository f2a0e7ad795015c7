#!/usr/bin/env bash
# Regenerates the Go code for concord.proto. Needs protoc (Debian's
# protobuf-compiler), protoc-gen-go and protoc-gen-go-grpc on PATH.
set -euo pipefail
cd "$(dirname "$0")"
raft=$(go list -m -f '{{.Dir}}' go.etcd.io/raft/v3)
protoc -I . -I "$raft/raftpb" \
  --go_out=. --go_opt=paths=source_relative \
  --go-grpc_out=. --go-grpc_opt=paths=source_relative \
  --go_opt=Mraft.proto=go.etcd.io/raft/v3/raftpb \
  --go-grpc_opt=Mraft.proto=go.etcd.io/raft/v3/raftpb \
  concord.proto
