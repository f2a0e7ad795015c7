package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/server/v3/etcdserver/api/v3lock/v3lockpb"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/tlsutil"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// testCerts writes a CA, the shared node certificate and client
// certificates for root and intruder into a new directory.
func testCerts(t *testing.T) (dir, caKey string) {
	t.Helper()
	dir, caKey = t.TempDir(), filepath.Join(t.TempDir(), "ca.key")
	if err := tlsutil.CreateCA(dir, caKey, tlsutil.CALifetime, false); err != nil {
		t.Fatal(err)
	}
	if err := tlsutil.CreateNode(dir, caKey, nil, tlsutil.CertLifetime, false); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"root", "intruder"} {
		if err := tlsutil.CreateClient(dir, caKey, u, tlsutil.CertLifetime, false); err != nil {
			t.Fatal(err)
		}
	}
	return dir, caKey
}

// userTLS is a user's client configuration: dir's CA, and user's
// certificate from certDir unless user is "".
func userTLS(t *testing.T, dir, certDir, user string) *tls.Config {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(dir, tlsutil.CACertName))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	c := &tls.Config{RootCAs: pool}
	if user != "" {
		cert, err := tls.LoadX509KeyPair(filepath.Join(certDir, tlsutil.ClientCertName(user)), filepath.Join(certDir, tlsutil.ClientKeyName(user)))
		if err != nil {
			t.Fatal(err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c
}

func tlsClient(t *testing.T, c *LocalCluster, cfg *tls.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.ClientURLs(), TLS: cfg, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	return cli
}

// TestTLSCluster runs three nodes with client and peer TLS, client
// certificates required, and checks what users and peers see.
func TestTLSCluster(t *testing.T) {
	certs, caKey := testCerts(t)
	c, err := StartLocalCluster(3, t.TempDir(), LocalOptions{Logger: quietLogger(), CertsDir: certs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	for _, u := range c.ClientURLs() {
		if !strings.HasPrefix(u, "https://") {
			t.Fatalf("client URL %s", u)
		}
	}

	t.Run("clientv3 with a certificate", func(t *testing.T) {
		cli := tlsClient(t, c, userTLS(t, certs, certs, "root"))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		wch := cli.Watch(ctx, "tls/", clientv3.WithPrefix())
		putRetry(t, cli, "tls/a", "1")
		if v := string(get(t, cli, "tls/a").Kvs[0].Value); v != "1" {
			t.Fatalf("get tls/a = %q", v)
		}
		tr, err := cli.Txn(ctx).If(clientv3.Compare(clientv3.Value("tls/a"), "=", "1")).Then(clientv3.OpPut("tls/b", "2")).Commit()
		if err != nil || !tr.Succeeded {
			t.Fatalf("txn: %v %v", tr, err)
		}
		var seen []string
		for len(seen) < 2 {
			select {
			case wr := <-wch:
				if err := wr.Err(); err != nil {
					t.Fatal(err)
				}
				for _, ev := range wr.Events {
					seen = append(seen, string(ev.Kv.Key)+"="+string(ev.Kv.Value))
				}
			case <-ctx.Done():
				t.Fatalf("watch saw %v", seen)
			}
		}
		if strings.Join(seen, ",") != "tls/a=1,tls/b=2" {
			t.Fatalf("watch saw %v", seen)
		}
	})

	refused := func(t *testing.T, cfg *tls.Config) {
		t.Helper()
		cli := tlsClient(t, c, cfg)
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if _, err := cli.Get(ctx, "tls/a"); err == nil {
			t.Fatal("served")
		}
	}
	t.Run("client without a certificate is refused", func(t *testing.T) {
		refused(t, userTLS(t, certs, certs, ""))
	})
	t.Run("client with another CA's certificate is refused", func(t *testing.T) {
		other, _ := testCerts(t)
		refused(t, userTLS(t, certs, other, "root"))
	})

	t.Run("peer with another CN cannot join", func(t *testing.T) {
		peerURL := c.cfgs[0].ListenPeerURLs[0]
		peerOpts := func(cert, key string) *tlsutil.Source {
			s, err := tlsutil.New(tlsutil.Config{Port: "peer", Options: tlsutil.Options{
				CertFile: filepath.Join(certs, cert), KeyFile: filepath.Join(certs, key),
				TrustedCAFile: filepath.Join(certs, tlsutil.CACertName), ClientCertAuth: true,
			}})
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		// The path a joining node takes, with a certificate of the cluster's
		// CA but CN intruder: refused at the handshake.
		intruder := peerOpts(tlsutil.ClientCertName("intruder"), tlsutil.ClientKeyName("intruder"))
		rec := &metapb.NodeRecord{Name: "n4", PeerUrls: []string{"https://127.0.0.1:1"}}
		if _, err := joinVia(ctx, peerURL, rec, intruder.ClientCredentials()); status.Code(err) != codes.Unavailable {
			t.Fatalf("join with CN intruder: %v, want refused at the handshake", err)
		}
		// The node certificate gets through the same port.
		node := peerOpts(tlsutil.NodeCertName, tlsutil.NodeKeyName)
		if _, err := membersVia(ctx, peerURL, c.Node(0).ClusterID(), node.ClientCredentials()); err != nil {
			t.Fatalf("members with the node certificate: %v", err)
		}
		cli := tlsClient(t, c, userTLS(t, certs, certs, "root"))
		ml, err := cli.MemberList(ctx)
		if err != nil || len(ml.Members) != 3 {
			t.Fatalf("members after the refused join: %v %v", ml, err)
		}
	})

	t.Run("JSON gateway and health over https", func(t *testing.T) {
		// A client offering HTTP/2 too (as curl does) is served HTTP/1.1.
		for _, h2 := range []bool{false, true} {
			hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: userTLS(t, certs, certs, "root"), ForceAttemptHTTP2: h2}}
			base := c.ClientURLs()[1]
			body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte("tls/a"))})
			resp, err := hc.Post(base+"/v3/kv/range", "application/json", bytes.NewReader(body))
			if err != nil {
				t.Fatalf("h2=%v: %v", h2, err)
			}
			out, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || !strings.Contains(string(out), base64.StdEncoding.EncodeToString([]byte("1"))) {
				t.Fatalf("h2=%v: range: %s %s", h2, resp.Status, out)
			}
			resp, err = hc.Get(base + "/health")
			if err != nil {
				t.Fatal(err)
			}
			out, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.Contains(string(out), `"health":"true"`) {
				t.Fatalf("h2=%v: /health: %s", h2, out)
			}
		}
		// Without a client certificate the gateway refuses too.
		hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: userTLS(t, certs, certs, "")}}
		if resp, err := hc.Get(c.ClientURLs()[1] + "/health"); err == nil {
			resp.Body.Close()
			t.Fatalf("/health without a client certificate: %s", resp.Status)
		}
		// Plain HTTP on the TLS port gets nothing.
		plain := &http.Client{Timeout: 2 * time.Second}
		if resp, err := plain.Get("http://" + c.ClientAddrs()[1] + "/health"); err == nil && resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			t.Fatal("plain http served on the TLS port")
		}
	})

	t.Run("etcdctl", func(t *testing.T) {
		bin, err := exec.LookPath("etcdctl")
		if err != nil {
			t.Skip("etcdctl not on PATH")
		}
		run := func(args ...string) string {
			t.Helper()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			full := append([]string{"--endpoints", strings.Join(c.ClientURLs(), ","),
				"--cacert", filepath.Join(certs, tlsutil.CACertName),
				"--cert", filepath.Join(certs, tlsutil.ClientCertName("root")),
				"--key", filepath.Join(certs, tlsutil.ClientKeyName("root"))}, args...)
			out, err := exec.CommandContext(ctx, bin, full...).CombinedOutput()
			if err != nil {
				t.Fatalf("etcdctl %v: %v\n%s", args, err, out)
			}
			return string(out)
		}
		run("put", "tls/etcdctl", "yes")
		if out := run("get", "tls/etcdctl", "--print-value-only"); strings.TrimSpace(out) != "yes" {
			t.Fatalf("etcdctl get: %q", out)
		}
		// Lock runs over the node's own client port (lockelect.go).
		if out := run("lock", "tls-lock", "echo", "held"); !strings.Contains(out, "held") {
			t.Fatalf("etcdctl lock: %q", out)
		}
	})

	// Last: it turns auth on. With --client-cert-auth a call with no token
	// is the user its certificate names, as on etcd.
	t.Run("certificate common name is the user", func(t *testing.T) {
		if err := tlsutil.CreateClient(certs, caKey, "alice", tlsutil.CertLifetime, false); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		root := tlsClient(t, c, userTLS(t, certs, certs, "root"))
		noPassword := &clientv3.UserAddOptions{NoPassword: true}
		steps := []func() error{
			func() error { _, err := root.UserAddWithOptions(ctx, "root", "", noPassword); return err },
			func() error { _, err := root.UserGrantRole(ctx, "root", "root"); return err },
			func() error { _, err := root.RoleAdd(ctx, "cn"); return err },
			func() error {
				_, err := root.RoleGrantPermission(ctx, "cn", "cn/", clientv3.GetPrefixRangeEnd("cn/"), clientv3.PermissionType(clientv3.PermReadWrite))
				return err
			},
			func() error { _, err := root.UserAddWithOptions(ctx, "alice", "", noPassword); return err },
			func() error { _, err := root.UserGrantRole(ctx, "alice", "cn"); return err },
			func() error { _, err := root.AuthEnable(ctx); return err },
		}
		for i, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("setup step %d: %v", i, err)
			}
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			root.AuthDisable(ctx)
		})
		alice := tlsClient(t, c, userTLS(t, certs, certs, "alice"))
		if _, err := alice.Put(ctx, "cn/x", "1"); err != nil {
			t.Fatalf("alice's certificate, a key of her role: %v", err)
		}
		if _, err := alice.Put(ctx, "tls/x", "1"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("alice's certificate, a key outside her role: %v, want permission denied", err)
		}
		intruder := tlsClient(t, c, userTLS(t, certs, certs, "intruder"))
		if _, err := intruder.Get(ctx, "cn/x"); !errors.Is(err, rpctypes.ErrPermissionDenied) {
			t.Fatalf("a certificate naming no user: %v, want permission denied", err)
		}
		if _, err := root.UserList(ctx); err != nil {
			t.Fatalf("root's certificate, an admin call: %v", err)
		}
		// Lock runs over the node's own client, as the certificate's user.
		lg, err := alice.Grant(ctx, 30)
		if err != nil {
			t.Fatal(err)
		}
		lc := v3lockpb.NewLockClient(alice.ActiveConnection())
		held, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("cn/lock"), Lease: int64(lg.ID)})
		if err != nil {
			t.Fatalf("alice's certificate, a lock on her keys: %v", err)
		}
		if _, err := lc.Unlock(ctx, &v3lockpb.UnlockRequest{Key: held.GetKey()}); err != nil {
			t.Fatalf("unlock: %v", err)
		}
		if _, err := lc.Lock(ctx, &v3lockpb.LockRequest{Name: []byte("tls/lock"), Lease: int64(lg.ID)}); err == nil || !strings.Contains(err.Error(), "permission denied") {
			t.Fatalf("alice's certificate, a lock outside her keys: %v, want permission denied", err)
		}
	})
}

