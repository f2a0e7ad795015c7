package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/internal/telemetry"
	"github.com/spf13/cobra"
)

func startCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var (
		listenClient, advertiseClient, listenPeer, advertisePeer string
		heartbeatMs, electionMs                                  int
		logFormat, logLevel                                      string
		k8sPeers                                                 string
		listenMetrics                                            string
		traceSampling                                            float64
		slowFsyncMs                                              int
		authTokenTTL                                             uint
		strictReconfig                                           bool
		tlsf                                                     *tlsFlags
		listenRedis, listenGossip                                string
	)
	cmd := &cobra.Command{
		Use:   "start",
		Short: "Run one Concord node (flags follow etcd's)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg.ListenClientURLs = splitURLs(listenClient)
			cfg.AdvertiseClientURLs = splitURLs(advertiseClient)
			cfg.ListenPeerURLs = splitURLs(listenPeer)
			cfg.InitialAdvertisePeerURLs = splitURLs(advertisePeer)
			tlsf.apply(&cfg)
			cfg.HeartbeatInterval = msDuration(heartbeatMs)
			cfg.ElectionTimeout = msDuration(electionMs)
			if cfg.DataDir == "" {
				cfg.DataDir = cfg.Name + ".concord"
			}
			if !cmd.Flags().Changed("initial-cluster") {
				cfg.InitialCluster = cfg.Name + "=" + cfg.InitialAdvertisePeerURLs[0]
			}
			if err := applyK8sPeers(cmd, &cfg, k8sPeers); err != nil {
				return err
			}
			logger, err := newLogger(logFormat, logLevel)
			if err != nil {
				return err
			}
			cfg.Logger = logger
			cfg.ListenMetricsURLs = splitURLs(listenMetrics)
			cfg.ListenRedisURLs = splitURLs(listenRedis)
			cfg.ListenGossipURLs = splitURLs(listenGossip)
			cfg.ProcessMetrics = true
			cfg.SlowFsync = msDuration(slowFsyncMs)
			cfg.AuthTokenTTL = time.Duration(authTokenTTL) * time.Second
			cfg.UnsafeNoStrictReconfigCheck = !strictReconfig
			tp, shutdownTracing, err := telemetry.SetupTracing(cmd.Context(), telemetry.TracingOptions{SamplingRatio: traceSampling, NodeName: cfg.Name})
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := shutdownTracing(ctx); err != nil {
					logger.Warn("flushing traces", "err", err)
				}
			}()
			if telemetry.TracingEnabled() {
				cfg.TracerProvider = tp
			}
			n, err := server.Start(cfg)
			if err != nil {
				return err
			}
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			var s os.Signal
			select {
			case s = <-sig:
			case <-n.Removed():
				// As etcd's member does, the process ends (status 0)
				// once its member has been removed.
				n.Stop()
				return nil
			}
			logger.Info("stopping: handing over leadership", "signal", s.String())
			ctx, cancel := context.WithTimeout(context.Background(), 2*cfg.ElectionTimeout)
			n.Shutdown(ctx)
			cancel()
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", cfg.Name, "human-readable name for this member")
	f.StringVar(&cfg.DataDir, "data-dir", "", "path to the data directory (default ${name}.concord)")
	f.StringVar(&listenClient, "listen-client-urls", "http://localhost:2379", "URLs to listen on for client traffic")
	f.StringVar(&advertiseClient, "advertise-client-urls", "http://localhost:2379", "client URLs to advertise to the rest of the cluster")
	f.StringVar(&listenPeer, "listen-peer-urls", "http://localhost:2380", "URLs to listen on for peer traffic")
	f.StringVar(&advertisePeer, "initial-advertise-peer-urls", "http://localhost:2380", "peer URLs to advertise to the rest of the cluster")
	f.StringVar(&cfg.InitialCluster, "initial-cluster", "", "initial cluster configuration for bootstrapping: name=peerURL,... (default ${name}=${initial-advertise-peer-urls})")
	f.StringVar(&cfg.InitialClusterState, "initial-cluster-state", cfg.InitialClusterState, "new (bootstrap the initial cluster) or existing (join a running cluster)")
	f.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", cfg.InitialClusterToken, "initial cluster token, part of the cluster id")
	f.IntVar(&heartbeatMs, "heartbeat-interval", 100, "time (in milliseconds) of a heartbeat interval")
	f.IntVar(&electionMs, "election-timeout", 1000, "time (in milliseconds) for an election to timeout")
	f.DurationVar(&cfg.PlacementInterval, "placement-interval", 5*time.Second, "how often the placement driver spreads replicas over the members and repairs ranges (0: never)")
	f.DurationVar(&cfg.DeadNodeTimeout, "dead-node-timeout", server.DefaultDeadNodeTimeout, "how long a member may not answer before its replicas are re-created on other members (CockroachDB's 5m)")
	f.StringVar(&cfg.Locality, "locality", "", "this node's locality as key=value tiers from the most general to the most specific, e.g. region=eu,zone=a (CockroachDB's); placement keeps a range's replicas in distinct localities")
	f.BoolVar(&strictReconfig, "strict-reconfig-check", true, "reject membership changes that would cost the cluster its quorum (etcd's)")
	f.StringVar(&cfg.AuthToken, "auth-token", cfg.AuthToken, "auth token type: simple, or jwt,pub-key=PATH,priv-key=PATH,sign-method=ALG[,ttl=DURATION] (etcd's)")
	f.UintVar(&authTokenTTL, "auth-token-ttl", 300, "time (in seconds) a simple token lives after its last use")
	f.IntVar(&cfg.BcryptCost, "bcrypt-cost", cfg.BcryptCost, "cost of the bcrypt hashes of passwords (4 to 31)")
	f.IntVar(&cfg.MaxRequestBytes, "max-request-bytes", cfg.MaxRequestBytes, "maximum client request size in bytes the server will accept")
	f.IntVar(&cfg.MaxTxnOps, "max-txn-ops", cfg.MaxTxnOps, "maximum number of operations permitted in a transaction")
	f.Uint32Var(&cfg.MaxConcurrentStreams, "max-concurrent-streams", cfg.MaxConcurrentStreams, "maximum concurrent streams that each client can open at a time")
	f.DurationVar(&cfg.WatchProgressNotifyInterval, "watch-progress-notify-interval", 10*time.Minute, "duration of periodic watch progress notifications")
	f.IntVar(&cfg.ReplicationFactor, "replication-factor", cfg.ReplicationFactor, "replicas per range (Concord)")
	f.Int64Var(&cfg.RangeMaxBytes, "range-max-bytes", 512<<20, "split a range whose data grows past this many bytes, at its middle key (0: only concord range split splits); CockroachDB's 512 MiB: few enough ranges for a 10 GiB node (20), each snapshot still a bounded fraction of memory")
	f.Float64Var(&cfg.RangeSplitQPS, "range-split-qps", 2500, "split a range that serves more requests per second than this for ten seconds, at the median of its recent request keys (0: never); CockroachDB's 2500")
	f.Int64Var(&cfg.RangeMinBytes, "range-min-bytes", 0, "merge a range smaller than this into its left neighbour when that one is small too and the two stay under --range-max-bytes (0: never by itself)")
	f.StringVar(&cfg.AutoCompactionMode, "auto-compaction-mode", "periodic", "interpret auto-compaction-retention as a period (periodic) or a number of writes to keep per range (revision)")
	f.StringVar(&cfg.AutoCompactionRetention, "auto-compaction-retention", "0", "auto compaction retention: periodic: a duration (30m) or hours (1); revision: writes to keep; 0 disables")
	f.Int64Var(&cfg.CacheBytes, "cache-bytes", cfg.CacheBytes, "storage block cache size in bytes (Concord)")
	f.DurationVar(&cfg.LeaseCheckpointInterval, "experimental-lease-checkpoint-interval", 5*time.Minute, "how often the lessor persists each lease's remaining TTL, so a new meta leader resumes leases instead of resetting them (on by default, unlike etcd; negative: off)")
	f.BoolVar(&cfg.UnsafeNoReadLease, "unsafe-no-read-lease", false, "TEST ONLY: serve linearizable reads from any replica without a lease (breaks linearizability on purpose)")
	_ = f.MarkHidden("unsafe-no-read-lease")
	f.BoolVar(&cfg.UnsafeTxnNoRecord, "unsafe-txn-no-record", false, "TEST ONLY: commit a txn across ranges range by range, with no record (breaks atomicity on purpose)")
	_ = f.MarkHidden("unsafe-txn-no-record")
	f.StringVar(&cfg.UnsafeClockOffsetFile, "unsafe-clock-offset-file", "", "TEST ONLY: shift this node's wall clock by the duration written in this file")
	_ = f.MarkHidden("unsafe-clock-offset-file")
	f.StringVar(&k8sPeers, "k8s-peers", "", "SERVICE:REPLICAS: derive --name, the advertised URLs and --initial-cluster(-state) of a Kubernetes StatefulSet pod from POD_NAME and POD_NAMESPACE, with the first REPLICAS pods as the initial cluster")
	f.BoolVar(&cfg.EnablePprof, "enable-pprof", false, "also serve Go's profiler under /debug/pprof/ on the client port, as etcd does (the metrics port always serves it)")
	f.StringVar(&listenMetrics, "listen-metrics-urls", "", "URLs of the HTTP port: /metrics, /healthz, /readyz, pprof and the dashboard (default: none)")
	f.Float64Var(&traceSampling, "trace-sampling-ratio", 0.1, "fraction of client requests traced when OTLP export is configured by the OTEL_* environment variables")
	f.IntVar(&slowFsyncMs, "slow-fsync-threshold", 50, "fsync duration (in milliseconds) above which a group commit is logged as slow")
	f.Int64Var(&cfg.QuotaBackendBytes, "quota-backend-bytes", 8<<30, "bound on this node's storage engine, every replica it holds with Raft logs and history; past it (or when the disk's free space falls under a quarter of the disk, at most 1 GiB) the node raises a NOSPACE alarm and the cluster refuses puts, txns with puts and lease grants until etcdctl alarm disarm (0: no quota). Default 8 GiB, not etcd's 2 GiB: etcd's bounds one bbolt file holding the whole keyspace, Concord's one node's share of many ranges in Pebble, which has no bbolt-like size limit; 8 GiB is etcd's own suggested maximum")
	addEncryptionFlags(f, &cfg)
	f.StringVar(&logFormat, "log-format", "json", "log format: json or text")
	f.StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	tlsf = addTLSFlags(f)
	// AP keyspaces (internal/ap, internal/resp).
	f.StringVar(&listenRedis, "listen-redis-urls", "", "redis://HOST:PORT of the Redis-protocol port serving AP keyspaces (default: none, and no AP keyspaces on this node)")
	f.StringVar(&listenGossip, "listen-gossip-urls", "", "HOST:PORT of the AP membership gossip (memberlist, UDP and TCP); default: the peer URL's host on a free port, which peers learn over the peer port")
	f.DurationVar(&cfg.APAntiEntropyInterval, "ap-anti-entropy-interval", 10*time.Second, "how often AP replicas are compared with each live peer's by Merkle tree, so they converge for keys nobody reads (negative: never)")
	f.BoolVar(&cfg.UnsafeAPDropHints, "unsafe-ap-drop-hints", false, "TEST ONLY: acknowledge AP hints for other nodes without storing them (breaks hinted handoff on purpose)")
	_ = f.MarkHidden("unsafe-ap-drop-hints")
	return cmd
}

func splitURLs(s string) []string {
	var out []string
	for _, u := range strings.Split(s, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, u)
		}
	}
	return out
}

func newLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be json or text, not %q", format)
}

func msDuration(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

func init() { subcommands = append(subcommands, startCmd) }
