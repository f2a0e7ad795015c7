// Package docker tests Concord's container deployment end to end: it
// builds the image with deploy/docker/build.sh, starts deploy/compose.yaml
// as a 3-node cluster under a unique project name, and checks through the
// published client ports that writes survive the leader's container being
// killed, that a node cut off from the network refuses linearizable reads
// while the majority serves, and that it catches up once reconnected.
//
// It needs a Docker engine and docker compose (or docker-compose), so it
// runs only with CONCORD_DOCKER_E2E=1 (.ci/run sets it) and reports itself
// skipped, with the reason, otherwise. Everything it creates (containers,
// network, volumes) is removed at the end, pass or fail; the image
// concord:dev is kept.
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
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Bounds. The scenario (cluster up to cluster down) must finish within
// scenarioBudget; building the image has its own bound because a cold Go
// build on a loaded machine can take minutes by itself.
const (
	buildBudget    = 8 * time.Minute
	scenarioBudget = 3 * time.Minute
	// rpcTimeout bounds one client call; refusalTimeout is how long the
	// isolated node gets to (wrongly) answer a linearizable read.
	rpcTimeout     = 2 * time.Second
	refusalTimeout = 3 * time.Second
	image          = "concord:dev"
	services       = 3
)

// cluster is one compose project of deploy/compose.yaml.
type cluster struct {
	t       *testing.T
	compose []string // the compose command and its project flags
	project string
	env     []string
	ports   [services]int
	clients [services]*clientv3.Client
}

func TestComposeCluster(t *testing.T) {
	if os.Getenv("CONCORD_DOCKER_E2E") != "1" {
		t.Skip("set CONCORD_DOCKER_E2E=1 to run the Docker end-to-end test (it builds an image and runs a 3-container cluster; .ci/run does)")
	}
	compose := requireDocker(t)
	root := repoRoot(t)

	start := time.Now()
	bctx, cancel := context.WithTimeout(context.Background(), buildBudget)
	defer cancel()
	if out, err := exec.CommandContext(bctx, filepath.Join(root, "deploy/docker/build.sh"), image).CombinedOutput(); err != nil {
		t.Fatalf("build.sh: %v\n%s", err, out)
	}
	t.Logf("image %s built in %v", image, time.Since(start).Round(100*time.Millisecond))

	ctx, cancel := context.WithTimeout(context.Background(), scenarioBudget)
	defer cancel()
	c := up(ctx, t, compose, filepath.Join(root, "deploy/compose.yaml"))
	begin := time.Now()
	phase := func(name string, since time.Time) {
		t.Helper()
		t.Logf("%-48s %6.1fs", name, time.Since(since).Seconds())
	}

	// 1. Writes and reads through every node.
	p := time.Now()
	c.eventually(ctx, "the first write", 60*time.Second, func(ctx context.Context) error { return c.put(ctx, 0, "k", "v1") })
	for i := range services {
		c.eventually(ctx, "read on every node", 20*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v1", false) })
	}
	phase("cluster up, write + read on each node", p)

	// 2. Kill the leader's container; writes go on through the others.
	p = time.Now()
	leader := c.leader(ctx)
	c.docker(ctx, "kill", c.container(ctx, leader))
	t.Logf("killed the leader, %s", c.service(leader))
	var v2 time.Duration
	c.eventually(ctx, "a write after the leader was killed", 30*time.Second, func(ctx context.Context) error {
		err := c.putAny(ctx, leader, "k", "v2")
		v2 = time.Since(p)
		return err
	})
	t.Logf("first write after the kill acknowledged after %v", v2.Round(10*time.Millisecond))
	for i := range services {
		if i != leader {
			c.eventually(ctx, "read after the kill", 10*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v2", false) })
		}
	}
	phase("leader killed, writes continue", p)

	// Bring it back (its volume keeps its data) so the partition below
	// leaves a majority of two.
	p = time.Now()
	c.docker(ctx, "start", c.container(ctx, leader))
	c.eventually(ctx, "the restarted node to serve", 60*time.Second, func(ctx context.Context) error { return c.expect(ctx, leader, "k", "v2", false) })
	phase("killed node restarted and caught up", p)

	// 3. Cut one node off: disconnect it from the cluster network and put
	// it on a network of its own, so that its published client port
	// still reaches it while it has no peer.
	p = time.Now()
	iso := (c.leader(ctx) + 1) % services // a follower: the majority keeps its leader
	isoNet := c.project + "_isolated"
	c.docker(ctx, "network", "create", isoNet)
	t.Cleanup(func() { _ = exec.Command("docker", "network", "rm", isoNet).Run() })
	ctr := c.container(ctx, iso)
	c.docker(ctx, "network", "disconnect", c.project+"_concord", ctr)
	c.docker(ctx, "network", "connect", isoNet, ctr)
	t.Logf("isolated %s", c.service(iso))
	c.eventually(ctx, "a majority write during the partition", 30*time.Second, func(ctx context.Context) error { return c.putAny(ctx, iso, "k", "v3") })
	for i := range services {
		if i != iso {
			c.eventually(ctx, "a majority read during the partition", 10*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v3", false) })
		}
	}
	// The isolated node is reachable (a serializable read answers from
	// its own replica, with the old value) but refuses linearizable reads.
	c.eventually(ctx, "a serializable read on the isolated node", 10*time.Second, func(ctx context.Context) error { return c.expect(ctx, iso, "k", "v2", true) })
	rctx, rcancel := context.WithTimeout(ctx, refusalTimeout)
	resp, err := c.clients[iso].Get(rctx, "k")
	rcancel()
	if err == nil {
		t.Fatalf("the isolated node %s served a linearizable read: %q (the majority has v3)", c.service(iso), resp.Kvs)
	}
	t.Logf("isolated node refused a linearizable read: %v", err)
	if out, err := exec.CommandContext(ctx, "docker", "exec", ctr, "/concord", "probe").CombinedOutput(); err == nil {
		t.Errorf("concord probe on the isolated node passed: %s", out)
	} else {
		t.Logf("its health check fails too: %s", strings.TrimSpace(string(out)))
	}
	phase("partition: majority serves, minority refuses", p)

	// 4. Heal: back on the cluster network under its service name.
	p = time.Now()
	c.docker(ctx, "network", "disconnect", isoNet, ctr)
	c.docker(ctx, "network", "connect", "--alias", c.service(iso), c.project+"_concord", ctr)
	c.eventually(ctx, "the healed node to catch up", 60*time.Second, func(ctx context.Context) error { return c.expect(ctx, iso, "k", "v3", true) })
	c.eventually(ctx, "a linearizable read on the healed node", 30*time.Second, func(ctx context.Context) error { return c.expect(ctx, iso, "k", "v3", false) })
	phase("healed node caught up", p)
	phase("scenario total", begin)
}

// requireDocker skips the test unless a Docker engine answers, and returns
// the compose command: "docker compose" (v2) or "docker-compose" (v1).
func requireDocker(t *testing.T) []string {
	t.Helper()
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
	t.Skip("no docker compose plugin and no docker-compose")
	return nil
}

func repoRoot(t *testing.T) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("no caller information")
	}
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// up starts the compose project on free loopback ports and registers its
// removal (containers, network, volumes), logging the nodes' last lines
// first if the test failed.
func up(ctx context.Context, t *testing.T, compose []string, file string) *cluster {
	t.Helper()
	c := &cluster{t: t, project: fmt.Sprintf("concorde2e%d", os.Getpid())}
	c.compose = append(append([]string{}, compose...), "--project-name", c.project, "--file", file)
	c.env = append(os.Environ(), "CONCORD_IMAGE="+image)
	for i, p := range freePorts(t, services) {
		c.ports[i] = p
		c.env = append(c.env, fmt.Sprintf("CONCORD%d_PORT=%d", i+1, p))
	}
	t.Cleanup(func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if t.Failed() {
			out, _ := c.composeCmd(dctx, "logs", "--no-color", "--tail=30").CombinedOutput()
			t.Logf("node logs:\n%s", out)
		}
		if out, err := c.composeCmd(dctx, "down", "--volumes", "--remove-orphans", "--timeout", "5").CombinedOutput(); err != nil {
			t.Errorf("compose down: %v\n%s", err, out)
		}
	})
	if out, err := c.composeCmd(ctx, "up", "--detach").CombinedOutput(); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	for i := range services {
		cli, err := clientv3.New(clientv3.Config{
			Endpoints:   []string{fmt.Sprintf("127.0.0.1:%d", c.ports[i])},
			DialTimeout: rpcTimeout,
			Logger:      zap.NewNop(),
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cli.Close() })
		c.clients[i] = cli
	}
	return c
}

func (c *cluster) composeCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.compose[0], append(c.compose[1:], args...)...)
	cmd.Env = c.env
	return cmd
}

