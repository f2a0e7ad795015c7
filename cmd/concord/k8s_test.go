package main

import (
	"strings"
	"testing"

	"github.com/concorddb/concord/internal/server"
)

func TestApplyK8sPeers(t *testing.T) {
	t.Setenv("POD_NAME", "concord-1")
	t.Setenv("POD_NAMESPACE", "db")
	cmd := startCmd()
	cfg := server.DefaultConfig()
	if err := cmd.ParseFlags([]string{"--k8s-peers=concord-peer:3"}); err != nil {
		t.Fatal(err)
	}
	if err := applyK8sPeers(cmd, &cfg, "concord-peer:3"); err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "concord-1" || cfg.DataDir != "concord-1.concord" || cfg.InitialClusterState != "new" ||
		cfg.AdvertiseClientURLs[0] != "http://concord-1.concord-peer.db.svc:2379" ||
		!strings.HasPrefix(cfg.InitialCluster, "concord-0=http://concord-0.concord-peer.db.svc:2380,") {
		t.Fatalf("got %+v", cfg)
	}
	if err := applyK8sPeers(cmd, &cfg, ""); err != nil {
		t.Fatalf("no --k8s-peers: %v", err)
	}

	cmd = startCmd()
	if err := cmd.ParseFlags([]string{"--k8s-peers=concord-peer:3", "--name=x"}); err != nil {
		t.Fatal(err)
	}
	if err := applyK8sPeers(cmd, &cfg, "concord-peer:3"); err == nil || !strings.Contains(err.Error(), "--name") {
		t.Fatalf("--name with --k8s-peers: want a refusal, got %v", err)
	}

	t.Setenv("POD_NAMESPACE", "")
	if err := applyK8sPeers(startCmd(), &cfg, "concord-peer:3"); err == nil || !strings.Contains(err.Error(), "POD_NAMESPACE") {
		t.Fatalf("no namespace: got %v", err)
	}
}
