package chaos

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
)

// Ports every node uses inside its own namespace.
const (
	clientPort = 2379
	peerPort   = 2380
)

// Cluster is N `concord start` processes, node i in namespace i of a
// Network. Its methods are safe for concurrent use.
type Cluster struct {
	net    *Network
	logDir string
	args   [][]string // per node: the `ip netns exec … concord start …` argv, but --initial-cluster-state
	// clocks holds each node's --unsafe-clock-offset-file, when the run
	// jumps clocks.
	clocks []string

	mu struct {
		sync.Mutex
		procs []*process // nil while a node is down
		// starts counts each node's starts; it picks the restart's
		// --initial-cluster-state.
		starts []int
		// crashes records nodes that exited without being killed.
		crashes []string
	}
}

// process is one running node process.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once Wait returns
	killed bool          // set before the harness kills it
	paused bool
}

// ClusterOptions configures StartCluster.
type ClusterOptions struct {
	// Binary is the concord binary each node runs.
	Binary string
	// DataDir holds node i's data under nI/.
	DataDir string
	// LogDir holds node i's output in nI.log, appended across restarts.
	LogDir string
	// ReplicationFactor is passed to every node (0: the number of nodes).
	ReplicationFactor int
	// UnsafeNoReadLease passes --unsafe-no-read-lease to every node.
	UnsafeNoReadLease bool
	// UnsafeTxnNoRecord passes --unsafe-txn-no-record to every node.
	UnsafeTxnNoRecord bool
	// ClockFiles gives every node an --unsafe-clock-offset-file, so that
	// SetClockOffset can make its wall clock jump.
	ClockFiles bool
	// Redis gives every node a Redis port (RedisAddr), and so AP
	// keyspaces.
	Redis bool
	// APAntiEntropyInterval, if not 0, is passed as every node's
	// --ap-anti-entropy-interval.
	APAntiEntropyInterval time.Duration
	// UnsafeAPDropHints passes --unsafe-ap-drop-hints to every node.
	UnsafeAPDropHints bool
}

// readyTimeout bounds the wait for a fresh cluster to answer.
const readyTimeout = 60 * time.Second

