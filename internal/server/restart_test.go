package server

import (
	"context"
	"crypto/sha256"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// putN writes prefix/0..n-1 through cli and returns what it wrote.
func putN(t *testing.T, cli *clientv3.Client, prefix string, n int, into map[string]string) {
	t.Helper()
	for i := 0; i < n; i++ {
		k, v := fmt.Sprintf("%s/%03d", prefix, i), fmt.Sprint(i)
		putRetry(t, cli, k, v)
		into[k] = v
	}
}

// restartAll stops every node of c and starts them again, one after the
// other, on their data.
func restartAll(t *testing.T, c *LocalCluster) {
	t.Helper()
	c.Stop()
	for i := range c.cfgs {
		if err := c.RestartNode(i); err != nil {
			t.Fatal(err)
		}
	}
}

// readsAll waits until node i serves every key of want, both linearizably
// and from its own replica (serializable), and fails the test if it does
// not within 30 s.
func readsAll(t *testing.T, c *LocalCluster, i int, want map[string]string) {
	t.Helper()
	cli := client(t, c, i)
	for _, mode := range []struct {
		name string
		opts []clientv3.OpOption
	}{{"linearizable", nil}, {"serializable", []clientv3.OpOption{clientv3.WithSerializable()}}} {
		deadline := time.Now().Add(30 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			resp, err := cli.Get(ctx, "", append([]clientv3.OpOption{clientv3.WithPrefix()}, mode.opts...)...)
			cancel()
			missing := len(want)
			if err == nil {
				for _, kv := range resp.Kvs {
					if want[string(kv.Key)] == string(kv.Value) {
						missing--
					}
				}
			}
			if missing == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("node %d, %s: %d of %d acknowledged writes missing (err %v)", i+1, mode.name, missing, len(want), err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

// An operator restarts members with --initial-cluster-state existing (as
// etcd's docs say to): the member comes back as itself from its data dir,
// whether one member restarts while the others run or the whole cluster
// restarts at once.
func TestRestartWithExistingComesBackAsItself(t *testing.T) {
	c := startCluster(t, 3, nil)
	want := map[string]string{}
	putN(t, client(t, c, 0), "before", 20, want)
	id := c.Node(0).ID()

	c.StopNode(0)
	putN(t, client(t, c, 1), "down", 20, want)
	c.cfgs[0].InitialClusterState = "existing"
	if err := c.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	if got := c.Node(0).ID(); got != id {
		t.Fatalf("restarted member has id %d, was %d", got, id)
	}
	putN(t, client(t, c, 0), "after", 20, want)
	readsAll(t, c, 0, want)

	// The whole cluster stops and comes back with existing everywhere.
	c.Stop()
	for i := range c.cfgs {
		c.cfgs[i].InitialClusterState = "existing"
	}
	errs := make(chan error, len(c.cfgs))
	for i := range c.cfgs {
		go func() { errs <- c.RestartNode(i) }()
	}
	for range c.cfgs {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	putN(t, client(t, c, 2), "full", 20, want)
	for i := range c.cfgs {
		readsAll(t, c, i, want)
	}
}

// A member that was down while another moved (etcdctl member update, then a
// restart on the new address) finds the moved member when it comes back,
// even once the only member that knew both addresses is gone.
func TestMemberUpdateReachesAMemberThatWasDown(t *testing.T) {
	c := startCluster(t, 3, nil)
	want := map[string]string{}
	putN(t, client(t, c, 0), "k", 10, want)
	c.StopNode(2)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	newURL := "http://" + l.Addr().String()
	l.Close()
	moved := c.Node(1).ID()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := client(t, c, 0).MemberUpdate(ctx, moved, []string{newURL}); err != nil {
		t.Fatalf("member update: %v", err)
	}
	c.StopNode(1)
	c.cfgs[1].ListenPeerURLs = []string{newURL}
	c.cfgs[1].InitialAdvertisePeerURLs = []string{newURL}
	c.cfgs[1].InitialClusterState = "existing"
	if err := c.RestartNode(1); err != nil {
		t.Fatal(err)
	}
	putN(t, client(t, c, 1), "moved", 10, want)

	c.cfgs[2].InitialClusterState = "existing"
	if err := c.RestartNode(2); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if u, ok := c.Node(2).resolve(moved); ok && u == newURL {
			break
		}
		if time.Now().After(deadline) {
			u, _ := c.Node(2).resolve(moved)
			t.Fatalf("node 3 still has member %d at %s, want %s", moved, u, newURL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Without node 1, the quorum is nodes 2 and 3: they must reach each
	// other at node 2's new address.
	c.StopNode(0)
	putN(t, client(t, c, 2), "quorum", 10, want)
	readsAll(t, c, 2, want)
	readsAll(t, c, 1, want)
}

// digest hashes every file under dir but the mtime of Pebble's LOCK file
// (taking the lock sets it), to prove a refused start changed nothing.
func digest(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		fmt.Fprint(h, path, info.Mode(), info.Size())
		if d.Name() != "LOCK" {
			fmt.Fprint(h, info.ModTime().UnixNano())
		}
		if d.Type().IsRegular() {
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

// A data dir that belongs to another member or cluster, or that is not a
// sound Concord data dir, is refused with an error that says so, and
// nothing in it changes.
func TestStartRefusesADataDirItDoesNotOwn(t *testing.T) {
	a := startCluster(t, 3, func(i int, c *Config) { c.InitialClusterToken = "cluster-a" })
	putRetry(t, client(t, a, 0), "a", "1")
	b := startCluster(t, 3, func(i int, c *Config) { c.InitialClusterToken = "cluster-b" })
	putRetry(t, client(t, b, 0), "b", "1")
	a.StopNode(0)
	aDir := a.cfgs[0].DataDir

	// A config that listens on fresh ports, on a data dir of its own choice.
	fresh := func(base Config, dir string) Config {
		cfg := base
		cfg.DataDir = dir
		cfg.Logger = quietLogger()
		for _, u := range []*[]string{&cfg.ListenClientURLs, &cfg.ListenPeerURLs} {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			*u = []string{"http://" + l.Addr().String()}
			l.Close()
		}
		cfg.AdvertiseClientURLs, cfg.InitialAdvertisePeerURLs = cfg.ListenClientURLs, cfg.ListenPeerURLs
		return cfg
	}
	foreign := t.TempDir()
	if err := os.WriteFile(filepath.Join(foreign, "notes"), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	renamed := fresh(a.cfgs[0], aDir)
	renamed.Name = "n9"
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"B's flags, existing: B's peers answer for cluster B", func() Config {
			cfg := fresh(b.cfgs[0], aDir)
			cfg.InitialClusterState = "existing"
			return cfg
		}(), "belongs to another cluster"},
		{"B's token with new", func() Config {
			cfg := fresh(a.cfgs[0], aDir)
			cfg.InitialClusterToken = "cluster-b"
			return cfg
		}(), `--initial-cluster-token "cluster-a"`},
		{"another --name", renamed, `holds member "n1"`},
		{"files that are no database", fresh(a.cfgs[0], foreign), "holds no Concord data"},
	}
	for _, tc := range cases {
		before := digest(t, tc.cfg.DataDir)
		n, err := Start(tc.cfg)
		if err == nil {
			n.Stop()
			t.Errorf("%s: started", tc.name)
			continue
		}
		if !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %q does not say %q", tc.name, err, tc.want)
		}
		if digest(t, tc.cfg.DataDir) != before {
			t.Errorf("%s: the refused start changed the data dir", tc.name)
		}
	}

	// The member still restarts with its own flags and has its data.
	a.cfgs[0].InitialClusterState = "existing"
	if err := a.RestartNode(0); err != nil {
		t.Fatal(err)
	}
	readsAll(t, a, 0, map[string]string{"a": "1"})
}
