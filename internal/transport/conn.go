package transport

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
)

// Keepalive: a client pings an idle connection every keepaliveTime and gives
// up after keepaliveTimeout without an answer, so a peer that vanished
// without closing TCP (power loss, partition) is noticed in seconds, not at
// the kernel's TCP timeout. The server allows pings down to
// keepaliveMinTime, below keepaliveTime, so it never answers our own pings
// with GOAWAY "too_many_pings".
const (
	keepaliveTime    = 10 * time.Second
	keepaliveTimeout = 5 * time.Second
	keepaliveMinTime = 5 * time.Second
)

// Connection backoff inside grpc: grpc's default starts at 1 s and grows to
// 120 s, far too slow for a Raft peer that restarts in a second. These match
// the sender's own backoff. connectTimeout bounds one TCP+HTTP/2 handshake,
// and so how long a sender can wait on a black-holed address.
const (
	connBaseDelay  = 50 * time.Millisecond
	connMaxDelay   = time.Second
	connectTimeout = 5 * time.Second
)

// nodeConn is a cached connection to a node and the target it was dialed for.
type nodeConn struct {
	target string
	cc     *grpc.ClientConn
}

// HostPort turns a peer URL ("http://h:p", "https://h:p") or a bare "h:p"
// into "h:p", the form grpc dials.
func HostPort(rawURL string) (string, error) {
	hp := rawURL
	if strings.Contains(rawURL, "://") {
		u, err := url.Parse(rawURL)
		if err != nil {
			return "", fmt.Errorf("transport: bad peer url %q: %w", rawURL, err)
		}
		if u.Scheme != "http" && u.Scheme != "https" {
			return "", fmt.Errorf("transport: bad peer url %q: scheme %q is not http or https", rawURL, u.Scheme)
		}
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
			return "", fmt.Errorf("transport: bad peer url %q: want scheme://host:port only", rawURL)
		}
		hp = u.Host
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return "", fmt.Errorf("transport: bad peer address %q: %w", rawURL, err)
	}
	if host == "" {
		return "", fmt.Errorf("transport: bad peer address %q: empty host", rawURL)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return "", fmt.Errorf("transport: bad peer address %q: port %q is not in 1..65535", rawURL, port)
	}
	return net.JoinHostPort(host, port), nil
}

// Conn returns the shared connection to node `to`, dialing it on first use
// and redialing when Resolve's answer for `to` changed (the old connection
// is then closed, and RPCs still running on it fail with codes.Canceled).
// The connection belongs to the transport: the caller must not Close it.
// Dialing does not wait for the connection to be ready; RPCs do. ctx only
// bounds this call.
func (t *Transport) Conn(ctx context.Context, to uint64) (*grpc.ClientConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	rawURL, ok := t.cfg.Resolve(to)
	if !ok {
		return nil, fmt.Errorf("%w: %d", ErrUnknownNode, to)
	}
	target, err := HostPort(rawURL)
	if err != nil {
		return nil, fmt.Errorf("transport: node %d: %w", to, err)
	}
	t.mu.Lock()
	if t.mu.closed {
		t.mu.Unlock()
		return nil, ErrClosed
	}
	old := t.mu.conns[to]
	if old != nil && old.target == target {
		t.mu.Unlock()
		return old.cc, nil
	}
	cc, err := t.dial(target)
	if err != nil {
		t.mu.Unlock()
		return nil, err
	}
	t.mu.conns[to] = &nodeConn{target: target, cc: cc}
	t.mu.Unlock()
	if old != nil {
		// Outside the lock: closing waits for the connection's goroutines.
		t.log.Info("peer address changed, redialed", "peer", to, "old", old.target, "new", target)
		t.closeConn(old.cc, old.target)
	}
	return cc, nil
}

// ConnTo returns the shared connection to a peer URL, for talking to a node
// whose id is not known yet (Join). It is cached per address until Close;
// the caller must not Close it. ctx only bounds this call.
func (t *Transport) ConnTo(ctx context.Context, rawURL string) (*grpc.ClientConn, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	target, err := HostPort(rawURL)
	if err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.mu.closed {
		return nil, ErrClosed
	}
	if cc := t.mu.addrConns[target]; cc != nil {
		return cc, nil
	}
	cc, err := t.dial(target)
	if err != nil {
		return nil, err
	}
	t.mu.addrConns[target] = cc
	return cc, nil
}

// dial creates a connection to target without waiting for it to be ready.
func (t *Transport) dial(target string) (*grpc.ClientConn, error) {
	cc, err := grpc.NewClient(target, t.dialOptions()...)
	if err != nil {
		return nil, fmt.Errorf("transport: dial %s: %w", target, err)
	}
	return cc, nil
}

// closeConn closes cc; its error only says it was closed already, so it is
// logged, not returned.
func (t *Transport) closeConn(cc *grpc.ClientConn, target string) {
	if err := cc.Close(); err != nil {
		t.log.Debug("closing peer connection", "target", target, "err", err)
	}
}

// dialOptions are the options of every connection the transport makes:
// Config.Credentials (insecure without), message size limits that let a
// snapshot through, keepalive, fast reconnection, and the cluster id on
// every call.
func (t *Transport) dialOptions() []grpc.DialOption {
	id := strconv.FormatUint(t.cfg.ClusterID, 10)
	creds := t.cfg.Credentials
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(
			grpc.MaxCallSendMsgSize(MaxMsgBytes),
			grpc.MaxCallRecvMsgSize(MaxMsgBytes),
		),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{
			Time:                keepaliveTime,
			Timeout:             keepaliveTimeout,
			PermitWithoutStream: true,
		}),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: backoff.Config{
				BaseDelay:  connBaseDelay,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   connMaxDelay,
			},
			MinConnectTimeout: connectTimeout,
		}),
		grpc.WithChainUnaryInterceptor(func(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
			return invoker(metadata.AppendToOutgoingContext(ctx, MetadataClusterID, id), method, req, reply, cc, opts...)
		}),
		grpc.WithChainStreamInterceptor(func(ctx context.Context, desc *grpc.StreamDesc, cc *grpc.ClientConn, method string, streamer grpc.Streamer, opts ...grpc.CallOption) (grpc.ClientStream, error) {
			return streamer(metadata.AppendToOutgoingContext(ctx, MetadataClusterID, id), desc, cc, method, opts...)
		}),
	}
	return append(opts, t.cfg.DialOptions...)
}
