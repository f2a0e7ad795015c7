package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/concorddb/concord/internal/server"
	"github.com/spf13/cobra"
)

func demoCmd() *cobra.Command {
	var (
		nodes    int
		dataDir  string
		basePort int
		logLevel string
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run a local multi-node Concord cluster in this process",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			logger, err := newLogger("text", logLevel)
			if err != nil {
				return err
			}
			if nodes < 1 {
				return fmt.Errorf("--nodes must be at least 1, not %d", nodes)
			}
			dir := dataDir
			if dir == "" {
				if dir, err = os.MkdirTemp("", "concord-demo-"); err != nil {
					return err
				}
				defer os.RemoveAll(dir)
			}
			c, err := server.StartLocalCluster(nodes, dir, server.LocalOptions{BasePort: basePort, Logger: logger, HTTP: true, Faults: true})
			if err != nil {
				return err
			}
			defer c.Stop()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Concord demo: %d nodes, data in %s\n", nodes, dir)
			for i, u := range c.ClientURLs() {
				fmt.Fprintf(out, "  node n%d  client %s  dashboard %s\n", i+1, u, c.HTTPURLs()[i])
			}
			fmt.Fprintf(out, "\nDashboard: %s/ (stop, restart and isolate nodes from it)\n", c.HTTPURLs()[0])
			fmt.Fprintf(out, "\nTry:\n  etcdctl --endpoints=%s put hello world\n  etcdctl --endpoints=%s get hello\n\nCtrl-C stops the cluster.\n",
				strings.Join(c.ClientURLs(), ","), c.ClientURLs()[len(c.ClientURLs())-1])
			sig := make(chan os.Signal, 1)
			signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
			<-sig
			fmt.Fprintln(out, "stopping")
			return nil
		},
	}
	f := cmd.Flags()
	f.IntVar(&nodes, "nodes", 3, "number of nodes")
	f.StringVar(&dataDir, "data-dir", "", "data directory (default: a temporary directory, removed on exit)")
	f.IntVar(&basePort, "base-port", 2379, "client port of node 1; node i uses base+10000*(i-1) (client), one above (peer) and two above (HTTP: metrics and dashboard); 0 picks free ports")
	f.StringVar(&logLevel, "log-level", "warn", "log level: debug, info, warn or error")
	return cmd
}

func init() { subcommands = append(subcommands, demoCmd) }
