package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/concorddb/concord/internal/backup"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
	"github.com/concorddb/concord/internal/server"
	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func init() { subcommands = append(subcommands, snapshotCmd) }

func snapshotCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "snapshot",
		Short: "Save, inspect and restore backups (etcdctl snapshot save works too)",
	}
	cmd.AddCommand(snapshotSaveCmd(), snapshotStatusCmd(), snapshotRestoreCmd())
	return cmd
}

func snapshotSaveCmd() *cobra.Command {
	var endpoints []string
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "save FILE",
		Short: "Stream a consistent backup of the cluster's keyspace into FILE",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cli, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			rc, err := cli.Snapshot(ctx)
			if err != nil {
				return err
			}
			defer rc.Close()
			tmp := args[0] + ".part"
			f, err := os.Create(tmp)
			if err != nil {
				return err
			}
			if _, err := io.Copy(f, rc); err != nil {
				f.Close()
				os.Remove(tmp)
				return err
			}
			if err := f.Sync(); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			info, err := verifyBackup(tmp)
			if err != nil {
				os.Remove(tmp)
				return err
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "Snapshot saved at %s (revision %d, %d keys)\n", args[0], info.Revision, info.Keys)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&endpoints, "endpoints", []string{"127.0.0.1:2379"}, "client endpoints")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Minute, "how long the transfer may take")
	return cmd
}

func verifyBackup(path string) (backup.Info, error) {
	f, err := os.Open(path)
	if err != nil {
		return backup.Info{}, err
	}
	defer f.Close()
	return backup.Read(f, func(*kvpb.KeyValue) error { return nil })
}

func snapshotStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status FILE",
		Short: "Verify a backup file and print what it holds",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := verifyBackup(args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revision %d, %d keys, newest key revision %d, checksum ok\n", info.Revision, info.Keys, info.MaxRevision)
			return nil
		},
	}
}

func snapshotRestoreCmd() *cobra.Command {
	cfg := server.DefaultConfig()
	var advertisePeer string
	cmd := &cobra.Command{
		Use:   "restore FILE",
		Short: "Create one member's data directory for a new cluster from a backup",
		Long: `Restore creates the data directory of one member of a new cluster from a
backup, like etcdutl snapshot restore. Run it once per member with that
member's --name and the same --initial-cluster, then start every member with
concord start and the same flags (--initial-cluster-state new).`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg.InitialAdvertisePeerURLs = splitURLs(advertisePeer)
			if cfg.DataDir == "" {
				cfg.DataDir = cfg.Name + ".concord"
			}
			if !cmd.Flags().Changed("initial-cluster") {
				cfg.InitialCluster = cfg.Name + "=" + cfg.InitialAdvertisePeerURLs[0]
			}
			logger, err := newLogger("text", "warn")
			if err != nil {
				return err
			}
			cfg.Logger = logger
			info, err := server.Restore(cfg, args[0])
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "restored %d keys at revision %d into %s\n", info.Keys, info.Revision, cfg.DataDir)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&cfg.Name, "name", cfg.Name, "name of the member being restored")
	f.StringVar(&cfg.DataDir, "data-dir", "", "data directory to create (default ${name}.concord)")
	f.StringVar(&advertisePeer, "initial-advertise-peer-urls", "http://localhost:2380", "this member's peer URLs")
	f.StringVar(&cfg.InitialCluster, "initial-cluster", "", "the new cluster's members: name=peerURL,...")
	f.StringVar(&cfg.InitialClusterToken, "initial-cluster-token", cfg.InitialClusterToken, "the new cluster's token")
	f.IntVar(&cfg.ReplicationFactor, "replication-factor", cfg.ReplicationFactor, "replicas per range")
	addEncryptionFlags(f, &cfg)
	return cmd
}
