package tlsutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Tunables.
const (
	// reloadCheckInterval is how often, at most, a handshake stats the
	// certificate files to see whether they changed: rotation shows within
	// a second, and a busy port stats three files a second, not per
	// connection.
	reloadCheckInterval = time.Second
	// rejectLogInterval spaces the log lines about refused handshakes (and
	// failed reloads): a misconfigured client retrying in a loop logs one
	// line per interval with the count of the others, not a storm.
	rejectLogInterval = 10 * time.Second
	// handshakeTimeout bounds a TLS handshake on a Listener's connection,
	// so that connections that open and say nothing do not pile up.
	handshakeTimeout = 10 * time.Second
)

// Config is what New needs.
type Config struct {
	// Port names the port in log lines ("client", "peer", "metrics").
	Port string
	// Options are the port's flags; New validates them.
	Options Options
	// FlagPrefix names the flags in errors: "" or "peer-".
	FlagPrefix string
	// AutoDir is where AutoTLS writes its certificate when Options has no
	// CertFile (etcd's <data-dir>/fixtures/client or fixtures/peer).
	AutoDir string
	// Hosts are the names and addresses an AutoTLS certificate is issued
	// for (localhost and 127.0.0.1 are added).
	Hosts []string
	// Logger receives reload and refused-handshake lines; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Source is one port's certificates. New loads them; every configuration
// built from the Source reads the current ones at each handshake, which
// reloads them when one of their files changed (stat checked at most every
// reloadCheckInterval). A file that fails to load keeps the previous
// certificates in use, logged. A Source is safe for concurrent use.
type Source struct {
	port        string
	opts        Options
	certFile    string
	keyFile     string
	verifyPeers bool // false for AutoTLS: etcd verifies nobody's certificate then
	suites      []uint16
	minVersion  uint16
	log         *slog.Logger

	// checkInterval is reloadCheckInterval (tests shorten it).
	checkInterval time.Duration

	mu struct {
		sync.Mutex
		checked time.Time
		// files are the stats of certFile, keyFile and TrustedCAFile (nil
		// when unset) at the last load.
		files [3]os.FileInfo
		cur   *material
	}
	rejects, reloadErrs rateLog
}

// material is one load of a Source's files. It is immutable.
type material struct {
	cert *tls.Certificate // Leaf is set
	pool *x509.CertPool   // nil without TrustedCAFile
	// prevLeaf is the DER of the certificate before the last reload: a
	// node's calls to itself accept it during the handshake that races
	// the reload.
	prevLeaf []byte
}

// New validates cfg.Options, writes the AutoTLS certificate if one is
// needed and missing, and loads the files. It fails if the port has no
// TLS (Options.Enabled) or a file is missing or bad.
func New(cfg Config) (*Source, error) {
	o := cfg.Options
	if err := o.Validate(cfg.FlagPrefix); err != nil {
		return nil, err
	}
	if !o.Enabled() {
		return nil, fmt.Errorf("tlsutil: the %s port has no TLS options", cfg.Port)
	}
	s := &Source{
		port: cfg.Port, opts: o, certFile: o.CertFile, keyFile: o.KeyFile, verifyPeers: true,
		log: cfg.Logger, checkInterval: reloadCheckInterval,
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.minVersion, _ = ParseVersion(o.MinVersion) // checked by Validate
	s.suites, _ = ParseCipherSuites(strings.Join(o.CipherSuites, ","))
	if s.certFile == "" {
		if cfg.AutoDir == "" {
			return nil, fmt.Errorf("tlsutil: --%sauto-tls needs a directory to write its certificate in", cfg.FlagPrefix)
		}
		var err error
		if s.certFile, s.keyFile, err = selfSigned(cfg.AutoDir, cfg.Hosts); err != nil {
			return nil, fmt.Errorf("tlsutil: --%sauto-tls: %w", cfg.FlagPrefix, err)
		}
		s.verifyPeers = false
	}
	files, err := s.stat()
	if err != nil {
		return nil, err
	}
	m, err := s.load(nil)
	if err != nil {
		return nil, err
	}
	s.mu.files, s.mu.cur, s.mu.checked = files, m, time.Now()
	return s, nil
}

// Leaf returns the certificate the port presents now.
func (s *Source) Leaf() *x509.Certificate { return s.current().cert.Leaf }

// current returns the material to use for a handshake now, reloading it
// first if its files changed since the last load.
func (s *Source) current() *material {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if now.Sub(s.mu.checked) < s.checkInterval {
		return s.mu.cur
	}
	s.mu.checked = now
	// Stat before reading: a change after the stat shows at the next check.
	files, err := s.stat()
	if err == nil && sameFiles(files, s.mu.files) {
		return s.mu.cur
	}
	var m *material
	if err == nil {
		m, err = s.load(s.mu.cur)
	}
	if err != nil {
		if ok, n := s.reloadErrs.allow(now); ok {
			s.log.Warn("TLS certificates changed but do not load; keeping the previous ones", "port", s.port, "err", err, "suppressed", n)
		}
		return s.mu.cur
	}
	s.mu.files, s.mu.cur = files, m
	s.log.Info("TLS certificates reloaded", "port", s.port, "subject", m.cert.Leaf.Subject.String(), "not_after", m.cert.Leaf.NotAfter)
	return m
}

func (s *Source) stat() ([3]os.FileInfo, error) {
	var out [3]os.FileInfo
	for i, p := range []string{s.certFile, s.keyFile, s.opts.TrustedCAFile} {
		if p == "" {
			continue
		}
		fi, err := os.Stat(p)
		if err != nil {
			return out, fmt.Errorf("tlsutil: %w", err)
		}
		out[i] = fi
	}
	return out, nil
}

func sameFiles(a, b [3]os.FileInfo) bool {
	for i := range a {
		if (a[i] == nil) != (b[i] == nil) {
			return false
		}
		if a[i] != nil && (!os.SameFile(a[i], b[i]) || !a[i].ModTime().Equal(b[i].ModTime()) || a[i].Size() != b[i].Size()) {
			return false
		}
	}
	return true
}

// load reads the files; prev (nil at first) is the material it replaces.
func (s *Source) load(prev *material) (*material, error) {
	cert, err := tls.LoadX509KeyPair(s.certFile, s.keyFile)
	if err != nil {
		return nil, fmt.Errorf("tlsutil: %s port certificate %s / key %s: %w", s.port, s.certFile, s.keyFile, err)
	}
	if cert.Leaf == nil {
		if cert.Leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil, fmt.Errorf("tlsutil: %s: %w", s.certFile, err)
		}
	}
	m := &material{cert: &cert}
	if prev != nil {
		m.prevLeaf = prev.cert.Certificate[0]
	}
	if f := s.opts.TrustedCAFile; f != "" {
		pemBytes, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("tlsutil: %w", err)
		}
		m.pool = x509.NewCertPool()
		if !m.pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("tlsutil: %s holds no PEM certificate", f)
		}
	}
	if time.Now().After(cert.Leaf.NotAfter) {
		s.log.Warn("TLS certificate has expired", "port", s.port, "file", s.certFile, "not_after", cert.Leaf.NotAfter)
	}
	return m, nil
}

