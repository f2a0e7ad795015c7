package etcdapi

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// fakeLeases is a Backend with leases: a map of id -> TTL, no expiry.
type fakeLeases struct {
	*fakeBackend
	mu     sync.Mutex
	leases map[int64]int64
}

func (f *fakeLeases) LeaseGrant(_ context.Context, id, ttl int64) (int64, int64, Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ttl > 9000000000 {
		return 0, 0, Header{}, kvpb.Errorf(kvpb.ErrorCode_LEASE_TTL_TOO_LARGE, "too large")
	}
	if _, ok := f.leases[id]; ok {
		return 0, 0, Header{}, kvpb.Errorf(kvpb.ErrorCode_LEASE_EXIST, "exists")
	}
	f.leases[id] = ttl
	return id, ttl, Header{Revision: 1}, nil
}

func (f *fakeLeases) LeaseRevoke(_ context.Context, id int64) (Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.leases[id]; !ok {
		return Header{}, kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "not found")
	}
	delete(f.leases, id)
	return Header{Revision: 1}, nil
}

func (f *fakeLeases) LeaseKeepAlive(_ context.Context, id int64) (int64, Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ttl, ok := f.leases[id]
	if !ok {
		return 0, Header{}, kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "not found")
	}
	return ttl, Header{Revision: 1}, nil
}

func (f *fakeLeases) LeaseTimeToLive(_ context.Context, id int64, keys bool) (LeaseStatus, Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ttl, ok := f.leases[id]
	if !ok {
		return LeaseStatus{}, Header{}, kvpb.Errorf(kvpb.ErrorCode_LEASE_NOT_FOUND, "not found")
	}
	st := LeaseStatus{TTL: ttl - 1, GrantedTTL: ttl}
	if keys {
		st.Keys = [][]byte{[]byte("k")}
	}
	return st, Header{Revision: 1}, nil
}

func (f *fakeLeases) LeaseLeases(context.Context) ([]int64, Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []int64
	for id := range f.leases {
		out = append(out, id)
	}
	return out, Header{Revision: 1}, nil
}

func leaseClient(t *testing.T, addr string) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{addr}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}

// The Lease service answers as etcd's: its errors are etcd's lease errors,
// a missing lease's time-to-live is TTL -1, its keepalive TTL 0.
func TestLeaseService(t *testing.T) {
	f := &fakeLeases{fakeBackend: newFakeBackend(), leases: map[int64]int64{}}
	cli := leaseClient(t, serve(t, Config{}, f))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	g, err := cli.Grant(ctx, 10)
	if err != nil {
		t.Fatal(err)
	}
	if g.ID != 0 || g.TTL != 10 || g.ResponseHeader.GetClusterId() != testClusterID {
		t.Fatalf("grant: %+v", g)
	}
	if _, err := cli.Grant(ctx, 10); !errors.Is(err, rpctypes.ErrLeaseExist) {
		t.Fatalf("second grant of id 0: %v, want %v", err, rpctypes.ErrLeaseExist)
	}
	if _, err := cli.Grant(ctx, 9000000001); !errors.Is(err, rpctypes.ErrLeaseTTLTooLarge) {
		t.Fatalf("grant above MaxLeaseTTL: %v", err)
	}
	ttl, err := cli.TimeToLive(ctx, 0, clientv3.WithAttachedKeys())
	if err != nil || ttl.TTL != 9 || ttl.GrantedTTL != 10 || len(ttl.Keys) != 1 {
		t.Fatalf("time to live: %+v %v", ttl, err)
	}
	if ttl, err := cli.TimeToLive(ctx, 77); err != nil || ttl.TTL != -1 || ttl.ID != 77 {
		t.Fatalf("time to live of a missing lease: %+v %v", ttl, err)
	}
	if ka, err := cli.KeepAliveOnce(ctx, 0); err != nil || ka.TTL != 10 {
		t.Fatalf("keepalive: %+v %v", ka, err)
	}
	if _, err := cli.KeepAliveOnce(ctx, 77); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("keepalive of a missing lease: %v", err)
	}
	if ls, err := cli.Leases(ctx); err != nil || len(ls.Leases) != 1 {
		t.Fatalf("leases: %+v %v", ls, err)
	}
	if _, err := cli.Revoke(ctx, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Revoke(ctx, 0); !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		t.Fatalf("second revoke: %v, want %v", err, rpctypes.ErrLeaseNotFound)
	}
}

// Keepalive streams past the bound are refused with ResourceExhausted.
func TestKeepAliveStreamsAreBounded(t *testing.T) {
	f := &fakeLeases{fakeBackend: newFakeBackend(), leases: map[int64]int64{1: 5}}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	pb.RegisterLeaseServer(srv, &leaseServer{b: f, cfg: mustComplete(Config{}), maxStreams: 1})
	go func() { _ = srv.Serve(lis) }()
	defer srv.Stop()
	lc := pb.NewLeaseClient(dialRaw(t, lis.Addr().String()))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	first, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Send(&pb.LeaseKeepAliveRequest{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if resp, err := first.Recv(); err != nil || resp.TTL != 5 {
		t.Fatalf("first stream: %v %v", resp, err)
	}
	second, err := lc.LeaseKeepAlive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := second.Send(&pb.LeaseKeepAliveRequest{ID: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := second.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second stream: %v, want ResourceExhausted", err)
	}
}
