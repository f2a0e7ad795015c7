package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/concorddb/concord/internal/server"
)

func runNode(args ...string) (string, error) {
	cmd := nodeCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

// concord node status lists the members; concord node decommission moves
// a member's replicas to the spare member and removes it; with auth on
// both need the root role.
func TestNodeStatusAndDecommission(t *testing.T) {
	c, err := server.StartLocalCluster(4, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ep := "--endpoints=" + c.ClientAddrs()[3]
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.ClientAddrs()[3:], DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "v"); err != nil {
		t.Fatal(err)
	}
	out, err := runNode("status", ep)
	if err != nil || strings.Count(out, "\n") != 5 || !strings.Contains(out, "n4") || strings.Count(out, "true  false") != 4 {
		t.Fatalf("node status:\n%s%v", out, err)
	}
	victim := c.Node(0).ID()
	out, err = runNode("decommission", fmt.Sprintf("%x", victim), ep)
	if err != nil || !strings.Contains(out, "2 replicas moved to other members, 0 dropped") {
		t.Fatalf("decommission: %q %v", out, err)
	}
	out, err = runNode("status", ep)
	if err != nil || strings.Count(out, "\n") != 4 || strings.Contains(out, "n1 ") {
		t.Fatalf("node status after the decommission:\n%s%v", out, err)
	}
	if _, err := runNode("decommission", "zz", ep); err == nil {
		t.Fatal("a bad member id was accepted")
	}

	// Auth on: only root.
	for _, step := range []func() error{
		func() error { _, err := cli.UserAdd(ctx, "root", "pw"); return err },
		func() error { _, err := cli.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := cli.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := runNode("status", ep); err == nil || !strings.Contains(err.Error(), "user name is empty") {
		t.Fatalf("node status without a user, auth on: %v", err)
	}
	if out, err := runNode("status", ep, "--user", "root:pw"); err != nil || strings.Count(out, "\n") != 4 {
		t.Fatalf("node status as root:\n%s%v", out, err)
	}
	// concord keyspace is an operator's command too.
	ks := func(args ...string) error {
		cmd := keyspaceCmd()
		cmd.SetOut(io.Discard)
		cmd.SetErr(io.Discard)
		cmd.SetArgs(args)
		return cmd.Execute()
	}
	if err := ks("list", ep); err == nil || !strings.Contains(err.Error(), "user name is empty") {
		t.Fatalf("keyspace list without a user, auth on: %v", err)
	}
	if err := ks("list", ep, "--user", "root:pw"); err != nil {
		t.Fatalf("keyspace list as root: %v", err)
	}
}
