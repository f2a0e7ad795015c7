package docker

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	"sigs.k8s.io/yaml"
)

// podNamespace is the namespace the stand-in pods claim to run in.
const podNamespace = "default"

// stsCluster runs the StatefulSet's container on a Docker network: each
// "pod" is a container with the pod's name, the downward-API environment,
// a volume for its claim and, as network alias, its DNS name through the
// headless Service (<pod>.<service>.<namespace>.svc).
type stsCluster struct {
	*nodes
	set     *appsv1.StatefulSet
	prefix  string // container, volume and network names start with it
	network string
}

func TestStatefulSetPeers(t *testing.T) {
	requireDocker(t)
	buildImage(t)
	ctx, cancel := context.WithTimeout(context.Background(), scenarioBudget)
	defer cancel()
	c := stsUp(ctx, t)
	replicas := int(*c.set.Spec.Replicas)
	ph := newPhases(t)

	for i := range replicas {
		c.run(ctx, i)
	}
	c.eventually(ctx, "the first write", 60*time.Second, func(ctx context.Context) error { return c.put(ctx, 0, "k", "v1") })
	for i := range replicas {
		c.eventually(ctx, "read on every pod", 20*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v1", false) })
	}
	ph.done(fmt.Sprintf("%d pods bootstrapped from --k8s-peers", replicas))

	// Scale up by one: the new ordinal joins the running cluster.
	added := c.run(ctx, replicas)
	c.eventually(ctx, "a write through the added pod", 60*time.Second, func(ctx context.Context) error { return c.put(ctx, added, "k", "v2") })
	for i := range c.clients {
		c.eventually(ctx, "read on every pod after the scale-up", 20*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", "v2", false) })
	}
	c.eventually(ctx, "the added pod in the member list", 20*time.Second, func(ctx context.Context) error {
		ml, err := c.clients[0].MemberList(ctx)
		if err != nil {
			return err
		}
		if len(ml.Members) != replicas+1 {
			return fmt.Errorf("%d members, want %d", len(ml.Members), replicas+1)
		}
		return nil
	})
	ph.done("scaled up: the added pod joined")

	// Restarts (SIGTERM, then the same flags on the same volume): an
	// initial pod and the joined one come back with their data.
	latest := "v2"
	for _, i := range []int{0, added} {
		c.docker(ctx, "restart", "--time", "10", c.container(i))
		c.eventually(ctx, "a read on the restarted "+c.names[i], 60*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", latest, false) })
		latest = "after-restart-of-" + c.names[i]
		c.eventually(ctx, "a write through the restarted "+c.names[i], 30*time.Second, func(ctx context.Context) error { return c.put(ctx, i, "k", latest) })
		ph.done("restarted " + c.names[i] + ": serves again")
	}

	// SIGKILL, then the same container again: the joined pod (started with
	// --initial-cluster-state existing on every start) and an initial one
	// come back as themselves and serve everything acknowledged, from
	// their own replica and linearizably.
	for _, i := range []int{added, 1} {
		c.docker(ctx, "kill", c.container(i))
		latest = "while-" + c.names[i] + "-is-down"
		c.eventually(ctx, "a write while "+c.names[i]+" is down", 30*time.Second, func(ctx context.Context) error { return c.putAny(ctx, i, "k", latest) })
		c.docker(ctx, "start", c.container(i))
		for _, serializable := range []bool{true, false} {
			c.eventually(ctx, "a read on the killed and restarted "+c.names[i], 60*time.Second, func(ctx context.Context) error { return c.expect(ctx, i, "k", latest, serializable) })
		}
		ph.done("killed and restarted " + c.names[i] + ": reads what was written while it was down")
	}
	ph.total()
}

// stsUp reads the StatefulSet manifest and creates the network; pods are
// started by run. Everything is removed at the end.
func stsUp(ctx context.Context, t *testing.T) *stsCluster {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot(t), "deploy/kubernetes/statefulset.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	set := &appsv1.StatefulSet{}
	if err := yaml.Unmarshal(data, set); err != nil {
		t.Fatal(err)
	}
	c := &stsCluster{nodes: &nodes{t: t}, set: set, prefix: fmt.Sprintf("concordsts%d", os.Getpid())}
	c.network = c.prefix + "_net"
	t.Cleanup(c.remove)
	c.docker(ctx, "network", "create", c.network)
	return c
}

// pod is ordinal i's pod name.
func (c *stsCluster) pod(i int) string { return c.set.Name + "-" + strconv.Itoa(i) }

func (c *stsCluster) container(i int) string { return c.prefix + "-" + c.pod(i) }

func (c *stsCluster) volume(i int) string { return c.prefix + "-data-" + c.pod(i) }

// run starts ordinal i's container as the StatefulSet would start its pod
// and returns its index in nodes.
func (c *stsCluster) run(ctx context.Context, i int) int {
	c.t.Helper()
	pod := c.pod(i)
	spec := c.set.Spec.Template.Spec.Containers[0]
	port := freePorts(c.t, 1)[0]
	args := []string{"run", "--detach", "--name", c.container(i),
		"--network", c.network, "--network-alias", pod + "." + c.set.Spec.ServiceName + "." + podNamespace + ".svc",
		"--publish", fmt.Sprintf("127.0.0.1:%d:2379", port),
		"--volume", c.volume(i) + ":" + spec.VolumeMounts[0].MountPath,
		"--read-only", // readOnlyRootFilesystem
	}
	for _, e := range spec.Env {
		if e.ValueFrom == nil || e.ValueFrom.FieldRef == nil {
			args = append(args, "--env", e.Name+"="+e.Value)
			continue
		}
		switch e.ValueFrom.FieldRef.FieldPath {
		case "metadata.name":
			args = append(args, "--env", e.Name+"="+pod)
		case "metadata.namespace":
			args = append(args, "--env", e.Name+"="+podNamespace)
		default:
			c.t.Fatalf("env %s: no stand-in for %s", e.Name, e.ValueFrom.FieldRef.FieldPath)
		}
	}
	args = append(args, image)
	args = append(args, spec.Args...)
	c.docker(ctx, args...)
	c.add(pod, port)
	return len(c.clients) - 1
}

// remove deletes every container, volume and the network, after logging
// the containers' last lines if the test failed.
func (c *stsCluster) remove() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for i := range c.clients {
		if c.t.Failed() {
			out, _ := exec.CommandContext(ctx, "docker", "logs", "--tail", "30", c.container(i)).CombinedOutput()
			c.t.Logf("%s logs:\n%s", c.pod(i), out)
		}
		_ = exec.CommandContext(ctx, "docker", "rm", "--force", "--volumes", c.container(i)).Run()
		_ = exec.CommandContext(ctx, "docker", "volume", "rm", c.volume(i)).Run()
	}
	if out, err := exec.CommandContext(ctx, "docker", "network", "rm", c.network).CombinedOutput(); err != nil {
		c.t.Errorf("docker network rm: %v: %s", err, out)
	}
}