// StartCluster starts one node per namespace of w and returns once every
// node answers a linearizable read.
func StartCluster(ctx context.Context, w *Network, opts ClusterOptions) (*Cluster, error) {
	rf := opts.ReplicationFactor
	if rf <= 0 {
		rf = w.nodes
	}
	c := &Cluster{net: w, logDir: opts.LogDir}
	c.mu.procs = make([]*process, w.nodes)
	c.mu.starts = make([]int, w.nodes)
	var members []string
	for i := 0; i < w.nodes; i++ {
		members = append(members, fmt.Sprintf("n%d=http://%s:%d", i+1, w.IP(i), peerPort))
	}
	for i := 0; i < w.nodes; i++ {
		client := fmt.Sprintf("http://%s:%d", w.IP(i), clientPort)
		peer := fmt.Sprintf("http://%s:%d", w.IP(i), peerPort)
		a := []string{"netns", "exec", w.Namespace(i), opts.Binary, "start",
			"--name", fmt.Sprintf("n%d", i+1), "--data-dir", filepath.Join(opts.DataDir, fmt.Sprintf("n%d", i+1)),
			"--listen-client-urls", client, "--advertise-client-urls", client,
			"--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
			"--initial-cluster", strings.Join(members, ","),
			"--initial-cluster-token", fmt.Sprintf("chaos-%d", w.pid),
			"--replication-factor", fmt.Sprint(rf), "--log-level", "warn"}
		if opts.UnsafeNoReadLease {
			a = append(a, "--unsafe-no-read-lease")
		}
		if opts.UnsafeTxnNoRecord {
			a = append(a, "--unsafe-txn-no-record")
		}
		if opts.Redis {
			a = append(a, "--listen-redis-urls", fmt.Sprintf("redis://%s:%d", w.IP(i), redisPort))
		}
		if opts.APAntiEntropyInterval != 0 {
			a = append(a, "--ap-anti-entropy-interval", opts.APAntiEntropyInterval.String())
		}
		if opts.UnsafeAPDropHints {
			a = append(a, "--unsafe-ap-drop-hints")
		}
		if opts.ClockFiles {
			path := filepath.Join(opts.DataDir, fmt.Sprintf("n%d.clock", i+1))
			c.clocks = append(c.clocks, path)
			a = append(a, "--unsafe-clock-offset-file", path)
		}
		c.args = append(c.args, a)
	}
	for i := 0; i < w.nodes; i++ {
		if err := c.Start(i); err != nil {
			c.Stop()
			return nil, err
		}
	}
	deadline := time.Now().Add(readyTimeout)
	for i := 0; i < w.nodes; i++ {
		for {
			err := c.probe(ctx, i)
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				c.Stop()
				return nil, fmt.Errorf("chaos: node n%d not ready after %v: %w", i+1, readyTimeout, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return c, nil
}

// Size is the number of nodes.
func (c *Cluster) Size() int { return len(c.args) }

// ClientAddr is node i's client address as host:port.
func (c *Cluster) ClientAddr(i int) string {
	return fmt.Sprintf("%s:%d", c.net.IP(i), clientPort)
}

// RedisAddr is node i's Redis port as host:port (a cluster started with
// Redis).
func (c *Cluster) RedisAddr(i int) string {
	return fmt.Sprintf("%s:%d", c.net.IP(i), redisPort)
}

func (c *Cluster) logPath(i int) string {
	return filepath.Join(c.logDir, fmt.Sprintf("n%d.log", i+1))
}

// newClient returns a client pinned to node i: one endpoint, no member
// sync, so every request goes to that node.
func newClient(addrs ...string) (*clientv3.Client, error) {
	return clientv3.New(clientv3.Config{
		Endpoints:            addrs,
		DialTimeout:          2 * time.Second,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		Logger:               zap.NewNop(),
		// gRPC's default reconnect backoff grows to two minutes; a client
		// whose node was killed or paused for seconds must reconnect as
		// soon as the node is back, or availability reads low for the
		// client's sake, not the cluster's.
		DialOptions: []grpc.DialOption{grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: time.Second,
		})},
	})
}

// probe does one linearizable read through node i.
func (c *Cluster) probe(ctx context.Context, i int) error {
	cli, err := newClient(c.ClientAddr(i))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = cli.Get(ctx, "chaos/probe")
	return err
}

// splitTimeout bounds one split of the split-range fault.
const splitTimeout = 10 * time.Second

// Split asks node i to split the range holding key so that a range starts
// at key (concord range split).
func (c *Cluster) Split(ctx context.Context, i int, key string) error {
	cli, err := newClient(c.ClientAddr(i))
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, splitTimeout)
	defer cancel()
	_, err = rpcpb.NewAdminClient(cli.ActiveConnection()).SplitRange(ctx, &rpcpb.SplitRangeRequest{Key: []byte(key)})
	return err
}

// Merge asks node i to merge one of the cluster's ranges, picked by pick
// among those that have a left neighbour, into that neighbour, and returns
// the key the merged range started at ("" if there was none to merge).
func (c *Cluster) Merge(ctx context.Context, i int, pick uint64) (string, error) {
	cli, err := newClient(c.ClientAddr(i))
	if err != nil {
		return "", err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, splitTimeout)
	defer cancel()
	admin := rpcpb.NewAdminClient(cli.ActiveConnection())
	resp, err := admin.Ranges(ctx, &rpcpb.RangesRequest{})
	if err != nil {
		return "", err
	}
	if len(resp.GetRanges()) < 2 {
		return "", nil
	}
	right := resp.GetRanges()[1+int(pick%uint64(len(resp.GetRanges())-1))]
	_, err = admin.MergeRange(ctx, &rpcpb.MergeRangeRequest{Key: right.GetStartKey()})
	return string(right.GetStartKey()), err
}

