package server

import (
	"context"
	"sync"
	"time"

	"google.golang.org/grpc/metadata"

	"github.com/concorddb/concord/internal/auth"
	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/concorddb/concord/internal/keys"
	"github.com/concorddb/concord/internal/tlsutil"
)

// The node's auth store (internal/auth): its record lives in the meta
// range, reached through the router from any node; a change is told to
// every other node through the peer AuthRefresh call.

// startAuth builds the node's auth store from its configuration.
func (n *Node) startAuth() error {
	jwt, err := auth.ParseTokenOption(n.cfg.AuthToken)
	if err != nil {
		return err
	}
	// With --client-cert-auth a call with no token is the user its
	// certificate names (etcd's rule), but not the node's own calls
	// through its client port: they carry its own certificate.
	var cn func(context.Context) (string, bool)
	if n.cfg.ClientTLS.ClientCertAuth {
		cn = func(ctx context.Context) (string, bool) {
			if md, _ := metadata.FromIncomingContext(ctx); len(md.Get(selfCallKey)) > 0 {
				return "", false
			}
			return tlsutil.VerifiedCommonName(ctx)
		}
	}
	n.authCN = cn
	n.auth = auth.NewStore(auth.Config{
		Backend:    authRecord{n},
		JWT:        jwt,
		TokenTTL:   n.cfg.AuthTokenTTL,
		BcryptCost: n.cfg.BcryptCost,
		CommonName: cn,
		Logger:     n.log,
	})
	return nil
}

// runAuthRefresh loads the auth record at start and then every second,
// for a change whose broadcast this node missed.
func (n *Node) runAuthRefresh() {
	defer n.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-n.stop
		cancel()
	}()
	n.auth.Run(ctx)
}

// authRecord is the auth store's Backend.
type authRecord struct{ n *Node }

func (a authRecord) Load(ctx context.Context) ([]byte, error) {
	resp, err := a.n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Get{Get: &cmdpb.SysGet{Key: keys.Auth}}})
	if err != nil {
		return nil, err
	}
	if kvs := resp.GetKvs(); len(kvs) > 0 {
		return kvs[0].GetValue(), nil
	}
	return nil, nil
}

func (a authRecord) CAS(ctx context.Context, expect, value []byte) (bool, []byte, error) {
	resp, err := a.n.router.Sys(ctx, &cmdpb.SysRequest{Request: &cmdpb.SysRequest_Cas{Cas: &cmdpb.SysCAS{Key: keys.Auth, Expect: expect, Value: value}}})
	if err != nil {
		return false, nil, err
	}
	if resp.GetValue() == 1 {
		return true, nil, nil
	}
	if kvs := resp.GetKvs(); len(kvs) > 0 {
		return false, kvs[0].GetValue(), nil
	}
	return false, nil, nil
}

// Broadcast calls AuthRefresh on every other node at once and waits for
// them (or ctx: a node that is down refreshes by itself within a second of
// coming back).
func (a authRecord) Broadcast(ctx context.Context, gen uint64) {
	members, err := a.n.members(ctx)
	if err != nil {
		a.n.log.Warn("auth change: could not list the nodes to tell", "err", err)
		return
	}
	var wg sync.WaitGroup
	for _, m := range members {
		id := m.GetNodeId()
		if id == a.n.ident.NodeID || m.GetName() == "" {
			continue
		}
		wg.Go(func() {
			conn, err := a.n.transport.Conn(ctx, id)
			if err == nil {
				_, err = rpcpb.NewPeerClient(conn).AuthRefresh(ctx, &rpcpb.AuthRefreshRequest{Generation: gen})
			}
			if err != nil {
				a.n.log.Info("auth change: a node did not confirm it (it refreshes on its own)", "to", id, "generation", gen, "err", err)
			}
		})
	}
	wg.Wait()
}

// AuthRefresh loads the auth record if this node's copy is older than the
// generation asked for.
func (s *peerService) AuthRefresh(ctx context.Context, req *rpcpb.AuthRefreshRequest) (*rpcpb.AuthRefreshResponse, error) {
	if s.n.auth == nil {
		return &rpcpb.AuthRefreshResponse{}, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.n.auth.EnsureGeneration(ctx, req.GetGeneration()); err != nil {
		return nil, err
	}
	return &rpcpb.AuthRefreshResponse{Generation: s.n.auth.Generation()}, nil
}

// leaseKeysOf lists a lease's attached keys for the auth checks of lease
// calls.
func (n *Node) leaseKeysOf(ctx context.Context, id int64) ([][]byte, error) {
	st, _, err := backend{n}.LeaseTimeToLive(ctx, id, true)
	if err != nil {
		return nil, err
	}
	return st.Keys, nil
}

// selfCallKey marks the calls of the node's own client (Lock and
// Election): their certificate is the node's, never a user's. A client
// that sets it only gives up its certificate's user.
const selfCallKey = "concord-self-call"

// forwardCaller carries who a Lock or Election request came from to the
// calls its server makes through the node's own client (etcd's run in
// process with the caller's context, so its checks see the caller; over a
// connection that must be sent along): the call's token, or for a caller
// its client certificate names (--client-cert-auth) a token the node
// issues for that user.
func (n *Node) forwardCaller(ctx context.Context) context.Context {
	md, _ := metadata.FromIncomingContext(ctx)
	out := metadata.AppendToOutgoingContext(ctx, selfCallKey, "1")
	for _, k := range []string{"token", "authorization"} {
		if v := md.Get(k); len(v) > 0 {
			return metadata.AppendToOutgoingContext(out, k, v[0])
		}
	}
	if n.auth != nil && n.authCN != nil && n.auth.Enabled() {
		if cn, ok := n.authCN(ctx); ok && cn != "" {
			if tok, err := n.auth.IssueToken(cn); err == nil {
				return metadata.AppendToOutgoingContext(out, "token", tok)
			}
		}
	}
	return out
}
