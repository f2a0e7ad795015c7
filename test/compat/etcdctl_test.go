package compat

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
)

// etcdctlPath finds Debian's etcdctl (package etcd-client, which .ci/run
// installs) or skips the test.
func etcdctlPath(t *testing.T) string {
	t.Helper()
	p, err := osexec.LookPath("etcdctl")
	if err != nil {
		t.Skip("etcdctl not installed (Debian package etcd-client; .ci/run installs it): skipping the etcdctl end-to-end test")
	}
	return p
}

// ctlResult is what a user sees of one etcdctl run.
type ctlResult struct {
	stdout, stderr string
	exit           int
}

func (r ctlResult) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%sstderr:\n%s", r.exit, r.stdout, r.stderr)
}

func runCtl(t *testing.T, path string, endpoints []string, stdin string, args ...string) ctlResult {
	t.Helper()
	all := append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--command-timeout=15s", "--dial-timeout=5s"}, args...)
	cmd := osexec.Command(path, all...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	cmd.Stdin = strings.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	res := ctlResult{stdout: out.String(), stderr: withoutClientLogs(errOut.String())}
	var ee *osexec.ExitError
	switch {
	case errors.As(err, &ee):
		res.exit = ee.ExitCode()
	case err != nil:
		t.Fatalf("etcdctl %v: %v", args, err)
	}
	return res
}

// withoutClientLogs drops the client library's own JSON log lines (a retry
// warning with a timestamp and a connection id) from etcdctl's stderr; the
// "Error: ..." line a user reads stays.
func withoutClientLogs(s string) string {
	var b strings.Builder
	for _, line := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(line, `{"level":`) {
			b.WriteString(line)
		}
	}
	return b.String()
}

func endpointsOf(s *system) []string { return s.cli.Endpoints() }

// TestEtcdctl runs the same etcdctl commands against etcd and Concord and
// requires the same output and exit status (etcdctl's simple output shows
// no revisions), then checks the commands whose output is about the
// cluster itself (member list, endpoint status) on Concord alone.
func TestEtcdctl(t *testing.T) {
	ctl := etcdctlPath(t)
	p := newPrefix()
	type cmd struct {
		stdin string
		args  []string
	}
	c := func(args ...string) cmd { return cmd{args: args} }
	txn := func(stdin string) cmd { return cmd{stdin: stdin, args: []string{"txn", "-i"}} }
	cmds := []cmd{
		c("put", p+"a", "1"),
		c("put", p+"b", "2"),
		c("put", p+"a", "11", "--prev-kv"),
		c("put", p+"c", "3"),
		c("get", p+"a"),
		c("get", p+"zz"),
		c("get", p, "--prefix"),
		c("get", p, "--prefix", "--keys-only"),
		c("get", p, "--prefix", "--print-value-only"),
		c("get", p, "--prefix", "--limit=2"),
		c("get", p, "--prefix", "--sort-by=VALUE", "--order=DESCEND"),
		c("get", p, "--prefix", "--sort-by=MODIFY", "--order=ASCEND", "--limit=2"),
		c("get", p+"a", p+"c"),
		c("get", p+"b", "--from-key"),
		c("get", p, "--prefix", "--limit=1", "--order=DESCEND"),
		c("get", p, "--prefix", "--sort-by=CREATE", "--order=DESCEND", "--keys-only"),
		c("put", p+"x", "v", "--lease=1234"),
		c("put", p+"a", "--ignore-value"),
		c("put", p+"zz", "--ignore-value"),
		c("get", p+"a"),
		txn(`value("` + p + `a") = "11"` + "\n\n" + "put " + p + "d 4\nget " + p + "d\n\nput " + p + "e 5\n\n"),
		txn(`value("` + p + `a") = "nope"` + "\n\n" + "put " + p + "f 6\n\nput " + p + "g 7\ndel " + p + "c\n\n"),
		txn(`version("` + p + `a") > "1"` + "\n" + `mod("` + p + `zz") = "0"` + "\n\nget " + p + " --prefix --keys-only\n\n\n"),
		txn("\nput " + p + "h 8\nput " + p + "h 9\n\n\n"),
		c("get", p, "--prefix"),
		c("del", p+"a"),
		c("del", p+"zz"),
		c("del", p+"b", "--prev-kv"),
		c("del", p+"d", p+"f", "--prev-kv"),
		c("del", p, "--prefix"),
		c("get", p, "--prefix"),
	}
	for _, cm := range cmds {
		e := runCtl(t, ctl, endpointsOf(etcdSys), cm.stdin, cm.args...)
		co := runCtl(t, ctl, endpointsOf(concordSys), cm.stdin, cm.args...)
		if *showRuns {
			fmt.Printf("etcdctl %q:\n\tetcd:    %q\n\tconcord: %q\n", cm.args, e, co)
		}
		if e != co {
			t.Errorf("etcdctl %q (stdin %q) differs:\netcd:\n%v\nconcord:\n%v", cm.args, cm.stdin, e, co)
		}
	}

	eps := concordCluster.ClientAddrs()
	ml := runCtl(t, ctl, eps[:1], "", "member", "list")
	if ml.exit != 0 || strings.Count(ml.stdout, "\n") != 3 {
		t.Fatalf("member list:\n%v", ml)
	}
	for i, url := range concordCluster.ClientURLs() {
		name := []string{"n1", "n2", "n3"}[i]
		if !strings.Contains(ml.stdout, ", "+name+", ") || !strings.Contains(ml.stdout, url) {
			t.Errorf("member list lacks %s at %s:\n%s", name, url, ml.stdout)
		}
	}
	st := runCtl(t, ctl, eps, "", "endpoint", "status")
	if st.exit != 0 || strings.Count(st.stdout, "\n") != 3 {
		t.Fatalf("endpoint status:\n%v", st)
	}
	for _, ep := range eps {
		if !strings.Contains(st.stdout, ep+", ") {
			t.Errorf("endpoint status lacks %s:\n%s", ep, st.stdout)
		}
	}
	t.Logf("member list:\n%sendpoint status:\n%s", ml.stdout, st.stdout)
}
