package compat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"strings"
	"testing"

	"github.com/concorddb/concord/internal/backup"
	"github.com/concorddb/concord/internal/concordpb/kvpb"
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
	all := append(append([]string{"--endpoints=" + strings.Join(endpoints, ","), "--command-timeout=15s", "--dial-timeout=5s"}, ctlTLSArgs(endpoints)...), args...)
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

	// Compaction: the revisions differ between the systems, so this runs on
	// Concord alone, with the revision etcdctl itself reports.
	k := p + "compact-me"
	first := runCtl(t, ctl, eps[:1], "", "put", k, "1", "-w", "json")
	runCtl(t, ctl, eps[:1], "", "put", k, "2")
	second := runCtl(t, ctl, eps[:1], "", "put", k, "3", "-w", "json")
	rev1, rev2 := headerRevision(t, first.stdout), headerRevision(t, second.stdout)
	if c := runCtl(t, ctl, eps[1:2], "", "compaction", fmt.Sprint(rev2), "--physical"); c.exit != 0 || c.stdout != fmt.Sprintf("compacted revision %d\n", rev2) {
		t.Fatalf("compaction:\n%v", c)
	}
	if g := runCtl(t, ctl, eps[:1], "", "get", k, "--rev", fmt.Sprint(rev1)); g.exit == 0 || !strings.Contains(g.stderr, "Error: etcdserver: mvcc: required revision has been compacted") {
		t.Fatalf("get below the compaction:\n%v", g)
	}
	if g := runCtl(t, ctl, eps[:1], "", "get", k, "--rev", fmt.Sprint(rev2), "--print-value-only"); g.exit != 0 || g.stdout != "3\n" {
		t.Fatalf("get at the compaction:\n%v", g)
	}

	// Snapshot save: etcdctl keeps the download only if it has etcd's shape
	// (a 512-byte aligned body and a SHA-256 trailer).
	file := t.TempDir() + "/backup.db"
	if sv := runCtl(t, ctl, eps[2:], "", "snapshot", "save", file); sv.exit != 0 || !strings.Contains(sv.stdout, "Snapshot saved at "+file) {
		t.Fatalf("snapshot save:\n%v", sv)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	info, err := backup.Read(f, func(*kvpb.KeyValue) error { return nil })
	if err != nil || info.Keys == 0 {
		t.Fatalf("saved backup: %+v %v", info, err)
	}

	for _, args := range [][]string{{"endpoint", "health"}, {"endpoint", "hashkv"}, {"defrag"}} {
		// etcdctl prints endpoint health on stderr, the others on stdout.
		if r := runCtl(t, ctl, eps, "", args...); r.exit != 0 || strings.Count(r.stdout+r.stderr, "\n") != 3 {
			t.Errorf("etcdctl %v:\n%v", args, r)
		}
	}
}

// headerRevision reads the header revision of etcdctl's JSON output.
func headerRevision(t *testing.T, out string) int64 {
	t.Helper()
	var v struct {
		Header struct {
			Revision int64 `json:"revision"`
		} `json:"header"`
	}
	if err := json.Unmarshal([]byte(out), &v); err != nil || v.Header.Revision == 0 {
		t.Fatalf("no header revision in %q: %v", out, err)
	}
	return v.Header.Revision
}
