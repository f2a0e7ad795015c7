package etcdapi_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/etcdapi"
)

// oneKey is a Backend that holds a single key, to show the wiring; the real
// Backend is the node's router.
type oneKey struct{}

func (oneKey) Do(_ context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, etcdapi.Header, error) {
	if op.GetRange() == nil {
		return nil, etcdapi.Header{}, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "read-only example")
	}
	kv := &kvpb.KeyValue{Key: []byte("hello"), Value: []byte("world"), CreateRevision: 2, ModRevision: 2, Version: 1}
	return &kvpb.ResponseOp{Response: &kvpb.ResponseOp_Range{Range: &kvpb.RangeResponse{
		Kvs: []*kvpb.KeyValue{kv}, Count: 1,
	}}}, etcdapi.Header{Revision: 2, RaftTerm: 1}, nil
}

func (oneKey) Members(context.Context) ([]*metapb.NodeRecord, error) {
	return []*metapb.NodeRecord{{NodeId: 1, Name: "n1"}}, nil
}

func (oneKey) Compact(context.Context, int64) (etcdapi.Header, error) {
	return etcdapi.Header{Revision: 1}, nil
}

func (oneKey) HashKV(context.Context, int64) (etcdapi.HashKV, error) { return etcdapi.HashKV{}, nil }

func (oneKey) Defragment(context.Context) error { return nil }

func (oneKey) Status(context.Context) (etcdapi.Status, error) {
	return etcdapi.Status{Leader: 1, RaftTerm: 1}, nil
}

// Serve the etcd API over a Backend and talk to it with the etcd client.
func ExampleRegister() {
	cfg := etcdapi.Config{ClusterID: 1, MemberID: 1}
	srv := grpc.NewServer(etcdapi.ServerOptions(cfg)...)
	etcdapi.Register(srv, oneKey{}, cfg)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()

	cli, err := clientv3.New(clientv3.Config{
		Endpoints: []string{lis.Addr().String()}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
	})
	if err != nil {
		panic(err)
	}
	defer cli.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "hello")
	if err != nil {
		panic(err)
	}
	fmt.Printf("%s=%s at revision %d\n", resp.Kvs[0].Key, resp.Kvs[0].Value, resp.Header.Revision)
	_, err = cli.Put(ctx, "hello", "again")
	fmt.Println(err)
	// Output:
	// hello=world at revision 2
	// rpc error: code = InvalidArgument desc = read-only example
}

func (oneKey) Snapshot(context.Context, io.Writer) error { return nil }

func (oneKey) AddMember(context.Context, []string, bool) (*metapb.NodeRecord, error) {
	return nil, kvpb.Errorf(kvpb.ErrorCode_INVALID_ARGUMENT, "no members here")
}

func (oneKey) ChangeMember(context.Context, *cmdpb.SysChangeNode) (*metapb.NodeRecord, error) {
	return nil, kvpb.Errorf(kvpb.ErrorCode_MEMBER_NOT_FOUND, "etcdserver: member not found")
}
