package server

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/concorddb/concord/internal/concordpb/metapb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/meta"
	"github.com/concorddb/concord/internal/storage"
	"github.com/concorddb/concord/internal/transport"
)

// A node's address book (node id -> NodeRecord) is how its transport finds
// its peers. The meta range holds the truth; every node keeps a copy in
// memory (Node.addrs) and on disk (storage.PutNodeBook), so that a restart
// finds its peers from its own data dir whatever its flags say, as an etcd
// member does. The copy is refreshed every addressRefresh: from the meta
// range when its leaseholder answers (authoritative: records it lacks are
// dropped), else from this node's own meta replica and from any peer that
// answers Members (merged record by record, the higher generation winning),
// so that an address changed while this node was down reaches it even when
// the meta range's leader is the node that moved.

// peerProbeTimeout bounds the check, at a restart, that the peers named in
// --initial-cluster do not belong to another cluster. Peers that do not
// answer in time are not waited for: the flags are ignored anyway.
const peerProbeTimeout = 2 * time.Second

// maxGossipPeers bounds how many peers one refresh asks for their address
// books when the meta range does not answer.
const maxGossipPeers = 8

// checkHeldIdentity decides whether the data dir's member may start with
// this node's flags. It refuses (touching nothing: the engine is not open
// yet) a data dir written for another --name, one bootstrapped with another
// --initial-cluster-token when the flags ask to bootstrap (new), and one
// whose cluster differs from that of a peer listed in --initial-cluster.
// Otherwise the bootstrap flags are ignored, as etcd ignores them, and it
// logs that once.
func (n *Node) checkHeldIdentity(id storage.Ident) error {
	held := fmt.Sprintf("the data dir %s holds member %q (id %x) of cluster %x", n.cfg.DataDir, id.Name, id.NodeID, id.ClusterID)
	if id.Name != "" && id.Name != n.cfg.Name {
		return fmt.Errorf("server: %s, but --name is %q: start it with --name %s, or give member %q an empty data dir", held, n.cfg.Name, id.Name, n.cfg.Name)
	}
	if n.cfg.InitialClusterState == "new" && id.Token != "" && id.Token != n.cfg.InitialClusterToken {
		return fmt.Errorf("server: %s, bootstrapped with --initial-cluster-token %q, but the flags bootstrap a cluster with token %q: start it with its own cluster's flags, or give it an empty data dir",
			held, id.Token, n.cfg.InitialClusterToken)
	}
	if err := n.probePeers(id); err != nil {
		return fmt.Errorf("server: %s, but %w: start it with its own cluster's flags, or give it an empty data dir", held, err)
	}
	n.log.Info("the data dir holds a member: --initial-cluster, --initial-cluster-state and --initial-cluster-token are ignored",
		"member", id.Name, "id", fmt.Sprintf("%x", id.NodeID), "cluster", fmt.Sprintf("%x", id.ClusterID), "data_dir", n.cfg.DataDir)
	return nil
}

