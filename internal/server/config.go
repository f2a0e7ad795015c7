package server

import (
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/concorddb/concord/internal/tlsutil"
	"go.opentelemetry.io/otel/trace"

	"github.com/concorddb/concord/internal/auth"
	"github.com/concorddb/concord/internal/pd"
)

// Config is one node's configuration. Field names follow etcd's flags
// where the meaning is the same.
type Config struct {
	Name    string
	DataDir string

	ListenClientURLs    []string
	AdvertiseClientURLs []string
	ListenPeerURLs      []string
	// InitialAdvertisePeerURLs are the peer URLs this node announces.
	InitialAdvertisePeerURLs []string
	// InitialCluster is "name=peerURL,..." as etcd's --initial-cluster.
	InitialCluster string
	// InitialClusterState is "new" (bootstrap with the initial cluster) or
	// "existing" (join a running cluster through its members).
	InitialClusterState string
	InitialClusterToken string

	// ReplicationFactor is the number of replicas of each range (default 3,
	// fewer if the initial cluster is smaller).
	ReplicationFactor int

	// HeartbeatInterval and ElectionTimeout are etcd's timing flags.
	HeartbeatInterval time.Duration
	ElectionTimeout   time.Duration

	// LeaseCheckpointInterval is how often the lessor persists the
	// remaining TTL of each lease longer than it, so that a new meta
	// leader resumes leases where they were instead of at their full TTL
	// (etcd's --experimental-lease-checkpoint-interval; etcd leaves
	// checkpoints off, Concord turns them on). 0: lease's default, 5 min;
	// negative: off.
	LeaseCheckpointInterval time.Duration

	// MaxRequestBytes bounds a client request (etcd's default 1.5 MiB).
	MaxRequestBytes int
	// MaxTxnOps bounds the operations of one txn (etcd's default 128).
	MaxTxnOps int
	// MaxConcurrentStreams bounds each client connection's calls in flight
	// (etcd's default math.MaxUint32; 0 means that; see etcdapi.Config).
	MaxConcurrentStreams uint32
	// WatchProgressNotifyInterval is how often a quiet watcher created with
	// progress_notify hears of its revision, etcd's
	// --watch-progress-notify-interval (0: etcd's default, 10 minutes).
	// The Kubernetes storage tests run with 1s, as they do against etcd.
	WatchProgressNotifyInterval time.Duration

	// AutoCompactionMode is etcd's --auto-compaction-mode: "periodic" (or
	// empty) or "revision".
	AutoCompactionMode string
	// AutoCompactionRetention is etcd's --auto-compaction-retention: for
	// periodic a duration ("30m") or a number of hours ("1"), for revision
	// how many of each range's newest writes to keep; "0" turns it off.
	AutoCompactionRetention string

	// CacheBytes is the storage engine's block cache. Writes read the
	// previous version of their key, so a cache that holds the working set
	// saves a disk read per write. Memory is taken only as blocks are read.
	CacheBytes int64

	// QuotaBackendBytes bounds this node's storage engine (every replica
	// it holds, with their Raft logs and MVCC history): past it, the node
	// raises a NOSPACE alarm and the cluster refuses writes that add data
	// (alarm.go). 0: no quota (the free-space reserve still applies);
	// concord start's default is 8 GiB (see its flag).
	QuotaBackendBytes int64

	// EncryptionKeyFile names the file holding the AES-256 key that
	// encrypts every file the storage engine writes, the Raft log
	// included (32 raw bytes, 64 hex digits or base64; encfs.ParseKey).
	// Empty: no encryption at rest. New files always use this key.
	EncryptionKeyFile string
	// EncryptionOldKeyFiles hold earlier keys that files may still be
	// encrypted with, after a rotation.
	EncryptionOldKeyFiles []string

	// RangeMaxBytes splits a range whose data grows past it (0: never by
	// itself; concord range split still works). concord start's default
	// is 512 MiB (see its flag).
	RangeMaxBytes int64
	// RangeMinBytes merges a range smaller than it into its left
	// neighbour when that one is small too (0: never by itself).
	RangeMinBytes int64
	// RangeSplitQPS splits a range whose leaseholder served more requests
	// per second than this over two checks in a row (at least ten
	// seconds), at the median of its recent request keys (0: never;
	// concord start's default is CockroachDB's 2500).
	RangeSplitQPS float64

	// RaftLogTruncateEntries bounds each range's Raft log (default 10000
	// entries); a follower further behind catches up by snapshot.
	RaftLogTruncateEntries uint64
	// RaftLogTruncateBytes bounds it by the size of its commands (default
	// 4 MiB), and so the memory Raft holds it in.
	RaftLogTruncateBytes uint64

	// UnsafeClockOffsetFile, TEST ONLY, names a file holding a duration by
	// which this node's wall clock (the one the TSO reads) is shifted; the
	// fault-injection harness writes it to make clocks jump.
	UnsafeClockOffsetFile string

	// UnsafeNoReadLease makes every node answer linearizable reads from
	// its own replica without a lease: it breaks linearizability on
	// purpose so the fault-injection harness can prove it notices.
	UnsafeNoReadLease bool

	// UnsafeTxnNoRecord commits a txn across ranges range by range, with
	// no locks and no record (internal/txn, Config.UnsafeNoRecord): it
	// breaks atomicity on purpose so the fault-injection harness can prove
	// its bank check notices.
	UnsafeTxnNoRecord bool

	// AuthToken is etcd's --auth-token: "simple" (the default) or
	// "jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG[,ttl=D]".
	AuthToken string
	// AuthTokenTTL is etcd's --auth-token-ttl: a simple token's life after
	// its last use (0: 300 s, etcd's default).
	AuthTokenTTL time.Duration
	// BcryptCost is etcd's --bcrypt-cost for password hashes (0: 10,
	// etcd's default).
	BcryptCost int

	// PlacementInterval is how often the meta range's leader runs the
	// placement driver (internal/pd): replicas spread over every member and
	// follow them as they come and go (0: never; concord start's default
	// is 5 s).
	PlacementInterval time.Duration
	// DeadNodeTimeout is how long a member may not answer before placement
	// re-creates its replicas elsewhere (0: DefaultDeadNodeTimeout).
	DeadNodeTimeout time.Duration

	// Locality is CockroachDB's --locality: key=value tiers from the most
	// general to the most specific, "region=eu,zone=a" (empty: none).
	Locality string

	// UnsafeNoStrictReconfigCheck turns off etcd's --strict-reconfig-check
	// (on by default, as in etcd): member add then accepts a member that
	// would cost the cluster its quorum.
	UnsafeNoStrictReconfigCheck bool

	Logger *slog.Logger

	// ClientTLS are the client port's TLS options, etcd's --cert-file,
	// --key-file, --trusted-ca-file, --client-cert-auth, --auto-tls,
	// --cipher-suites and --tls-min-version; the metrics port uses them too
	// when its URL is https://. PeerTLS are the peer port's, etcd's
	// --peer-* twins and --peer-cert-allowed-cn. A port has TLS when its
	// options have a certificate (or auto-tls), and then its URLs must be
	// https:// (tls.go).
	ClientTLS, PeerTLS tlsutil.Options

	// ClientListener and PeerListener, when set, are used instead of
	// listening on the URLs (tests and demo bind port 0 this way).
	ClientListener, PeerListener net.Listener

	// Observability (wired in telemetry.go and http.go).

	// ListenMetricsURLs are the URLs of the node's HTTP port, etcd's
	// --listen-metrics-urls: /metrics, /healthz, /livez, /readyz, pprof,
	// the dashboard and its /api. Empty (the default): no HTTP port.
	ListenMetricsURLs []string
	// EnablePprof serves Go's profiler under /debug/pprof/ on the client
	// port too, as etcd's --enable-pprof does, so that tools written for
	// etcd (and `concord bench compare --profile`) find it where etcd has
	// it. The metrics port serves it either way.
	EnablePprof bool
	// MetricsListener, when set, is used instead of listening on
	// ListenMetricsURLs.
	MetricsListener net.Listener
	// ProcessMetrics adds the Go runtime and process collectors; only a
	// real process (concord start) sets it.
	ProcessMetrics bool
	// TracerProvider makes this node's spans; nil records none.
	TracerProvider trace.TracerProvider
	// SlowFsync is the group-commit fsync duration logged at warn (0:
	// telemetry.DefaultSlowFsync).
	SlowFsync time.Duration
	// Demo, when set, lets the dashboard stop, restart and isolate nodes
	// (concord demo only).
	Demo DemoControl

	// AP keyspaces and their Redis port (internal/ap, internal/resp;
	// wired in ap.go).

	// ListenRedisURLs are the URLs of the Redis-protocol port,
	// redis://HOST:PORT. Empty (the default): no Redis port, and this node
	// holds no AP data.
	ListenRedisURLs []string
	// ListenGossipURLs is where the AP membership gossips (memberlist: UDP
	// and TCP on one port), HOST:PORT or gossip://HOST:PORT. Empty: the
	// peer listener's host on a free port, which the other nodes learn
	// over the peer port.
	ListenGossipURLs []string
	// RedisListener, when set, is used instead of listening on
	// ListenRedisURLs (tests and demo bind port 0 this way).
	RedisListener net.Listener
	// APAntiEntropyInterval is how often the node compares its AP
	// replicas with each live peer's by Merkle tree (0: ap's default,
	// 10 s; negative: never).
	APAntiEntropyInterval time.Duration
	// UnsafeAPDropHints, TEST ONLY, makes the node acknowledge the AP
	// states sent to it as hints for other nodes without storing them
	// (ap.Config.UnsafeDropHints): hinted handoff broken on purpose, so
	// that the fault-injection harness can prove its AP check notices.
	UnsafeAPDropHints bool
}

