package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/concorddb/concord/internal/ap"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/resp"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// apState is a node's AP keyspaces: the engine over its Pebble, the gossip
// membership and the Redis port. All nil when the node has no Redis port.
type apState struct {
	node   *ap.Node
	gossip *ap.Gossip
	resp   *resp.Server
	lis    net.Listener
	// keyspaces are the keyspace records last loaded from the meta range
	// (apkeyspace.go); nil before the first load.
	keyspaces atomic.Pointer[map[uint32]ap.Keyspace]
}

// validateAP checks the Redis and gossip URLs.
func (c *Config) validateAP() error {
	for _, u := range c.ListenRedisURLs {
		if _, err := redisHostPort(u); err != nil {
			return err
		}
	}
	if len(c.ListenGossipURLs) > 1 {
		return errors.New("server: give one --listen-gossip-urls")
	}
	if len(c.ListenGossipURLs) > 0 && len(c.ListenRedisURLs) == 0 && c.RedisListener == nil {
		return errors.New("server: --listen-gossip-urls needs --listen-redis-urls (AP keyspaces are off without a Redis port)")
	}
	for _, u := range c.ListenGossipURLs {
		if _, err := listenHostPort(u); err != nil {
			return fmt.Errorf("server: --listen-gossip-urls %q: %w", u, err)
		}
	}
	return nil
}

// redisHostPort turns redis://HOST:PORT (or HOST:PORT) into HOST:PORT.
func redisHostPort(u string) (string, error) {
	if !strings.Contains(u, "://") {
		u = "redis://" + u
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", fmt.Errorf("server: --listen-redis-urls %q: %w", u, err)
	}
	if p.Scheme != "redis" {
		return "", fmt.Errorf("server: --listen-redis-urls %q: the scheme must be redis:// (TLS on the Redis port is not served yet)", u)
	}
	if _, _, err := net.SplitHostPort(p.Host); err != nil {
		return "", fmt.Errorf("server: --listen-redis-urls %q: %w", u, err)
	}
	return p.Host, nil
}

// gossipBindAddr is where the gossip listens: --listen-gossip-urls, or the
// peer listener's host on a free port.
func (n *Node) gossipBindAddr() (string, error) {
	if len(n.cfg.ListenGossipURLs) > 0 {
		return listenHostPort(n.cfg.ListenGossipURLs[0])
	}
	host, _, err := net.SplitHostPort(n.peerLis.Addr().String())
	if err != nil {
		return "", err
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = "0.0.0.0"
	}
	return net.JoinHostPort(host, "0"), nil
}

// startAP starts the AP keyspaces when the node has a Redis port: the
// gossip, the engine, its service on the peer server (which must not
// serve yet) and the Redis listener.
func (n *Node) startAP() error {
	if len(n.cfg.ListenRedisURLs) == 0 && n.cfg.RedisListener == nil {
		return nil
	}
	s := &n.ap
	s.lis = n.cfg.RedisListener
	if s.lis == nil {
		hp, err := redisHostPort(n.cfg.ListenRedisURLs[0])
		if err != nil {
			return err
		}
		if s.lis, err = net.Listen("tcp", hp); err != nil {
			return fmt.Errorf("server: listen redis: %w", err)
		}
	}
	bind, err := n.gossipBindAddr()
	if err != nil {
		return err
	}
	peers := ap.GRPCPeers{Dial: n.transport.Conn}
	host, _, _ := net.SplitHostPort(bind)
	ip := net.ParseIP(host)
	s.gossip, err = ap.StartGossip(ap.GossipConfig{
		ID:       n.ident.NodeID,
		BindAddr: bind,
		// Loopback clusters (demo, tests) notice a dead node in seconds.
		Fast: ip != nil && ip.IsLoopback(),
		Discover: func(ctx context.Context, missing func(uint64) bool) []string {
			return n.discoverGossip(ctx, peers, missing)
		},
		Logger: n.log,
	})
	if err != nil {
		return err
	}
	s.node, err = ap.New(ap.Config{
		ID:       n.ident.NodeID,
		Local:    ap.NewLocal(n.engine),
		Members:  s.gossip,
		Peers:    peers,
		Keyspace: ap.DefaultKeyspace(),
		// Until the first load (the meta range may have no leader yet)
		// every keyspace has the defaults.
		Keyspaces:           n.apKeyspace,
		AntiEntropyInterval: n.cfg.APAntiEntropyInterval,
		UnsafeDropHints:     n.cfg.UnsafeAPDropHints,
		Logger:              n.log,
	})
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go n.runAPKeyspaceRefresh()
	rpcpb.RegisterAPServer(n.peerServer, ap.NewService(s.node, n.ident.ClusterID, s.gossip.Addr))
	s.resp, err = resp.New(resp.Config{Store: apSpaceGuard{Node: s.node, n: n}, Version: Version, Info: n.apInfo, Logger: n.log})
	if err != nil {
		return err
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		if err := s.resp.Serve(s.lis); err != nil {
			n.log.Error("redis port stopped", "addr", s.lis.Addr().String(), "err", err)
		}
	}()
	n.log.Info("AP keyspaces on", "redis", s.lis.Addr().String(), "gossip", s.gossip.Addr())
	return nil
}

