package server

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

func TestBackupAndRestoreIntoNewCluster(t *testing.T) {
	c := startCluster(t, 3, nil)
	cli := client(t, c, 0)
	want := map[string]*struct {
		val         string
		create, mod int64
		version     int64
	}{}
	for i := 0; i < 1500; i++ { // more than one page
		k := fmt.Sprintf("b/%04d", i%1200)
		rev := putRetry(t, cli, k, fmt.Sprint(i))
		if w, ok := want[k]; ok {
			w.val, w.mod = fmt.Sprint(i), rev
			w.version++
		} else {
			want[k] = &struct {
				val         string
				create, mod int64
				version     int64
			}{fmt.Sprint(i), rev, rev, 1}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cli.Delete(ctx, "b/0000"); err != nil {
		t.Fatal(err)
	}
	delete(want, "b/0000")
	last := putRetry(t, cli, "z", "last")
	rc, err := client(t, c, 2).Snapshot(ctx)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "backup.db")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, rc); err != nil {
		t.Fatal(err)
	}
	f.Close()
	rc.Close()
	c.Stop()

	r, err := StartLocalCluster(3, t.TempDir(), LocalOptions{Logger: quietLogger(), RestoreFrom: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	rcli := client(t, r, 1)
	resp := get(t, rcli, "b/", clientv3.WithPrefix())
	if len(resp.Kvs) != len(want) {
		t.Fatalf("restored %d keys, want %d", len(resp.Kvs), len(want))
	}
	for _, kv := range resp.Kvs {
		w := want[string(kv.Key)]
		if w == nil || string(kv.Value) != w.val || kv.CreateRevision != w.create || kv.ModRevision != w.mod || kv.Version != w.version {
			t.Fatalf("restored %s = %q c%d m%d v%d, want %+v", kv.Key, kv.Value, kv.CreateRevision, kv.ModRevision, kv.Version, w)
		}
	}
	// The new cluster's revisions continue above the restored ones.
	if rev := putRetry(t, rcli, "after", "x"); rev <= last {
		t.Fatalf("new write has revision %d, not above restored %d", rev, last)
	}
	// Every member restored the same data.
	for i := 0; i < 3; i++ {
		resp := get(t, client(t, r, i), "b/", clientv3.WithPrefix(), clientv3.WithSerializable(), clientv3.WithCountOnly())
		if resp.Count != int64(len(want)) {
			t.Fatalf("member %d holds %d keys", i+1, resp.Count)
		}
	}
}

func TestRestoreRefusesCorruptBackupAndUsedDir(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "bad.db")
	if err := os.WriteFile(path, []byte("CONCORDB garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.Name = "n1"
	cfg.DataDir = filepath.Join(dir, "data")
	cfg.InitialCluster = "n1=http://127.0.0.1:2380"
	cfg.Logger = quietLogger()
	if _, err := Restore(cfg, path); err == nil {
		t.Fatal("corrupt backup restored")
	}
	if _, err := os.Stat(cfg.DataDir); !os.IsNotExist(err) {
		t.Fatalf("a failed restore left %s behind", cfg.DataDir)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(cfg.DataDir, "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Restore(cfg, path); err == nil {
		t.Fatal("restored into a used data dir")
	}
}