// service is node i's compose service name.
func (c *cluster) service(i int) string { return fmt.Sprintf("concord%d", i+1) }

// container returns node i's container id.
func (c *cluster) container(ctx context.Context, i int) string {
	out, err := c.composeCmd(ctx, "ps", "-q", c.service(i)).Output()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		c.t.Fatalf("compose ps %s: %q %v", c.service(i), id, err)
	}
	return id
}

func (c *cluster) docker(ctx context.Context, args ...string) {
	c.t.Helper()
	if out, err := exec.CommandContext(ctx, "docker", args...).CombinedOutput(); err != nil {
		c.t.Fatalf("docker %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// leader returns the node whose Status says it leads: Leader equals the
// member id in the response header.
func (c *cluster) leader(ctx context.Context) int {
	c.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		for i, cli := range c.clients {
			sctx, cancel := context.WithTimeout(ctx, rpcTimeout)
			s, err := cli.Status(sctx, cli.Endpoints()[0])
			cancel()
			if err == nil && s.Leader != 0 && s.Leader == s.Header.MemberId {
				return i
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatal("no node reported itself leader within 30s")
	return -1
}

func (c *cluster) put(ctx context.Context, i int, k, v string) error {
	_, err := c.clients[i].Put(ctx, k, v)
	return err
}

// putAny writes through any node but skip.
func (c *cluster) putAny(ctx context.Context, skip int, k, v string) error {
	var errs []error
	for i := range services {
		if i == skip {
			continue
		}
		err := c.put(ctx, i, k, v)
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", c.service(i), err))
	}
	return errors.Join(errs...)
}

// expect reads k on node i and wants v.
func (c *cluster) expect(ctx context.Context, i int, k, v string, serializable bool) error {
	var opts []clientv3.OpOption
	if serializable {
		opts = append(opts, clientv3.WithSerializable())
	}
	resp, err := c.clients[i].Get(ctx, k, opts...)
	if err != nil {
		return err
	}
	if len(resp.Kvs) != 1 || string(resp.Kvs[0].Value) != v {
		return fmt.Errorf("%s: %s = %q, want %q", c.service(i), k, resp.Kvs, v)
	}
	return nil
}

// eventually retries f, each try bounded by rpcTimeout, until it succeeds,
// and fails the test if it has not within limit.
func (c *cluster) eventually(ctx context.Context, what string, limit time.Duration, f func(context.Context) error) {
	c.t.Helper()
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
			c.t.Fatalf("%s: not within %v: %v", what, limit, err)
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
