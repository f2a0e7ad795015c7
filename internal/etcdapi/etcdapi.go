package etcdapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/concorddb/concord/internal/auth"
	"github.com/concorddb/concord/internal/concordpb/cmdpb"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/concordpb/metapb"
)

// Header is what the Backend knows about a response, for etcd's
// ResponseHeader: the revision the response reflects (the write's own
// revision for writes that write) and the Raft term of the range that
// served it.
type Header struct {
	Revision int64
	RaftTerm uint64
}

// Status is this node's view of itself, for Maintenance.Status (what
// `etcdctl endpoint status` prints).
type Status struct {
	// Leader is the node believed to lead (0 if none is known; the response
	// then carries etcd's "no leader" error string, as etcd does).
	Leader           uint64
	RaftTerm         uint64
	RaftIndex        uint64
	RaftAppliedIndex uint64
	DBSize           int64
	DBSizeInUse      int64
	IsLearner        bool
}

// Backend is what the gateway needs from the node. Implementations must be
// safe for concurrent use: every gRPC call runs on its own goroutine.
//
// Errors are *kvpb.Error (translated by code, see toGRPCError), context
// errors, or anything else (reported as codes.Unknown with its message, as
// etcd does for errors it has no mapping for; a gRPC status keeps its code
// and message: one of etcd's rpctypes errors, codes.Unavailable so clients
// retry reads, or codes.ResourceExhausted, a bound on the request path that
// was full, so clients know to back off).
type Backend interface {
	// Do serves a Range, Put, DeleteRange or Txn on user keys and returns a
	// ResponseOp of the same kind. The request is validated and the caller
	// does not modify it afterwards; the backend owns the returned response.
	Do(ctx context.Context, op *kvpb.RequestOp) (*kvpb.ResponseOp, Header, error)
	// Members lists the cluster's nodes.
	Members(ctx context.Context) ([]*metapb.NodeRecord, error)
	// Status reports this node's view.
	Status(ctx context.Context) (Status, error)
	// Compact discards the MVCC history superseded at rev, cluster-wide.
	// Errors: COMPACTED if rev is not above the last compaction, FUTURE_REV
	// if rev is above the newest revision.
	Compact(ctx context.Context, rev int64) (Header, error)
	// HashKV hashes this node's own replicas' MVCC history up to rev (0:
	// newest), etcd's consistency check between members.
	HashKV(ctx context.Context, rev int64) (HashKV, error)
	// Defragment reclaims this node's unused disk space.
	Defragment(ctx context.Context) error
	// Snapshot writes a consistent backup of the keyspace to w.
	Snapshot(ctx context.Context, w io.Writer) error
	// AddMember registers a member ahead of its first start (it joins
	// with one of peerURLs); ChangeMember updates its peer URLs, promotes
	// or removes it (SysChangeNode's rules). Both return the changed
	// member's record.
	AddMember(ctx context.Context, peerURLs []string, learner bool) (*metapb.NodeRecord, error)
	ChangeMember(ctx context.Context, change *cmdpb.SysChangeNode) (*metapb.NodeRecord, error)
}

// HashKV is a member's hash of its key-value history.
type HashKV struct {
	Hash            uint32
	HashRevision    int64
	CompactRevision int64
	Header          Header
}

// Defaults, all etcd's own so clients and tools tuned for etcd behave the
// same against Concord.
const (
	// DefaultMaxRequestBytes is etcd's --max-request-bytes default (1.5 MiB).
	DefaultMaxRequestBytes = 3 * 512 * 1024
	// DefaultMaxTxnOps is etcd's --max-txn-ops default.
	DefaultMaxTxnOps = 128
	// DefaultVersion is the etcd server version reported by Status. etcdctl
	// and clientv3 feature checks read it, so it names the etcd release whose
	// API we serve, not Concord's own version.
	DefaultVersion = "3.7.3"
	// DefaultMaxConcurrentStreams is etcd's --max-concurrent-streams
	// default: no bound on the calls one client connection has in flight.
	// clientv3 carries every call of a Client (and its watches) over one
	// connection, so a bound here is a bound on each client's concurrency.
	DefaultMaxConcurrentStreams = math.MaxUint32

	// grpcOverheadBytes is the headroom etcd adds to MaxRequestBytes for the
	// gRPC receive limit, so a slightly too large request reaches the handler
	// and gets etcd's "request is too large" instead of a gRPC
	// ResourceExhausted.
	grpcOverheadBytes = 512 * 1024

	// etcd's default keepalive settings (embed.Config).
	keepAliveMinTime  = 5 * time.Second
	keepAliveInterval = 2 * time.Hour
	keepAliveTimeout  = 20 * time.Second
)

