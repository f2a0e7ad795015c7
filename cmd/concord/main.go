// Command concord is Concord's one binary: a node (start), a local cluster
// in one process (demo), and the tools around them. Each subcommand lives
// in its own file and registers itself in subcommands from an init
// function, so the commands stay thin wrappers over their packages.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// subcommands builds every subcommand; files append to it in init.
var subcommands []func() *cobra.Command

func main() {
	root := &cobra.Command{
		Use:           "concord",
		Short:         "Concord: a sharded, Raft-replicated key-value store that speaks the etcd v3 API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	for _, c := range subcommands {
		root.AddCommand(c())
	}
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "concord:", err)
		os.Exit(1)
	}
}
