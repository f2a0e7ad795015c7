package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// runCert runs `concord cert ARGS` in process and returns its output.
func runCert(args ...string) (string, error) {
	cmd := certCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(&out)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// TestCertCommandsAndATLSStart creates a CA, a node and a client
// certificate with `concord cert`, starts `concord start` with client and
// peer TLS on them, and talks to it as a user would.
func TestCertCommandsAndATLSStart(t *testing.T) {
	dir := t.TempDir()
	certs, caKey := filepath.Join(dir, "certs"), filepath.Join(dir, "private", "ca.key")
	for _, args := range [][]string{
		{"create-ca", "--certs-dir", certs, "--ca-key", caKey},
		{"create-node", "127.0.0.1", "node1.example.com", "--certs-dir", certs, "--ca-key", caKey},
		{"create-client", "root", "--certs-dir", certs, "--ca-key", caKey},
	} {
		if out, err := runCert(args...); err != nil {
			t.Fatalf("concord cert %v: %v\n%s", args, err, out)
		}
	}
	for _, f := range []string{"ca.crt", "node.crt", "node.key", "client.root.crt", "client.root.key"} {
		if _, err := os.Stat(filepath.Join(certs, f)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runCert("create-node", "127.0.0.1", "--certs-dir", certs, "--ca-key", caKey); err == nil || !strings.Contains(err.Error(), "--overwrite") {
		t.Fatalf("create-node over an existing node.crt: %v", err)
	}
	if _, err := runCert("create-client", "bob", "--certs-dir", certs); err == nil || !strings.Contains(err.Error(), "--ca-key") {
		t.Fatalf("create-client without --ca-key: %v", err)
	}

	bin := buildBinary(t)
	ports := freePorts(t, 2)
	client, peer := fmt.Sprintf("127.0.0.1:%d", ports[0]), fmt.Sprintf("127.0.0.1:%d", ports[1])
	node := func(name string) string { return filepath.Join(certs, name) }
	args := []string{"start", "--name", "s1", "--data-dir", filepath.Join(dir, "s1"),
		"--listen-client-urls", "https://" + client, "--advertise-client-urls", "https://" + client,
		"--listen-peer-urls", "https://" + peer, "--initial-advertise-peer-urls", "https://" + peer,
		"--cert-file", node("node.crt"), "--key-file", node("node.key"), "--trusted-ca-file", node("ca.crt"), "--client-cert-auth",
		"--peer-cert-file", node("node.crt"), "--peer-key-file", node("node.key"), "--peer-trusted-ca-file", node("ca.crt"),
		"--peer-client-cert-auth", "--peer-cert-allowed-cn", "node", "--tls-min-version", "TLS1.3", "--log-level", "warn"}
	var logBuf bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = &logBuf, &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})

	ca, _ := os.ReadFile(node("ca.crt"))
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	cert, err := tls.LoadX509KeyPair(node("client.root.crt"), node("client.root.key"))
	if err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := cli.Put(ctx, "cert/k", "v")
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("put over TLS: %v\n%s", err, logBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, "cert/k")
	if err != nil || len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != "v" {
		t.Fatalf("get: %v %v", resp, err)
	}
	// A TLS 1.2 client is refused by --tls-min-version TLS1.3.
	old, err := clientv3.New(clientv3.Config{Endpoints: []string{"https://" + client}, DialTimeout: time.Second, Logger: zap.NewNop(),
		TLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MaxVersion: tls.VersionTLS12}})
	if err == nil {
		defer old.Close()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := old.Get(ctx, "cert/k"); err == nil {
			t.Fatal("a TLS 1.2 client was served with --tls-min-version TLS1.3")
		}
	}
	if etcdctl, err := exec.LookPath("etcdctl"); err == nil {
		out, err := exec.Command(etcdctl, "--endpoints", "https://"+client, "--cacert", node("ca.crt"),
			"--cert", node("client.root.crt"), "--key", node("client.root.key"), "get", "cert/k", "--print-value-only").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "v" {
			t.Fatalf("etcdctl get: %v %s", err, out)
		}
	}
}

// TestStartRefusesBadTLSFlags: a bad TLS flag stops concord start with a
// message naming it, before anything listens.
func TestStartRefusesBadTLSFlags(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--listen-client-urls", "https://127.0.0.1:0"}, "has no certificate"},
		{[]string{"--auto-tls", "--listen-client-urls", "https://127.0.0.1:0", "--advertise-client-urls", "https://127.0.0.1:0", "--cipher-suites", "TLS_RSA_WITH_RC4_128_SHA"}, "insecure"},
		{[]string{"--peer-cert-file", "p.crt"}, "--peer-key-file"},
	} {
		cmd := startCmd()
		cmd.SetArgs(append([]string{"--data-dir", filepath.Join(dir, "d"), "--log-level", "error"}, tc.args...))
		cmd.SetOut(&bytes.Buffer{})
		cmd.SetErr(&bytes.Buffer{})
		err := cmd.Execute()
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error with %q", tc.args, err, tc.want)
		}
	}
}
