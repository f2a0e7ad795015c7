package tlsutil

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// pki is a CA with a node and a client certificate ("alice") in dir.
type pki struct{ dir, caKey string }

func newPKI(t *testing.T) pki {
	t.Helper()
	p := pki{dir: t.TempDir()}
	p.caKey = filepath.Join(t.TempDir(), "ca.key")
	if err := CreateCA(p.dir, p.caKey, CALifetime, false); err != nil {
		t.Fatal(err)
	}
	if err := CreateNode(p.dir, p.caKey, []string{"db.example.com", "10.1.2.3"}, CertLifetime, false); err != nil {
		t.Fatal(err)
	}
	if err := CreateClient(p.dir, p.caKey, "alice", CertLifetime, false); err != nil {
		t.Fatal(err)
	}
	return p
}

func (p pki) path(name string) string { return filepath.Join(p.dir, name) }

func (p pki) nodeOptions() Options {
	return Options{CertFile: p.path(NodeCertName), KeyFile: p.path(NodeKeyName), TrustedCAFile: p.path(CACertName), ClientCertAuth: true}
}

// clientTLS is what a user's client configures: the CA, and a client
// certificate unless user is "".
func (p pki) clientTLS(t *testing.T, user string) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(p.path(CACertName))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	c := &tls.Config{RootCAs: pool, ServerName: "localhost"}
	if user != "" {
		cert, err := tls.LoadX509KeyPair(p.path(ClientCertName(user)), p.path(ClientKeyName(user)))
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

func newSource(t *testing.T, o Options, log *slog.Logger) *Source {
	t.Helper()
	s, err := New(Config{Port: "client", Options: o, AutoDir: filepath.Join(t.TempDir(), "auto"), Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// echo serves l: each connection's first byte is written back.
func echo(t *testing.T, l net.Listener) {
	t.Helper()
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				b := make([]byte, 1)
				if _, err := io.ReadFull(c, b); err == nil {
					_, _ = c.Write(b)
				}
			}()
		}
	}()
}

// roundTrip connects, sends a byte and reads it back: with TLS 1.3 a
// refused client certificate shows only then, not at the client's
// handshake.
func roundTrip(addr string, cfg *tls.Config) (tls.ConnectionState, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
	if err != nil {
		return tls.ConnectionState{}, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{'x'}); err != nil {
		return tls.ConnectionState{}, err
	}
	b := make([]byte, 1)
	if _, err := io.ReadFull(c, b); err != nil {
		return tls.ConnectionState{}, err
	}
	return c.ConnectionState(), nil
}

func listen(t *testing.T, s *Source) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, s.Listener(l))
	return l.Addr().String()
}

func TestServerFromFilesRequiresAVerifiedClientCert(t *testing.T) {
	p := newPKI(t)
	addr := listen(t, newSource(t, p.nodeOptions(), nil))

	st, err := roundTrip(addr, p.clientTLS(t, "alice"))
	if err != nil {
		t.Fatalf("client with a certificate from the CA: %v", err)
	}
	if cn := st.PeerCertificates[0].Subject.CommonName; cn != "node" {
		t.Fatalf("server presented CN %q, want node", cn)
	}
	if _, err := roundTrip(addr, p.clientTLS(t, "")); err == nil {
		t.Fatal("client without a certificate was served")
	}
	other := newPKI(t)
	cfg := other.clientTLS(t, "alice")
	cfg.RootCAs = p.clientTLS(t, "").RootCAs // trusts the server, but its cert is from another CA
	if _, err := roundTrip(addr, cfg); err == nil {
		t.Fatal("client with a certificate from another CA was served")
	}
	// The node certificate names the hosts given, localhost and 127.0.0.1.
	leaf := st.PeerCertificates[0]
	for _, h := range []string{"db.example.com", "10.1.2.3", "localhost", "127.0.0.1"} {
		if err := leaf.VerifyHostname(h); err != nil {
			t.Errorf("node cert: %v", err)
		}
	}
}