// probePeers asks every peer of --initial-cluster but this node which
// cluster it belongs to, all at once, for at most peerProbeTimeout, and
// returns an error naming the first that answers with a cluster other than
// id's. Peers that are down or do not answer prove nothing and are skipped.
func (n *Node) probePeers(id storage.Ident) error {
	members, err := parseInitialCluster(n.cfg.InitialCluster)
	if err != nil {
		return nil // Validate parsed it; nothing to probe otherwise
	}
	ctx, cancel := context.WithTimeout(context.Background(), peerProbeTimeout)
	defer cancel()
	errs := make(chan error, len(members))
	var wg sync.WaitGroup
	for _, m := range members {
		if m.name == n.cfg.Name || slices.Contains(n.cfg.InitialAdvertisePeerURLs, m.peerURL) {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A peer of another cluster refuses the call (the transport
			// checks the caller's cluster id) with PermissionDenied.
			resp, err := membersVia(ctx, m.peerURL, id.ClusterID, n.peerCredentials())
			switch {
			case status.Code(err) == codes.PermissionDenied:
				errs <- fmt.Errorf("peer %s (%s in --initial-cluster) belongs to another cluster (it says: %s)", m.name, m.peerURL, status.Convert(err).Message())
			case err == nil && resp.GetClusterId() != id.ClusterID:
				errs <- fmt.Errorf("peer %s (%s in --initial-cluster) belongs to cluster %x", m.name, m.peerURL, resp.GetClusterId())
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// membersVia calls Members on the node at peerURL as a member of cluster
// clusterID.
func membersVia(ctx context.Context, peerURL string, clusterID uint64, creds credentials.TransportCredentials) (*rpcpb.MembersResponse, error) {
	hp, err := transport.HostPort(peerURL)
	if err != nil {
		return nil, err
	}
	ctx = metadata.AppendToOutgoingContext(ctx, transport.MetadataClusterID, strconv.FormatUint(clusterID, 10))
	conn, err := grpc.NewClient(hp, grpc.WithTransportCredentials(creds))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return rpcpb.NewPeerClient(conn).Members(ctx, &rpcpb.MembersRequest{})
}

// restart loads a member's identity, address book and meta descriptor from
// its engine, and returns the meta range's descriptor: from its own meta
// replica, else from the hint it saved, else (a data dir written before
// hints were saved) from a peer through Join.
func (n *Node) restart(id storage.Ident) (*metapb.RangeDescriptor, error) {
	n.ident = id
	book, err := storage.LoadNodeBook(n.engine)
	if err != nil {
		return nil, err
	}
	n.learnNodes(book, false /* authoritative */)
	if recs, err := n.localNodeRecords(); err != nil {
		return nil, err
	} else {
		n.learnNodes(recs, false /* authoritative */)
	}
	// Data dirs written before the address book was saved: the initial
	// members' ids are their positions in --initial-cluster. Generation 0
	// never replaces a record learned from the data dir.
	if members, err := parseInitialCluster(n.cfg.InitialCluster); err == nil && n.cfg.InitialClusterState == "new" {
		recs := initialRecords(members)
		for _, r := range recs {
			r.Generation = 0
		}
		n.learnNodes(recs, false /* authoritative */)
	}
	if id.Name == "" {
		// Record the name in a data dir written before names were.
		id.Name = n.cfg.Name
		if err := n.saveIdent(id, nil); err != nil {
			return nil, err
		}
		n.ident = id
	}
	if d := n.localMeta(); d != nil {
		return d, nil
	}
	if d, ok, err := storage.LoadMetaHint(n.engine); err != nil {
		return nil, err
	} else if ok {
		return d, nil
	}
	// A node without a meta replica learns the meta range from peers.
	resp, err := n.join(n.knownPeers())
	if err != nil {
		return nil, err
	}
	if err := n.saveIdent(id, resp.GetMeta()); err != nil {
		return nil, err
	}
	return resp.GetMeta(), nil
}

// saveIdent writes the node's identity, and the meta descriptor when given,
// durably.
func (n *Node) saveIdent(id storage.Ident, meta *metapb.RangeDescriptor) error {
	b := n.engine.NewBatch()
	defer b.Close()
	if err := b.PutIdent(id); err != nil {
		return err
	}
	if meta != nil {
		if err := b.PutMetaHint(meta); err != nil {
			return err
		}
	}
	return b.Commit(true /* sync */)
}

// knownPeers lists every node of the address book but this one, followed
// by the --initial-cluster members it does not list, as join candidates.
func (n *Node) knownPeers() []member {
	var out []member
	seen := map[string]bool{}
	n.addrs.RLock()
	for id, r := range n.addrs.nodes {
		if id != n.ident.NodeID && len(r.GetPeerUrls()) > 0 {
			out = append(out, member{name: r.GetName(), peerURL: r.GetPeerUrls()[0]})
			seen[r.GetPeerUrls()[0]] = true
		}
	}
	n.addrs.RUnlock()
	if members, err := parseInitialCluster(n.cfg.InitialCluster); err == nil {
		for _, m := range members {
			if !seen[m.peerURL] {
				out = append(out, m)
			}
		}
	}
	return out
}

// localNodeRecords reads the node records this node's meta replica has
// applied; none if it holds no meta replica.
func (n *Node) localNodeRecords() ([]*metapb.NodeRecord, error) {
	if n.localMeta() == nil {
		return nil, nil
	}
	var out []*metapb.NodeRecord
	err := storage.SysScan(n.engine, keys.NodeSpan(), func(k, v []byte) error {
		rec := &metapb.NodeRecord{}
		if err := proto.Unmarshal(v, rec); err != nil {
			return fmt.Errorf("server: bad node record %q in the meta replica: %w", k, err)
		}
		out = append(out, rec)
		return nil
	})
	return out, err
}

// learnNodes merges recs into the address book and saves the book when it
// changed. With authoritative (recs are the meta range's whole list) every
// record replaces this node's copy and ids recs lack are dropped; otherwise
// a record replaces this node's copy only if it is newer (a higher
// generation) or unknown.
func (n *Node) learnNodes(recs []*metapb.NodeRecord, authoritative bool) {
	n.bookSave.Lock()
	defer n.bookSave.Unlock()
	n.addrs.Lock()
	changed := false
	if authoritative {
		keep := make(map[uint64]bool, len(recs))
		for _, r := range recs {
			keep[r.GetNodeId()] = true
		}
		for id := range n.addrs.nodes {
			if !keep[id] {
				delete(n.addrs.nodes, id)
				changed = true
			}
		}
	}
	for _, r := range recs {
		if r.GetNodeId() == 0 {
			continue
		}
		cur, ok := n.addrs.nodes[r.GetNodeId()]
		if ok && proto.Equal(cur, r) {
			continue
		}
		if ok && !authoritative && r.GetGeneration() <= cur.GetGeneration() {
			continue
		}
		n.addrs.nodes[r.GetNodeId()] = proto.Clone(r).(*metapb.NodeRecord)
		changed = true
	}
	var book []*metapb.NodeRecord
	if changed {
		for _, r := range n.addrs.nodes {
			book = append(book, r)
		}
	}
	n.addrs.Unlock()
	if !changed || n.engine == nil {
		return
	}
	slices.SortFunc(book, byNodeID)
	b := n.engine.NewBatch()
	defer b.Close()
	err := b.PutNodeBook(book)
	if err == nil {
		err = b.Commit(false /* sync: the meta range and peers hold the truth */)
	}
	if err != nil {
		n.log.Warn("address book not saved", "err", err)
	}
}

// saveMetaHint saves the router's meta descriptor when it differs from the
// one saved last.
func (n *Node) saveMetaHint() {
	d := n.router.MetaDescriptor()
	if d == nil || proto.Equal(d, n.metaHint) {
		return
	}
	b := n.engine.NewBatch()
	defer b.Close()
	err := b.PutMetaHint(d)
	if err == nil {
		err = b.Commit(false /* sync */)
	}
	if err != nil {
		n.log.Warn("meta descriptor not saved", "err", err)
		return
	}
	n.metaHint = d
}

// refreshAddresses reloads the address book: from the meta range if it
// answers, else from this node's meta replica and from up to
// maxGossipPeers peers.
func (n *Node) refreshAddresses(ctx context.Context) {
	if recs, err := n.members(ctx); err == nil {
		if len(recs) > 0 && !slices.ContainsFunc(recs, func(r *metapb.NodeRecord) bool { return r.GetNodeId() == n.ident.NodeID }) {
			// Every member's record exists from its bootstrap or its
			// join until its removal: this one was removed. A read that
			// finds it gone twice, addressRefresh apart, decides: a node
			// that stops by mistake is far worse than one that stops a
			// refresh late.
			if n.removalSeen.Swap(true) {
				n.removedFromCluster()
			}
			return
		}
		n.removalSeen.Store(false)
		n.learnNodes(recs, true /* authoritative */)
		n.saveMetaHint()
		return
	}
	if recs, err := n.localNodeRecords(); err == nil {
		n.learnNodes(recs, false /* authoritative */)
	}
	peers := n.knownPeers()
	if len(peers) > maxGossipPeers {
		peers = peers[:maxGossipPeers]
	}
	var wg sync.WaitGroup
	for _, p := range peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := membersVia(ctx, p.peerURL, n.ident.ClusterID, n.peerCredentials())
			if err == nil && resp.GetClusterId() == n.ident.ClusterID {
				n.learnNodes(resp.GetNodes(), false /* authoritative */)
			}
		}()
	}
	wg.Wait()
}

func byNodeID(a, b *metapb.NodeRecord) int { return cmp.Compare(a.GetNodeId(), b.GetNodeId()) }

// addressBook returns a copy of the address book, by node id.
func (n *Node) addressBook() []*metapb.NodeRecord {
	n.addrs.RLock()
	defer n.addrs.RUnlock()
	out := make([]*metapb.NodeRecord, 0, len(n.addrs.nodes))
	for _, r := range n.addrs.nodes {
		out = append(out, proto.Clone(r).(*metapb.NodeRecord))
	}
	slices.SortFunc(out, byNodeID)
	return out
}

// Members answers what this node knows of its cluster, from memory.
func (s *peerService) Members(context.Context, *rpcpb.MembersRequest) (*rpcpb.MembersResponse, error) {
	n := s.n
	return &rpcpb.MembersResponse{
		ClusterId: n.ident.ClusterID,
		NodeId:    n.ident.NodeID,
		Nodes:     n.addressBook(),
		Meta:      n.router.MetaDescriptor(),
	}, nil
}

// localMeta returns the descriptor of this node's meta replica; nil if it
// holds none.
func (n *Node) localMeta() *metapb.RangeDescriptor {
	descs, err := storage.LoadLocalDescriptors(n.engine)
	if err != nil {
		return nil
	}
	for _, d := range descs {
		if d.GetRangeId() == meta.MetaRangeID {
			return d
		}
	}
	return nil
}

// removedFromCluster is what a node does once it learns that its member
// was removed from the cluster, as etcd's does: it says so, and stops (a
// process, `concord start`, then exits). Restarted with the same data
// dir, it is refused at registration and stops again.
func (n *Node) removedFromCluster() {
	n.removedOnce.Do(func() {
		n.log.Error(meta.ErrMemberRemoved+"; stopping", "name", n.cfg.Name)
		n.log.Error("the data-dir used by this member must be removed before it joins again", "data-dir", n.cfg.DataDir)
		close(n.removed)
		// Not on n.wg: Stop waits for it, and the caller may be on it.
		go n.Stop()
	})
}

// Removed is closed once the node learned that its member was removed from
// the cluster; it is stopping or stopped by then (Stop returns once it
// has).
func (n *Node) Removed() <-chan struct{} { return n.removed }
