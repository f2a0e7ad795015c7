package server

import (
	"context"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// registerLockElection installs etcd's Lock and Election services (etcdctl
// lock and elect, the v3lock and v3election gRPC APIs). etcd builds them
// on its own KV, Lease and Watch through a client of itself; Concord runs
// etcd's very implementations the same way, over a clientv3 client of this
// node's client port, so their keys, leases and revisions, and fencing by
// the lock key's create revision, are etcd's. Call it before the client
// server serves; the client connects lazily.
func (n *Node) registerLockElection() error {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{n.clientLis.Addr().String()},
		Logger:    zap.NewNop(),
		TLS:       n.loopbackTLS(),
		// A lock or a campaign waits as long as its caller does; these
		// bound only what the client does on its own.
		DialKeepAliveTime:    30 * time.Second,
		DialKeepAliveTimeout: 10 * time.Second,
		// With auth on, etcd's servers call the KV as their caller.
		DialOptions: []grpc.DialOption{
			grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
				return invoker(n.forwardCaller(ctx), method, req, reply, cc, opts...)
			}),
			grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
				return streamer(n.forwardCaller(ctx), desc, cc, method, opts...)
			}),
		},
	})
	if err != nil {
		return err
	}
	n.selfClient = cli
	v3lockpb.RegisterLockServer(n.clientServer, v3lock.NewLockServer(cli))
	v3electionpb.RegisterElectionServer(n.clientServer, v3election.NewElectionServer(cli))
	return nil
}