func TestMinVersionAndCipherSuites(t *testing.T) {
	p := newPKI(t)
	o := p.nodeOptions()
	o.ClientCertAuth, o.TrustedCAFile = false, ""
	o.MinVersion = "TLS1.3"
	addr := listen(t, newSource(t, o, nil))
	cfg := p.clientTLS(t, "")
	cfg.MaxVersion = tls.VersionTLS12
	if _, err := roundTrip(addr, cfg); err == nil {
		t.Fatal("a TLS 1.2 client was served with --tls-min-version TLS1.3")
	}

	o.MinVersion = ""
	o.CipherSuites = []string{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384"}
	addr = listen(t, newSource(t, o, nil))
	cfg = p.clientTLS(t, "")
	cfg.MaxVersion = tls.VersionTLS12
	st, err := roundTrip(addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 {
		t.Fatalf("negotiated %s", tls.CipherSuiteName(st.CipherSuite))
	}
	cfg.CipherSuites = []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}
	if _, err := roundTrip(addr, cfg); err == nil {
		t.Fatal("a client offering only a suite outside --cipher-suites was served")
	}
}

func TestAutoTLSGeneratesOnceAndServes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "fixtures", "client")
	s, err := New(Config{Port: "client", Options: Options{AutoTLS: true}, AutoDir: dir, Hosts: []string{"node1.local"}})
	if err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Leaf().VerifyHostname("node1.local"); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	echo(t, s.Listener(l))
	if _, err := roundTrip(l.Addr().String(), &tls.Config{InsecureSkipVerify: true}); err != nil {
		t.Fatal(err)
	}
	// Against a CA-verifying client the self-signed certificate fails.
	if _, err := roundTrip(l.Addr().String(), &tls.Config{RootCAs: x509.NewCertPool(), ServerName: "localhost"}); err == nil {
		t.Fatal("a self-signed auto-tls certificate verified against an empty pool")
	}
	// A restart keeps the certificate.
	if _, err := New(Config{Port: "client", Options: Options{AutoTLS: true}, AutoDir: dir}); err != nil {
		t.Fatal(err)
	}
	again, _ := os.ReadFile(filepath.Join(dir, "cert.pem"))
	if !bytes.Equal(first, again) {
		t.Fatal("a second start regenerated the auto-tls certificate")
	}
}