// DefaultConfig returns etcd's defaults.
func DefaultConfig() Config {
	return Config{
		Name:                     "default",
		ListenClientURLs:         []string{"http://localhost:2379"},
		AdvertiseClientURLs:      []string{"http://localhost:2379"},
		ListenPeerURLs:           []string{"http://localhost:2380"},
		InitialAdvertisePeerURLs: []string{"http://localhost:2380"},
		InitialCluster:           "default=http://localhost:2380",
		InitialClusterState:      "new",
		InitialClusterToken:      "concord-cluster",
		ReplicationFactor:        3,
		HeartbeatInterval:        100 * time.Millisecond,
		ElectionTimeout:          time.Second,
		MaxRequestBytes:          1536 * 1024,
		MaxTxnOps:                128,
		MaxConcurrentStreams:     math.MaxUint32,
		CacheBytes:               128 << 20,
		AuthToken:                "simple",
		BcryptCost:               10,
	}
}

// member is one entry of --initial-cluster.
type member struct {
	name    string
	peerURL string
}

// parseInitialCluster parses "n1=http://a:2380,n2=http://b:2380". A name
// may repeat with several URLs, as in etcd; the first URL is used.
func parseInitialCluster(s string) ([]member, error) {
	var out []member
	seen := map[string]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, u, ok := strings.Cut(part, "=")
		if !ok || name == "" || u == "" {
			return nil, fmt.Errorf("server: --initial-cluster entry %q is not name=url", part)
		}
		if _, err := url.Parse(u); err != nil {
			return nil, fmt.Errorf("server: --initial-cluster entry %q: %w", part, err)
		}
		if seen[name] {
			continue
		}
		seen[name] = true
		out = append(out, member{name: name, peerURL: u})
	}
	if len(out) == 0 {
		return nil, errors.New("server: --initial-cluster is empty")
	}
	return out, nil
}

