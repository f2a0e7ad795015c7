package main

import (
	"fmt"
	"os"

	"github.com/concorddb/concord/internal/deploy"
	"github.com/concorddb/concord/internal/server"
	"github.com/spf13/cobra"
)

// k8sDerivedFlags are the flags --k8s-peers derives; setting one of them
// as well is refused rather than silently overridden.
var k8sDerivedFlags = []string{"name", "advertise-client-urls", "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state"}

// applyK8sPeers derives this member's name, advertised URLs and initial
// cluster from --k8s-peers SERVICE:REPLICAS and the pod's POD_NAME and
// POD_NAMESPACE (set from the downward API), for a StatefulSet whose image
// has no shell to compute them. It does nothing when peers is empty.
func applyK8sPeers(cmd *cobra.Command, cfg *server.Config, peers string) error {
	if peers == "" {
		return nil
	}
	for _, name := range k8sDerivedFlags {
		if cmd.Flags().Changed(name) {
			return fmt.Errorf("--k8s-peers derives --%s: set one or the other", name)
		}
	}
	service, replicas, err := deploy.ParsePeers(peers)
	if err != nil {
		return err
	}
	set := deploy.StatefulSet{Pod: os.Getenv("POD_NAME"), Namespace: os.Getenv("POD_NAMESPACE"), Service: service, Replicas: replicas}
	if set.Pod == "" || set.Namespace == "" {
		return fmt.Errorf("--k8s-peers needs POD_NAME and POD_NAMESPACE in the environment (the downward API's metadata.name and metadata.namespace)")
	}
	m, err := set.Member()
	if err != nil {
		return err
	}
	cfg.Name = m.Name
	cfg.AdvertiseClientURLs = []string{m.AdvertiseClientURL}
	cfg.InitialAdvertisePeerURLs = []string{m.InitialAdvertisePeerURL}
	cfg.InitialCluster = m.InitialCluster
	cfg.InitialClusterState = m.InitialClusterState
	if !cmd.Flags().Changed("data-dir") {
		cfg.DataDir = m.Name + ".concord"
	}
	return nil
}