// Start starts node i (again), keeping its data.
func (c *Cluster) Start(i int) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.mu.procs[i] != nil {
		return fmt.Errorf("chaos: node n%d is running", i+1)
	}
	log, err := os.OpenFile(c.logPath(i), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// The first start bootstraps; restarts alternate between the states
	// operators restart members with (existing first, as etcd's docs
	// say): a member with data must come back as itself either way.
	state := "new"
	if c.mu.starts[i]%2 == 1 {
		state = "existing"
	}
	c.mu.starts[i]++
	fmt.Fprintf(log, "=== chaos: start n%d at %s with --initial-cluster-state %s\n", i+1, time.Now().Format(time.RFC3339Nano), state)
	cmd := exec.Command("ip", append(slices.Clone(c.args[i]), "--initial-cluster-state", state)...)
	cmd.Stdout, cmd.Stderr = log, log
	// Own process group: a terminal's Ctrl-C reaches only the harness,
	// which then tears down in order. Pdeathsig: if the harness dies
	// anyway, the node dies with it (ip netns exec execs concord, which
	// keeps the setting).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		log.Close()
		return fmt.Errorf("chaos: start n%d: %w", i+1, err)
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	c.mu.procs[i] = p
	go func() {
		err := cmd.Wait()
		log.Close()
		c.mu.Lock()
		if !p.killed {
			c.mu.crashes = append(c.mu.crashes, fmt.Sprintf("n%d exited on its own: %v (log %s)", i+1, err, c.logPath(i)))
			if c.mu.procs[i] == p {
				c.mu.procs[i] = nil
			}
		}
		c.mu.Unlock()
		close(p.exited)
	}()
	return nil
}

// Kill SIGKILLs node i and waits for it to exit. Killing a stopped node
// does nothing.
func (c *Cluster) Kill(i int) {
	c.mu.Lock()
	p := c.mu.procs[i]
	c.mu.procs[i] = nil
	if p != nil {
		p.killed = true
	}
	c.mu.Unlock()
	if p == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// Pause sends SIGSTOP to node i; Resume sends SIGCONT.
func (c *Cluster) Pause(i int) error { return c.signal(i, syscall.SIGSTOP, true) }

// Resume continues node i after Pause.
func (c *Cluster) Resume(i int) error { return c.signal(i, syscall.SIGCONT, false) }

func (c *Cluster) signal(i int, sig syscall.Signal, paused bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.mu.procs[i]
	if p == nil {
		return fmt.Errorf("chaos: node n%d is down", i+1)
	}
	p.paused = paused
	return p.cmd.Process.Signal(sig)
}

// Crashes lists the nodes that exited without being killed.
func (c *Cluster) Crashes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.mu.crashes...)
}

// Leader asks the nodes, in order, for the meta range's leader (the
// leader the etcd Status RPC reports) and returns its index, or -1 if no
// running node names one within the timeout.
func (c *Cluster) Leader(ctx context.Context) int {
	for i := 0; i < c.Size(); i++ {
		c.mu.Lock()
		p := c.mu.procs[i]
		up := p != nil && !p.paused
		c.mu.Unlock()
		if !up {
			continue
		}
		if l := c.leaderVia(ctx, i); l >= 0 {
			return l
		}
	}
	return -1
}

func (c *Cluster) leaderVia(ctx context.Context, i int) int {
	cli, err := newClient(c.ClientAddr(i))
	if err != nil {
		return -1
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	st, err := cli.Status(ctx, c.ClientAddr(i))
	// Node ids are positions in --initial-cluster, from 1.
	if err != nil || st.Leader == 0 || st.Leader > uint64(c.Size()) {
		return -1
	}
	return int(st.Leader) - 1
}

// Stop kills every node and waits for them.
func (c *Cluster) Stop() {
	for i := 0; i < c.Size(); i++ {
		c.Kill(i)
	}
}

// SetClockOffset shifts node i's wall clock by d (0 puts it back); the node
// notices within 50 ms. Only for a cluster started with ClockFiles.
func (c *Cluster) SetClockOffset(i int, d time.Duration) error {
	if i >= len(c.clocks) {
		return fmt.Errorf("chaos: node n%d has no clock file (start the cluster with ClockFiles)", i+1)
	}
	return os.WriteFile(c.clocks[i], []byte(d.String()+"\n"), 0o644)
}
