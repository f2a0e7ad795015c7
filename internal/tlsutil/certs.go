package tlsutil

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// Lifetimes of the certificates this package creates. A CA outlives the
// certificates it signs, so that they can be renewed under it.
const (
	// CALifetime is a CA's (CockroachDB's default too).
	CALifetime = 10 * 365 * 24 * time.Hour
	// CertLifetime is a node or client certificate's.
	CertLifetime = 5 * 365 * 24 * time.Hour
	// autoLifetime is an --auto-tls certificate's, etcd's one year.
	autoLifetime = 365 * 24 * time.Hour
	// backdate is how long before its creation a certificate becomes valid,
	// so that a node whose clock is a little behind accepts it at once.
	backdate = time.Hour
)

// File names in a certs directory, CockroachDB's.
const (
	CACertName   = "ca.crt"
	NodeCertName = "node.crt"
	NodeKeyName  = "node.key"
)

// ClientCertName and ClientKeyName are the file names of user's client
// certificate and key in a certs directory.
func ClientCertName(user string) string { return "client." + user + ".crt" }

// ClientKeyName: see ClientCertName.
func ClientKeyName(user string) string { return "client." + user + ".key" }

// ErrExists is returned (wrapped, naming the file) when a file to create
// exists and overwriting was not asked for.
var ErrExists = errors.New("tlsutil: file exists (pass --overwrite to replace it)")

// CreateCA writes a new CA: its certificate to certsDir/ca.crt and its key
// to caKeyPath (mode 0600; keep it out of the certs directory nodes are
// given). Nothing is written if a file exists, unless overwrite.
func CreateCA(certsDir, caKeyPath string, lifetime time.Duration, overwrite bool) error {
	certPath := filepath.Join(certsDir, CACertName)
	if err := checkFree(overwrite, certPath, caKeyPath); err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl, err := template("Concord CA", lifetime)
	if err != nil {
		return err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return err
	}
	return writePair(certsDir, certPath, der, caKeyPath, key, overwrite)
}

// CreateNode writes certsDir/node.crt and node.key, signed by the CA of
// certsDir/ca.crt and caKeyPath, for the given host names and IP
// addresses plus localhost and 127.0.0.1. Its common name is "node" and it
// serves both as a server and as a client certificate: a node presents it
// to clients, to its peers, and to its own client port (the JSON gateway).
func CreateNode(certsDir, caKeyPath string, hosts []string, lifetime time.Duration, overwrite bool) error {
	dns, ips, err := ParseHosts(append(slices.Clone(hosts), "localhost", "127.0.0.1"))
	if err != nil {
		return err
	}
	return createSigned(certsDir, caKeyPath, NodeCertName, NodeKeyName, "node", lifetime, overwrite, func(t *x509.Certificate) {
		t.DNSNames, t.IPAddresses = dns, ips
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	})
}

// CreateClient writes certsDir/client.USER.crt and .key, signed by the CA
// of certsDir/ca.crt and caKeyPath, with common name user: the user name
// that etcd's --client-cert-auth takes from it.
func CreateClient(certsDir, caKeyPath, user string, lifetime time.Duration, overwrite bool) error {
	if err := checkUser(user); err != nil {
		return err
	}
	return createSigned(certsDir, caKeyPath, ClientCertName(user), ClientKeyName(user), user, lifetime, overwrite, func(t *x509.Certificate) {
		t.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	})
}