// Validate checks the configuration and fills defaults.
func (c *Config) Validate() error {
	if c.Name == "" {
		return errors.New("server: --name is empty")
	}
	if c.DataDir == "" {
		return errors.New("server: --data-dir is empty")
	}
	if _, err := pd.ParseLocality(c.Locality); err != nil {
		return fmt.Errorf("server: --locality: %w", err)
	}
	if c.DeadNodeTimeout == 0 {
		c.DeadNodeTimeout = DefaultDeadNodeTimeout
	}
	if c.PlacementInterval < 0 || c.DeadNodeTimeout < 0 {
		return fmt.Errorf("server: --placement-interval and --dead-node-timeout must not be negative")
	}
	if c.AuthToken == "" {
		c.AuthToken = "simple"
	}
	if _, err := auth.ParseTokenOption(c.AuthToken); err != nil {
		return err
	}
	if c.BcryptCost == 0 {
		c.BcryptCost = 10
	}
	if err := auth.ValidateBcryptCost(c.BcryptCost); err != nil {
		return err
	}
	if c.AuthTokenTTL < 0 {
		return fmt.Errorf("server: --auth-token-ttl %v is negative", c.AuthTokenTTL)
	}
	switch c.InitialClusterState {
	case "new", "existing":
	default:
		return fmt.Errorf("server: --initial-cluster-state must be new or existing, not %q", c.InitialClusterState)
	}
	if len(c.ListenClientURLs) == 0 && c.ClientListener == nil {
		return errors.New("server: no --listen-client-urls")
	}
	if len(c.ListenPeerURLs) == 0 && c.PeerListener == nil {
		return errors.New("server: no --listen-peer-urls")
	}
	if len(c.InitialAdvertisePeerURLs) == 0 {
		return errors.New("server: no --initial-advertise-peer-urls")
	}
	if len(c.AdvertiseClientURLs) == 0 {
		return errors.New("server: no --advertise-client-urls")
	}
	// Whether --name must be in --initial-cluster depends on what the data
	// dir holds (a restarted member ignores the bootstrap flags), so Start
	// checks it; only the syntax is checked here.
	if _, err := parseInitialCluster(c.InitialCluster); err != nil {
		return err
	}
	if c.HeartbeatInterval <= 0 || c.ElectionTimeout < 5*c.HeartbeatInterval {
		return fmt.Errorf("server: --election-timeout (%v) must be at least 5 times --heartbeat-interval (%v)", c.ElectionTimeout, c.HeartbeatInterval)
	}
	if len(c.EncryptionOldKeyFiles) > 0 && c.EncryptionKeyFile == "" {
		return errors.New("server: --encryption-old-key-files needs --encryption-key-file")
	}
	if err := c.validateTLS(); err != nil {
		return err
	}
	if err := c.validateAP(); err != nil {
		return err
	}
	if c.WatchProgressNotifyInterval < 0 {
		return fmt.Errorf("server: --watch-progress-notify-interval must be positive, got %v", c.WatchProgressNotifyInterval)
	}
	if c.ReplicationFactor <= 0 {
		c.ReplicationFactor = 3
	}
	if c.MaxRequestBytes <= 0 {
		c.MaxRequestBytes = 1536 * 1024
	}
	if c.MaxTxnOps <= 0 {
		c.MaxTxnOps = 128
	}
	if _, err := parseCompaction(c.AutoCompactionMode, c.AutoCompactionRetention); err != nil {
		return err
	}
	if c.RaftLogTruncateEntries == 0 {
		c.RaftLogTruncateEntries = 10000
	}
	if c.RaftLogTruncateBytes == 0 {
		c.RaftLogTruncateBytes = 4 << 20
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return nil
}

// clusterID derives the cluster id from the token and the initial members,
// as etcd does, so every initial member computes the same id.
func clusterID(token string, ms []member) uint64 {
	h := fnv.New64a()
	h.Write([]byte(token))
	for _, m := range ms {
		h.Write([]byte{0})
		h.Write([]byte(m.name))
		h.Write([]byte{0})
		h.Write([]byte(m.peerURL))
	}
	id := h.Sum64()
	if id == 0 {
		id = 1
	}
	return id
}

// listenHostPort turns a listen URL "http://h:p" into "h:p" for net.Listen.
// Unlike transport.HostPort, which validates addresses to dial, it lets
// port 0 (any free port) and an empty host (every interface) through.
func listenHostPort(u string) (string, error) {
	if !strings.Contains(u, "://") {
		return u, nil
	}
	p, err := url.Parse(u)
	if err != nil {
		return "", err
	}
	if p.Host == "" {
		return "", fmt.Errorf("server: URL %q has no host", u)
	}
	return p.Host, nil
}

// DefaultDeadNodeTimeout is --dead-node-timeout's default: CockroachDB's
// 5 minutes, long enough that a restart, an upgrade or a short network
// outage moves no data (a node that is only down keeps its replicas), short
// enough that a machine that is gone gets its ranges back to their
// replication factor within minutes.
const DefaultDeadNodeTimeout = 5 * time.Minute
