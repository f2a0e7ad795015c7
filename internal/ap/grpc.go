package ap

import (
	"context"
	"fmt"
	"hash/crc32"
	"strconv"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/ap/crdt"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/transport"
)

// AP requests travel over the peer gRPC port rather than memberlist's own
// channel: a write needs an answer once the state is durable, with a
// deadline, which gRPC gives and memberlist's best-effort user messages
// do not; and the peer port already has the cluster's mutual TLS and
// caller checks. memberlist carries membership only.

// Tunables of the wire.
const (
	// maxFetchKeys and maxStoreStates bound one request.
	maxFetchKeys   = 1024
	maxStoreStates = 1024
	// maxScanLimit bounds the keys one Scan lists.
	maxScanLimit = 10000
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func toWire(ks uint32, key []byte, o *crdt.Object, hint uint64) *rpcpb.APState {
	enc := o.Encode()
	return &rpcpb.APState{Keyspace: ks, Key: key, State: enc, HintFor: hint, Crc: crc32.Checksum(enc, castagnoli)}
}

// fromWire checks and decodes a state; an empty state is an empty object.
func fromWire(s *rpcpb.APState) (*crdt.Object, error) {
	if crc32.Checksum(s.GetState(), castagnoli) != s.GetCrc() {
		return nil, fmt.Errorf("ap: state of %q fails its checksum", s.GetKey())
	}
	if len(s.GetState()) == 0 {
		return &crdt.Object{}, nil
	}
	return crdt.Decode(s.GetState())
}

// Service is the AP gRPC service over a Node.
type Service struct {
	rpcpb.UnimplementedAPServer
	node      *Node
	clusterID uint64
	// gossipAddr returns this node's gossip address.
	gossipAddr func() string
}

// NewService returns the service of node in cluster clusterID (calls from
// another cluster are refused, as the Peer service refuses them);
// gossipAddr reports its gossip address to peers that look for it.
func NewService(node *Node, clusterID uint64, gossipAddr func() string) *Service {
	return &Service{node: node, clusterID: clusterID, gossipAddr: gossipAddr}
}

// checkCaller refuses a call without this cluster's id in its metadata
// (the transport's connections put it on every call).
func (s *Service) checkCaller(ctx context.Context) error {
	vals := metadata.ValueFromIncomingContext(ctx, transport.MetadataClusterID)
	if len(vals) != 1 || vals[0] != strconv.FormatUint(s.clusterID, 10) {
		return status.Errorf(codes.PermissionDenied, "ap: call from cluster %v, this is cluster %d", vals, s.clusterID)
	}
	return nil
}

// Store merges the states into this node's store, durably, then answers.
func (s *Service) Store(ctx context.Context, req *rpcpb.APStoreRequest) (*rpcpb.APStoreResponse, error) {
	if err := s.checkCaller(ctx); err != nil {
		return nil, err
	}
	if len(req.GetStates()) > maxStoreStates {
		return nil, status.Errorf(codes.InvalidArgument, "ap: %d states in one store (at most %d)", len(req.GetStates()), maxStoreStates)
	}
	states := make([]State, len(req.GetStates()))
	for i, w := range req.GetStates() {
		o, err := fromWire(w)
		if err != nil {
			return nil, status.Error(codes.DataLoss, err.Error())
		}
		states[i] = State{Keyspace: w.GetKeyspace(), Key: w.GetKey(), Object: o, HintFor: w.GetHintFor()}
	}
	if err := s.node.HandleStore(states); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &rpcpb.APStoreResponse{}, nil
}

// Fetch returns this node's state of each key.
func (s *Service) Fetch(ctx context.Context, req *rpcpb.APFetchRequest) (*rpcpb.APFetchResponse, error) {
	if err := s.checkCaller(ctx); err != nil {
		return nil, err
	}
	if len(req.GetKeys()) > maxFetchKeys {
		return nil, status.Errorf(codes.InvalidArgument, "ap: %d keys in one fetch (at most %d)", len(req.GetKeys()), maxFetchKeys)
	}
	os, err := s.node.HandleFetch(req.GetKeyspace(), req.GetKeys())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &rpcpb.APFetchResponse{States: make([]*rpcpb.APState, len(os))}
	for i, o := range os {
		resp.States[i] = toWire(0, nil, o, 0)
	}
	return resp, nil
}

// Scan lists this node's live keys.
func (s *Service) Scan(ctx context.Context, req *rpcpb.APScanRequest) (*rpcpb.APScanResponse, error) {
	if err := s.checkCaller(ctx); err != nil {
		return nil, err
	}
	limit := int(req.GetLimit())
	if limit < 1 || limit > maxScanLimit {
		return nil, status.Errorf(codes.InvalidArgument, "ap: scan limit %d (1 to %d)", limit, maxScanLimit)
	}
	keys, done, err := s.node.HandleScan(req.GetKeyspace(), req.GetStart(), limit, req.GetNowMs())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &rpcpb.APScanResponse{Keys: keys, Done: done}, nil
}

// Gossip reports this node's id and gossip address.
func (s *Service) Gossip(ctx context.Context, _ *rpcpb.APGossipRequest) (*rpcpb.APGossipResponse, error) {
	if err := s.checkCaller(ctx); err != nil {
		return nil, err
	}
	return &rpcpb.APGossipResponse{NodeId: s.node.ID(), Addr: s.gossipAddr()}, nil
}

// GRPCPeers reaches other nodes' Service through Dial (the node's
// transport.Conn: cached connections with the peer port's TLS).
type GRPCPeers struct {
	Dial func(ctx context.Context, to uint64) (*grpc.ClientConn, error)
}

var _ Peers = GRPCPeers{}

func (p GRPCPeers) client(ctx context.Context, to uint64) (rpcpb.APClient, error) {
	cc, err := p.Dial(ctx, to)
	if err != nil {
		return nil, err
	}
	return rpcpb.NewAPClient(cc), nil
}

// Store sends states to node to and returns once it stored them durably.
func (p GRPCPeers) Store(ctx context.Context, to uint64, states []State) error {
	c, err := p.client(ctx, to)
	if err != nil {
		return err
	}
	req := &rpcpb.APStoreRequest{States: make([]*rpcpb.APState, len(states))}
	for i, s := range states {
		req.States[i] = toWire(s.Keyspace, s.Key, s.Object, s.HintFor)
	}
	_, err = c.Store(ctx, req)
	return err
}

// Fetch returns node to's state of each key.
func (p GRPCPeers) Fetch(ctx context.Context, to uint64, ks uint32, keys [][]byte) ([]*crdt.Object, error) {
	c, err := p.client(ctx, to)
	if err != nil {
		return nil, err
	}
	resp, err := c.Fetch(ctx, &rpcpb.APFetchRequest{Keyspace: ks, Keys: keys})
	if err != nil {
		return nil, err
	}
	if len(resp.GetStates()) != len(keys) {
		return nil, fmt.Errorf("ap: node %d answered %d states for %d keys", to, len(resp.GetStates()), len(keys))
	}
	out := make([]*crdt.Object, len(keys))
	for i, s := range resp.GetStates() {
		if out[i], err = fromWire(s); err != nil {
			return nil, fmt.Errorf("ap: from node %d: %w", to, err)
		}
	}
	return out, nil
}

// Scan lists node to's live keys.
func (p GRPCPeers) Scan(ctx context.Context, to uint64, ks uint32, start []byte, limit int, nowMs int64) ([][]byte, bool, error) {
	c, err := p.client(ctx, to)
	if err != nil {
		return nil, false, err
	}
	resp, err := c.Scan(ctx, &rpcpb.APScanRequest{Keyspace: ks, Start: start, Limit: uint32(min(limit, maxScanLimit)), NowMs: nowMs})
	if err != nil {
		return nil, false, err
	}
	return resp.GetKeys(), resp.GetDone(), nil
}

// GossipAddr asks node to for its gossip address.
func (p GRPCPeers) GossipAddr(ctx context.Context, to uint64) (string, error) {
	c, err := p.client(ctx, to)
	if err != nil {
		return "", err
	}
	resp, err := c.Gossip(ctx, &rpcpb.APGossipRequest{})
	if err != nil {
		return "", err
	}
	if resp.GetNodeId() != to {
		return "", fmt.Errorf("ap: node %d's peer address answers as node %d", to, resp.GetNodeId())
	}
	return resp.GetAddr(), nil
}

// Tree returns this node's Merkle tree of the replicas it shares with the
// caller.
func (s *Service) Tree(ctx context.Context, req *rpcpb.APTreeRequest) (*rpcpb.APTreeResponse, error) {
	if err := s.checkCaller(ctx); err != nil {
		return nil, err
	}
	root, leaves, err := s.node.HandleTree(req.GetKeyspace(), req.GetPeer(), req.GetLeaves())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &rpcpb.APTreeResponse{Root: root, Leaves: leaves}, nil
}

// Leaves returns this node's states in some leaves of that tree.
func (s *Service) Leaves(ctx context.Context, req *rpcpb.APLeavesRequest) (*rpcpb.APLeavesResponse, error) {
	if err := s.checkCaller(ctx); err != nil {
		return nil, err
	}
	if len(req.GetLeaves()) > merkleLeaves {
		return nil, status.Errorf(codes.InvalidArgument, "ap: %d leaves asked (at most %d)", len(req.GetLeaves()), merkleLeaves)
	}
	states, err := s.node.HandleLeaves(req.GetKeyspace(), req.GetPeer(), req.GetLeaves())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	resp := &rpcpb.APLeavesResponse{States: make([]*rpcpb.APState, len(states))}
	for i, st := range states {
		resp.States[i] = toWire(st.Keyspace, st.Key, st.Object, 0)
	}
	return resp, nil
}

// Tree asks node to for its tree of the replicas it shares with peer.
func (p GRPCPeers) Tree(ctx context.Context, to uint64, ks uint32, peer uint64, leaves bool) (uint64, []uint64, error) {
	c, err := p.client(ctx, to)
	if err != nil {
		return 0, nil, err
	}
	resp, err := c.Tree(ctx, &rpcpb.APTreeRequest{Keyspace: ks, Peer: peer, Leaves: leaves})
	if err != nil {
		return 0, nil, err
	}
	return resp.GetRoot(), resp.GetLeaves(), nil
}

// Leaves asks node to for its states in some leaves of that tree.
func (p GRPCPeers) Leaves(ctx context.Context, to uint64, ks uint32, peer uint64, leaves []uint32) ([]State, error) {
	c, err := p.client(ctx, to)
	if err != nil {
		return nil, err
	}
	resp, err := c.Leaves(ctx, &rpcpb.APLeavesRequest{Keyspace: ks, Peer: peer, Leaves: leaves})
	if err != nil {
		return nil, err
	}
	out := make([]State, len(resp.GetStates()))
	for i, w := range resp.GetStates() {
		o, err := fromWire(w)
		if err != nil {
			return nil, fmt.Errorf("ap: from node %d: %w", to, err)
		}
		out[i] = State{Keyspace: w.GetKeyspace(), Key: w.GetKey(), Object: o}
	}
	return out, nil
}
