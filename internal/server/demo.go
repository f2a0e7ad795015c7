package server

import (
	"fmt"
	"sync"
)

// demoState is a LocalCluster's fault-injection state for the dashboard.
type demoState struct {
	mu sync.RWMutex
	// isolated holds the ids of the nodes whose Raft traffic is cut.
	isolated map[uint64]bool
}

var _ DemoControl = (*LocalCluster)(nil)

// index turns a node id of an initial member into its index.
func (c *LocalCluster) index(id uint64) (int, error) {
	if id == 0 || id > uint64(len(c.cfgs)) {
		return 0, fmt.Errorf("server: no node %d in this %d-node cluster", id, len(c.cfgs))
	}
	return int(id - 1), nil
}

// DemoStop stops node id (DemoControl).
func (c *LocalCluster) DemoStop(id uint64) error {
	i, err := c.index(id)
	if err != nil {
		return err
	}
	c.StopNode(i)
	return nil
}

// DemoRestart starts node id again (DemoControl).
func (c *LocalCluster) DemoRestart(id uint64) error {
	i, err := c.index(id)
	if err != nil {
		return err
	}
	return c.RestartNode(i)
}

// DemoIsolate cuts or restores node id's Raft traffic with every other
// node (DemoControl). It lasts across the node's restarts.
func (c *LocalCluster) DemoIsolate(id uint64, cut bool) error {
	if _, err := c.index(id); err != nil {
		return err
	}
	c.demo.mu.Lock()
	defer c.demo.mu.Unlock()
	if c.demo.isolated == nil {
		c.demo.isolated = map[uint64]bool{}
	}
	if cut {
		c.demo.isolated[id] = true
	} else {
		delete(c.demo.isolated, id)
	}
	return nil
}

// DemoNodes reports every node's dashboard URL and fault state
// (DemoControl).
func (c *LocalCluster) DemoNodes() map[uint64]DemoNode {
	c.demo.mu.RLock()
	defer c.demo.mu.RUnlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[uint64]DemoNode, len(c.cfgs))
	for i, cfg := range c.cfgs {
		id := uint64(i + 1)
		dn := DemoNode{Stopped: c.nodes[i] == nil, Isolated: c.demo.isolated[id]}
		if len(cfg.ListenMetricsURLs) > 0 {
			dn.HTTPURL = cfg.ListenMetricsURLs[0]
		}
		out[id] = dn
	}
	return out
}

// attach installs the demo's fault on a starting node's transport.
func (c *LocalCluster) attach(n *Node) {
	n.transport.SetFault(c.demoFault)
	n.setAPFault(c.demoFault)
}

// demoFault drops every Raft batch, AP call and gossip packet to or from
// an isolated node.
func (c *LocalCluster) demoFault(from, to uint64) bool {
	c.demo.mu.RLock()
	defer c.demo.mu.RUnlock()
	return c.demo.isolated[from] || c.demo.isolated[to]
}

// HTTPURLs returns every node's dashboard URL ("" for a node without an
// HTTP port).
func (c *LocalCluster) HTTPURLs() []string {
	out := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		if len(cfg.ListenMetricsURLs) > 0 {
			out[i] = cfg.ListenMetricsURLs[0]
		}
	}
	return out
}
