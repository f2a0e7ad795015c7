// Package docker tests Concord's container deployment end to end with the
// real image (built by deploy/docker/build.sh):
//
//   - TestComposeCluster starts deploy/compose.yaml as a 3-node cluster
//     under a unique project name and checks through the published client
//     ports that writes survive the leader's container being killed, that
//     a node cut off from the network refuses linearizable reads while the
//     majority serves, and that it catches up once reconnected.
//   - TestStatefulSetPeers runs the container of
//     deploy/kubernetes/statefulset.yaml (its args and downward-API
//     environment) on a Docker network whose aliases stand in for the
//     headless Service's DNS names: three pods bootstrap, a fourth joins
//     (scaling up), and restarted pods come back with their data.
//
// They need a Docker engine, so they run only with CONCORD_DOCKER_E2E=1
// (.ci/run sets it) and report themselves skipped, with the reason,
// otherwise. Everything they create (containers, networks, volumes) is
// removed at the end, pass or fail; the image concord:dev is kept.
package docker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// composeNodes is the size of deploy/compose.yaml's cluster.
const composeNodes = 3

// composeCluster is one project of deploy/compose.yaml.
type composeCluster struct {
	*nodes
	compose []string // the compose command and its project flags
	project string
	env     []string
	// networks are created by the test; removed after compose down.
	networks []string
}

func TestComposeCluster(t *testing.T) {
	compose := requireDocker(t)
	if compose == nil {
		t.Skip("no docker compose plugin and no docker-compose")
	}
	buildImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), scenarioBudget)
	defer cancel()
	c := composeUp(ctx, t, compose, filepath.Join(repoRoot(t), "deploy/compose.yaml"))
	ph := newPhases(t)

	// 1. Writes and reads through every node.
	c.eventually(ctx, "the first write", 60*time.Second, func(ctx context.Context) error { return c.put(ctx, 0, "k", "v1") })
	for i := range composeNodes {
		c.eventually(ctx, "read on every node", 20*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v1", false) })
	}
	ph.done("cluster up, write + read on each node")

	// 2. Kill the leader's container; writes go on through the others.
	killed := time.Now()
	leader := c.leader(ctx)
	c.docker(ctx, "kill", c.container(ctx, leader))
	t.Logf("killed the leader, %s", c.names[leader])
	c.eventually(ctx, "a write after the leader was killed", 30*time.Second, func(ctx context.Context) error { return c.putAny(ctx, leader, "k", "v2") })
	t.Logf("first write after the kill acknowledged after %v", time.Since(killed).Round(10*time.Millisecond))
	for i := range composeNodes {
		if i != leader {
			c.eventually(ctx, "read after the kill", 10*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v2", false) })
		}
	}
	ph.done("leader killed, writes continue")

	// Bring it back (its volume keeps its data) so the partition below
	// leaves a majority of two.
	c.docker(ctx, "start", c.container(ctx, leader))
	c.eventually(ctx, "the restarted node to serve", 60*time.Second, func(ctx context.Context) error { return c.expect(ctx, leader, "k", "v2", false) })
	// Linearizable reads on any node are served by the leaseholder; a
	// serializable read shows that a node's own replica caught up.
	for i := range composeNodes {
		c.eventually(ctx, "every replica to catch up", 30*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v2", true) })
	}
	ph.done("killed node restarted and caught up")

	// 3. Cut one node off: disconnect it from the cluster network and put
	// it on a network of its own, so that its published client port
	// still reaches it while it has no peer.
	iso := (c.leader(ctx) + 1) % composeNodes // a follower: the majority keeps its leader
	isoNet := c.project + "_isolated"
	c.docker(ctx, "network", "create", isoNet)
	c.networks = append(c.networks, isoNet)
	ctr := c.container(ctx, iso)
	c.docker(ctx, "network", "disconnect", c.project+"_concord", ctr)
	c.docker(ctx, "network", "connect", isoNet, ctr)
	t.Logf("isolated %s", c.names[iso])
	c.eventually(ctx, "a majority write during the partition", 30*time.Second, func(ctx context.Context) error { return c.putAny(ctx, iso, "k", "v3") })
	for i := range composeNodes {
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
		t.Fatalf("the isolated node %s served a linearizable read: %q (the majority has v3)", c.names[iso], resp.Kvs)
	}
	t.Logf("isolated node refused a linearizable read: %v", err)
	if out, err := exec.CommandContext(ctx, "docker", "exec", ctr, "/concord", "probe").CombinedOutput(); err == nil {
		t.Errorf("concord probe on the isolated node passed: %s", out)
	} else {
		t.Logf("its health check fails too: %s", strings.TrimSpace(string(out)))
	}
	ph.done("partition: majority serves, minority refuses")

	// 4. Heal: back on the cluster network under its service name.
	c.docker(ctx, "network", "disconnect", isoNet, ctr)
	c.docker(ctx, "network", "connect", "--alias", c.names[iso], c.project+"_concord", ctr)
	c.eventually(ctx, "the healed node to catch up", 60*time.Second, func(ctx context.Context) error { return c.expect(ctx, iso, "k", "v3", true) })
	c.eventually(ctx, "a linearizable read on the healed node", 30*time.Second, func(ctx context.Context) error { return c.expect(ctx, iso, "k", "v3", false) })
	ph.done("healed node caught up")
	ph.total()
}

// composeUp starts the compose project on free loopback ports and
// registers its removal (containers, network, volumes), logging the nodes'
// last lines first if the test failed.
func composeUp(ctx context.Context, t *testing.T, compose []string, file string) *composeCluster {
	t.Helper()
	c := &composeCluster{nodes: &nodes{t: t}, project: fmt.Sprintf("concorde2e%d", os.Getpid())}
	c.compose = append(append([]string{}, compose...), "--project-name", c.project, "--file", file)
	c.env = append(os.Environ(), "CONCORD_IMAGE="+image)
	ports := freePorts(t, composeNodes)
	for i, p := range ports {
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
		for _, n := range c.networks {
			if out, err := exec.CommandContext(dctx, "docker", "network", "rm", n).CombinedOutput(); err != nil {
				t.Errorf("docker network rm %s: %v: %s", n, err, out)
			}
		}
	})
	if out, err := c.composeCmd(ctx, "up", "--detach").CombinedOutput(); err != nil {
		t.Fatalf("compose up: %v\n%s", err, out)
	}
	for i, p := range ports {
		c.add(fmt.Sprintf("concord%d", i+1), p)
	}
	return c
}

func (c *composeCluster) composeCmd(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, c.compose[0], append(c.compose[1:], args...)...)
	cmd.Env = c.env
	return cmd
}

// container returns node i's container id.
func (c *composeCluster) container(ctx context.Context, i int) string {
	c.t.Helper()
	out, err := c.composeCmd(ctx, "ps", "-q", c.names[i]).Output()
	id := strings.TrimSpace(string(out))
	if err != nil || id == "" {
		c.t.Fatalf("compose ps %s: %q %v", c.names[i], id, err)
	}
	return id
}
