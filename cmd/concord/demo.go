package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/concorddb/concord/internal/server"
	"github.com/concorddb/concord/internal/tlsutil"
	"github.com/spf13/cobra"
)

func demoCmd() *cobra.Command {
	var (
		nodes     int
		dataDir   string
		basePort  int
		logLevel  string
		withTLS   bool
		redisBase int
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
			opts := server.LocalOptions{BasePort: basePort, Logger: logger, HTTP: true, Faults: true, Redis: true, RedisBasePort: redisBase}
			if basePort == 0 {
				opts.RedisBasePort = 0
			}
			if withTLS {
				if opts.CertsDir, err = demoCerts(dir); err != nil {
					return err
				}
			}
			c, err := server.StartLocalCluster(nodes, dir, opts)
			if err != nil {
				return err
			}
			defer c.Stop()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "Concord demo: %d nodes, data in %s\n", nodes, dir)
			for i, u := range c.ClientURLs() {
				fmt.Fprintf(out, "  node n%d  client %s  dashboard %s  redis %s\n", i+1, u, c.HTTPURLs()[i], c.RedisAddrs()[i])
			}
			fmt.Fprintf(out, "\nDashboard: %s/ (stop, restart and isolate nodes from it)\n", c.HTTPURLs()[0])
			tlsArgs := ""
			if withTLS {
				tlsArgs = demoEtcdctlTLS(opts.CertsDir)
				fmt.Fprintf(out, "\nClient and peer TLS on, client certificates required: CA and certificates in %s\n", opts.CertsDir)
			}
			fmt.Fprintf(out, "\nTry:\n  etcdctl --endpoints=%s%s put hello world\n  etcdctl --endpoints=%s%s get hello\n",
				strings.Join(c.ClientURLs(), ","), tlsArgs, c.ClientURLs()[len(c.ClientURLs())-1], tlsArgs)
			ra := c.RedisAddrs()
			rh, rp0, _ := net.SplitHostPort(ra[0])
			_, rpN, _ := net.SplitHostPort(ra[len(ra)-1])
			fmt.Fprintf(out, "  redis-cli -h %s -p %s incr hits\n  redis-cli -h %s -p %s get hits   (AP keyspace: stays writable when a node is isolated)\n\nCtrl-C stops the cluster.\n",
				rh, rp0, rh, rpN)
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
	f.IntVar(&redisBase, "redis-base-port", 6379, "Redis port of node 1; node i uses base+(i-1); with --base-port 0, free ports")
	f.BoolVar(&withTLS, "tls", false, "client and peer TLS with client certificates, from a CA generated in the data directory's certs/")
	return cmd
}

// demoCerts creates, unless there already, a CA, the nodes' certificate
// and a client certificate for the user root in dir/certs (the CA key
// beside it in dir), and returns the certs directory.
func demoCerts(dir string) (string, error) {
	certs, caKey := filepath.Join(dir, "certs"), filepath.Join(dir, "ca.key")
	if _, err := os.Stat(filepath.Join(certs, tlsutil.ClientCertName("root"))); err == nil {
		return certs, nil // a --data-dir kept from an earlier demo
	}
	if err := tlsutil.CreateCA(certs, caKey, tlsutil.CALifetime, true /* overwrite */); err != nil {
		return "", err
	}
	if err := tlsutil.CreateNode(certs, caKey, nil, tlsutil.CertLifetime, true /* overwrite */); err != nil {
		return "", err
	}
	return certs, tlsutil.CreateClient(certs, caKey, "root", tlsutil.CertLifetime, true /* overwrite */)
}

// demoEtcdctlTLS are the etcdctl flags for the demo's certificates.
func demoEtcdctlTLS(certs string) string {
	return fmt.Sprintf(" --cacert=%s --cert=%s --key=%s", filepath.Join(certs, tlsutil.CACertName),
		filepath.Join(certs, tlsutil.ClientCertName("root")), filepath.Join(certs, tlsutil.ClientKeyName("root")))
}

func init() { subcommands = append(subcommands, demoCmd) }
