package ap

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// GossipConfig configures StartGossip.
type GossipConfig struct {
	// ID is this node's id; its memberlist name is the id in decimal.
	ID uint64
	// BindAddr is host:port of the gossip listener (UDP and TCP on the
	// same port); port 0 picks a free one.
	BindAddr string
	// Fast uses memberlist's local-network timings (probe every second,
	// 200 ms probe timeout, suspicion x3, at most x2 longer without
	// confirmations): a dead node is noticed in a few seconds. Otherwise
	// its LAN timings.
	Fast bool
	// Discover returns the gossip addresses of known nodes that this node
	// does not see alive (from the cluster's address book, asked over the
	// peer port), for the join loop. nil: no join loop.
	Discover func(ctx context.Context, missing func(id uint64) bool) []string
	Logger   *slog.Logger
}

// rejoinInterval is how often the join loop looks for known nodes that
// the membership does not see alive: memberlist never probes a node it
// declared dead again, so a healed partition needs a fresh join.
const rejoinInterval = time.Second

// deadNodeReclaimTime is how long a node must have been dead before it
// may come back at another address (memberlist's DeadNodeReclaimTime; 0
// there means never, until the dead entry is forgotten).
const deadNodeReclaimTime = time.Millisecond

// Gossip is the AP ring's membership: memberlist (SWIM) for failure
// detection, plus every node it ever saw, so that a dead node keeps its
// place in preference lists (its slots go to fallbacks holding hints) and
// comes back to it. Safe for concurrent use.
type Gossip struct {
	cfg   GossipConfig
	ml    *memberlist.Memberlist
	fault atomic.Pointer[Fault]

	mu struct {
		sync.Mutex
		// alive maps every node ever seen to whether memberlist sees it
		// alive now. Invariant: alive[cfg.ID] is true.
		alive map[uint64]bool
		// ids maps the gossip address (host:port) of every node seen to
		// its id, for the fault hook: memberlist sends some packets by
		// address alone.
		ids map[string]uint64
	}

	stop chan struct{}
	wg   sync.WaitGroup
}

// StartGossip binds the gossip listener and starts memberlist and the
// join loop. Close stops them.
func StartGossip(cfg GossipConfig) (*Gossip, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	host, portStr, err := net.SplitHostPort(cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("ap: gossip address %q: %w", cfg.BindAddr, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil {
		return nil, fmt.Errorf("ap: gossip port %q: %w", portStr, err)
	}
	if host == "" {
		host = "0.0.0.0"
	}
	if ips, err := net.LookupIP(host); err == nil && len(ips) > 0 && net.ParseIP(host) == nil {
		host = ips[0].String()
	}
	g := &Gossip{cfg: cfg, stop: make(chan struct{})}
	g.mu.alive = map[uint64]bool{cfg.ID: true}
	g.mu.ids = map[string]uint64{}
	logw := &slogWriter{log: cfg.Logger}
	nt, err := memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{host}, BindPort: port, Logger: logw.logger()})
	if err != nil {
		return nil, fmt.Errorf("ap: gossip listener on %s: %w", cfg.BindAddr, err)
	}
	mc := memberlist.DefaultLANConfig()
	if cfg.Fast {
		mc = memberlist.DefaultLocalConfig()
		// A node cut off from all others gets no confirmation of its
		// suspicions, so Lifeguard would wait the maximum, 6 times the
		// suspicion timeout, before it sees them dead; twice is enough
		// on a loopback or local network.
		mc.SuspicionMaxTimeoutMult = 2
	}
	mc.Name = strconv.FormatUint(cfg.ID, 10)
	// A node that crashed and came back on another port (the default
	// gossip port is a free one, picked anew at every start) is refused
	// as a name conflict until memberlist forgets the dead entry
	// (GossipToTheDeadTime: 30 s on a LAN), so for that long its peers
	// route its slots to fallbacks and hold its hints. Node ids are never
	// reused by another node, so a dead id showing up at a new address
	// is that node back: let it reclaim its name at once.
	mc.DeadNodeReclaimTime = deadNodeReclaimTime
	mc.Transport = &faultTransport{NodeAwareTransport: nt, g: g}
	mc.Events = (*gossipEvents)(g)
	mc.Logger = logw.logger()
	if g.ml, err = memberlist.Create(mc); err != nil {
		_ = nt.Shutdown()
		return nil, fmt.Errorf("ap: gossip: %w", err)
	}
	if cfg.Discover != nil {
		g.wg.Add(1)
		go g.runJoin()
	}
	return g, nil
}

// Addr is host:port that other nodes reach this node's gossip on.
func (g *Gossip) Addr() string {
	n := g.ml.LocalNode()
	return net.JoinHostPort(n.Addr.String(), strconv.Itoa(int(n.Port)))
}

