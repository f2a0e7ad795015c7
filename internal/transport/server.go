package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	grpcpeer "google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// peerServicePrefix is the method prefix of the Peer service, the only
// service whose calls the interceptors check.
var peerServicePrefix = "/" + rpcpb.Peer_ServiceDesc.ServiceName + "/"

// ServeRaft is the body of the Peer.Raft server method: it receives batches
// until the client closes the stream and hands each accepted one to the
// Handler, on this goroutine. A batch that fails validation ends the stream
// with codes.PermissionDenied (another cluster) or codes.InvalidArgument
// (malformed, or meant for another node), logged once per peer at warn
// level; the server keeps serving everyone else. A Fault may drop batches
// silently.
func (t *Transport) ServeRaft(stream rpcpb.Peer_RaftServer) error {
	if t.cfg.NodeID == 0 {
		return status.Error(codes.FailedPrecondition, "transport: node has not joined a cluster")
	}
	var from uint64 // the first batch's from_node; a stream carries one peer
	for {
		b, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return stream.SendAndClose(&rpcpb.RaftAck{})
		}
		if err != nil {
			return err
		}
		if t.ctx.Err() != nil {
			return status.Error(codes.Unavailable, ErrClosed.Error())
		}
		err = validateBatch(b, t.cfg.ClusterID, t.cfg.NodeID)
		if err == nil && from != 0 && b.GetFromNode() != from {
			err = status.Errorf(codes.InvalidArgument, "transport: stream from node %d carries a batch from node %d", from, b.GetFromNode())
		}
		if err != nil {
			t.stats.rejected.Add(1)
			t.warnRejected(stream.Context(), fmt.Sprintf("raft/cluster=%d/from=%d", b.GetClusterId(), b.GetFromNode()), err,
				"cluster", b.GetClusterId(), "from_node", b.GetFromNode(), "to_node", b.GetToNode(), "from_addr", b.GetFromAddr())
			return err
		}
		from = b.GetFromNode()
		if t.dropByFault(from, t.cfg.NodeID) {
			t.stats.droppedMsgs.Add(uint64(len(b.GetMsgs())))
			continue
		}
		t.stats.receivedBatches.Add(1)
		t.stats.receivedMsgs.Add(uint64(len(b.GetMsgs())))
		t.h.HandleRaftBatch(b)
	}
}

// validateBatch checks a received batch against this node's identity. It
// returns a gRPC status error: PermissionDenied for another cluster,
// InvalidArgument for anything else. It never panics, whatever b holds.
func validateBatch(b *rpcpb.RaftBatch, clusterID, nodeID uint64) error {
	switch {
	case b == nil:
		return status.Error(codes.InvalidArgument, "transport: nil batch")
	case b.GetClusterId() != clusterID:
		return status.Errorf(codes.PermissionDenied, "transport: batch for cluster %d, this is cluster %d", b.GetClusterId(), clusterID)
	case b.GetToNode() != nodeID:
		return status.Errorf(codes.InvalidArgument, "transport: batch for node %d, this is node %d", b.GetToNode(), nodeID)
	case b.GetFromNode() == 0:
		return status.Error(codes.InvalidArgument, "transport: batch from node 0")
	case b.GetFromNode() == nodeID:
		return status.Errorf(codes.InvalidArgument, "transport: batch from this node (%d) to itself", nodeID)
	}
	for i, m := range b.GetMsgs() {
		switch {
		case m == nil || m.GetMsg() == nil:
			return status.Errorf(codes.InvalidArgument, "transport: batch from node %d: message %d is empty", b.GetFromNode(), i)
		case m.GetRangeId() == 0:
			return status.Errorf(codes.InvalidArgument, "transport: batch from node %d: message %d has range id 0", b.GetFromNode(), i)
		}
	}
	return nil
}

// MaxPeerStreams bounds the streams (calls in flight) one connection to the
// peer port may have open at once; gRPC's own default is no bound. A peer
// node keeps one Raft stream and one Forward stream open, makes at most two
// TSO calls at a time (tso.Client coalesces them) and a status call or a
// snapshot now and then; what a Forward stream carries is bounded apart
// (router's maxForwardInFlight). So a node needs a handful, and 1024
// leaves room many times over while a misbehaving peer cannot hold
// unbounded server goroutines and buffers. A call past it waits in the
// caller under its deadline (HTTP/2 stream quota): it is not refused, and
// the streams already open carry on.
const MaxPeerStreams = 1024

