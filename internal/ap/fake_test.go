package ap

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/concorddb/concord/internal/ap/crdt"
	"github.com/concorddb/concord/internal/storage"
)

// fakeNet connects in-process Nodes: every state crosses it encoded, as
// it would cross the wire, and a node marked down neither answers nor
// shows alive in the membership.
type fakeNet struct {
	mu    sync.Mutex
	nodes map[uint64]*Node
	down  map[uint64]bool
	// hung nodes show alive but never answer: a call to one waits for
	// its context, as across a partition the membership has not seen.
	hung map[uint64]bool
}

var errDown = errors.New("fake: node down")

func (f *fakeNet) node(ctx context.Context, to uint64) (*Node, error) {
	f.mu.Lock()
	hung := f.hung[to]
	f.mu.Unlock()
	if hung {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down[to] || f.nodes[to] == nil {
		return nil, errDown
	}
	return f.nodes[to], nil
}

func (f *fakeNet) setHung(id uint64, hung bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hung[id] = hung
}

func wire(o *crdt.Object) *crdt.Object {
	p, err := crdt.Decode(o.Encode())
	if err != nil {
		panic(err)
	}
	return p
}

func (f *fakeNet) Store(ctx context.Context, to uint64, states []State) error {
	n, err := f.node(ctx, to)
	if err != nil {
		return err
	}
	out := make([]State, len(states))
	for i, s := range states {
		s.Object = wire(s.Object)
		out[i] = s
	}
	return n.HandleStore(out)
}

func (f *fakeNet) Fetch(ctx context.Context, to uint64, ks uint32, keys [][]byte) ([]*crdt.Object, error) {
	n, err := f.node(ctx, to)
	if err != nil {
		return nil, err
	}
	os, err := n.HandleFetch(ks, keys)
	for i := range os {
		os[i] = wire(os[i])
	}
	return os, err
}

func (f *fakeNet) Scan(ctx context.Context, to uint64, ks uint32, start []byte, limit int, nowMs int64) ([][]byte, bool, error) {
	n, err := f.node(ctx, to)
	if err != nil {
		return nil, false, err
	}
	return n.HandleScan(ks, start, limit, nowMs)
}

func (f *fakeNet) Members() []Member {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Member
	for id := range f.nodes {
		out = append(out, Member{ID: id, Alive: !f.down[id]})
	}
	return out
}

func (f *fakeNet) setDown(id uint64, down bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.down[id] = down
}

// testCluster starts n nodes on in-memory engines; opts change each
// node's Config before it starts.
func testCluster(t *testing.T, n int, ks Keyspace, handoff time.Duration, opts ...func(*Config)) (*fakeNet, []*Node) {
	t.Helper()
	f := &fakeNet{nodes: map[uint64]*Node{}, down: map[uint64]bool{}, hung: map[uint64]bool{}}
	var (
		nodes   []*Node
		engines []*storage.Engine
	)
	// Every node stops before any engine closes: a node's background
	// calls reach the others' stores directly here, not through a server
	// that waits for them.
	t.Cleanup(func() {
		for _, nd := range nodes {
			nd.Close()
		}
		for _, eng := range engines {
			if err := eng.Close(); err != nil {
				t.Error(err)
			}
		}
	})
	for i := range n {
		eng, err := storage.Open(fmt.Sprintf("n%d", i), storage.Options{FS: vfs.NewMem()})
		if err != nil {
			t.Fatal(err)
		}
		cfg := Config{ID: uint64(i + 1), Local: NewLocal(eng), Members: f, Peers: f, Keyspace: ks, HandoffInterval: handoff, AntiEntropyInterval: -1}
		for _, o := range opts {
			o(&cfg)
		}
		nd, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		engines = append(engines, eng)
		f.nodes[nd.ID()] = nd
		nodes = append(nodes, nd)
	}
	return f, nodes
}

func (f *fakeNet) Tree(ctx context.Context, to uint64, ks uint32, peer uint64, leaves bool) (uint64, []uint64, error) {
	n, err := f.node(ctx, to)
	if err != nil {
		return 0, nil, err
	}
	return n.HandleTree(ks, peer, leaves)
}

func (f *fakeNet) Leaves(ctx context.Context, to uint64, ks uint32, peer uint64, leaves []uint32) ([]State, error) {
	n, err := f.node(ctx, to)
	if err != nil {
		return nil, err
	}
	states, err := n.HandleLeaves(ks, peer, leaves)
	for i := range states {
		states[i].Object = wire(states[i].Object)
	}
	return states, err
}
