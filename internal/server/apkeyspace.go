package server

import (
	"context"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/concorddb/concord/internal/ap"
	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
)

// apKeyspaceRefresh is how often a node reloads the AP keyspace records
// from the meta range: a keyspace changed through another node takes
// effect here within it.
const apKeyspaceRefresh = 2 * time.Second

// apKeyspace returns keyspace ks's record as this node last loaded it
// (ap.Config.Keyspaces).
func (n *Node) apKeyspace(ks uint32) (ap.Keyspace, bool) {
	m := n.ap.keyspaces.Load()
	if m == nil {
		return ap.Keyspace{}, false
	}
	k, ok := (*m)[ks]
	return k, ok
}

// loadAPKeyspaces reads every AP keyspace record from the meta range and
// makes them this node's.
func (n *Node) loadAPKeyspaces(ctx context.Context) (map[uint32]ap.Keyspace, error) {
	s := keys.APKeyspaceSpan()
	resp, err := n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Scan{Scan: &cmdpb.SysScan{Start: s.Start, End: s.End}}})
	if err != nil {
		return nil, err
	}
	m := map[uint32]ap.Keyspace{}
	for _, kv := range resp.GetKvs() {
		id, ok := keys.APKeyspaceID(kv.GetKey())
		if !ok {
			return nil, fmt.Errorf("server: bad AP keyspace key %q", kv.GetKey())
		}
		k, err := ap.DecodeKeyspace(kv.GetValue())
		if err != nil {
			return nil, fmt.Errorf("server: AP keyspace %d: %w", id, err)
		}
		m[id] = k
	}
	n.ap.keyspaces.Store(&m)
	return m, nil
}

func (n *Node) runAPKeyspaceRefresh() {
	defer n.wg.Done()
	t := time.NewTicker(apKeyspaceRefresh)
	defer t.Stop()
	for {
		ctx, cancel := context.WithTimeout(context.Background(), apKeyspaceRefresh)
		if _, err := n.loadAPKeyspaces(ctx); err != nil {
			n.log.Debug("AP keyspaces not reloaded", "err", err)
		}
		cancel()
		select {
		case <-n.stop:
			return
		case <-t.C:
		}
	}
}

// registerAPAdmin serves concord keyspace on the client port.
func (n *Node) registerAPAdmin() {
	rpcpb.RegisterAPAdminServer(n.clientServer, apAdminService{n: n})
}

// apAdminService is the APAdmin gRPC service: AP keyspace records in the
// meta range.
type apAdminService struct {
	rpcpb.UnimplementedAPAdminServer
	n *Node
}

// Keyspaces lists every keyspace, with its own record or the defaults.
func (s apAdminService) Keyspaces(ctx context.Context, _ *rpcpb.APKeyspacesRequest) (*rpcpb.APKeyspacesResponse, error) {
	m, err := s.n.loadAPKeyspaces(ctx)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	resp := &rpcpb.APKeyspacesResponse{}
	for id := uint32(0); id < ap.NumKeyspaces; id++ {
		k, stored := m[id]
		if !stored {
			k = ap.DefaultKeyspace()
		}
		resp.Keyspaces = append(resp.Keyspaces, &rpcpb.APKeyspaceInfo{Id: id, N: uint32(k.N), R: uint32(k.R), W: uint32(k.W), Stored: stored})
	}
	return resp, nil
}

// SetKeyspace writes a keyspace's record (with create, only if it has
// none) and reloads this node's.
func (s apAdminService) SetKeyspace(ctx context.Context, req *rpcpb.APSetKeyspaceRequest) (*rpcpb.APSetKeyspaceResponse, error) {
	info := req.GetKeyspace()
	if info.GetId() >= ap.NumKeyspaces {
		return nil, status.Errorf(codes.InvalidArgument, "keyspace %d: there are %d (SELECT 0 to %d)", info.GetId(), ap.NumKeyspaces, ap.NumKeyspaces-1)
	}
	k := ap.Keyspace{N: int(info.GetN()), R: int(info.GetR()), W: int(info.GetW())}
	if err := k.Validate(); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	key := keys.APKeyspace(info.GetId())
	sys := &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Put{Put: &cmdpb.SysPut{Key: key, Value: k.Encode()}}}
	if req.GetCreate() {
		sys = &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Cas{Cas: &cmdpb.SysCAS{Key: key, Value: k.Encode()}}}
	}
	resp, err := s.n.router.Sys(ctx, sys)
	if err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	if req.GetCreate() && resp.GetValue() != 1 {
		return nil, status.Errorf(codes.AlreadyExists, "keyspace %d exists; change it with concord keyspace set", info.GetId())
	}
	if _, err := s.n.loadAPKeyspaces(ctx); err != nil {
		return nil, status.Error(codes.Unavailable, err.Error())
	}
	return &rpcpb.APSetKeyspaceResponse{}, nil
}

// APKeyspace returns AP keyspace ks's record as this node last loaded it
// (tests and status pages).
func (n *Node) APKeyspace(ks uint32) (ap.Keyspace, bool) { return n.apKeyspace(ks) }
