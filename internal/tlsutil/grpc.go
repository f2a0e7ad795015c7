package tlsutil

import (
	"context"
	"crypto/tls"
	"errors"
	"net"

	"github.com/soheilhy/cmux"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
)

// ServerCredentials are the gRPC server credentials of a port served by
// gRPC alone (the peer port): ServerConfig("h2"), with refused handshakes
// logged (rate-limited).
func (s *Source) ServerCredentials() credentials.TransportCredentials {
	return serverCreds{TransportCredentials: credentials.NewTLS(s.ServerConfig("h2")), s: s}
}

type serverCreds struct {
	credentials.TransportCredentials
	s *Source
}

func (c serverCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, info, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.s.logReject(conn.RemoteAddr(), err)
	}
	return out, info, err
}

func (c serverCreds) Clone() credentials.TransportCredentials {
	return serverCreds{TransportCredentials: c.TransportCredentials.Clone(), s: c.s}
}

// ClientCredentials are the gRPC credentials to dial a peer: each
// handshake verifies the server against the CA pool current then and the
// host name of the address dialed (and AllowedCN), and presents the port's
// current certificate.
func (s *Source) ClientCredentials() credentials.TransportCredentials { return clientCreds{s: s} }

type clientCreds struct{ s *Source }

func (c clientCreds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	// A fresh configuration per handshake: tls.Config has no hook to pick
	// the client side's CA pool late, as GetConfigForClient does for the
	// server's.
	return credentials.NewTLS(c.s.clientConfig()).ClientHandshake(ctx, authority, conn)
}

func (c clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsutil: client credentials used by a server")
}

func (c clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c clientCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is gRPC's deprecated hook; the authority dialed
// names the server.
func (c clientCreds) OverrideServerName(string) error { return nil }

// AcceptedCredentials are the gRPC server credentials of connections a
// Listener accepted and a cmux handed over: the TLS handshake is done
// already (cmux read the first bytes through it), so they only expose its
// state as credentials.TLSInfo, as credentials.NewTLS would, for
// VerifiedCommonName and the rest of gRPC. A connection not from a
// Listener is refused.
//
// Why not credentials.NewTLS on a cmux branch: the client port serves gRPC
// and HTTP (the JSON gateway, /health) on one TLS port, and which one a
// connection carries shows only after the handshake, so TLS must come
// before the split.
func AcceptedCredentials() credentials.TransportCredentials { return acceptedCreds{} }

type acceptedCreds struct{}

func (acceptedCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	st, ok := connState(conn)
	if !ok {
		return nil, nil, errors.New("tlsutil: connection did not come through a TLS Listener")
	}
	return conn, credentials.TLSInfo{State: st, CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity}}, nil
}

// connState finds the TLS state of conn, beneath a cmux wrapper.
func connState(conn net.Conn) (tls.ConnectionState, bool) {
	for {
		switch c := conn.(type) {
		case interface{ ConnectionState() tls.ConnectionState }:
			st := c.ConnectionState()
			return st, st.HandshakeComplete
		case *cmux.MuxConn:
			conn = c.Conn
		default:
			return tls.ConnectionState{}, false
		}
	}
}

func (acceptedCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("tlsutil: accepted-connection credentials used by a client")
}

func (acceptedCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (c acceptedCreds) Clone() credentials.TransportCredentials { return c }

// OverrideServerName is gRPC's deprecated hook; a server has no use for it.
func (acceptedCreds) OverrideServerName(string) error { return nil }

// VerifiedCommonName returns the common name of the client certificate
// that the TLS handshake of the gRPC call in ctx verified against the
// port's trusted CA (etcd's --client-cert-auth user name). ok is false for
// a call without TLS, without a verified client certificate, or whose
// certificate has an empty common name.
func VerifiedCommonName(ctx context.Context) (cn string, ok bool) {
	p, found := peer.FromContext(ctx)
	if !found {
		return "", false
	}
	ti, isTLS := p.AuthInfo.(credentials.TLSInfo)
	if !isTLS || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", false
	}
	cn = ti.State.VerifiedChains[0][0].Subject.CommonName
	return cn, cn != ""
}
