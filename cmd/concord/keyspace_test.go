package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/concorddb/concord/internal/server"
)

func runKeyspace(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := keyspaceCmd()
	var out bytes.Buffer
	cmd.SetOut(&out)
	cmd.SetErr(io.Discard)
	cmd.SetArgs(args)
	err := cmd.Execute()
	return out.String(), err
}

func TestKeyspaceCreateListSet(t *testing.T) {
	c, err := server.StartLocalCluster(3, t.TempDir(), server.LocalOptions{Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Redis: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Stop()
	ep := "--endpoints=" + strings.Join(c.ClientAddrs(), ",")
	out, err := runKeyspace(t, "create", "4", "--n", "3", "--r", "1", "--w", "3", ep)
	if err != nil || !strings.Contains(out, "keyspace 4: N=3 R=1 W=3") {
		t.Fatalf("create: %q %v", out, err)
	}
	if _, err := runKeyspace(t, "create", "4", ep); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second create: %v", err)
	}
	if _, err := runKeyspace(t, "create", "5", "--n", "2", "--w", "3", ep); err == nil {
		t.Fatal("W > N accepted")
	}
	if out, err = runKeyspace(t, "set", "4", "--w", "2", ep); err != nil || !strings.Contains(out, "keyspace 4: N=3 R=1 W=2") {
		t.Fatalf("set keeps the flags not given: %q %v", out, err)
	}
	out, err = runKeyspace(t, "list", ep)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"0         3  2  2  default", "4         3  1  2  stored"} {
		if !strings.Contains(out, want) {
			t.Fatalf("list lacks %q:\n%s", want, out)
		}
	}
	// Every node follows: the keyspace takes writes through any of them.
	deadline := time.Now().Add(10 * time.Second)
	for i := range c.Size() {
		for {
			k, ok := c.Node(i).APKeyspace(4)
			if ok && k.W == 2 && k.R == 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d has keyspace 4 as %+v (%v)", i+1, k, ok)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	r := redis.NewClient(&redis.Options{Addr: c.RedisAddrs()[1], DB: 4, DisableIdentity: true})
	defer r.Close()
	ctx := context.Background()
	if err := r.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if v, err := r.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET in keyspace 4: %q %v", v, err)
	}
}
