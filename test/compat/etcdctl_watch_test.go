package compat

import (
	"bufio"
	"context"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
	"time"
)

// ctlLines runs `etcdctl args...`, a command that does not end by itself,
// until it printed lines lines (or 20 s passed), and returns them.
func ctlLines(t *testing.T, ctl string, endpoints []string, lines int, args ...string) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	all := append(append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--dial-timeout=5s"}, ctlTLSArgs(endpoints)...), args...)
	cmd := osexec.CommandContext(ctx, ctl, all...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cancel()
		_ = cmd.Wait()
	}()
	var got []string
	sc := bufio.NewScanner(out)
	for len(got) < lines && sc.Scan() {
		got = append(got, sc.Text())
	}
	return got
}

// TestEtcdctlWatch runs `etcdctl watch` from a past revision on both
// systems: the same events, printed the same way.
func TestEtcdctlWatch(t *testing.T) {
	ctl := etcdctlPath(t)
	outputs := map[string][]string{}
	for _, s := range []*system{etcdSys, concordSys} {
		p := newPrefix()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		first, err := s.cli.Put(ctx, p+"a", "1")
		if err == nil {
			_, err = s.cli.Put(ctx, p+"b", "2")
		}
		if err == nil {
			_, err = s.cli.Delete(ctx, p+"a")
		}
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", s.name, err)
		}
		// PUT, key, value; PUT, key, value; DELETE, key.
		lines := ctlLines(t, ctl, endpointsOf(s), 8, "watch", p, "--prefix", "--rev", fmt.Sprint(first.Header.Revision))
		for i := range lines {
			lines[i] = strings.ReplaceAll(lines[i], p, "<p>")
		}
		outputs[s.name] = lines
	}
	if e, c := strings.Join(outputs["etcd"], "\n"), strings.Join(outputs["concord"], "\n"); e != c || len(outputs["etcd"]) != 8 {
		t.Fatalf("etcdctl watch differs:\netcd:\n%s\nconcord:\n%s", e, c)
	}
}

// TestEtcdctlLockAndElect runs etcdctl lock and elect on both systems.
func TestEtcdctlLockAndElect(t *testing.T) {
	ctl := etcdctlPath(t)
	for _, s := range []*system{etcdSys, concordSys} {
		p := newPrefix()
		// lock runs the command while it holds the lock.
		if r := runCtl(t, ctl, endpointsOf(s), "", "lock", p+"L", "echo", "held"); r.exit != 0 || r.stdout != "held\n" {
			t.Fatalf("%s: etcdctl lock:\n%v", s.name, r)
		}
		// A candidate campaigns and holds on; a listener sees it lead.
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cand := osexec.CommandContext(ctx, ctl, append(append([]string{"--endpoints=" + strings.Join(endpointsOf(s), ",")}, ctlTLSArgs(endpointsOf(s))...), "elect", p+"E", "alice")...)
		cand.Env = append(os.Environ(), "ETCDCTL_API=3")
		if err := cand.Start(); err != nil {
			t.Fatal(err)
		}
		lines := ctlLines(t, ctl, endpointsOf(s), 2, "elect", "-l", p+"E")
		cancel()
		_ = cand.Wait()
		if len(lines) != 2 || !strings.HasPrefix(lines[0], p+"E/") || lines[1] != "alice" {
			t.Fatalf("%s: etcdctl elect -l printed %q, want the leader's key and alice", s.name, lines)
		}
	}
}
