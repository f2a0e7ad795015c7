package compare

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// System is a server binary that takes etcd's cluster flags: Concord's
// `concord start` or etcd itself.
type System struct {
	// Name labels the system in reports: "concord" or "etcd".
	Name string
	// Command is the binary and any leading arguments (e.g. "start").
	Command []string
}

// Cluster-lifecycle bounds. A cluster that is not serving writes within
// readyTimeout failed to start; a member that ignores SIGTERM for
// stopTimeout is killed.
const (
	readyTimeout = 60 * time.Second
	stopTimeout  = 10 * time.Second
)

// member is one server process of a cluster.
type member struct {
	name, dir    string
	client, peer string // host:port
	cmd          *exec.Cmd
	log          *os.File
	exited       chan struct{}
}

// cluster is a running set of members of one System on loopback.
type cluster struct {
	sys     System
	members []*member
}

// startCluster starts n members of sys with data under dir, each on free
// loopback ports, and returns once every member accepts a write.
func startCluster(ctx context.Context, sys System, dir string, n int) (*cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &cluster{sys: sys}
	var initial []string
	for i := 0; i < n; i++ {
		m := &member{
			name:   fmt.Sprintf("%s%d", sys.Name, i+1),
			client: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			peer:   fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
		}
		m.dir = filepath.Join(dir, m.name)
		c.members = append(c.members, m)
		initial = append(initial, m.name+"=http://"+m.peer)
	}
	for _, m := range c.members {
		if err := m.start(sys, strings.Join(initial, ","), dir); err != nil {
			c.stop()
			return nil, err
		}
	}
	if err := c.waitReady(ctx); err != nil {
		c.stop()
		return nil, err
	}
	return c, nil
}

func (m *member) start(sys System, initial, dir string) error {
	args := append(append([]string(nil), sys.Command[1:]...),
		"--name", m.name, "--data-dir", m.dir,
		"--listen-client-urls", "http://"+m.client, "--advertise-client-urls", "http://"+m.client,
		"--listen-peer-urls", "http://"+m.peer, "--initial-advertise-peer-urls", "http://"+m.peer,
		"--initial-cluster", initial, "--initial-cluster-state", "new",
		"--initial-cluster-token", "bench-"+sys.Name, "--log-level", "warn")
	log, err := os.Create(filepath.Join(dir, m.name+".log"))
	if err != nil {
		return err
	}
	m.log = log
	m.cmd = exec.Command(sys.Command[0], args...)
	m.cmd.Stdout, m.cmd.Stderr = log, log
	if err := m.cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("compare: start %s: %w", m.name, err)
	}
	m.exited = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait() // the exit status is in the member's log
		close(done)
	}(m.cmd, m.exited)
	return nil
}

// waitReady returns once a Put through every member's endpoint succeeds.
func (c *cluster) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	for _, m := range c.members {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{m.client}, DialTimeout: readyTimeout, Logger: zap.NewNop()})
		if err != nil {
			return err
		}
		for {
			pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
			_, err = cli.Put(pctx, "bench-ready", m.name)
			pcancel()
			if err == nil {
				break
			}
			select {
			case <-m.exited:
				err = fmt.Errorf("compare: %s exited while starting; see %s", m.name, m.log.Name())
			case <-ctx.Done():
				err = fmt.Errorf("compare: %s not ready after %v: %w", m.name, readyTimeout, err)
			case <-time.After(100 * time.Millisecond):
				continue
			}
			break
		}
		cli.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// endpoints returns the members' client addresses.
func (c *cluster) endpoints() []string {
	var out []string
	for _, m := range c.members {
		out = append(out, m.client)
	}
	return out
}

// cpuSeconds sums the CPU time every member has used so far.
func (c *cluster) cpuSeconds() (float64, error) {
	var sum float64
	for _, m := range c.members {
		s, err := cpuSeconds(m.cmd.Process.Pid)
		if err != nil {
			return 0, fmt.Errorf("compare: %s: %w", m.name, err)
		}
		sum += s
	}
	return sum, nil
}

// peakRSS returns every member's peak RSS in bytes, in member order.
func (c *cluster) peakRSS() ([]int64, error) {
	var out []int64
	for _, m := range c.members {
		b, err := peakRSS(m.cmd.Process.Pid)
		if err != nil {
			return nil, fmt.Errorf("compare: %s: %w", m.name, err)
		}
		out = append(out, b)
	}
	return out, nil
}

// stop ends every member: SIGTERM, then SIGKILL after stopTimeout.
func (c *cluster) stop() {
	for _, m := range c.members {
		if m.cmd != nil && m.cmd.Process != nil {
			_ = m.cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited
		}
	}
	for _, m := range c.members {
		if m.exited == nil {
			continue
		}
		select {
		case <-m.exited:
		case <-time.After(stopTimeout):
			_ = m.cmd.Process.Kill()
			<-m.exited
		}
		m.log.Close()
	}
}

// freePorts reserves n loopback ports by binding and releasing them.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, errors.Join(errors.New("compare: no free port"), err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// Cluster is a running cluster of one System, started by StartCluster for
// a caller outside this package (`concord bench load --local-etcd`).
type Cluster struct{ c *cluster }

// StartCluster starts n members of sys with data and logs under dir, on
// free loopback ports, and returns once every member accepts a write.
// sys.Command may carry the system's own flags after the binary (etcd's
// --quota-backend-bytes); the cluster flags are added after them. The
// caller stops the cluster.
func StartCluster(ctx context.Context, sys System, dir string, n int) (*Cluster, error) {
	c, err := startCluster(ctx, sys, dir, n)
	if err != nil {
		return nil, err
	}
	return &Cluster{c: c}, nil
}

// Endpoints returns the members' client host:port addresses.
func (c *Cluster) Endpoints() []string { return c.c.endpoints() }

// Stop ends every member: SIGTERM, then SIGKILL after a grace period.
func (c *Cluster) Stop() { c.c.stop() }

// RSS returns member i's resident set size now (VmRSS), in bytes, and the
// sum of every member's: the memory a step added, read before and after
// it (`concord bench watch --local-compare`).
func (c *Cluster) RSS(i int) (member, all int64, err error) {
	for j, m := range c.c.members {
		b, err := rss(m.cmd.Process.Pid)
		if err != nil {
			return 0, 0, fmt.Errorf("compare: %s: %w", m.name, err)
		}
		if j == i {
			member = b
		}
		all += b
	}
	return member, all, nil
}