func TestTLSConfigErrorsStopTheStart(t *testing.T) {
	certs, _ := testCerts(t)
	for _, tc := range []struct {
		name string
		tune func(*Config)
		want string
	}{
		{"https without a certificate", func(c *Config) { c.ListenClientURLs = []string{"https://127.0.0.1:0"} }, "has no certificate"},
		{"cert without key", func(c *Config) { c.PeerTLS.CertFile = "x.crt" }, "--peer-key-file"},
		{"unknown cipher", func(c *Config) {
			c.ClientTLS = certsDirTLS(certs)
			c.ClientTLS.CipherSuites = []string{"TLS_FAST"}
			c.ListenClientURLs, c.AdvertiseClientURLs = []string{"https://127.0.0.1:0"}, []string{"https://127.0.0.1:0"}
		}, `unknown cipher suite "TLS_FAST"`},
		{"TLS options on an http URL", func(c *Config) { c.PeerTLS = certsDirTLS(certs) }, "not https://"},
		{"missing file", func(c *Config) {
			c.ClientTLS = certsDirTLS(certs)
			c.ClientTLS.CertFile = filepath.Join(certs, "nope.crt")
			c.ListenClientURLs, c.AdvertiseClientURLs = []string{"https://127.0.0.1:0"}, []string{"https://127.0.0.1:0"}
		}, "nope.crt"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.DataDir = filepath.Join(t.TempDir(), "d")
			cfg.Logger = quietLogger()
			tc.tune(&cfg)
			n, err := Start(cfg)
			if err == nil {
				n.Stop()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not say %q", err, tc.want)
			}
			if _, err := os.Stat(cfg.DataDir); err == nil {
				t.Fatal("a refused start wrote the data dir")
			}
		})
	}
}

