package tlsutil

import (
	"crypto/tls"
	"strings"
	"testing"
)

// FuzzParseCipherSuites: any input either fails or gives known TLS 1.2
// suites without duplicates, whose names parse back to the same ids.
func FuzzParseCipherSuites(f *testing.F) {
	f.Add("TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256")
	f.Add(" TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 , TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256")
	f.Add("TLS_RSA_WITH_RC4_128_SHA,,")
	f.Add("TLS_AES_128_GCM_SHA256")
	f.Fuzz(func(t *testing.T, s string) {
		ids, err := ParseCipherSuites(s)
		if err != nil {
			return
		}
		names := make([]string, len(ids))
		seen := map[uint16]bool{}
		for i, id := range ids {
			if seen[id] {
				t.Fatalf("%q: duplicate suite %#x", s, id)
			}
			seen[id] = true
			names[i] = tls.CipherSuiteName(id)
			if _, err := cipherSuite(names[i]); err != nil {
				t.Fatalf("%q gave %#x, which is not accepted by name: %v", s, id, err)
			}
		}
		again, err := ParseCipherSuites(strings.Join(names, ","))
		if err != nil || len(again) != len(ids) {
			t.Fatalf("%q: round trip of %v: %v %v", s, names, again, err)
		}
		for i := range ids {
			if again[i] != ids[i] {
				t.Fatalf("%q: round trip changed the order: %v -> %v", s, ids, again)
			}
		}
	})
}

// FuzzParseHosts: any host list either fails or gives names that pass
// validDNSName and IPs, each once, and parsing their printed forms gives
// the same sets.
func FuzzParseHosts(f *testing.F) {
	f.Add("db.example.com,10.0.0.1,[::1]")
	f.Add("*.svc.cluster.local,localhost,LOCALHOST.")
	f.Add("a..b,[1.2.3.4")
	f.Fuzz(func(t *testing.T, s string) {
		dns, ips, err := ParseHosts(strings.Split(s, ","))
		if err != nil {
			return
		}
		hosts := append([]string(nil), dns...)
		for _, d := range dns {
			if !validDNSName(d) {
				t.Fatalf("%q gave invalid name %q", s, d)
			}
		}
		for _, ip := range ips {
			hosts = append(hosts, ip.String())
		}
		dns2, ips2, err := ParseHosts(hosts)
		if err != nil || len(dns2) != len(dns) || len(ips2) != len(ips) {
			t.Fatalf("%q: reparse of %v: %v %v %v", s, hosts, dns2, ips2, err)
		}
	})
}
