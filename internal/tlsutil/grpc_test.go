package tlsutil

import (
	"context"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/soheilhy/cmux"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
)

// recorder is a gRPC server's handler for every method: it records the
// verified common name of each call and answers Unimplemented, so a client
// that got this far sees codes.Unimplemented, and one refused at the
// handshake codes.Unavailable.
type recorder struct {
	mu  sync.Mutex
	cns []string
}

func (r *recorder) handle(_ any, stream grpc.ServerStream) error {
	cn, ok := VerifiedCommonName(stream.Context())
	if !ok {
		cn = "<none>"
	}
	r.mu.Lock()
	r.cns = append(r.cns, cn)
	r.mu.Unlock()
	return status.Error(codes.Unimplemented, "recorded")
}

func (r *recorder) last() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.cns) == 0 {
		return ""
	}
	return r.cns[len(r.cns)-1]
}

// TestVerifiedCommonNameOverCmux serves gRPC as the client port does (a
// Listener, a cmux, AcceptedCredentials) and calls it with a real etcd
// client presenting alice's certificate.
func TestVerifiedCommonNameOverCmux(t *testing.T) {
	p := newPKI(t)
	s := newSource(t, p.nodeOptions(), nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m := cmux.New(s.Listener(l, "h2", "http/1.1"))
	grpcL := m.Match(cmux.HTTP2())
	var rec recorder
	srv := grpc.NewServer(grpc.Creds(AcceptedCredentials()), grpc.UnknownServiceHandler(rec.handle))
	go func() { _ = srv.Serve(grpcL) }()
	go func() { _ = m.Serve() }()
	t.Cleanup(func() { srv.Stop(); m.Close() })

	get := func(user string) error {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{l.Addr().String()}, TLS: p.clientTLS(t, user), DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		defer cli.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_, err = cli.Get(ctx, "k")
		return err
	}
	if err := get("alice"); status.Code(err) != codes.Unimplemented {
		t.Fatalf("call with alice's certificate: %v", err)
	}
	if got := rec.last(); got != "alice" {
		t.Fatalf("VerifiedCommonName = %q, want alice", got)
	}
	// clientv3 retries a read refused at the handshake until its deadline.
	if err := get(""); err == nil || status.Code(err) == codes.Unimplemented {
		t.Fatalf("call without a certificate: %v, want refused at the handshake", err)
	}
	if n := len(rec.cns); n != 1 {
		t.Fatalf("%d calls reached the server, want 1", n)
	}
}

// TestPeerCredentialsMutualTLSAndAllowedCN dials a peer port the way the
// transport does.
func TestPeerCredentialsMutualTLSAndAllowedCN(t *testing.T) {
	p := newPKI(t)
	if err := CreateClient(p.dir, p.caKey, "intruder", CertLifetime, false); err != nil {
		t.Fatal(err)
	}
	o := p.nodeOptions()
	o.AllowedCN = "node"
	server := newSource(t, o, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var rec recorder
	srv := grpc.NewServer(grpc.Creds(server.ServerCredentials()), grpc.UnknownServiceHandler(rec.handle))
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(srv.Stop)

	call := func(o Options) error {
		s, err := New(Config{Port: "peer", Options: o, AutoDir: filepath.Join(t.TempDir(), "auto")})
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(s.ClientCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		return cc.Invoke(ctx, "/concord.test.Peer/Ping", &emptypb.Empty{}, &emptypb.Empty{})
	}
	if err := call(p.nodeOptions()); status.Code(err) != codes.Unimplemented {
		t.Fatalf("peer with the node certificate: %v", err)
	}
	if got := rec.last(); got != "node" {
		t.Fatalf("server saw CN %q, want node", got)
	}
	intruder := p.nodeOptions()
	intruder.CertFile, intruder.KeyFile = p.path(ClientCertName("intruder")), p.path(ClientKeyName("intruder"))
	if err := call(intruder); status.Code(err) != codes.Unavailable {
		t.Fatalf("peer with CN intruder: %v, want refused at the handshake", err)
	}
	// A server whose CA the client does not trust is refused by the client.
	other := newPKI(t)
	if err := call(other.nodeOptions()); status.Code(err) != codes.Unavailable {
		t.Fatalf("peer of another CA: %v, want refused at the handshake", err)
	}
	if n := len(rec.cns); n != 1 {
		t.Fatalf("%d calls reached the server, want 1", n)
	}
}
