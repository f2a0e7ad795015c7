package server

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"slices"
	"strings"

	"github.com/concorddb/concord/internal/tlsutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
)

// TLS on the node's ports (internal/tlsutil builds the configurations):
//   - client port: tlsutil.Listener does the handshake, then the cmux
//     splits gRPC (served with tlsutil.AcceptedCredentials, so calls see
//     their client certificate) from HTTP (the JSON gateway, /health);
//   - peer port: the peer gRPC server and every dial to a peer (transport,
//     join, members) use mutual TLS credentials;
//   - metrics port: TLS with the client port's configuration when its URL
//     is https://.
// The node's own calls to its client port (the gateway, Lock and
// Election) present the node's certificate and accept only it.

// nodeTLS is a node's TLS sources; nil where the port is plain.
type nodeTLS struct {
	client, peer *tlsutil.Source
}

// setupTLS loads (and, with auto-tls, first writes into the data dir's
// fixtures/, etcd's place) the certificates of the client and peer ports.
// It runs before the node dials or listens; file-based ports load first,
// so that a bad file fails the start before anything is written.
func (n *Node) setupTLS() error {
	ports := []struct {
		name, prefix string
		opts         tlsutil.Options
		urls         []string
		out          **tlsutil.Source
	}{
		{"client", "", n.cfg.ClientTLS, append(slices.Clone(n.cfg.ListenClientURLs), n.cfg.AdvertiseClientURLs...), &n.tls.client},
		{"peer", "peer-", n.cfg.PeerTLS, append(slices.Clone(n.cfg.ListenPeerURLs), n.cfg.InitialAdvertisePeerURLs...), &n.tls.peer},
	}
	for _, fromFiles := range []bool{true, false} {
		for _, p := range ports {
			if !p.opts.Enabled() || (p.opts.CertFile != "") != fromFiles {
				continue
			}
			s, err := tlsutil.New(tlsutil.Config{
				Port: p.name, Options: p.opts, FlagPrefix: p.prefix,
				AutoDir: filepath.Join(n.cfg.DataDir, "fixtures", p.name),
				Hosts:   urlHosts(p.urls),
				Logger:  n.log,
			})
			if err != nil {
				return fmt.Errorf("server: %s TLS: %w", p.name, err)
			}
			*p.out = s
		}
	}
	if s := n.tls.client; s != nil && n.cfg.ClientTLS.ClientCertAuth && !allowsClientAuth(s.Leaf()) {
		n.log.Warn("--client-cert-auth is on but --cert-file does not allow client authentication (extended key usage clientAuth): the JSON gateway and the Lock and Election services, which call this node's own client port with it, will be refused")
	}
	return nil
}

func allowsClientAuth(c *x509.Certificate) bool {
	return len(c.ExtKeyUsage) == 0 || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageClientAuth) || slices.Contains(c.ExtKeyUsage, x509.ExtKeyUsageAny)
}

// urlHosts are the hosts of urls that a certificate can name (not the
// unspecified address or an empty host).
func urlHosts(urls []string) []string {
	var out []string
	for _, u := range urls {
		p, err := url.Parse(u)
		if err != nil {
			continue
		}
		h := p.Hostname()
		if ip := net.ParseIP(h); h == "" || (ip != nil && ip.IsUnspecified()) {
			continue
		}
		if !slices.Contains(out, h) {
			out = append(out, h)
		}
	}
	return out
}

// peerCredentials are the credentials of every dial to a peer.
func (n *Node) peerCredentials() credentials.TransportCredentials {
	if n.tls.peer == nil {
		return insecure.NewCredentials()
	}
	return n.tls.peer.ClientCredentials()
}

// peerTLSOptions are the peer gRPC server's TLS options.
func (n *Node) peerTLSOptions() []grpc.ServerOption {
	if n.tls.peer == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(n.tls.peer.ServerCredentials())}
}

// clientTLSOptions are the client gRPC server's TLS options: the
// handshake is the client listener's (see serveClient).
func (n *Node) clientTLSOptions() []grpc.ServerOption {
	if n.tls.client == nil {
		return nil
	}
	return []grpc.ServerOption{grpc.Creds(tlsutil.AcceptedCredentials())}
}

// loopbackTLS is the client configuration of the node's calls to its own
// client port; nil when the port is plain.
func (n *Node) loopbackTLS() *tls.Config {
	if n.tls.client == nil {
		return nil
	}
	return n.tls.client.LoopbackClientConfig()
}

// loopbackCredentials are loopbackTLS as gRPC credentials.
func (n *Node) loopbackCredentials() credentials.TransportCredentials {
	if n.tls.client == nil {
		return insecure.NewCredentials()
	}
	return credentials.NewTLS(n.tls.client.LoopbackClientConfig())
}

// validateTLS checks the TLS options of c and that the URLs' schemes agree
// with them: https:// exactly when the port has a certificate.
func (c *Config) validateTLS() error {
	if err := c.ClientTLS.Validate(""); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	if err := c.PeerTLS.Validate("peer-"); err != nil {
		return fmt.Errorf("server: %w", err)
	}
	for _, f := range []struct {
		flag string
		urls []string
		tls  bool
	}{
		{"--listen-client-urls", c.ListenClientURLs, c.ClientTLS.Enabled()},
		{"--advertise-client-urls", c.AdvertiseClientURLs, c.ClientTLS.Enabled()},
		{"--listen-peer-urls", c.ListenPeerURLs, c.PeerTLS.Enabled()},
		{"--initial-advertise-peer-urls", c.InitialAdvertisePeerURLs, c.PeerTLS.Enabled()},
	} {
		for _, u := range f.urls {
			https := strings.HasPrefix(u, "https://")
			switch {
			case https && !f.tls:
				return fmt.Errorf("server: %s has %s but its port has no certificate: give --%scert-file and --%skey-file, or --%sauto-tls",
					f.flag, u, peerPrefix(f.flag), peerPrefix(f.flag), peerPrefix(f.flag))
			case !https && f.tls:
				return fmt.Errorf("server: %s has %s, not https://, but its port has TLS options", f.flag, u)
			}
		}
	}
	for _, u := range c.ListenMetricsURLs {
		if strings.HasPrefix(u, "https://") && !c.ClientTLS.Enabled() {
			return fmt.Errorf("server: --listen-metrics-urls has %s, which uses the client port's TLS options, but there are none", u)
		}
	}
	return nil
}

func peerPrefix(flag string) string {
	if strings.Contains(flag, "peer") {
		return "peer-"
	}
	return ""
}
