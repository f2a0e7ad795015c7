package main

import (
	"fmt"
	"path/filepath"
	"time"

	"github.com/concorddb/concord/internal/tlsutil"
	"github.com/spf13/cobra"
)

// certCmd is `concord cert`, shaped like `cockroach cert`: a CA, node
// certificates and client certificates in a certs directory.
func certCmd() *cobra.Command {
	var (
		certsDir, caKey string
		lifetime        time.Duration
		overwrite       bool
	)
	cmd := &cobra.Command{
		Use:   "cert",
		Short: "Create a CA and the node and client certificates for TLS (--cert-file, --peer-cert-file, etcdctl --cert)",
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&certsDir, "certs-dir", "certs", "directory of ca.crt and the certificates and keys created")
	pf.StringVar(&caKey, "ca-key", "", "path to the CA key (required; keep it outside --certs-dir)")
	pf.BoolVar(&overwrite, "overwrite", false, "replace files that exist")
	needKey := func(*cobra.Command, []string) error {
		if caKey == "" {
			return fmt.Errorf("--ca-key is required")
		}
		return nil
	}
	caCmd := &cobra.Command{
		Use:     "create-ca",
		Short:   "Create a CA: --certs-dir/ca.crt and the key at --ca-key",
		Args:    cobra.NoArgs,
		PreRunE: needKey,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := tlsutil.CreateCA(certsDir, caKey, lifetimeOr(lifetime, tlsutil.CALifetime), overwrite); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", filepath.Join(certsDir, tlsutil.CACertName), caKey)
			return nil
		},
	}
	caCmd.Flags().DurationVar(&lifetime, "lifetime", 0, "validity of the CA (default 10 years)")
	nodeCmd := &cobra.Command{
		Use:     "create-node HOST...",
		Short:   "Create node.crt and node.key for the host names and IP addresses given (plus localhost and 127.0.0.1), for --cert-file and --peer-cert-file",
		Args:    cobra.MinimumNArgs(1),
		PreRunE: needKey,
		RunE: func(cmd *cobra.Command, hosts []string) error {
			if err := tlsutil.CreateNode(certsDir, caKey, hosts, lifetimeOr(lifetime, tlsutil.CertLifetime), overwrite); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", filepath.Join(certsDir, tlsutil.NodeCertName), filepath.Join(certsDir, tlsutil.NodeKeyName))
			return nil
		},
	}
	nodeCmd.Flags().DurationVar(&lifetime, "lifetime", 0, "validity of the certificate (default 5 years, at most the CA's)")
	clientCmd := &cobra.Command{
		Use:     "create-client USER",
		Short:   "Create client.USER.crt and .key with common name USER (the user name of --client-cert-auth), for etcdctl --cert/--key",
		Args:    cobra.ExactArgs(1),
		PreRunE: needKey,
		RunE: func(cmd *cobra.Command, args []string) error {
			user := args[0]
			if err := tlsutil.CreateClient(certsDir, caKey, user, lifetimeOr(lifetime, tlsutil.CertLifetime), overwrite); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s and %s\n", filepath.Join(certsDir, tlsutil.ClientCertName(user)), filepath.Join(certsDir, tlsutil.ClientKeyName(user)))
			return nil
		},
	}
	clientCmd.Flags().DurationVar(&lifetime, "lifetime", 0, "validity of the certificate (default 5 years, at most the CA's)")
	cmd.AddCommand(caCmd, nodeCmd, clientCmd)
	return cmd
}

func lifetimeOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func init() { subcommands = append(subcommands, certCmd) }
