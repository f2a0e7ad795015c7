package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
)

func init() { subcommands = append(subcommands, nodeCmd) }

// adminConn is how the operator commands (node, range) reach a cluster:
// its client endpoints, etcdctl's TLS flags and, with auth on, a user with
// the root role.
type adminConn struct {
	endpoints             []string
	timeout               time.Duration
	user                  string
	cacert, cert, certKey string
	insecureSkipTLSVerify bool
}

// flags adds the connection's flags to cmd; timeout is the default
// --command-timeout.
func (a *adminConn) flags(cmd *cobra.Command, timeout time.Duration) {
	f := cmd.PersistentFlags()
	f.StringSliceVar(&a.endpoints, "endpoints", []string{"127.0.0.1:2379"}, "client endpoints of any nodes of the cluster")
	f.DurationVar(&a.timeout, "command-timeout", timeout, "how long the command may take")
	f.StringVar(&a.user, "user", "", "USER:PASSWORD of a user with the root role, when auth is on")
	f.StringVar(&a.cacert, "cacert", "", "CA bundle to verify the servers' certificates with (TLS)")
	f.StringVar(&a.cert, "cert", "", "client certificate (TLS)")
	f.StringVar(&a.certKey, "key", "", "client certificate's key (TLS)")
	f.BoolVar(&a.insecureSkipTLSVerify, "insecure-skip-tls-verify", false, "do not verify the servers' certificates (TLS, testing only)")
}

// run connects and calls f with an Admin client.
func (a *adminConn) run(cmd *cobra.Command, f func(ctx context.Context, c rpcpb.AdminClient) error) error {
	return a.dial(cmd, func(ctx context.Context, cc *grpc.ClientConn) error { return f(ctx, rpcpb.NewAdminClient(cc)) })
}

// dial connects and calls f with the connection (signed in with --user).
func (a *adminConn) dial(cmd *cobra.Command, f func(ctx context.Context, cc *grpc.ClientConn) error) error {
	cfg := clientv3.Config{Endpoints: a.endpoints, DialTimeout: 5 * time.Second, Logger: zap.NewNop()}
	if a.user != "" {
		name, pw, ok := strings.Cut(a.user, ":")
		if !ok {
			return fmt.Errorf("--user %q: want USER:PASSWORD", a.user)
		}
		cfg.Username, cfg.Password = name, pw
	}
	if a.cacert != "" || a.cert != "" || a.insecureSkipTLSVerify {
		tc := &tls.Config{InsecureSkipVerify: a.insecureSkipTLSVerify}
		if a.cacert != "" {
			pem, err := os.ReadFile(a.cacert)
			if err != nil {
				return err
			}
			tc.RootCAs = x509.NewCertPool()
			if !tc.RootCAs.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--cacert %s holds no certificate", a.cacert)
			}
		}
		if a.cert != "" {
			c, err := tls.LoadX509KeyPair(a.cert, a.certKey)
			if err != nil {
				return fmt.Errorf("--cert/--key: %w", err)
			}
			tc.Certificates = []tls.Certificate{c}
		}
		cfg.TLS = tc
	}
	cli, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	// The client signs in with its first call; the Admin client shares
	// its connection and token.
	if a.user != "" {
		if _, err := cli.AuthStatus(ctx); err != nil {
			return err
		}
	}
	return f(clientv3.WithRequireLeader(ctx), cli.ActiveConnection())
}

func nodeCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "node",
		Short: "List the members with what they hold, and decommission one",
	}
	conn.flags(cmd, 5*time.Minute) // a decommission moves every replica of the member
	status := &cobra.Command{
		Use:   "status",
		Short: "Print every member: id, name, live, replicas, leaderships, size on disk, peer URLs",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return conn.run(cmd, func(ctx context.Context, c rpcpb.AdminClient) error {
				resp, err := c.Nodes(ctx, &rpcpb.NodesRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tNAME\tLIVE\tLEARNER\tREPLICAS\tLEADERS\tBYTES\tLOCALITY\tPEER URLS")
				for _, n := range resp.GetNodes() {
					reps, leads, size := "?", "?", "?"
					if n.GetLive() {
						reps, leads, size = strconv.FormatUint(n.GetReplicas(), 10), strconv.FormatUint(n.GetLeaders(), 10), strconv.FormatInt(n.GetDbSizeBytes(), 10)
					}
					fmt.Fprintf(tw, "%x\t%s\t%v\t%v\t%s\t%s\t%s\t%s\t%s\n", n.GetNodeId(), n.GetName(), n.GetLive(), n.GetLearner(), reps, leads, size, n.GetLocality(), strings.Join(n.GetPeerUrls(), ","))
				}
				return tw.Flush()
			})
		},
	}
	decommission := &cobra.Command{
		Use:   "decommission ID",
		Short: "Move every replica off member ID (hex, as etcdctl member list prints it), keeping each range's replication factor where another member can take it, then remove it",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 16, 64)
			if err != nil || id == 0 {
				return fmt.Errorf("member id %q is not a hex member id", args[0])
			}
			return conn.run(cmd, func(ctx context.Context, c rpcpb.AdminClient) error {
				resp, err := c.Decommission(ctx, &rpcpb.DecommissionRequest{NodeId: id})
				if err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "member %x decommissioned: %d replicas moved to other members, %d dropped (no member left to take them)\n", id, resp.GetMoved(), resp.GetDropped())
				return nil
			})
		},
	}
	cmd.AddCommand(status, decommission)
	return cmd
}
