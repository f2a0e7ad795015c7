package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/concorddb/concord/internal/concordpb/rpcpb"
	"github.com/spf13/cobra"
)

func init() { subcommands = append(subcommands, rangeCmd) }

func rangeCmd() *cobra.Command {
	var conn adminConn
	cmd := &cobra.Command{
		Use:   "range",
		Short: "List, split and merge the ranges the keyspace is made of",
	}
	conn.flags(cmd, 10*time.Second)
	admin := conn.run

	var format string
	list := &cobra.Command{
		Use:   "list",
		Short: "Print every range: id, span (etcd keys), replicas, leaseholder, generation, size in bytes, keys, recent QPS",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if format != "table" && format != "json" {
				return fmt.Errorf("-w must be table or json, not %q", format)
			}
			return admin(cmd, func(ctx context.Context, c rpcpb.AdminClient) error {
				resp, err := c.Ranges(ctx, &rpcpb.RangesRequest{})
				if err != nil {
					return err
				}
				if format == "json" {
					return writeRangesJSON(cmd.OutOrStdout(), resp.GetRanges())
				}
				return writeRangesTable(cmd.OutOrStdout(), resp.GetRanges())
			})
		},
	}
	list.Flags().StringVarP(&format, "write-out", "w", "table", "output format: table or json")

	split := &cobra.Command{
		Use:   "split KEY",
		Short: "Split the range holding KEY so that a new range starts at KEY (nothing happens if one already does)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return admin(cmd, func(ctx context.Context, c rpcpb.AdminClient) error {
				resp, err := c.SplitRange(ctx, &rpcpb.SplitRangeRequest{Key: []byte(args[0])})
				if err != nil {
					return err
				}
				if resp.GetLeft() == nil {
					fmt.Fprintf(cmd.OutOrStdout(), "range %d already starts at %s\n", resp.GetRight().GetRangeId(), showKey(resp.GetRight().GetStartKey(), false))
					return nil
				}
				fmt.Fprintf(cmd.OutOrStdout(), "split range %d at %s: new range %d\n", resp.GetLeft().GetRangeId(), showKey([]byte(args[0]), false), resp.GetRight().GetRangeId())
				return nil
			})
		},
	}
	merge := &cobra.Command{
		Use:   "merge KEY",
		Short: "Merge the range that starts at KEY into its left neighbour (every replica of it must be up)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return admin(cmd, func(ctx context.Context, c rpcpb.AdminClient) error {
				resp, err := c.MergeRange(ctx, &rpcpb.MergeRangeRequest{Key: []byte(args[0])})
				if err != nil {
					return err
				}
				m := resp.GetMerged()
				fmt.Fprintf(cmd.OutOrStdout(), "merged into range %d [%s, %s)\n", m.GetRangeId(), showKey(m.GetStartKey(), false), showKey(m.GetEndKey(), true))
				return nil
			})
		},
	}
	cmd.AddCommand(list, split, merge)
	return cmd
}

// showKey prints an etcd key for people: quoted with Go escapes for bytes
// that are not printable; the empty key is the start (or, as an end, the
// end) of the keyspace.
func showKey(k []byte, end bool) string {
	if len(k) == 0 {
		if end {
			return "<end>"
		}
		return "<start>"
	}
	return strconv.Quote(string(k))
}

func writeRangesTable(w io.Writer, ranges []*rpcpb.RangeInfo) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "RANGE\tSTART\tEND\tREPLICAS\tLEASEHOLDER\tGENERATION\tBYTES\tKEYS\tQPS")
	for _, r := range ranges {
		reps := make([]string, len(r.GetReplicas()))
		for i, id := range r.GetReplicas() {
			reps[i] = strconv.FormatUint(id, 10)
		}
		lh, size, nkeys, qps := "?", "?", "?", "?"
		if r.GetLeaseholder() != 0 {
			lh = strconv.FormatUint(r.GetLeaseholder(), 10)
		}
		if r.GetApproximateBytes() >= 0 {
			size = strconv.FormatInt(r.GetApproximateBytes(), 10)
		}
		if r.GetKeys() >= 0 {
			nkeys = strconv.FormatInt(r.GetKeys(), 10)
		}
		if r.GetQps() >= 0 {
			qps = strconv.FormatFloat(r.GetQps(), 'f', 1, 64)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.GetRangeId(), showKey(r.GetStartKey(), false), showKey(r.GetEndKey(), true),
			strings.Join(reps, ","), lh, r.GetGeneration(), size, nkeys, qps)
	}
	return tw.Flush()
}

// rangeJSON is a range in `concord range list -w json`; keys are strings
// (etcd keys are bytes, but JSON users read them as text; a non-UTF-8 key
// comes out escaped by encoding/json's rules).
type rangeJSON struct {
	RangeID          uint64   `json:"range_id"`
	StartKey         string   `json:"start_key"`
	EndKey           string   `json:"end_key"`
	Replicas         []uint64 `json:"replicas"`
	Leaseholder      uint64   `json:"leaseholder"`
	Generation       uint64   `json:"generation"`
	ApproximateBytes int64    `json:"approximate_bytes"`
	Keys             int64    `json:"keys"`
	QPS              float64  `json:"qps"`
}

func writeRangesJSON(w io.Writer, ranges []*rpcpb.RangeInfo) error {
	out := make([]rangeJSON, len(ranges))
	for i, r := range ranges {
		out[i] = rangeJSON{RangeID: r.GetRangeId(), StartKey: string(r.GetStartKey()), EndKey: string(r.GetEndKey()), Replicas: r.GetReplicas(),
			Leaseholder: r.GetLeaseholder(), Generation: r.GetGeneration(), ApproximateBytes: r.GetApproximateBytes(), Keys: r.GetKeys(), QPS: r.GetQps()}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(map[string]any{"ranges": out})
}