// TestAutoTLSNode: a node with --auto-tls and --peer-auto-tls writes its
// certificates into the data dir and serves gRPC and the gateway (which
// calls the node's own port) over TLS.
func TestAutoTLSNode(t *testing.T) {
	cl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pl, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.DataDir = filepath.Join(t.TempDir(), "d")
	cfg.Logger = quietLogger()
	cfg.ClientListener, cfg.PeerListener = cl, pl
	cfg.ListenClientURLs = []string{"https://" + cl.Addr().String()}
	cfg.AdvertiseClientURLs = cfg.ListenClientURLs
	cfg.ListenPeerURLs = []string{"https://" + pl.Addr().String()}
	cfg.InitialAdvertisePeerURLs = cfg.ListenPeerURLs
	cfg.InitialCluster = "default=" + cfg.ListenPeerURLs[0]
	cfg.ClientTLS.AutoTLS, cfg.PeerTLS.AutoTLS = true, true
	n, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(n.Stop)
	for _, f := range []string{"fixtures/client/cert.pem", "fixtures/client/key.pem", "fixtures/peer/cert.pem"} {
		if _, err := os.Stat(filepath.Join(cfg.DataDir, f)); err != nil {
			t.Fatal(err)
		}
	}
	// etcd's auto-tls authenticates nobody: clients skip verification.
	insecureTLS := &tls.Config{InsecureSkipVerify: true}
	cli, err := clientv3.New(clientv3.Config{Endpoints: cfg.AdvertiseClientURLs, TLS: insecureTLS, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	putRetry(t, cli, "auto", "tls")
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: insecureTLS}}
	resp, err := hc.Get(cfg.AdvertiseClientURLs[0] + "/health")
	if err != nil {
		t.Fatal(err)
	}
	out, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(out), `"health":"true"`) {
		t.Fatalf("/health: %s", out)
	}
	body, _ := json.Marshal(map[string]string{"key": base64.StdEncoding.EncodeToString([]byte("auto"))})
	resp, err = hc.Post(cfg.AdvertiseClientURLs[0]+"/v3/kv/range", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	out, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(out), base64.StdEncoding.EncodeToString([]byte("tls"))) {
		t.Fatalf("gateway range: %s", out)
	}
}