// Members returns every node ever seen and whether it is alive now
// (Membership).
func (g *Gossip) Members() []Member {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]Member, 0, len(g.mu.alive))
	for id, alive := range g.mu.alive {
		out = append(out, Member{ID: id, Alive: alive})
	}
	return out
}

// Join contacts the nodes at addrs (host:port) and returns how many
// answered.
func (g *Gossip) Join(addrs []string) (int, error) { return g.ml.Join(addrs) }

// SetFault installs f (nil removes it): gossip to a node it cuts is
// dropped, as by a partition. Tests and the demo only.
func (g *Gossip) SetFault(f Fault) {
	if f == nil {
		g.fault.Store(nil)
		return
	}
	g.fault.Store(&f)
}

// Close leaves the cluster (telling the others this node is gone, briefly)
// and stops memberlist and the join loop.
func (g *Gossip) Close() {
	close(g.stop)
	g.wg.Wait()
	if err := g.ml.Leave(time.Second); err != nil {
		g.cfg.Logger.Debug("ap: gossip leave", "err", err)
	}
	if err := g.ml.Shutdown(); err != nil {
		g.cfg.Logger.Warn("ap: gossip shutdown", "err", err)
	}
}

func (g *Gossip) runJoin() {
	defer g.wg.Done()
	t := time.NewTicker(rejoinInterval)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), rejoinInterval)
		addrs := g.cfg.Discover(ctx, g.missing)
		cancel()
		if len(addrs) > 0 {
			if _, err := g.ml.Join(addrs); err != nil {
				g.cfg.Logger.Debug("ap: gossip join", "addrs", addrs, "err", err)
			}
		}
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
	}
}

// missing reports whether id is not seen alive (or not seen at all).
func (g *Gossip) missing(id uint64) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return id != g.cfg.ID && !g.mu.alive[id]
}

// gossipEvents is memberlist's event delegate for a Gossip.
type gossipEvents Gossip

func nodeID(n *memberlist.Node) (uint64, bool) {
	id, err := strconv.ParseUint(n.Name, 10, 64)
	return id, err == nil && id != 0
}

func (e *gossipEvents) set(n *memberlist.Node, alive bool) {
	id, ok := nodeID(n)
	if !ok || id == e.cfg.ID {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.mu.alive[id] = alive
	e.mu.ids[n.Address()] = id
}

func (e *gossipEvents) NotifyJoin(n *memberlist.Node)   { e.set(n, true) }
func (e *gossipEvents) NotifyLeave(n *memberlist.Node)  { e.set(n, false) }
func (e *gossipEvents) NotifyUpdate(n *memberlist.Node) { e.set(n, true) }

// faultTransport is memberlist's network transport with the Gossip's
// Fault applied: packets and streams to a cut node are dropped. The Fault
// is symmetric on both ends, so cutting the sends cuts the link.
type faultTransport struct {
	memberlist.NodeAwareTransport
	g *Gossip
}

var errGossipCut = errors.New("ap: gossip link cut by a fault")

func (t *faultTransport) cut(a memberlist.Address) bool {
	f := t.g.fault.Load()
	if f == nil {
		return false
	}
	id, err := strconv.ParseUint(a.Name, 10, 64)
	if err != nil {
		t.g.mu.Lock()
		id = t.g.mu.ids[a.Addr]
		t.g.mu.Unlock()
	}
	return id != 0 && (*f)(t.g.cfg.ID, id)
}

func (t *faultTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

func (t *faultTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *faultTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	if t.cut(a) {
		return time.Now(), nil // lost on the way, as UDP is
	}
	return t.NodeAwareTransport.WriteToAddress(b, a)
}

func (t *faultTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if t.cut(a) {
		return nil, errGossipCut
	}
	return t.NodeAwareTransport.DialAddressTimeout(a, timeout)
}

// slogWriter turns memberlist's log lines ("[DEBUG] memberlist: ...") into
// slog records: warnings and errors at their level, the rest at debug.
type slogWriter struct{ log *slog.Logger }

func (w *slogWriter) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	switch {
	case strings.Contains(line, "[ERR]"):
		w.log.Error("ap: memberlist", "msg", line)
	case strings.Contains(line, "[WARN]"):
		// Suspicions and failed probes: expected whenever a node dies.
		w.log.Info("ap: memberlist", "msg", line)
	default:
		w.log.Debug("ap: memberlist", "msg", line)
	}
	return len(p), nil
}

func (w *slogWriter) logger() *log.Logger { return log.New(w, "", 0) }

var _ Membership = (*Gossip)(nil)
