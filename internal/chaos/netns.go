package chaos

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Names of everything the harness creates carry the harness's pid, so a
// later run can tell a leftover (its owner is gone) from a concurrent
// run's live objects (its owner still runs) and only remove the former.
//
//	namespace   cc-PID-nI       (I is the 1-based node number)
//	bridge      ccPIDbr         (Linux caps link names at 15 bytes)
//	host veth   ccPIDvI
//	iptables    FORWARD rule with comment cc-PID
var (
	nsNameRE     = regexp.MustCompile(`^cc-(\d+)-n\d+$`)
	linkNameRE   = regexp.MustCompile(`^cc(\d+)(br|v\d+)$`)
	ruleRE       = regexp.MustCompile(`--comment "?cc-(\d+)"?`)
	maxLinkBytes = 15
)

// subnets is the number of /24s in 198.18.0.0/15 (RFC 2544 benchmarking
// space): each run takes one that no route on the host uses yet.
const subnets = 512

// ipTimeout bounds every ip/iptables command.
const ipTimeout = 10 * time.Second

// Network is a bridge with one network namespace per node. Its methods
// are safe for concurrent use.
type Network struct {
	pid    int
	nodes  int
	prefix string // "198.18.X." of this run's /24

	mu struct {
		sync.Mutex
		// cut holds the links currently cut, as ordered pairs a<b.
		cut map[[2]int]bool
	}
}