// ServerConfig returns the configuration of a TLS listener on the port:
// each handshake uses the certificates and CA pool current then, requires
// a verified client certificate with ClientCertAuth, and checks AllowedCN.
// nextProtos are the ALPN protocols offered ("h2" for gRPC).
func (s *Source) ServerConfig(nextProtos ...string) *tls.Config {
	return &tls.Config{
		MinVersion: s.minVersion,
		NextProtos: nextProtos,
		GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
			m := s.current()
			c := &tls.Config{
				Certificates: []tls.Certificate{*m.cert},
				MinVersion:   s.minVersion,
				CipherSuites: s.suites,
				NextProtos:   nextProtos,
				ClientCAs:    m.pool,
			}
			if s.opts.ClientCertAuth {
				c.ClientAuth = tls.RequireAndVerifyClientCert
			}
			if s.opts.AllowedCN != "" {
				c.VerifyConnection = s.checkCN
			}
			return c, nil
		},
	}
}

// clientConfig is the configuration of one dial to a peer: it verifies the
// server against the current CA pool (the system's without
// TrustedCAFile; nobody with AutoTLS) and AllowedCN, and presents the
// port's certificate when asked.
func (s *Source) clientConfig() *tls.Config {
	m := s.current()
	c := &tls.Config{
		MinVersion:   s.minVersion,
		CipherSuites: s.suites,
		RootCAs:      m.pool,
		// etcd's --peer-auto-tls: encryption without authentication.
		InsecureSkipVerify: !s.verifyPeers,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return m.cert, nil
		},
	}
	if s.opts.AllowedCN != "" {
		c.VerifyConnection = s.checkCN
	}
	return c
}

