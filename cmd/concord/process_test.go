package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// buildBinary builds the concord binary once for the process tests.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "concord")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePorts reserves n loopback ports by binding and releasing them.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ls []net.Listener
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	for _, l := range ls {
		l.Close()
	}
	return ports
}

// proc is one `concord start` process.
type proc struct {
	name, dir        string
	client, peer     string
	cmd              *exec.Cmd
	log              *os.File
	exited           chan struct{}
	bin, clusterFlag string
}

func (p *proc) start(t *testing.T, state string) {
	t.Helper()
	args := []string{"start", "--name", p.name, "--data-dir", p.dir,
		"--listen-client-urls", "http://" + p.client, "--advertise-client-urls", "http://" + p.client,
		"--listen-peer-urls", "http://" + p.peer, "--initial-advertise-peer-urls", "http://" + p.peer,
		"--initial-cluster", p.clusterFlag, "--initial-cluster-state", state, "--log-level", "warn"}
	p.cmd = exec.Command(p.bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) {
		_ = c.Wait()
		close(done)
	}(p.cmd, p.exited)
}

func (p *proc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// TestProcessesSurviveSIGKILL runs three `concord start` processes under
// write load, SIGKILLs and restarts them as operators do (one at a time with
// existing or new, two at once, then the whole cluster with existing) and
// reads every acknowledged write back through each member.
func TestProcessesSurviveSIGKILL(t *testing.T) {
	if testing.Short() {
		t.Skip("starts real processes")
	}
	bin := buildBinary(t)
	ports := freePorts(t, 6)
	dir := t.TempDir()
	var procs []*proc
	var members []string
	for i := 0; i < 3; i++ {
		p := &proc{
			name:   fmt.Sprintf("p%d", i+1),
			dir:    filepath.Join(dir, fmt.Sprintf("p%d", i+1)),
			client: fmt.Sprintf("127.0.0.1:%d", ports[2*i]),
			peer:   fmt.Sprintf("127.0.0.1:%d", ports[2*i+1]),
			bin:    bin,
		}
		f, err := os.Create(filepath.Join(dir, p.name+".log"))
		if err != nil {
			t.Fatal(err)
		}
		p.log = f
		procs = append(procs, p)
		members = append(members, p.name+"=http://"+p.peer)
	}
	for _, p := range procs {
		p.clusterFlag = strings.Join(members, ",")
		p.start(t, "new")
	}
	t.Cleanup(func() {
		for _, p := range procs {
			p.kill()
			p.log.Close()
		}
		if t.Failed() {
			for _, p := range procs {
				if b, err := os.ReadFile(p.log.Name()); err == nil {
					t.Logf("%s log:\n%s", p.name, b)
				}
			}
		}
	})

	// One writer per node, each through its own endpoint.
	acked := make(map[string]string)
	var mu sync.Mutex
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w, p := range procs {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key, val := fmt.Sprintf("w%d/%05d", w, i), fmt.Sprint(i)
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				_, err := cli.Put(ctx, key, val)
				cancel()
				if err == nil {
					mu.Lock()
					acked[key] = val
					mu.Unlock()
				} else {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	countAcked := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor("first writes", func() bool { return countAcked() >= 100 })
	// Operators restart members with either state (etcd's docs say
	// existing): a member with data comes back as itself either way.
	for _, step := range []struct {
		victim int
		state  string
	}{{1, "existing"}, {0, "new"}, {2, "existing"}} {
		victim := procs[step.victim]
		victim.kill()
		before := countAcked()
		waitFor("writes while "+victim.name+" is down", func() bool { return countAcked() >= before+100 })
		victim.start(t, step.state)
		before = countAcked()
		waitFor("writes after "+victim.name+" restarted with "+step.state, func() bool { return countAcked() >= before+100 })
	}
	// Two SIGKILLs in a row cost the quorum until both are back.
	procs[0].kill()
	procs[1].kill()
	procs[0].start(t, "existing")
	procs[1].start(t, "existing")
	before := countAcked()
	waitFor("writes after two members restarted with existing", func() bool { return countAcked() >= before+100 })
	close(stop)
	wg.Wait()

	// The whole cluster stops and comes back with existing.
	for _, p := range procs {
		p.kill()
	}
	for _, p := range procs {
		p.start(t, "existing")
	}

	// Every acknowledged write is read back through every member, from
	// its own replica (serializable) and linearizably.
	mu.Lock()
	want := acked
	mu.Unlock()
	for _, p := range procs {
		cli, err := clientv3.New(clientv3.Config{Endpoints: []string{p.client}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
		if err != nil {
			t.Fatal(err)
		}
		defer cli.Close()
		for _, mode := range []struct {
			name string
			opts []clientv3.OpOption
		}{{"serializable", []clientv3.OpOption{clientv3.WithSerializable()}}, {"linearizable", nil}} {
			var missing []string
			deadline := time.Now().Add(30 * time.Second)
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				resp, err := cli.Get(ctx, "w", append([]clientv3.OpOption{clientv3.WithPrefix()}, mode.opts...)...)
				cancel()
				missing = missing[:0]
				if err == nil {
					got := make(map[string]string, len(resp.Kvs))
					for _, kv := range resp.Kvs {
						got[string(kv.Key)] = string(kv.Value)
					}
					for k, v := range want {
						if got[k] != v {
							missing = append(missing, k)
						}
					}
					if len(missing) == 0 {
						break
					}
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s, %s: %d of %d acknowledged writes missing (err %v), e.g. %v", p.name, mode.name, len(missing), len(want), err, missing[:min(5, len(missing))])
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
	}
	t.Logf("%d acknowledged writes read back through all 3 members after restarts with new and existing", len(want))
}
