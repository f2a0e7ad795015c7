package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/soheilhy/cmux"
	gw "go.etcd.io/etcd/api/v3/etcdserverpb/gw"
	v3electiongw "go.etcd.io/etcd/server/v3/etcdserver/api/v3election/v3electionpb/gw"
	v3lockgw "go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb/gw"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/concorddb/concord/internal/concordpb/kvpb"
)

// The client port serves both gRPC (HTTP/2) and, as etcd does, a JSON
// gateway over HTTP/1 (/v3/kv/range, /v3/kv/put, ...) plus /health. A cmux
// splits the listener by protocol.

// serveClient starts the gRPC server and the HTTP gateway on the client
// listener.
func (n *Node) serveClient() error {
	n.clientMux = cmux.New(n.clientListener())
	grpcL := n.clientMux.Match(cmux.HTTP2())
	httpL := n.clientMux.Match(cmux.HTTP1Fast())
	n.serve(n.clientServer, grpcL)

	// The gateway calls this node's own gRPC server, so it shares every
	// check (validation, size limits) with gRPC clients.
	conn, err := grpc.NewClient(n.clientLis.Addr().String(),
		grpc.WithTransportCredentials(n.loopbackCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxGatewayMsgBytes)))
	if err != nil {
		return err
	}
	n.gatewayConn = conn
	gwmux := runtime.NewServeMux(runtime.WithMarshalerOption(runtime.MIMEWildcard, &runtime.HTTPBodyMarshaler{
		Marshaler: &runtime.JSONPb{
			MarshalOptions:   protojson.MarshalOptions{UseProtoNames: true, EmitUnpopulated: false},
			UnmarshalOptions: protojson.UnmarshalOptions{DiscardUnknown: true},
		},
	}))
	ctx := context.Background()
	for _, register := range []func(context.Context, *runtime.ServeMux, *grpc.ClientConn) error{
		gw.RegisterKVHandler, gw.RegisterClusterHandler, gw.RegisterAuthHandler, gw.RegisterMaintenanceHandler, gw.RegisterWatchHandler, gw.RegisterLeaseHandler,
		v3lockgw.RegisterLockHandler, v3electiongw.RegisterElectionHandler,
	} {
		if err := register(ctx, gwmux, conn); err != nil {
			return err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("/v3/", gwmux)
	n.registerHealth(mux)
	if n.cfg.EnablePprof {
		registerPprof(mux)
	}
	n.httpServer = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.wg.Add(2)
	go func() {
		defer n.wg.Done()
		if err := n.httpServer.Serve(httpL); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, cmux.ErrListenerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Error("client http server stopped", "err", err)
		}
	}()
	go func() {
		defer n.wg.Done()
		if err := n.clientMux.Serve(); err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, cmux.ErrServerClosed) {
			n.log.Debug("client listener mux stopped", "err", err)
		}
	}()
	return nil
}

// clientListener is the client listener, under TLS when the port has it.
// gRPC and HTTP share the port, and which one a connection speaks shows
// only after the handshake; ALPN prefers http/1.1, so that an HTTPS client
// (curl, a browser), which offers it besides h2, speaks HTTP/1 to the JSON
// gateway, while gRPC clients, which offer only h2, speak HTTP/2: the cmux
// then splits them by their first bytes, as on a plain port.
func (n *Node) clientListener() net.Listener {
	if n.tls.client == nil {
		return n.clientLis
	}
	return n.tls.client.Listener(n.clientLis, "http/1.1", "h2")
}

// maxGatewayMsgBytes bounds a gateway response, as etcd's gateway does.
const maxGatewayMsgBytes = 1<<31 - 1

// healthTimeout bounds the linearizable read behind /health.
const healthTimeout = time.Second

// registerHealth adds the health endpoints: etcd's /health, and the
// Kubernetes-style probes /livez and /healthz (the process serves) and
// /readyz (the node can serve a linearizable read).
func (n *Node) registerHealth(mux *http.ServeMux) {
	mux.HandleFunc("/health", n.handleHealth)
	live := func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte("ok\n"))
	}
	mux.HandleFunc("/livez", live)
	mux.HandleFunc("/healthz", live)
	mux.HandleFunc("/readyz", n.handleReady)
}

// handleReady answers 200 once this node has joined, can reach a usable
// meta range and serves a linearizable read; 503 with the reason otherwise.
func (n *Node) handleReady(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain")
	if err := n.ready(r.Context()); err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	_, _ = w.Write([]byte("ok\n"))
}

func (n *Node) ready(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, healthTimeout)
	defer cancel()
	if _, err := n.members(ctx); err != nil {
		return fmt.Errorf("meta range: %w", err)
	}
	_, _, err := n.router.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte("health"), CountOnly: true}}})
	return err
}

// handleHealth answers etcd's /health: healthy when a linearizable read
// through this node succeeds.
func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
	defer cancel()
	_, _, err := n.router.Do(ctx, &kvpb.RequestOp{Request: &kvpb.RequestOp_Range{Range: &kvpb.RangeRequest{Key: []byte("health"), CountOnly: true}}})
	body := map[string]string{"health": "true", "reason": ""}
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		body = map[string]string{"health": "false", "reason": err.Error()}
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	_ = json.NewEncoder(w).Encode(body)
}
