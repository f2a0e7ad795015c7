package main

import (
	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/internal/tlsutil"
	"github.com/spf13/pflag"
)

// tlsFlags are etcd's TLS flags of concord start. --cipher-suites and
// --tls-min-version apply to both ports, as in etcd.
type tlsFlags struct {
	client, peer tlsutil.Options
	cipherSuites []string
	minVersion   string
}

func addTLSFlags(f *pflag.FlagSet) *tlsFlags {
	t := &tlsFlags{}
	c, p := &t.client, &t.peer
	f.StringVar(&c.CertFile, "cert-file", "", "path to the client server TLS cert file")
	f.StringVar(&c.KeyFile, "key-file", "", "path to the client server TLS key file")
	f.StringVar(&c.TrustedCAFile, "trusted-ca-file", "", "path to the client server TLS trusted CA cert file")
	f.BoolVar(&c.ClientCertAuth, "client-cert-auth", false, "enable client cert authentication (certificates verified against --trusted-ca-file)")
	f.BoolVar(&c.AutoTLS, "auto-tls", false, "client TLS using generated certificates (in the data dir's fixtures/client)")
	f.StringVar(&p.CertFile, "peer-cert-file", "", "path to the peer server TLS cert file")
	f.StringVar(&p.KeyFile, "peer-key-file", "", "path to the peer server TLS key file")
	f.StringVar(&p.TrustedCAFile, "peer-trusted-ca-file", "", "path to the peer server TLS trusted CA file")
	f.BoolVar(&p.ClientCertAuth, "peer-client-cert-auth", false, "enable peer client cert authentication")
	f.BoolVar(&p.AutoTLS, "peer-auto-tls", false, "peer TLS using generated certificates (in the data dir's fixtures/peer)")
	f.StringVar(&p.AllowedCN, "peer-cert-allowed-cn", "", "allowed CN for inter peer authentication")
	f.StringSliceVar(&t.cipherSuites, "cipher-suites", nil, "comma-separated list of supported TLS cipher suites between client/server and peers (empty will be auto-populated by Go)")
	f.StringVar(&t.minVersion, "tls-min-version", "TLS1.2", "minimum TLS version supported by the client and peer ports: TLS1.2 or TLS1.3")
	return t
}

// apply copies the flags into cfg.
func (t *tlsFlags) apply(cfg *server.Config) {
	cfg.ClientTLS, cfg.PeerTLS = t.client, t.peer
	cfg.ClientTLS.CipherSuites, cfg.PeerTLS.CipherSuites = t.cipherSuites, t.cipherSuites
	cfg.ClientTLS.MinVersion, cfg.PeerTLS.MinVersion = t.minVersion, t.minVersion
}
