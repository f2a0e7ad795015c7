package docker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Bounds. Each scenario (cluster up to cluster down) must finish within
// scenarioBudget; building the image has its own bound because a cold Go
// build on a loaded machine can take minutes by itself.
const (
	buildBudget    = 8 * time.Minute
	scenarioBudget = 3 * time.Minute
	// rpcTimeout bounds one client call; refusalTimeout is how long an
	// isolated node gets to (wrongly) answer a linearizable read.
	rpcTimeout     = 2 * time.Second
	refusalTimeout = 3 * time.Second
	image          = "concord:dev"
)

// requireDocker skips the test unless CONCORD_DOCKER_E2E=1 and a Docker
// engine answers, and returns the compose command: "docker compose" (v2)
// or "docker-compose" (v1), or nil if there is neither.
func requireDocker(t *testing.T) []string {
	t.Helper()
	if os.Getenv("CONCORD_DOCKER_E2E") != "1" {
		t.Skip("set CONCORD_DOCKER_E2E=1 to run the Docker end-to-end tests (they build an image and run clusters of containers; .ci/run does)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "docker", "info", "--format", "{{.ServerVersion}}").CombinedOutput(); err != nil {
		t.Skipf("no Docker engine (docker info: %v: %s)", err, bytes.TrimSpace(out))
	}
	if exec.CommandContext(ctx, "docker", "compose", "version").Run() == nil {
		return []string{"docker", "compose"}
	}
	if _, err := exec.LookPath("docker-compose"); err == nil {
		return []string{"docker-compose"}
	}
	return nil
}

var build struct {
	once sync.Once
	err  error
}

// buildImage builds concord:dev with deploy/docker/build.sh, once per
// test binary.
func buildImage(t *testing.T) {
	t.Helper()
	build.once.Do(func() {
		start := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), buildBudget)
		defer cancel()
		out, err := exec.CommandContext(ctx, filepath.Join(repoRoot(t), "deploy/docker/build.sh"), image).CombinedOutput()
		if err != nil {
			build.err = fmt.Errorf("build.sh: %v\n%s", err, out)
			return
		}
		t.Logf("image %s built in %v", image, time.Since(start).Round(100*time.Millisecond))
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// nodes is a cluster seen from the test: one etcd client per node, pinned
// to that node's published client port.
type nodes struct {
	t       *testing.T
	names   []string
	clients []*clientv3.Client
}

// add connects a client to node name on 127.0.0.1:port.
func (n *nodes) add(name string, port int) {
	n.t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{fmt.Sprintf("127.0.0.1:%d", port)},
		DialTimeout: rpcTimeout,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		n.t.Fatal(err)
	}
	n.t.Cleanup(func() { cli.Close() })
	n.names = append(n.names, name)
	n.clients = append(n.clients, cli)
}

func (n *nodes) docker(ctx context.Context, args ...string) {
	n.t.Helper()
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		n.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// leader returns the node whose Status says it leads: Leader equals the
// member id in the response header.
func (n *nodes) leader(ctx context.Context) int {
	n.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for i, cli := range n.clients {
			sctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			s, err := cli.Status(sctx, cli.Endpoints()[0])
			cancel()
			if err == nil && s.Leader != 0 && s.Leader == s.Header.MemberId {
				return i
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	n.t.Fatal("no node reported itself leader within 30s")
	return -1
}

func (n *nodes) put(ctx context.Context, i int, k, v string) error {
	_, err := n.clients[i].Put(ctx, k, v)
	return err
}

// putAny writes through any node but skip.
func (n *nodes) putAny(ctx context.Context, skip int, k, v string) error {
	var errs []error
	for i := range n.clients {
		if i == skip {
			continue
		}
		err := n.put(ctx, i, k, v)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", n.names[i], err))
	}
	return errors.Join(errs...)
}

// expect reads k on node i and wants v.
func (n *nodes) expect(ctx context.Context, i int, k, v string, serializable bool) error {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := n.clients[i].Get(ctx, k, opts...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v {
		return fmt.Errorf("%s: %s = %q, want %q", n.names[i], k, resp.Kvs, v)
	}
	return nil
}

// eventually retries f, each try bounded by rpcTimeout, until it succeeds,
// and fails the test if it has not within limit.
func (n *nodes) eventually(ctx context.Context, what string, limit time.Duration, f func(context.Context) error) {
	n.t.Helper()
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	for {
		tctx, tcancel := context.WithTimeout(ctx, rpcTimeout)
		err := f(tctx)
		tcancel()
		if err == nil {
			return
		}
		select {
		case <-ctx.Done():
			n.t.Fatalf("%s: not within %v: %v", what, limit, err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freePorts reserves n loopback ports by binding and releasing them.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports
}

// phases logs how long each step of a scenario took.
type phases struct {
	t           *testing.T
	begin, last time.Time
}

func newPhases(t *testing.T) *phases {
	now := time.Now()
	return &phases{t: t, begin: now, last: now}
}

// done logs the step that ends now.
func (p *phases) done(name string) {
	p.t.Helper()
	p.t.Logf("%-48s %6.1fs", name, time.Since(p.last).Seconds())
	p.last = time.Now()
}

// total logs the whole scenario's time.
func (p *phases) total() {
	p.t.Helper()
	p.t.Logf("%-48s %6.1fs", "scenario total", time.Since(p.begin).Seconds())
}
