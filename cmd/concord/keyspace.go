package main

import (
	"context"
	"fmt"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
)

func init() { subcommands = append(subcommands, keyspaceCmd) }

// keyspaceCmd is concord keyspace: the AP keyspaces' replication (N
// replicas, read and write quorums R and W), kept in the meta range.
func keyspaceCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "keyspace",
		Short: "List, create and change AP keyspaces (SELECT 0-15 on the Redis port): replicas N, read quorum R, write quorum W",
	}
	conn.flags(cmd, 10*time.Second)
	admin := func(cmd *cobra.Command, f func(ctx context.Context, c rpcpb.APAdminClient) error) error {
		return conn.dial(cmd, func(ctx context.Context, cc *grpc.ClientConn) error { return f(ctx, rpcpb.NewAPAdminClient(cc)) })
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "Print every keyspace's N, R and W, and whether it has its own record or the defaults",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return admin(cmd, func(ctx context.Context, c rpcpb.APAdminClient) error {
				resp, err := c.Keyspaces(ctx, &rpcpb.APKeyspacesRequest{})
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "KEYSPACE\tN\tR\tW\tRECORD")
				for _, k := range resp.GetKeyspaces() {
					rec := "default"
					if k.GetStored() {
						rec = "stored"
					}
					fmt.Fprintf(tw, "%d\t%d\t%d\t%d\t%s\n", k.GetId(), k.GetN(), k.GetR(), k.GetW(), rec)
				}
				return tw.Flush()
			})
		},
	}
	var n, r, w uint32
	set := func(create bool) func(cmd *cobra.Command, args []string) error {
		return func(cmd *cobra.Command, args []string) error {
			id, err := strconv.ParseUint(args[0], 10, 32)
			if err != nil {
				return fmt.Errorf("keyspace %q is not a number", args[0])
			}
			return admin(cmd, func(ctx context.Context, c rpcpb.APAdminClient) error {
				k := &rpcpb.APKeyspaceInfo{Id: uint32(id), N: n, R: r, W: w}
				if !create {
					// Flags not given keep the keyspace's current values.
					resp, err := c.Keyspaces(ctx, &rpcpb.APKeyspacesRequest{})
					if err != nil {
						return err
					}
					for _, cur := range resp.GetKeyspaces() {
						if cur.GetId() != k.GetId() {
							continue
						}
						if !cmd.Flags().Changed("n") {
							k.N = cur.GetN()
						}
						if !cmd.Flags().Changed("r") {
							k.R = cur.GetR()
						}
						if !cmd.Flags().Changed("w") {
							k.W = cur.GetW()
						}
					}
				}
				if _, err := c.SetKeyspace(ctx, &rpcpb.APSetKeyspaceRequest{Keyspace: k, Create: create}); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "keyspace %d: N=%d R=%d W=%d\n", k.GetId(), k.GetN(), k.GetR(), k.GetW())
				return nil
			})
		}
	}
	create := &cobra.Command{
		Use:   "create ID",
		Short: "Give keyspace ID its own N, R and W (refused if it has them already)",
		Args:  cobra.ExactArgs(1),
		RunE:  set(true),
	}
	change := &cobra.Command{
		Use:   "set ID",
		Short: "Change keyspace ID's N, R or W (every node follows within 2 s; a changed N moves keys to their new preference lists through anti-entropy)",
		Args:  cobra.ExactArgs(1),
		RunE:  set(false),
	}
	for _, c := range []*cobra.Command{create, change} {
		c.Flags().Uint32Var(&n, "n", 3, "replicas of each key")
		c.Flags().Uint32Var(&r, "r", 2, "replicas a read waits for")
		c.Flags().Uint32Var(&w, "w", 2, "replicas a write waits for (durably stored)")
	}
	cmd.AddCommand(list, create, change)
	return cmd
}
