package ap

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/concorddb/concord/internal/ap/crdt"
	"github.com/concorddb/concord/internal/storage"
)

// Anti-entropy: every AntiEntropyInterval a node compares, with each live
// peer and in each keyspace, a Merkle tree over the replicas that both
// should hold (keys whose preference list holds both); equal roots end
// the round, otherwise the differing leaves' keys are exchanged both ways
// and merged. It brings replicas together for keys nobody reads, whatever
// hints were lost.
//
// The tree has two levels: merkleLeaves leaves, each the sum of a hash of
// (key, encoded state) over the keys that hash to it (order-free, so both
// sides get the same leaf from the same replicas), and a root hashing the
// leaves. A round reads every AP key of the node once per peer.

// NumKeyspaces is the number of keyspaces (SELECT 0 to 15, as Redis's
// default "databases 16").
const NumKeyspaces = 16

// Tunables.
const (
	merkleLeaves = 1024
	// maxLeavesPerRound bounds the leaves one exchange repairs: the rest
	// wait for the next round.
	maxLeavesPerRound = 64
	// maxLeafStates bounds the states one Leaves answer carries.
	maxLeafStates = 4096
	// defaultAntiEntropyInterval paces the rounds.
	defaultAntiEntropyInterval = 10 * time.Second
)

// tree is the Merkle tree of one (keyspace, peer) pair.
type tree struct {
	leaves [merkleLeaves]uint64
}

func (t *tree) root() uint64 {
	b := make([]byte, 0, 8*merkleLeaves)
	for _, l := range t.leaves {
		b = binary.BigEndian.AppendUint64(b, l)
	}
	return xxhash.Sum64(b)
}

// leafOf is the leaf of key: a hash apart from the ring's (which hashes
// the keyspace and a node id too).
func leafOf(key []byte) uint32 { return uint32(xxhash.Sum64(key) % merkleLeaves) }

func entryHash(key, state []byte) uint64 {
	d := xxhash.New()
	var n [binary.MaxVarintLen64]byte
	_, _ = d.Write(n[:binary.PutUvarint(n[:], uint64(len(key)))])
	_, _ = d.Write(key)
	_, _ = d.Write(state)
	return d.Sum64()
}

// shared reports whether a and b are both in key's preference list.
func (n *Node) shared(members []Member, ks uint32, key []byte, a, b uint64) bool {
	ord := order(members, ks, key)
	var hasA, hasB bool
	for _, m := range ord[:min(n.keyspace(ks).N, len(ord))] {
		hasA = hasA || m.ID == a
		hasB = hasB || m.ID == b
	}
	return hasA && hasB
}

// forShared calls fn with every replica of keyspace on this node that peer
// should hold too, in key order; with leaves, only those in them.
func (n *Node) forShared(ks uint32, peer uint64, leaves []uint32, fn func(key, state []byte) error) error {
	members := n.cfg.Members.Members()
	return storage.APScan(n.cfg.Local.eng, ks, nil, func(key, state []byte) (bool, error) {
		if leaves != nil && !slices.Contains(leaves, leafOf(key)) {
			return true, nil
		}
		if !n.shared(members, ks, key, n.cfg.ID, peer) {
			return true, nil
		}
		return true, fn(key, state)
	})
}

func (n *Node) tree(ks uint32, peer uint64) (*tree, error) {
	t := &tree{}
	err := n.forShared(ks, peer, nil, func(key, state []byte) error {
		t.leaves[leafOf(key)] += entryHash(key, state)
		return nil
	})
	return t, err
}

// HandleTree returns the root, and with leaves every leaf, of the tree of
// keyspace's replicas shared with peer.
func (n *Node) HandleTree(ks uint32, peer uint64, leaves bool) (uint64, []uint64, error) {
	t, err := n.tree(ks, peer)
	if err != nil {
		return 0, nil, err
	}
	if !leaves {
		return t.root(), nil, nil
	}
	return t.root(), t.leaves[:], nil
}

