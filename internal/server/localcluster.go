package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/concorddb/concord/internal/tlsutil"
)

// LocalCluster runs several nodes inside one process on loopback: the
// demo, and the in-process cluster tests. Each node has its own engine,
// listeners and data directory, so it behaves as a separate process would,
// short of the network.
type LocalCluster struct {
	dir string
	log *slog.Logger

	mu    sync.Mutex
	cfgs  []Config
	nodes []*Node // nil while stopped

	// demo is the dashboard's fault state (demo.go).
	demo demoState
}

// LocalOptions configures a LocalCluster.
type LocalOptions struct {
	// BasePort, if set, gives node i the client port BasePort+10000*i and
	// the peer port one above it (2379/2380, 12379/12380, ...); 0 picks
	// free ports.
	BasePort int
	Logger   *slog.Logger
	// Tune may adjust each node's config before it starts.
	Tune func(i int, c *Config)
	// RestoreFrom, if set, is a backup every node restores before its
	// first start.
	RestoreFrom string
	// HTTP gives every node an HTTP port (metrics, health, dashboard): with
	// BasePort, two above its client port (2381, 12381, ...).
	HTTP bool
	// Faults lets the dashboard stop, restart and isolate nodes.
	Faults bool
	// CertsDir, if set, turns on client and peer TLS with client
	// certificates required, from the files `concord cert` writes there:
	// ca.crt, and node.crt and node.key, which every node shares (peers
	// must present the CN "node"). The HTTP port stays plain.
	CertsDir string
	// Redis gives every node a Redis port and AP keyspaces: with
	// RedisBasePort, node i's is RedisBasePort+i (6379, 6380, ...); 0
	// picks free ports.
	Redis         bool
	RedisBasePort int
}

// StartLocalCluster starts n nodes with data under dir and returns once all
// serve clients.
func StartLocalCluster(n int, dir string, opts LocalOptions) (*LocalCluster, error) {
	if n < 1 {
		return nil, errors.New("server: a cluster needs at least one node")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &LocalCluster{dir: dir, log: opts.Logger}
	var clientLis, peerLis, httpLis, redisLis []net.Listener
	closeAll := func() {
		for _, l := range append(append(append(clientLis, peerLis...), httpLis...), redisLis...) {
			l.Close()
		}
	}
	scheme := "http://"
	if opts.CertsDir != "" {
		scheme = "https://"
	}
	var members []string
	for i := 0; i < n; i++ {
		ca, pa := "127.0.0.1:0", "127.0.0.1:0"
		if opts.BasePort != 0 {
			ca = fmt.Sprintf("127.0.0.1:%d", opts.BasePort+10000*i)
			pa = fmt.Sprintf("127.0.0.1:%d", opts.BasePort+10000*i+1)
		}
		cl, err := net.Listen("tcp", ca)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("server: node %d client port: %w", i+1, err)
		}
		clientLis = append(clientLis, cl)
		pl, err := net.Listen("tcp", pa)
		if err != nil {
			closeAll()
			return nil, fmt.Errorf("server: node %d peer port: %w", i+1, err)
		}
		peerLis = append(peerLis, pl)
		if opts.HTTP {
			ha := "127.0.0.1:0"
			if opts.BasePort != 0 {
				ha = fmt.Sprintf("127.0.0.1:%d", opts.BasePort+10000*i+2)
			}
			hl, err := net.Listen("tcp", ha)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("server: node %d http port: %w", i+1, err)
			}
			httpLis = append(httpLis, hl)
		}
		if opts.Redis {
			ra := "127.0.0.1:0"
			if opts.RedisBasePort != 0 {
				ra = fmt.Sprintf("127.0.0.1:%d", opts.RedisBasePort+i)
			}
			rl, err := net.Listen("tcp", ra)
			if err != nil {
				closeAll()
				return nil, fmt.Errorf("server: node %d redis port: %w", i+1, err)
			}
			redisLis = append(redisLis, rl)
		}
		members = append(members, fmt.Sprintf("n%d=%s%s", i+1, scheme, pl.Addr()))
	}
	for i := 0; i < n; i++ {
		cfg := DefaultConfig()
		cfg.Name = fmt.Sprintf("n%d", i+1)
		cfg.DataDir = filepath.Join(dir, cfg.Name)
		cfg.ListenClientURLs = []string{scheme + clientLis[i].Addr().String()}
		cfg.AdvertiseClientURLs = cfg.ListenClientURLs
		cfg.ListenPeerURLs = []string{scheme + peerLis[i].Addr().String()}
		cfg.InitialAdvertisePeerURLs = cfg.ListenPeerURLs
		cfg.InitialCluster = strings.Join(members, ",")
		cfg.InitialClusterToken = "concord-local"
		cfg.Logger = opts.Logger
		if opts.HTTP {
			cfg.ListenMetricsURLs = []string{"http://" + httpLis[i].Addr().String()}
		}
		if opts.Redis {
			cfg.ListenRedisURLs = []string{"redis://" + redisLis[i].Addr().String()}
		}
		if opts.Faults {
			cfg.Demo = c
		}
		if opts.CertsDir != "" {
			cfg.ClientTLS = certsDirTLS(opts.CertsDir)
			cfg.PeerTLS = certsDirTLS(opts.CertsDir)
			cfg.PeerTLS.AllowedCN = "node"
		}
		if opts.Tune != nil {
			opts.Tune(i, &cfg)
		}
		c.cfgs = append(c.cfgs, cfg)
	}
	if opts.RestoreFrom != "" {
		for _, cfg := range c.cfgs {
			if _, err := Restore(cfg, opts.RestoreFrom); err != nil {
				closeAll()
				return nil, err
			}
		}
	}
	c.nodes = make([]*Node, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range c.cfgs {
		cfg := c.cfgs[i]
		cfg.ClientListener, cfg.PeerListener = clientLis[i], peerLis[i]
		if opts.HTTP {
			cfg.MetricsListener = httpLis[i]
		}
		if opts.Redis {
			cfg.RedisListener = redisLis[i]
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.nodes[i], errs[i] = Start(cfg)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Stop()
		closeAll()
		return nil, err
	}
	return c, nil
}

// Size is the number of nodes, running or not.
func (c *LocalCluster) Size() int { return len(c.cfgs) }

// Node returns node i (0-based), or nil while it is stopped.
func (c *LocalCluster) Node(i int) *Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes[i]
}