// Config configures the gateway. Zero values take the defaults above.
type Config struct {
	// ClusterID and MemberID fill every response header.
	ClusterID, MemberID uint64
	// MaxRequestBytes bounds the marshalled size of a write request.
	MaxRequestBytes int
	// MaxTxnOps bounds the compares and the ops of each branch of a txn.
	MaxTxnOps int
	// Version is reported in Status.
	Version string
	// MaxConcurrentStreams bounds the streams (calls in flight) each client
	// connection may have open at once, etcd's --max-concurrent-streams
	// (DefaultMaxConcurrentStreams if 0). A call past it is not refused: it
	// waits in the client, under its deadline, until one of the
	// connection's calls ends (HTTP/2 stream quota), so the server holds at
	// most this many calls per connection.
	MaxConcurrentStreams uint32
	// ProgressNotifyInterval is how often a quiet watcher created with
	// progress_notify hears of its revision (DefaultProgressNotifyInterval
	// if 0), etcd's --experimental-watch-progress-notify-interval.
	ProgressNotifyInterval time.Duration
	// Auth, when set, serves etcd's Auth service and checks every call
	// against it (ServerOptions installs the checks); nil: no auth, every
	// call allowed.
	Auth *auth.Store
	// LeaseKeys returns the keys attached to a lease, for the permission
	// checks of lease calls and of puts with a lease (nil: not checked).
	LeaseKeys func(ctx context.Context, id int64) ([][]byte, error)
}

// Validate reports a config that cannot work.
func (c Config) Validate() error {
	if c.MaxRequestBytes < 0 {
		return fmt.Errorf("etcdapi: MaxRequestBytes %d < 0", c.MaxRequestBytes)
	}
	if c.MaxRequestBytes > math.MaxInt32-grpcOverheadBytes {
		return fmt.Errorf("etcdapi: MaxRequestBytes %d too large (max %d)", c.MaxRequestBytes, math.MaxInt32-grpcOverheadBytes)
	}
	if c.MaxTxnOps < 0 {
		return fmt.Errorf("etcdapi: MaxTxnOps %d < 0", c.MaxTxnOps)
	}
	return nil
}

// withDefaults returns c with zero values replaced by the defaults.
func (c Config) withDefaults() Config {
	if c.MaxRequestBytes == 0 {
		c.MaxRequestBytes = DefaultMaxRequestBytes
	}
	if c.MaxTxnOps == 0 {
		c.MaxTxnOps = DefaultMaxTxnOps
	}
	if c.Version == "" {
		c.Version = DefaultVersion
	}
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	return c
}

// mustComplete validates and completes cfg. An invalid config is a wiring bug
// (callers should have called Validate when they read it), so it panics.
func mustComplete(cfg Config) Config {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	return cfg.withDefaults()
}

// Register installs the etcd KV, Maintenance and Cluster services on s,
// served by b, and the Lease service if b is a LeaseBackend too. It panics
// if cfg does not Validate.
func Register(s *grpc.Server, b Backend, cfg Config) {
	if b == nil {
		panic(errors.New("etcdapi: nil Backend"))
	}
	cfg = mustComplete(cfg)
	pb.RegisterKVServer(s, &kvServer{b: b, cfg: cfg})
	pb.RegisterMaintenanceServer(s, &maintenanceServer{b: b, cfg: cfg})
	pb.RegisterClusterServer(s, &clusterServer{b: b, cfg: cfg})
	if lb, ok := b.(LeaseBackend); ok {
		pb.RegisterLeaseServer(s, &leaseServer{b: lb, cfg: cfg, maxStreams: MaxKeepAliveStreams})
	}
	if cfg.Auth != nil {
		pb.RegisterAuthServer(s, &authServer{a: cfg.Auth, cfg: cfg})
	}
}

// ServerOptions returns the grpc.ServerOptions etcd uses for its client
// port: a receive limit of MaxRequestBytes plus etcd's gRPC overhead, an
// unbounded send size, MaxConcurrentStreams streams per connection (by
// default unbounded, as etcd's), and etcd's keepalive defaults. It
// panics if cfg does not Validate.
func ServerOptions(cfg Config) []grpc.ServerOption {
	cfg = mustComplete(cfg)
	opts := []grpc.ServerOption{
		// The proto codec, plus the pre-encoded watch responses
		// (wireCodec): every service registered by Register and
		// RegisterWatch needs these options.
		grpc.ForceServerCodecV2(newWireCodec()),
		grpc.MaxRecvMsgSize(cfg.MaxRequestBytes + grpcOverheadBytes),
		grpc.MaxSendMsgSize(math.MaxInt32),
		grpc.MaxConcurrentStreams(cfg.MaxConcurrentStreams),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
			MinTime:             keepAliveMinTime,
			PermitWithoutStream: false,
		}),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			Time:    keepAliveInterval,
			Timeout: keepAliveTimeout,
		}),
	}
	if cfg.Auth != nil {
		opts = append(opts, grpc.ChainUnaryInterceptor(cfg.authUnary), grpc.ChainStreamInterceptor(cfg.authStream))
	}
	return opts
}

// header builds a top-level response header.
func header(cfg Config, h Header) *pb.ResponseHeader {
	return &pb.ResponseHeader{
		ClusterId: cfg.ClusterID,
		MemberId:  cfg.MemberID,
		Revision:  h.Revision,
		RaftTerm:  h.RaftTerm,
	}
}
