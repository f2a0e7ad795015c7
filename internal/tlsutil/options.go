package tlsutil

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Options are one port's TLS settings, with the meaning of etcd's flags:
// the client port's --cert-file, --key-file, ... or the peer port's
// --peer-cert-file, --peer-key-file, ....
type Options struct {
	// CertFile and KeyFile are the PEM certificate (with its chain) and key
	// the port presents, as a server and, on the peer port and a node's
	// calls to itself, as a client.
	CertFile, KeyFile string
	// TrustedCAFile is the PEM bundle of CAs the port verifies the other
	// side's certificate against.
	TrustedCAFile string
	// ClientCertAuth makes the server require a client certificate that
	// TrustedCAFile verifies; a connection without one is refused at the
	// handshake.
	ClientCertAuth bool
	// AutoTLS uses a self-signed certificate generated in the data dir when
	// CertFile is empty. As in etcd it encrypts but authenticates nobody:
	// the other side's certificate is not verified.
	AutoTLS bool
	// AllowedCN, when set, refuses a peer whose verified certificate's
	// common name differs (etcd's --peer-cert-allowed-cn), in both
	// directions.
	AllowedCN string
	// CipherSuites are the TLS 1.2 cipher suites allowed, by their IANA
	// (and Go) names; empty means Go's defaults.
	CipherSuites []string
	// MinVersion is "TLS1.2" (the default, also for "") or "TLS1.3".
	MinVersion string
}

// Enabled reports whether the port serves TLS.
func (o Options) Enabled() bool { return o.CertFile != "" || o.AutoTLS }

// Validate reports the first problem with o, naming the flags with
// flagPrefix ("" for the client port, "peer-" for the peer port). It reads
// no file: New does.
func (o Options) Validate(flagPrefix string) error {
	f := func(name string) string { return "--" + flagPrefix + name }
	switch {
	case o.CertFile != "" && o.KeyFile == "":
		return fmt.Errorf("tlsutil: %s is set but %s is not", f("cert-file"), f("key-file"))
	case o.CertFile == "" && o.KeyFile != "":
		return fmt.Errorf("tlsutil: %s is set but %s is not", f("key-file"), f("cert-file"))
	case o.ClientCertAuth && o.TrustedCAFile == "":
		return fmt.Errorf("tlsutil: %s needs %s (the CA that signs the certificates to accept)", f("client-cert-auth"), f("trusted-ca-file"))
	case !o.Enabled() && (o.TrustedCAFile != "" || o.ClientCertAuth || o.AllowedCN != ""):
		return fmt.Errorf("tlsutil: %s, %s or %s is set but the port has no certificate: give %s and %s, or %s",
			f("trusted-ca-file"), f("client-cert-auth"), f("cert-allowed-cn"), f("cert-file"), f("key-file"), f("auto-tls"))
	case o.AllowedCN != "" && !o.ClientCertAuth:
		return fmt.Errorf("tlsutil: %s needs %s (only a verified certificate has a common name to check)", f("cert-allowed-cn"), f("client-cert-auth"))
	}
	v, err := ParseVersion(o.MinVersion)
	if err != nil {
		return err
	}
	suites, err := ParseCipherSuites(strings.Join(o.CipherSuites, ","))
	if err != nil {
		return err
	}
	if v == tls.VersionTLS13 && len(suites) > 0 {
		return errors.New("tlsutil: --cipher-suites cannot be set with --tls-min-version TLS1.3 (Go does not let TLS 1.3 suites be chosen)")
	}
	return nil
}

// ParseVersion turns --tls-min-version into a tls.Version* constant: ""
// and "TLS1.2" give tls.VersionTLS12, "TLS1.3" tls.VersionTLS13.
func ParseVersion(s string) (uint16, error) {
	switch s {
	case "", "TLS1.2":
		return tls.VersionTLS12, nil
	case "TLS1.3":
		return tls.VersionTLS13, nil
	}
	return 0, fmt.Errorf("tlsutil: --tls-min-version %q is not TLS1.2 or TLS1.3", s)
}

// ParseCipherSuites turns a comma-separated list of cipher suite names
// (IANA's, which Go uses: "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") into
// their ids, in order, without duplicates. Spaces around names are
// ignored; an empty list gives nil (Go's defaults). Insecure suites and
// TLS 1.3 suites (which Go does not let be chosen) are refused by name.
func ParseCipherSuites(s string) ([]uint16, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var out []uint16
	for _, name := range strings.Split(s, ",") {
		name = strings.TrimSpace(name)
		if name == "" {
			return nil, fmt.Errorf("tlsutil: --cipher-suites %q has an empty name", s)
		}
		id, err := cipherSuite(name)
		if err != nil {
			return nil, err
		}
		if !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out, nil
}

func cipherSuite(name string) (uint16, error) {
	for _, cs := range tls.CipherSuites() {
		if cs.Name != name {
			continue
		}
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			return 0, fmt.Errorf("tlsutil: cipher suite %s is a TLS 1.3 suite; Go always enables those and lets none be chosen", name)
		}
		return cs.ID, nil
	}
	for _, cs := range tls.InsecureCipherSuites() {
		if cs.Name == name {
			return 0, fmt.Errorf("tlsutil: cipher suite %s is insecure; choose among %s", name, strings.Join(SecureCipherSuiteNames(), ", "))
		}
	}
	return 0, fmt.Errorf("tlsutil: unknown cipher suite %q; choose among %s", name, strings.Join(SecureCipherSuiteNames(), ", "))
}

// SecureCipherSuiteNames lists the names ParseCipherSuites accepts.
func SecureCipherSuiteNames() []string {
	var out []string
	for _, cs := range tls.CipherSuites() {
		if slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			out = append(out, cs.Name)
		}
	}
	return out
}