// discoverGossip asks the nodes of the address book that the gossip does
// not see alive for their gossip addresses, over the peer port.
func (n *Node) discoverGossip(ctx context.Context, peers ap.GRPCPeers, missing func(uint64) bool) []string {
	n.addrs.RLock()
	var ids []uint64
	for id := range n.addrs.nodes {
		if id != n.ident.NodeID && missing(id) {
			ids = append(ids, id)
		}
	}
	n.addrs.RUnlock()
	var (
		mu  sync.Mutex
		out []string
		wg  sync.WaitGroup
	)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			addr, err := peers.GossipAddr(ctx, id)
			if err != nil {
				// Down, cut off, or without a Redis port: asked again
				// next round.
				return
			}
			mu.Lock()
			out = append(out, addr)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return out
}

// apInfo is the "# Concord" section of INFO.
func (n *Node) apInfo() string {
	alive := 0
	ms := n.ap.gossip.Members()
	for _, m := range ms {
		if m.Alive {
			alive++
		}
	}
	k := ap.DefaultKeyspace()
	return fmt.Sprintf("node_id:%d\r\nap_members:%d\r\nap_members_alive:%d\r\nap_n:%d\r\nap_r:%d\r\nap_w:%d\r\ngossip_addr:%s\r\n",
		n.ident.NodeID, len(ms), alive, k.N, k.R, k.W, n.ap.gossip.Addr())
}

// stopAP stops the Redis port (waiting for its commands), the engine's
// background calls and the gossip. The peer server, stopped after, waits
// for the AP calls it serves; the engine closes last.
func (n *Node) stopAP() {
	s := &n.ap
	if s.resp != nil {
		s.resp.Close()
	} else if s.lis != nil {
		s.lis.Close()
	}
	if s.node != nil {
		s.node.Close()
	}
	if s.gossip != nil {
		s.gossip.Close()
	}
}

// setAPFault installs the demo's fault on the AP calls and the gossip.
func (n *Node) setAPFault(f func(from, to uint64) bool) {
	if n.ap.node == nil {
		return
	}
	n.ap.node.SetFault(f)
	n.ap.gossip.SetFault(f)
}

// RedisAddr is the Redis port's address ("" when the node has none).
func (n *Node) RedisAddr() string {
	if n.ap.lis == nil {
		return ""
	}
	return n.ap.lis.Addr().String()
}

// AP is the node's AP engine (nil without a Redis port): tests read
// replicas through it.
func (n *Node) AP() *ap.Node { return n.ap.node }

// apSpaceGuard refuses the Redis port's writes while the cluster has a
// NOSPACE alarm or this node is past its quota or free-space reserve, as
// the etcd API's are (a CRDT delete writes a tombstone, so deletes are
// refused too); reads go on.
type apSpaceGuard struct {
	*ap.Node
	n *Node
}

func (g apSpaceGuard) Update(ctx context.Context, ks uint32, key []byte, op ap.Op) error {
	if err := g.n.checkSpaceForWrite(ctx); err != nil {
		return errors.New("NOSPACE " + rpctypes.ErrorDesc(err))
	}
	return g.Node.Update(ctx, ks, key, op)
}
