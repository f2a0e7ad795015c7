package router

import (
	"context"

	"google.golang.org/grpc"
)

// OnMetaLeader runs a request on the node leading the meta range, where
// the services that must run in one place live (the TSO, the lessor):
// local runs it here, remote on another node over conn. It retries as
// Timestamp does, following NOT_LEADER hints; write marks a request that
// changes state, whose failure after it may have reached a node surfaces
// as AMBIGUOUS instead of being retried. Errors of the request itself
// (any other *kvpb.Error code) surface at once.
func (r *Router) OnMetaLeader(ctx context.Context, write bool, local func(ctx context.Context) error, remote func(ctx context.Context, conn *grpc.ClientConn) error) error {
	ctx, cancel := r.withTimeout(ctx)
	defer cancel()
	return r.retry(ctx, r.metaDesc(), write, func(ctx context.Context, node uint64) error {
		if node == r.cfg.NodeID {
			return local(ctx)
		}
		conn, err := r.cfg.Dial(ctx, node)
		if err != nil {
			return errUnreachable{err}
		}
		if err := waitReady(ctx, conn); err != nil {
			return errUnreachable{err}
		}
		return remote(ctx, conn)
	})
}