// ServerOptions returns the options the peer grpc.Server must be built with:
// message size limits that let a snapshot through, at most MaxPeerStreams
// streams per connection, a handshake timeout, keepalive parameters and
// their enforcement, and interceptors that refuse Peer RPCs from another
// cluster. Callers may add their own options after these.
func (t *Transport) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.MaxRecvMsgSize(MaxMsgBytes),
		grpc.MaxSendMsgSize(MaxMsgBytes),
		grpc.MaxConcurrentStreams(MaxPeerStreams),
		// A connection must finish its handshake this fast, so clients that
		// open sockets and say nothing do not pile up.
		grpc.ConnectionTimeout(connectTimeout),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepaliveMinTime,
			PermitWithoutStream: true,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    keepaliveTime,
			Timeout: keepaliveTimeout,
		}),
		grpc.ChainUnaryInterceptor(func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
			if err := t.checkCaller(ctx, info.FullMethod); err != nil {
				return nil, err
			}
			return handler(ctx, req)
		}),
		grpc.ChainStreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if err := t.checkCaller(ss.Context(), info.FullMethod); err != nil {
				return err
			}
			return handler(srv, ss)
		}),
	}
}

// checkCaller refuses a Peer RPC whose cluster id metadata is not ours. Join
// may carry no id or 0, since the joiner does not know it yet. Calls to
// other services pass.
func (t *Transport) checkCaller(ctx context.Context, method string) error {
	if !strings.HasPrefix(method, peerServicePrefix) {
		return nil
	}
	err := checkClusterID(ctx, method, t.cfg.ClusterID)
	if err != nil {
		t.stats.rejected.Add(1)
		t.warnRejected(ctx, "rpc/"+method+"/"+clusterIDFromMD(ctx), err, "method", method)
	}
	return err
}

// checkClusterID is checkCaller's pure part.
func checkClusterID(ctx context.Context, method string, clusterID uint64) error {
	isJoin := method == rpcpb.Peer_Join_FullMethodName
	vals := metadata.ValueFromIncomingContext(ctx, MetadataClusterID)
	if len(vals) == 0 {
		if isJoin {
			return nil
		}
		return status.Errorf(codes.PermissionDenied, "transport: %s without %s metadata", method, MetadataClusterID)
	}
	if len(vals) > 1 {
		return status.Errorf(codes.InvalidArgument, "transport: %s with %d %s values", method, len(vals), MetadataClusterID)
	}
	id, err := strconv.ParseUint(vals[0], 10, 64)
	if err != nil {
		return status.Errorf(codes.InvalidArgument, "transport: %s: bad %s %q", method, MetadataClusterID, vals[0])
	}
	switch {
	case id == 0 && isJoin:
		return nil
	case clusterID == 0:
		return status.Errorf(codes.FailedPrecondition, "transport: %s: this node has not joined a cluster", method)
	case id != clusterID:
		return status.Errorf(codes.PermissionDenied, "transport: %s from cluster %d, this is cluster %d", method, id, clusterID)
	}
	return nil
}

// clusterIDFromMD returns the raw cluster id metadata, for log keys.
func clusterIDFromMD(ctx context.Context) string {
	return strings.Join(metadata.ValueFromIncomingContext(ctx, MetadataClusterID), ",")
}

// warnRejected logs a refusal at warn level the first time this peer host
// is refused for this reason (key), and at debug level afterwards. The
// remote port is left out of the key: it changes on every reconnection.
func (t *Transport) warnRejected(ctx context.Context, key string, err error, attrs ...any) {
	host := "unknown"
	if p, ok := grpcpeer.FromContext(ctx); ok && p.Addr != nil {
		host = p.Addr.String()
		if h, _, splitErr := net.SplitHostPort(host); splitErr == nil {
			host = h
		}
	}
	attrs = append(attrs, "remote", host, "err", err)
	if t.warned.first(host + "/" + key) {
		t.log.Warn("refused peer", attrs...)
		return
	}
	t.log.Debug("refused peer", attrs...)
}
