package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// maxProbeBodyBytes bounds how much of a failed answer the probe reports.
const maxProbeBodyBytes = 512

// probeCmd checks a node's health endpoint, for container health checks
// in an image without a shell or curl: exit 0 on 200, 1 with the reason
// otherwise.
func probeCmd() *cobra.Command {
	var (
		url     string
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:   "probe",
		Short: "Check a node's health endpoint (exit 0 if it answers 200)",
		Long: "probe sends GET to --url (default the local node's /readyz) and exits 0 if the answer is 200 OK,\n" +
			"1 with the reason otherwise. It is the HEALTHCHECK of the container image, which has no shell.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			if err := probe(ctx, url); err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), "ok")
			return nil
		},
	}
	cmd.Flags().StringVar(&url, "url", "http://127.0.0.1:2379/readyz", "URL to GET")
	cmd.Flags().DurationVar(&timeout, "timeout", 5*time.Second, "give up after this long")
	return cmd
}

// probe returns nil if GET url answers 200 before ctx ends, else the reason.
func probe(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return fmt.Errorf("probe: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("probe: %s: no answer in time", url)
		}
		return fmt.Errorf("probe: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxProbeBodyBytes))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe: %s: %s: %s", url, resp.Status, strings.TrimSpace(string(body)))
	}
	return nil
}

func init() { subcommands = append(subcommands, probeCmd) }