// ip runs one command of iproute2 or iptables and returns its output.
func ip(ctx context.Context, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("chaos: %s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// CheckPrerequisites reports why this machine cannot run the harness:
// it needs root and the ip and iptables commands.
func CheckPrerequisites() error {
	if os.Geteuid() != 0 {
		return errors.New("chaos: needs root (network namespaces, bridges, iptables)")
	}
	for _, c := range []string{"ip", "iptables"} {
		if _, err := exec.LookPath(c); err != nil {
			return fmt.Errorf("chaos: needs %s (apt-get install iproute2 iptables): %w", c, err)
		}
	}
	return nil
}

// NewNetwork creates the bridge and n namespaces, each with its own
// address, for the harness process pid. On error it removes what it made.
func NewNetwork(ctx context.Context, pid, n int) (_ *Network, err error) {
	if n < 1 || n > 250 {
		return nil, fmt.Errorf("chaos: %d nodes: want 1..250", n)
	}
	if len(fmt.Sprintf("cc%dv%d", pid, n)) > maxLinkBytes {
		return nil, fmt.Errorf("chaos: pid %d too large for link names", pid)
	}
	w := &Network{pid: pid, nodes: n}
	w.mu.cut = make(map[[2]int]bool)
	routes, err := ip(ctx, "ip", "-4", "-o", "route", "show", "table", "all")
	if err != nil {
		return nil, err
	}
	for i := 0; i < subnets; i++ {
		idx := (pid + i) % subnets
		p := fmt.Sprintf("198.%d.%d.", 18+idx/256, idx%256)
		if !strings.Contains(routes, p) {
			w.prefix = p
			break
		}
	}
	if w.prefix == "" {
		return nil, errors.New("chaos: every /24 of 198.18.0.0/15 is in use")
	}
	defer func() {
		if err != nil {
			w.Close()
		}
	}()
	br := w.bridge()
	steps := [][]string{
		{"ip", "link", "add", br, "type", "bridge"},
		{"ip", "addr", "add", w.hostIP() + "/24", "dev", br},
		{"ip", "link", "set", br, "up"},
		// Hosts with br_netfilter and a FORWARD policy of DROP (Docker's)
		// would drop traffic between the namespaces; accept it on this
		// bridge only.
		{"iptables", "-I", "FORWARD", "-i", br, "-o", br, "-m", "comment", "--comment", w.tag(), "-j", "ACCEPT"},
	}
	for i := 0; i < n; i++ {
		ns, host, peer := w.Namespace(i), fmt.Sprintf("cc%dv%d", pid, i+1), fmt.Sprintf("cc%dp%d", pid, i+1)
		steps = append(steps,
			[]string{"ip", "netns", "add", ns},
			[]string{"ip", "-n", ns, "link", "set", "lo", "up"},
			[]string{"ip", "link", "add", host, "type", "veth", "peer", "name", peer},
			[]string{"ip", "link", "set", peer, "netns", ns},
			[]string{"ip", "-n", ns, "link", "set", peer, "name", "eth0"},
			[]string{"ip", "-n", ns, "addr", "add", w.IP(i) + "/24", "dev", "eth0"},
			[]string{"ip", "-n", ns, "link", "set", "eth0", "up"},
			[]string{"ip", "link", "set", host, "master", br},
			[]string{"ip", "link", "set", host, "up"},
		)
	}
	for _, s := range steps {
		if _, err := ip(ctx, s[0], s[1:]...); err != nil {
			return nil, err
		}
	}
	return w, nil
}

func (w *Network) bridge() string { return fmt.Sprintf("cc%dbr", w.pid) }
func (w *Network) tag() string    { return fmt.Sprintf("cc-%d", w.pid) }
func (w *Network) hostIP() string { return w.prefix + "254" }

// Namespace is node i's (0-based) network namespace.
func (w *Network) Namespace(i int) string { return fmt.Sprintf("cc-%d-n%d", w.pid, i+1) }

// IP is node i's (0-based) address.
func (w *Network) IP(i int) string { return w.prefix + strconv.Itoa(i+1) }

// Cut cuts the link between nodes a and b in both directions with a
// blackhole route on each side. Cutting a cut link does nothing.
func (w *Network) Cut(ctx context.Context, a, b int) error {
	if a == b {
		return nil
	}
	k := [2]int{min(a, b), max(a, b)}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.mu.cut[k] {
		return nil
	}
	w.mu.cut[k] = true
	if _, err := ip(ctx, "ip", "-n", w.Namespace(a), "route", "add", "blackhole", w.IP(b)); err != nil {
		return err
	}
	_, err := ip(ctx, "ip", "-n", w.Namespace(b), "route", "add", "blackhole", w.IP(a))
	return err
}

// HealAll removes every cut.
func (w *Network) HealAll(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	var errs []error
	for k := range w.mu.cut {
		for _, d := range [][2]int{{k[0], k[1]}, {k[1], k[0]}} {
			out, err := ip(ctx, "ip", "-n", w.Namespace(d[0]), "route", "del", "blackhole", w.IP(d[1]))
			if err != nil && !strings.Contains(out, "No such process") {
				errs = append(errs, err)
			}
		}
		delete(w.mu.cut, k)
	}
	return errors.Join(errs...)
}

// Connected reports whether the link between a and b is whole.
func (w *Network) Connected(a, b int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return a == b || !w.mu.cut[[2]int{min(a, b), max(a, b)}]
}

// Close removes the namespaces (and with them the veths and routes), the
// bridge and the iptables rule. It carries on past errors.
func (w *Network) Close() error {
	return removeRun(context.Background(), w.pid)
}

// dataDirPrefix names the temporary folder of the nodes' data of harness
// pid, so that a leftover one can be found and removed too.
func dataDirPrefix(pid int) string { return fmt.Sprintf("concord-chaos-data-%d-", pid) }

// removeRun removes everything named after harness pid: processes left in
// its namespaces, the namespaces, links, iptables rules and data folders.
func removeRun(ctx context.Context, pid int) error {
	var errs []error
	if pid != os.Getpid() {
		dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), dataDirPrefix(pid)+"*"))
		for _, d := range dirs {
			errs = append(errs, os.RemoveAll(d))
		}
	}
	if out, err := ip(ctx, "ip", "netns", "list"); err == nil {
		for _, f := range strings.Fields(out) {
			if m := nsNameRE.FindStringSubmatch(f); m != nil && m[1] == strconv.Itoa(pid) {
				killNamespacePids(ctx, f)
				if _, err := ip(ctx, "ip", "netns", "del", f); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	if out, err := ip(ctx, "ip", "-o", "link", "show"); err == nil {
		for _, name := range linkNames(out) {
			if m := linkNameRE.FindStringSubmatch(name); m != nil && m[1] == strconv.Itoa(pid) {
				if _, err := ip(ctx, "ip", "link", "del", name); err != nil && !strings.Contains(err.Error(), "Cannot find device") {
					errs = append(errs, err)
				}
			}
		}
	}
	if out, err := ip(ctx, "iptables", "-S", "FORWARD"); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if m := ruleRE.FindStringSubmatch(line); m != nil && m[1] == strconv.Itoa(pid) {
				args := append([]string{"-D"}, strings.Fields(strings.TrimPrefix(line, "-A "))...)
				for i, a := range args {
					args[i] = strings.Trim(a, `"`)
				}
				if _, err := ip(ctx, "iptables", args...); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	return errors.Join(errs...)
}

// killNamespacePids SIGKILLs the processes still inside a leftover
// namespace: concord nodes of a harness that died without cleaning up.
func killNamespacePids(ctx context.Context, ns string) {
	out, err := ip(ctx, "ip", "netns", "pids", ns)
	if err != nil {
		return
	}
	for _, f := range strings.Fields(out) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// linkNames extracts interface names from `ip -o link show` ("3: name@peer: <...").
func linkNames(out string) []string {
	var names []string
	for _, line := range strings.Split(out, "\n") {
		parts := strings.SplitN(line, ": ", 3)
		if len(parts) < 2 {
			continue
		}
		name, _, _ := strings.Cut(parts[1], "@")
		names = append(names, name)
	}
	return names
}

// CleanLeftovers removes the namespaces, links and iptables rules of
// earlier harness runs whose process no longer exists. Objects of runs
// that are still alive (a concurrent harness) are left alone.
func CleanLeftovers(ctx context.Context) error {
	var errs []error
	for _, pid := range deadOwners(ctx) {
		errs = append(errs, removeRun(ctx, pid))
	}
	return errors.Join(errs...)
}

// deadOwners lists the harness pids that own namespaces, links or
// iptables rules but no longer run.
func deadOwners(ctx context.Context) []int {
	owners := map[int]bool{}
	if out, err := ip(ctx, "ip", "netns", "list"); err == nil {
		for _, f := range strings.Fields(out) {
			if m := nsNameRE.FindStringSubmatch(f); m != nil {
				owners[atoi(m[1])] = true
			}
		}
	}
	if out, err := ip(ctx, "ip", "-o", "link", "show"); err == nil {
		for _, name := range linkNames(out) {
			if m := linkNameRE.FindStringSubmatch(name); m != nil {
				owners[atoi(m[1])] = true
			}
		}
	}
	if out, err := ip(ctx, "iptables", "-S", "FORWARD"); err == nil {
		for _, m := range ruleRE.FindAllStringSubmatch(out, -1) {
			owners[atoi(m[1])] = true
		}
	}
	var dead []int
	for pid := range owners {
		if pid != os.Getpid() && !processAlive(pid) {
			dead = append(dead, pid)
		}
	}
	return dead
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	_, err := os.Stat(fmt.Sprintf("/proc/%d", pid))
	return err == nil
}
