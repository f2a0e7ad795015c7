package compat

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/internal/tlsutil"
	"github.com/concorddb/concord/test/etcdtest"
)

// system is one server under test and a client of it. Both systems live for
// the whole test binary: starting them per case would dominate the run time,
// and each case works under its own key prefix anyway.
type system struct {
	name string
	cli  *clientv3.Client
	// kv is the raw gRPC client on cli's connection, for the few requests
	// clientv3 cannot build (an invalid sort order, an empty op in a txn).
	kv pb.KVClient
}

var (
	etcdSys, concordSys *system
	// concordCluster serves the etcdctl test too.
	concordCluster *server.LocalCluster
	// runSeq numbers the runs of cases; see newPrefix.
	runSeq atomic.Int64
)

// newPrefix returns a fresh key prefix. Prefixes increase in the order runs
// start, so a from-key read or delete of one run reaches only its own keys:
// earlier runs' keys sort before its prefix, later runs have written nothing
// yet.
func newPrefix() string {
	return fmt.Sprintf("/compat/%06d/", runSeq.Add(1))
}

// withTLS runs the Concord cluster with client and peer TLS, client
// certificates required: every case then also proves TLS changes nothing a
// client sees.
var withTLS = flag.Bool("compat.tls", false, "run the Concord cluster with client and peer TLS (client certificates required)")

// concordTLS is the clients' TLS configuration for Concord with
// -compat.tls, and concordCtlTLS etcdctl's flags for it.
var (
	concordTLS    *tls.Config
	concordCtlTLS []string
)

// makeCerts writes a CA, the nodes' certificate and a root client
// certificate into dir.
func makeCerts(dir string) error {
	caKey := filepath.Join(dir, "ca.key")
	if err := tlsutil.CreateCA(dir, caKey, tlsutil.CALifetime, false); err != nil {
		return err
	}
	if err := tlsutil.CreateNode(dir, caKey, nil, tlsutil.CertLifetime, false); err != nil {
		return err
	}
	if err := tlsutil.CreateClient(dir, caKey, "root", tlsutil.CertLifetime, false); err != nil {
		return err
	}
	ca, err := os.ReadFile(filepath.Join(dir, tlsutil.CACertName))
	if err != nil {
		return err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	crt, key := filepath.Join(dir, tlsutil.ClientCertName("root")), filepath.Join(dir, tlsutil.ClientKeyName("root"))
	cert, err := tls.LoadX509KeyPair(crt, key)
	if err != nil {
		return err
	}
	concordTLS = &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}}
	concordCtlTLS = []string{"--cacert=" + filepath.Join(dir, tlsutil.CACertName), "--cert=" + crt, "--key=" + key}
	return nil
}

// ctlTLSArgs are the TLS flags etcdctl needs for endpoints.
func ctlTLSArgs(endpoints []string) []string {
	if concordTLS == nil || concordCluster == nil {
		return nil
	}
	for _, a := range concordCluster.ClientAddrs() {
		for _, ep := range endpoints {
			if strings.Contains(ep, a) {
				return concordCtlTLS
			}
		}
	}
	return nil
}

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "concord-compat-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)

	etcd, err := etcdtest.Start("compat", dir+"/etcd", nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat: start etcd:", err)
		return 1
	}
	defer etcd.Close()

	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := server.LocalOptions{Logger: quiet}
	if *withTLS {
		opts.CertsDir = dir + "/certs"
		if err := os.MkdirAll(opts.CertsDir, 0o700); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		if err := makeCerts(opts.CertsDir); err != nil {
			fmt.Fprintln(os.Stderr, "compat: certificates:", err)
			return 1
		}
	}
	concordCluster, err = server.StartLocalCluster(3, dir+"/concord", opts)
	if err != nil {
		fmt.Fprintln(os.Stderr, "compat: start concord:", err)
		return 1
	}
	defer concordCluster.Stop()

	etcdSys, err = newSystem("etcd", []string{etcd.Clients[0].Addr().String()}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer etcdSys.cli.Close()
	concordSys, err = newSystem("concord", concordCluster.ClientAddrs(), concordTLS)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer concordSys.cli.Close()
	for _, s := range []*system{etcdSys, concordSys} {
		if err := s.waitReady(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return m.Run()
}

// splitConcord splits the Concord cluster's range at the etcd key key.
func splitConcord(t *testing.T, key string) {
	t.Helper()
	if err := splitConcordAt(key); err != nil {
		t.Fatal(err)
	}
}

// splitConcordAt splits the Concord cluster's range at the etcd key key.
func splitConcordAt(key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := concordCluster.Node(0).Split(ctx, []byte(key)); err != nil {
		return fmt.Errorf("split at %q: %w", key, err)
	}
	return nil
}

func newSystem(name string, endpoints []string, tc *tls.Config) (*system, error) {
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		TLS:         tc,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("compat: %s client: %w", name, err)
	}
	return &system{name: name, cli: cli, kv: pb.NewKVClient(cli.ActiveConnection())}, nil
}

// readyTimeout bounds the wait for a fresh cluster's first write: leader
// elections on a loaded 2-core machine take a few seconds at most.
const readyTimeout = 30 * time.Second

// waitReady writes one key until a write succeeds, so that no case sees the
// errors of a cluster still electing its leaders.
func (s *system) waitReady() error {
	deadline := time.Now().Add(readyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		_, err := s.cli.Put(ctx, "/compat/000000/ready", "1")
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("compat: %s not ready: %w", s.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
