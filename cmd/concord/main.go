// Command concord is Concord's one binary: a node (start), a local cluster
// in one process (demo), and the tools around them.
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := &cobra.Command{
		Use:           "concord",
		Short:         "Concord: a sharded, Raft-replicated key-value store that speaks the etcd v3 API",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(startCmd(), demoCmd(), versionCmd())
	if err := root.Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "concord:", err)
		os.Exit(1)
	}
}