// HandleLeaves returns the states of the replicas shared with peer in the
// given leaves (at most maxLeafStates).
func (n *Node) HandleLeaves(ks uint32, peer uint64, leaves []uint32) ([]State, error) {
	var out []State
	errFull := fmt.Errorf("full")
	err := n.forShared(ks, peer, leaves, func(key, state []byte) error {
		if len(out) == maxLeafStates {
			return errFull
		}
		o, err := crdt.Decode(state)
		if err != nil {
			return fmt.Errorf("ap: replica %q: %w", key, err)
		}
		out = append(out, State{Keyspace: ks, Key: append([]byte(nil), key...), Object: o})
		return nil
	})
	if err == errFull {
		err = nil
	}
	return out, err
}

// syncWith runs one anti-entropy exchange with peer in keyspace ks and
// returns how many leaves differed.
func (n *Node) syncWith(ctx context.Context, peer uint64, ks uint32) (int, error) {
	mine, err := n.tree(ks, peer)
	if err != nil {
		return 0, err
	}
	root, _, err := n.cfg.Peers.Tree(ctx, peer, ks, n.cfg.ID, false /* leaves */)
	if err != nil {
		return 0, err
	}
	if root == mine.root() {
		return 0, nil
	}
	_, theirs, err := n.cfg.Peers.Tree(ctx, peer, ks, n.cfg.ID, true /* leaves */)
	if err != nil {
		return 0, err
	}
	if len(theirs) != merkleLeaves {
		return 0, fmt.Errorf("ap: node %d sent a tree of %d leaves", peer, len(theirs))
	}
	var diff []uint32
	for i := range merkleLeaves {
		if mine.leaves[i] != theirs[i] {
			diff = append(diff, uint32(i))
		}
	}
	if len(diff) == 0 {
		return 0, nil
	}
	if len(diff) > maxLeavesPerRound {
		diff = diff[:maxLeavesPerRound]
	}
	states, err := n.cfg.Peers.Leaves(ctx, peer, ks, n.cfg.ID, diff)
	if err != nil {
		return 0, err
	}
	for _, s := range states {
		if !slices.Contains(diff, leafOf(s.Key)) {
			return 0, fmt.Errorf("ap: node %d sent key %q outside the leaves asked", peer, s.Key)
		}
		n.clock.Observe(s.Object.MaxTS())
		if err := n.cfg.Local.Merge(ks, s.Key, s.Object, 0); err != nil {
			return 0, err
		}
	}
	// Now this node holds the merge of both sides in those leaves: send
	// it back.
	var batch []State
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := n.cfg.Peers.Store(ctx, peer, batch)
		batch = nil
		return err
	}
	err = n.forShared(ks, peer, diff, func(key, state []byte) error {
		o, err := crdt.Decode(state)
		if err != nil {
			return fmt.Errorf("ap: replica %q: %w", key, err)
		}
		batch = append(batch, State{Keyspace: ks, Key: append([]byte(nil), key...), Object: o})
		if len(batch) == maxStoreStates {
			return flush()
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	return len(diff), flush()
}

// AntiEntropy runs one round: an exchange with every live peer in every
// keyspace. It returns the number of leaves that differed and the first
// error (a peer that fails is skipped).
func (n *Node) AntiEntropy(ctx context.Context) (int, error) {
	var firstErr error
	total := 0
	for _, m := range n.cfg.Members.Members() {
		if !m.Alive || m.ID == n.cfg.ID || n.cut(m.ID) {
			continue
		}
		for ks := uint32(0); ks < NumKeyspaces; ks++ {
			d, err := n.syncWith(ctx, m.ID, ks)
			total += d
			if err != nil {
				if firstErr == nil {
					firstErr = fmt.Errorf("ap: anti-entropy with node %d: %w", m.ID, err)
				}
				break
			}
		}
	}
	return total, firstErr
}

func (n *Node) runAntiEntropy() {
	defer n.wg.Done()
	t := time.NewTicker(n.cfg.AntiEntropyInterval)
	defer t.Stop()
	for {
		select {
		case <-n.ctx.Done():
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(n.ctx, n.cfg.AntiEntropyInterval)
		d, err := n.AntiEntropy(ctx)
		cancel()
		if err != nil && n.ctx.Err() == nil {
			n.cfg.Logger.Debug("ap: anti-entropy", "err", err)
		}
		if d > 0 {
			n.cfg.Logger.Debug("ap: anti-entropy repaired", "leaves", d)
		}
	}
}