// LoopbackClientConfig is the client configuration of a node's calls to
// its own port (the JSON gateway, the Lock and Election services): it
// presents the port's certificate, which client-cert-auth then verifies
// like any client's (so it must allow client authentication), and accepts
// only a server presenting that same certificate. Pinning replaces the CA
// and host name checks, which the address the node dials (perhaps
// 0.0.0.0) could not pass, and works with AutoTLS too.
func (s *Source) LoopbackClientConfig() *tls.Config {
	return &tls.Config{
		MinVersion:   s.minVersion,
		CipherSuites: s.suites,
		// VerifyPeerCertificate pins the node's own certificate instead.
		InsecureSkipVerify: true,
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			m := s.current()
			if len(raw) > 0 && (bytes.Equal(raw[0], m.cert.Certificate[0]) || bytes.Equal(raw[0], m.prevLeaf)) {
				return nil
			}
			return errors.New("tlsutil: this node's own port presented a certificate other than this node's")
		},
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return s.current().cert, nil
		},
	}
}

// checkCN refuses a connection whose verified peer certificate's common
// name is not AllowedCN.
func (s *Source) checkCN(cs tls.ConnectionState) error {
	if len(cs.VerifiedChains) == 0 || len(cs.VerifiedChains[0]) == 0 {
		return fmt.Errorf("tlsutil: --peer-cert-allowed-cn %q: the peer presented no verified certificate", s.opts.AllowedCN)
	}
	if cn := cs.VerifiedChains[0][0].Subject.CommonName; cn != s.opts.AllowedCN {
		return fmt.Errorf("tlsutil: peer certificate common name %q is not the allowed %q (--peer-cert-allowed-cn)", cn, s.opts.AllowedCN)
	}
	return nil
}

// logReject logs a refused handshake, at most one line per
// rejectLogInterval. A connection closed before its first byte (a port
// probe) is not logged.
func (s *Source) logReject(remote net.Addr, err error) {
	if errors.Is(err, io.EOF) {
		return
	}
	if ok, n := s.rejects.allow(time.Now()); ok {
		addr := ""
		if remote != nil {
			addr = remote.String()
		}
		s.log.Warn("TLS handshake refused", "port", s.port, "remote", addr, "err", err, "suppressed", n)
	}
}

// rateLog lets one log line through per rejectLogInterval and counts the
// ones it holds back.
type rateLog struct {
	mu         sync.Mutex
	last       time.Time
	suppressed int
}

// allow reports whether to log now, and how many lines were held back
// since the last one let through.
func (r *rateLog) allow(now time.Time) (bool, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.last.IsZero() && now.Sub(r.last) < rejectLogInterval {
		r.suppressed++
		return false, 0
	}
	n := r.suppressed
	r.last, r.suppressed = now, 0
	return true, n
}

// Listener wraps l: every accepted connection is a TLS server connection
// with ServerConfig(nextProtos...), whose handshake runs on its first Read
// (on the reading goroutine, not in Accept), bounded by handshakeTimeout;
// a refused handshake is logged (rate-limited) and fails that Read.
func (s *Source) Listener(l net.Listener, nextProtos ...string) net.Listener {
	return &listener{Listener: l, s: s, cfg: s.ServerConfig(nextProtos...)}
}

type listener struct {
	net.Listener
	s   *Source
	cfg *tls.Config
}

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &serverConn{Conn: tls.Server(c, l.cfg), s: l.s}, nil
}

// serverConn is a Listener's connection.
type serverConn struct {
	*tls.Conn
	s    *Source
	once sync.Once
	err  error // the handshake's, set once
}

func (c *serverConn) Read(p []byte) (int, error) {
	c.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), handshakeTimeout)
		defer cancel()
		if c.err = c.Conn.HandshakeContext(ctx); c.err != nil {
			c.s.logReject(c.Conn.RemoteAddr(), c.err)
		}
	})
	if c.err != nil {
		return 0, c.err
	}
	return c.Conn.Read(p)
}