func TestRotationServesTheNewCertAndCA(t *testing.T) {
	p := newPKI(t)
	s := newSource(t, p.nodeOptions(), nil)
	s.checkInterval = 0
	addr := listen(t, s)
	st, err := roundTrip(addr, p.clientTLS(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := st.PeerCertificates[0].SerialNumber

	if err := CreateNode(p.dir, p.caKey, nil, CertLifetime, true /* overwrite */); err != nil {
		t.Fatal(err)
	}
	st, err = roundTrip(addr, p.clientTLS(t, "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if st.PeerCertificates[0].SerialNumber.Cmp(oldSerial) == 0 {
		t.Fatal("the handshake after rewriting node.crt presented the old certificate")
	}

	// A new CA: a client certified by it is refused until the trusted CA
	// file changes, then served.
	next := newPKI(t)
	nextClient := next.clientTLS(t, "alice")
	nextClient.RootCAs = p.clientTLS(t, "").RootCAs
	if _, err := roundTrip(addr, nextClient); err == nil {
		t.Fatal("a client of a CA not yet trusted was served")
	}
	bundle, err := os.ReadFile(p.path(CACertName))
	if err != nil {
		t.Fatal(err)
	}
	nextCA, _ := os.ReadFile(next.path(CACertName))
	if err := writeFile(p.path(CACertName), append(bundle, nextCA...), 0o644, true); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(addr, nextClient); err != nil {
		t.Fatalf("a client of the CA just added to the trusted file: %v", err)
	}

	// A broken rewrite keeps the last good certificate.
	if err := writeFile(p.path(NodeCertName), []byte("garbage"), 0o644, true); err != nil {
		t.Fatal(err)
	}
	if _, err := roundTrip(addr, p.clientTLS(t, "alice")); err != nil {
		t.Fatalf("after a bad rewrite: %v", err)
	}
}

func TestReloadIsCheckedAtMostEveryInterval(t *testing.T) {
	p := newPKI(t)
	s := newSource(t, p.nodeOptions(), nil)
	s.checkInterval = time.Hour
	before := s.Leaf().SerialNumber
	if err := CreateNode(p.dir, p.caKey, nil, CertLifetime, true); err != nil {
		t.Fatal(err)
	}
	if s.Leaf().SerialNumber.Cmp(before) != 0 {
		t.Fatal("reloaded before the check interval passed")
	}
	s.mu.Lock()
	s.mu.checked = time.Time{}
	s.mu.Unlock()
	if s.Leaf().SerialNumber.Cmp(before) == 0 {
		t.Fatal("not reloaded once the check interval passed")
	}
}

// lockedBuffer collects log output from several goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestRefusedHandshakesAreLoggedWithoutAStorm(t *testing.T) {
	p := newPKI(t)
	var buf lockedBuffer
	addr := listen(t, newSource(t, p.nodeOptions(), slog.New(slog.NewTextHandler(&buf, nil))))
	for range 20 {
		if _, err := roundTrip(addr, p.clientTLS(t, "")); err == nil {
			t.Fatal("client without a certificate was served")
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "TLS handshake refused") && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := strings.Count(buf.String(), "TLS handshake refused"); n != 1 {
		t.Fatalf("%d log lines for 20 refused handshakes within %v, want 1:\n%s", n, rejectLogInterval, buf.String())
	}
	if !strings.Contains(buf.String(), "certificate") {
		t.Fatalf("the log line does not say why:\n%s", buf.String())
	}
}

func TestRateLogCountsWhatItHoldsBack(t *testing.T) {
	var r rateLog
	t0 := time.Unix(1000, 0)
	if ok, _ := r.allow(t0); !ok {
		t.Fatal("first line held back")
	}
	for i := range 3 {
		if ok, _ := r.allow(t0.Add(time.Duration(i+1) * time.Second)); ok {
			t.Fatal("a line within the interval let through")
		}
	}
	ok, n := r.allow(t0.Add(rejectLogInterval))
	if !ok || n != 3 {
		t.Fatalf("after the interval: ok %v, suppressed %d, want true, 3", ok, n)
	}
}

func TestAllowedCN(t *testing.T) {
	p := newPKI(t)
	if err := CreateClient(p.dir, p.caKey, "node2", CertLifetime, false); err != nil {
		t.Fatal(err)
	}
	o := p.nodeOptions()
	o.AllowedCN = "alice"
	addr := listen(t, newSource(t, o, nil))
	if _, err := roundTrip(addr, p.clientTLS(t, "alice")); err != nil {
		t.Fatalf("the allowed CN: %v", err)
	}
	if _, err := roundTrip(addr, p.clientTLS(t, "node2")); err == nil {
		t.Fatal("a certificate of the right CA with another CN was served")
	}
}

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		o    Options
		want string
	}{
		{Options{CertFile: "c"}, "--peer-key-file"},
		{Options{KeyFile: "k"}, "--peer-cert-file"},
		{Options{CertFile: "c", KeyFile: "k", ClientCertAuth: true}, "--peer-trusted-ca-file"},
		{Options{TrustedCAFile: "ca"}, "has no certificate"},
		{Options{CertFile: "c", KeyFile: "k", TrustedCAFile: "ca", AllowedCN: "x"}, "--peer-client-cert-auth"},
		{Options{AutoTLS: true, CipherSuites: []string{"TLS_NOPE"}}, `unknown cipher suite "TLS_NOPE"`},
		{Options{AutoTLS: true, MinVersion: "TLS1.1"}, "TLS1.1"},
		{Options{AutoTLS: true, MinVersion: "TLS1.3", CipherSuites: []string{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"}}, "cannot be set"},
	} {
		err := tc.o.Validate("peer-")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: got %v, want an error with %q", tc.o, err, tc.want)
		}
	}
	if err := (Options{}).Validate(""); err != nil {
		t.Errorf("no TLS: %v", err)
	}
}

func TestNewFailsOnBadFiles(t *testing.T) {
	p := newPKI(t)
	o := p.nodeOptions()
	o.KeyFile = p.path(ClientKeyName("alice")) // not node.crt's key
	if _, err := New(Config{Port: "client", Options: o}); err == nil {
		t.Fatal("a certificate with another certificate's key loaded")
	}
	o = p.nodeOptions()
	o.TrustedCAFile = p.path(NodeKeyName)
	if _, err := New(Config{Port: "client", Options: o}); err == nil || !strings.Contains(err.Error(), "no PEM certificate") {
		t.Fatalf("a key as the CA file: %v", err)
	}
}

func TestParseCipherSuites(t *testing.T) {
	got, err := ParseCipherSuites(" TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256 ,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
	if err != nil {
		t.Fatal(err)
	}
	want := []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}
	if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("got %v, want %v", got, want)
	}
	for in, want := range map[string]string{
		"TLS_RSA_WITH_RC4_128_SHA":               "insecure",
		"TLS_AES_128_GCM_SHA256":                 "TLS 1.3 suite",
		"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,": "empty name",
		"aes":                                    "unknown",
	} {
		if _, err := ParseCipherSuites(in); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error with %q", in, err, want)
		}
	}
}

func TestCreateRefusesToOverwrite(t *testing.T) {
	p := newPKI(t)
	nodeCert, _ := os.ReadFile(p.path(NodeCertName))
	for name, err := range map[string]error{
		"ca":     CreateCA(p.dir, p.caKey, CALifetime, false),
		"node":   CreateNode(p.dir, p.caKey, nil, CertLifetime, false),
		"client": CreateClient(p.dir, p.caKey, "alice", CertLifetime, false),
	} {
		if !errors.Is(err, ErrExists) {
			t.Errorf("%s: got %v, want ErrExists", name, err)
		}
	}
	if again, _ := os.ReadFile(p.path(NodeCertName)); !bytes.Equal(again, nodeCert) {
		t.Fatal("a refused create-node changed node.crt")
	}
	if err := CreateClient(p.dir, p.caKey, "../x", CertLifetime, false); err == nil {
		t.Fatal("a user name with a path separator was accepted")
	}
	other := newPKI(t)
	if err := CreateClient(p.dir, other.caKey, "bob", CertLifetime, false); err == nil || !strings.Contains(err.Error(), "not the key of the CA") {
		t.Fatalf("signing with another CA's key: %v", err)
	}
	if fi, err := os.Stat(p.caKey); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("CA key mode: %v %v", fi.Mode(), err)
	}
}

func TestParseHosts(t *testing.T) {
	dns, ips, err := ParseHosts([]string{"DB.example.com.", "[::1]", "10.0.0.1", "*.svc.local", "db.example.com", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(dns, ",") != "db.example.com,*.svc.local" || len(ips) != 2 {
		t.Fatalf("dns %v ips %v", dns, ips)
	}
	for _, bad := range []string{"", "a..b", "-a.com", "a_b.com", "[10.0.0.1", "*", "a/b"} {
		if _, _, err := ParseHosts([]string{bad}); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestVerifiedCommonNameWithoutTLS(t *testing.T) {
	if cn, ok := VerifiedCommonName(context.Background()); ok || cn != "" {
		t.Fatalf("got %q, %v without a peer", cn, ok)
	}
}