// ClientURLs returns every node's client URL.
func (c *LocalCluster) ClientURLs() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		out[i] = cfg.AdvertiseClientURLs[0]
	}
	return out
}

// ClientAddrs returns every node's client host:port.
func (c *LocalCluster) ClientAddrs() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		u := cfg.AdvertiseClientURLs[0]
		out[i] = u[strings.Index(u, "://")+len("://"):]
	}
	return out
}

// RedisAddrs returns every node's Redis host:port (empty strings without
// LocalOptions.Redis).
func (c *LocalCluster) RedisAddrs() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		if len(cfg.ListenRedisURLs) > 0 {
			out[i] = strings.TrimPrefix(cfg.ListenRedisURLs[0], "redis://")
		}
	}
	return out
}

// StopNode stops node i, as a crash would, short of losing unsynced data:
// everything acknowledged is already fsynced.
func (c *LocalCluster) StopNode(i int) {
	c.mu.Lock()
	n := c.nodes[i]
	c.nodes[i] = nil
	c.mu.Unlock()
	if n != nil {
		n.Stop()
	}
}

// restartAttempts bounds the waits for a just-closed port to be free again.
const restartAttempts = 50

// RestartNode starts node i again on its old ports and data.
func (c *LocalCluster) RestartNode(i int) error {
	c.mu.Lock()
	if c.nodes[i] != nil {
		c.mu.Unlock()
		return fmt.Errorf("server: node %d is running", i+1)
	}
	c.mu.Unlock()
	var (
		n   *Node
		err error
	)
	for attempt := 0; attempt < restartAttempts; attempt++ {
		n, err = Start(c.cfgs[i])
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.nodes[i] = n
	c.mu.Unlock()
	return nil
}

// Stop stops every node.
func (c *LocalCluster) Stop() {
	var wg sync.WaitGroup
	for i := range c.cfgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.StopNode(i)
		}()
	}
	wg.Wait()
}

// certsDirTLS are the TLS options of a node using the files of a `concord
// cert` directory, with client certificates required.
func certsDirTLS(dir string) tlsutil.Options {
	return tlsutil.Options{
		CertFile:       filepath.Join(dir, tlsutil.NodeCertName),
		KeyFile:        filepath.Join(dir, tlsutil.NodeKeyName),
		TrustedCAFile:  filepath.Join(dir, tlsutil.CACertName),
		ClientCertAuth: true,
	}
}