// checkUser refuses a user name that cannot be a file name part or an etcd
// user: empty, with a path separator or a control character.
func checkUser(user string) error {
	if user == "" || user == "." || user == ".." || strings.ContainsAny(user, `/\`) || strings.ContainsFunc(user, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("tlsutil: %q is not a user name (no path separators or control characters)", user)
	}
	return nil
}

// ParseHosts splits host arguments into DNS names and IP addresses for a
// certificate's subject alternative names, without duplicates. An IPv6
// address may be bracketed ("[::1]"); a DNS name may start with a
// wildcard label ("*.example.com"). Anything else is an error naming it.
func ParseHosts(hosts []string) (dns []string, ips []net.IP, err error) {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if ip := net.ParseIP(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]")); ip != nil && (!strings.HasPrefix(h, "[") || strings.HasSuffix(h, "]")) {
			if !containsIP(ips, ip) {
				ips = append(ips, ip)
			}
			continue
		}
		name := strings.ToLower(strings.TrimSuffix(h, "."))
		if !validDNSName(name) {
			return nil, nil, fmt.Errorf("tlsutil: %q is neither an IP address nor a host name", h)
		}
		if !slices.Contains(dns, name) {
			dns = append(dns, name)
		}
	}
	return dns, ips, nil
}

func containsIP(ips []net.IP, ip net.IP) bool {
	for _, x := range ips {
		if x.Equal(ip) {
			return true
		}
	}
	return false
}

// validDNSName checks name (lower case, no trailing dot) against RFC 1123
// labels, allowing a leading "*" label.
func validDNSName(name string) bool {
	if name == "" || len(name) > 253 {
		return false
	}
	// An all-numeric top label is an IP address ("10.0.0.1."), not a name.
	if tld := name[strings.LastIndexByte(name, '.')+1:]; strings.Trim(tld, "0123456789") == "" {
		return false
	}
	for i, label := range strings.Split(name, ".") {
		if i == 0 && label == "*" && strings.Contains(name, ".") {
			continue
		}
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for _, r := range label {
			if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
				return false
			}
		}
	}
	return true
}

// selfSigned writes an --auto-tls certificate and key into dir (cert.pem
// and key.pem, etcd's names) unless both exist already, and returns their
// paths.
func selfSigned(dir string, hosts []string) (certPath, keyPath string, err error) {
	certPath, keyPath = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if fileExists(certPath) && fileExists(keyPath) {
		return certPath, keyPath, nil
	}
	dns, ips, err := ParseHosts(append(slices.Clone(hosts), "localhost", "127.0.0.1"))
	if err != nil {
		return "", "", err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", err
	}
	tmpl, err := template("concord auto-tls", autoLifetime)
	if err != nil {
		return "", "", err
	}
	tmpl.DNSNames, tmpl.IPAddresses = dns, ips
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return "", "", err
	}
	if err := writePair(dir, certPath, der, keyPath, key, true /* overwrite */); err != nil {
		return "", "", err
	}
	return certPath, keyPath, nil
}

// createSigned signs a new key's certificate with the CA of
// certsDir/ca.crt and caKeyPath; shape fills the template's names and uses.
func createSigned(certsDir, caKeyPath, certName, keyName, cn string, lifetime time.Duration, overwrite bool, shape func(*x509.Certificate)) error {
	certPath, keyPath := filepath.Join(certsDir, certName), filepath.Join(certsDir, keyName)
	if err := checkFree(overwrite, certPath, keyPath); err != nil {
		return err
	}
	ca, caKey, err := loadCA(filepath.Join(certsDir, CACertName), caKeyPath)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl, err := template(cn, lifetime)
	if err != nil {
		return err
	}
	if tmpl.NotAfter.After(ca.NotAfter) {
		// A certificate valid after its CA would fail verification then.
		tmpl.NotAfter = ca.NotAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	shape(tmpl)
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		return err
	}
	return writePair(certsDir, certPath, der, keyPath, key, overwrite)
}

// loadCA reads a CA certificate and its key, and checks that they match.
func loadCA(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA certificate: %w (create it with concord cert create-ca)", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, nil, fmt.Errorf("tlsutil: %s holds no PEM certificate", certPath)
	}
	ca, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: %s: %w", certPath, err)
	}
	if !ca.IsCA {
		return nil, nil, fmt.Errorf("tlsutil: %s is not a CA certificate", certPath)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, fmt.Errorf("tlsutil: CA key: %w", err)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil {
		return nil, nil, fmt.Errorf("tlsutil: %s holds no PEM key", keyPath)
	}
	k, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		if k, err = x509.ParseECPrivateKey(kb.Bytes); err != nil {
			return nil, nil, fmt.Errorf("tlsutil: %s: %w", keyPath, err)
		}
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("tlsutil: %s: unsupported key type %T", keyPath, k)
	}
	pub, err := x509.MarshalPKIXPublicKey(signer.Public())
	if err != nil {
		return nil, nil, err
	}
	if caPub, err := x509.MarshalPKIXPublicKey(ca.PublicKey); err != nil || !bytes.Equal(pub, caPub) {
		return nil, nil, fmt.Errorf("tlsutil: %s is not the key of the CA in %s", keyPath, certPath)
	}
	return ca, signer, nil
}

// template is a certificate template with a random 128-bit serial number
// and the given lifetime from now (backdated).
func template(cn string, lifetime time.Duration) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	return &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"Concord"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     now.Add(lifetime),
	}, nil
}

// checkFree returns ErrExists, naming the file, if one of paths exists and
// overwrite is off: checked before anything is written, so a refused
// command leaves no half-written pair.
func checkFree(overwrite bool, paths ...string) error {
	if overwrite {
		return nil
	}
	for _, p := range paths {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("%w: %s", ErrExists, p)
		} else if !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// writePair writes a certificate (0644) and its PKCS #8 key (0600). Each
// file is written to a temporary name and renamed, so a reloading server
// never reads half a file.
func writePair(certsDir, certPath string, der []byte, keyPath string, key *ecdsa.PrivateKey, overwrite bool) error {
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for _, d := range []string{certsDir, filepath.Dir(keyPath)} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return fmt.Errorf("tlsutil: %w", err)
		}
	}
	if err := writeFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600, overwrite); err != nil {
		return err
	}
	return writeFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644, overwrite)
}

func writeFile(path string, data []byte, mode os.FileMode, overwrite bool) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: %w", err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("tlsutil: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	if !overwrite {
		// Link fails if path appeared since checkFree: never replace a
		// file the caller did not ask to replace.
		if err := os.Link(tmp.Name(), path); err != nil {
			if errors.Is(err, os.ErrExist) {
				return fmt.Errorf("%w: %s", ErrExists, path)
			}
			return fmt.Errorf("tlsutil: %w", err)
		}
		return nil
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("tlsutil: %w", err)
	}
	return nil
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}
