package main

import (
	"fmt"
	"runtime"

	"github.com/concorddb/concord/internal/server"
	"github.com/spf13/cobra"
)

func versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print Concord's version",
		Args:  cobra.NoArgs,
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintf(cmd.OutOrStdout(), "concord version %s\netcd API version %s\ngo version %s %s/%s\n",
				server.Version, server.EtcdVersion, runtime.Version(), runtime.GOOS, runtime.GOARCH)
		},
	}
}

func init() { subcommands = append(subcommands, versionCmd) }
