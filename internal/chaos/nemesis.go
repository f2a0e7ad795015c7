package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The faults the nemesis injects. "leader" is the meta range's leader as
// the etcd Status RPC reports it, the one range leader visible through
// the client API (it also serves the TSO); with no leader known the fault
// falls back to a random node.
const (
	FaultKillNode        = "kill-node"         // SIGKILL a random node, restart it after the hold
	FaultKillLeader      = "kill-leader"       // SIGKILL the leader, restart it after the hold
	FaultPauseNode       = "pause-node"        // SIGSTOP a random node, SIGCONT after the hold
	FaultPauseLeader     = "pause-leader"      // SIGSTOP the leader, SIGCONT after the hold
	FaultPartitionNode   = "partition-node"    // cut one random node off from all others
	FaultPartitionLeader = "partition-leader"  // cut the leader off from all others
	FaultPartitionHalves = "partition-halves"  // random minority | majority
	FaultPartitionBridge = "partition-bridge"  // two sides that only one node (the bridge) sees both of
	FaultClockJump       = "clock-jump"        // jump a random node's wall clock by up to ±2 min, back after the hold
	FaultClockJumpLeader = "clock-jump-leader" // the same on the leader (the TSO's node)
	FaultSplitRange      = "split-range"       // split the range holding a key in use there, through a random node
	FaultMergeRange      = "merge-range"       // merge a random range into its left neighbour, through a random node (split if there is one range)
)

// faultGroups are the names --nemesis accepts besides single faults.
var faultGroups = map[string][]string{
	"kill":      {FaultKillNode, FaultKillLeader},
	"pause":     {FaultPauseNode, FaultPauseLeader},
	"partition": {FaultPartitionNode, FaultPartitionLeader, FaultPartitionHalves, FaultPartitionBridge},
	"clock":     {FaultClockJump, FaultClockJumpLeader},
	"split":     {FaultSplitRange, FaultMergeRange},
	"all": {FaultKillNode, FaultKillLeader, FaultPauseNode, FaultPauseLeader,
		FaultPartitionNode, FaultPartitionLeader, FaultPartitionHalves, FaultPartitionBridge,
		FaultClockJump, FaultClockJumpLeader, FaultSplitRange, FaultMergeRange},
	"none": nil,
}

// ParseNemesis expands a comma-separated list of faults and groups (kill,
// pause, partition, clock, split, all, none) into distinct fault names, in a fixed
// order so a seed means the same schedule however the list is written.
func ParseNemesis(spec string) ([]string, error) {
	set := map[string]bool{}
	for _, f := range strings.Split(spec, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if g, ok := faultGroups[f]; ok {
			for _, x := range g {
				set[x] = true
			}
			continue
		}
		if !contains(faultGroups["all"], f) {
			return nil, fmt.Errorf("chaos: unknown fault %q (want kill, pause, partition, clock, split, all, none or one of %s)", f, strings.Join(faultGroups["all"], ", "))
		}
		set[f] = true
	}
	var out []string
	for _, f := range faultGroups["all"] {
		if set[f] {
			out = append(out, f)
		}
	}
	return out, nil
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if x == y {
			return true
		}
	}
	return false
}

// Fault is one scheduled fault.
type Fault struct {
	// At is when it starts, from the beginning of the workload.
	At time.Duration
	// Hold is how long it lasts before it is healed.
	Hold time.Duration
	Kind string
	// Pick chooses the target nodes (see targets).
	Pick uint64
}

// maxFaults bounds a schedule.
const maxFaults = 100_000

// Schedule derives the faults of a run from its seed: a quiet gap, a
// fault held for a while, and again, each gap and hold uniform in
// [interval/2, 3·interval/2]. The first interval and the last interval of
// the run are always quiet, so the history begins and ends healthy.
func Schedule(seed int64, kinds []string, duration, interval time.Duration) []Fault {
	if len(kinds) == 0 || interval <= 0 {
		return nil
	}
	rng := rand.New(rand.NewPCG(uint64(seed), 0x6e656d65736973)) // "nemesis"
	jitter := func() time.Duration { return interval/2 + time.Duration(rng.Int64N(int64(interval))) }
	var out []Fault
	for t := interval; len(out) < maxFaults; {
		f := Fault{At: t, Hold: jitter(), Kind: kinds[rng.IntN(len(kinds))], Pick: rng.Uint64()}
		if f.At+f.Hold > duration-interval {
			break
		}
		out = append(out, f)
		t = f.At + f.Hold + jitter()
	}
	return out
}

// Sides returns the groups of a partition fault over n nodes: every
// node of sides[i] is cut from every node of sides[j] for i≠j, except
// the bridge of partition-bridge, which is in no side and keeps all its
// links. leader is the leader's index, used by the leader faults.
func Sides(kind string, pick uint64, n, leader int) (sides [][]int, bridge int) {
	perm := rand.New(rand.NewPCG(pick, 0)).Perm(n)
	one := func(i int) [][]int {
		var rest []int
		for j := 0; j < n; j++ {
			if j != i {
				rest = append(rest, j)
			}
		}
		return [][]int{{i}, rest}
	}
	switch kind {
	case FaultPartitionNode:
		return one(perm[0]), -1
	case FaultPartitionLeader:
		return one(leader), -1
	case FaultPartitionHalves:
		k := (n - 1) / 2
		return [][]int{sorted(perm[:k]), sorted(perm[k:])}, -1
	case FaultPartitionBridge:
		k := (n - 1) / 2
		return [][]int{sorted(perm[1 : 1+k]), sorted(perm[1+k:])}, perm[0]
	}
	return nil, -1
}

func sorted(xs []int) []int {
	out := append([]int(nil), xs...)
	sort.Ints(out)
	return out
}

// Event is one fault as it happened.
type Event struct {
	// Kind is one of the Fault* names.
	Kind string
	// Start and End are nanoseconds since the workload began.
	Start, End int64
	// Desc names the targets, e.g. "n3" or "n1 n4 | n2 n3 n5".
	Desc string
	// Err says what went wrong injecting or healing it, if anything.
	Err string `json:",omitempty"`
}

// segment is a stretch of time in which the set of healthy nodes (up,
// not paused, and connected to a majority, counting itself) is fixed.
type segment struct {
	from    int64
	healthy []bool
}

// nemesis runs a schedule against a cluster and keeps the timeline of
// node health for the availability figures.
type nemesis struct {
	c    *Cluster
	w    *Network
	t0   time.Time
	logf func(string, ...any)
	// splitKey names the key a split-range fault splits at, from its
	// pick: one the clients use at the moment.
	splitKey func(pick uint64) string

	// healed counts the faults healed so far (the AP workloads' keys
	// change with it: see ap.go).
	healed atomic.Int64

	mu struct {
		sync.Mutex
		down, paused []bool
		events       []Event
		timeline     []segment
	}
}

func newNemesis(c *Cluster, w *Network, t0 time.Time, logf func(string, ...any)) *nemesis {
	nm := &nemesis{c: c, w: w, t0: t0, logf: logf}
	nm.mu.down = make([]bool, c.Size())
	nm.mu.paused = make([]bool, c.Size())
	nm.mu.Lock()
	nm.recordLocked()
	nm.mu.Unlock()
	return nm
}

func (nm *nemesis) now() int64 { return int64(time.Since(nm.t0)) }

// recordLocked appends the current health to the timeline.
func (nm *nemesis) recordLocked() {
	n := nm.c.Size()
	up := func(i int) bool { return !nm.mu.down[i] && !nm.mu.paused[i] }
	healthy := make([]bool, n)
	for i := 0; i < n; i++ {
		if !up(i) {
			continue
		}
		reach := 0
		for j := 0; j < n; j++ {
			if up(j) && nm.w.Connected(i, j) {
				reach++
			}
		}
		healthy[i] = reach >= n/2+1
	}
	nm.mu.timeline = append(nm.mu.timeline, segment{from: nm.now(), healthy: healthy})
}

func (nm *nemesis) set(f func()) {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	f()
	nm.recordLocked()
}

// run injects the faults of sched in order until the schedule or ctx
// ends. Every fault is healed before run returns, even when ctx ends
// during its hold.
func (nm *nemesis) run(ctx context.Context, sched []Fault) {
	for _, f := range sched {
		if wait(ctx, time.Until(nm.t0.Add(f.At))) != nil {
			return
		}
		nm.inject(ctx, f)
	}
}

func wait(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// inject applies one fault, holds it, heals it and records the event.
func (nm *nemesis) inject(ctx context.Context, f Fault) {
	n := nm.c.Size()
	leader := -1
	if strings.HasSuffix(f.Kind, "-leader") {
		leader = nm.c.Leader(ctx)
	}
	target := int(f.Pick % uint64(n))
	if leader >= 0 {
		target = leader
	}
	ev := Event{Kind: f.Kind, Start: nm.now()}
	if strings.HasSuffix(f.Kind, "-leader") && leader < 0 {
		ev.Err = "no leader known: random node instead"
	}
	var heal func() error
	var err error
	switch f.Kind {
	case FaultKillNode, FaultKillLeader:
		ev.Desc = fmt.Sprintf("n%d", target+1)
		nm.set(func() { nm.mu.down[target] = true })
		nm.c.Kill(target)
		heal = func() error {
			err := nm.c.Start(target)
			nm.set(func() { nm.mu.down[target] = false })
			return err
		}
	case FaultPauseNode, FaultPauseLeader:
		ev.Desc = fmt.Sprintf("n%d", target+1)
		nm.set(func() { nm.mu.paused[target] = true })
		err = nm.c.Pause(target)
		heal = func() error {
			err := nm.c.Resume(target)
			nm.set(func() { nm.mu.paused[target] = false })
			return err
		}
	case FaultSplitRange:
		key := nm.splitKey(f.Pick)
		ev.Desc = fmt.Sprintf("at %q through n%d", key, target+1)
		err = nm.c.Split(ctx, target, key)
		heal = func() error { return nil } // a split stays
	case FaultMergeRange:
		var key string
		key, err = nm.c.Merge(ctx, target, f.Pick)
		ev.Desc = fmt.Sprintf("at %q through n%d", key, target+1)
		if err == nil && key == "" {
			// One range only: split instead, so that a later merge has
			// something to merge.
			key = nm.splitKey(f.Pick)
			ev.Desc = fmt.Sprintf("nothing to merge: split at %q through n%d", key, target+1)
			err = nm.c.Split(ctx, target, key)
		}
		heal = func() error { return nil }
	case FaultClockJump, FaultClockJumpLeader:
		d := ClockJump(f.Pick)
		ev.Desc = fmt.Sprintf("n%d %+v", target+1, d)
		err = nm.c.SetClockOffset(target, d)
		heal = func() error { return nm.c.SetClockOffset(target, 0) }
	default:
		if leader < 0 {
			leader = target
		}
		sides, bridge := Sides(f.Kind, f.Pick, n, leader)
		ev.Desc = describeSides(sides, bridge)
		nm.set(func() {
			for i, a := range sides {
				for _, b := range sides[i+1:] {
					for _, x := range a {
						for _, y := range b {
							if cerr := nm.w.Cut(context.Background(), x, y); cerr != nil && err == nil {
								err = cerr
							}
						}
					}
				}
			}
		})
		heal = func() error {
			var err error
			nm.set(func() { err = nm.w.HealAll(context.Background()) })
			return err
		}
	}
	nm.logf("%6.1fs %s %s", time.Duration(ev.Start).Seconds(), f.Kind, ev.Desc)
	_ = wait(ctx, f.Hold)
	if herr := heal(); herr != nil && err == nil {
		err = herr
	}
	nm.healed.Add(1)
	if err != nil {
		ev.Err = strings.TrimSpace(ev.Err + " " + err.Error())
		nm.logf("chaos: %s: %v", f.Kind, err)
	}
	ev.End = nm.now()
	nm.logf("%6.1fs healed %s", time.Duration(ev.End).Seconds(), f.Kind)
	nm.mu.Lock()
	nm.mu.events = append(nm.mu.events, ev)
	nm.mu.Unlock()
}

func describeSides(sides [][]int, bridge int) string {
	var parts []string
	for _, s := range sides {
		var names []string
		for _, i := range s {
			names = append(names, fmt.Sprintf("n%d", i+1))
		}
		parts = append(parts, strings.Join(names, " "))
	}
	d := strings.Join(parts, " | ")
	if bridge >= 0 {
		d += fmt.Sprintf(" (bridge n%d)", bridge+1)
	}
	return d
}

// events returns the faults injected so far.
func (nm *nemesis) events() []Event {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	return append([]Event(nil), nm.mu.events...)
}

// timeline returns the health segments in time order.
func (nm *nemesis) timeline() []segment {
	nm.mu.Lock()
	defer nm.mu.Unlock()
	return append([]segment(nil), nm.mu.timeline...)
}

// Availability counts, over ops, those whose whole interval lay in time
// when some majority of nodes was up and connected (majority, majorityOK)
// and those whose node was itself in such a majority throughout (inside,
// insideOK). Info counts as not ok.
func availability(ops []Op, tl []segment) (majority, majorityOK, inside, insideOK int) {
	for _, op := range ops {
		anyHealthy, nodeHealthy := true, true
		for i, s := range tl {
			end := int64(1<<63 - 1)
			if i+1 < len(tl) {
				end = tl[i+1].from
			}
			if end <= op.Start || s.from > op.End {
				continue
			}
			if !s.healthy[op.Node] {
				nodeHealthy = false
			}
			if !anyTrue(s.healthy) {
				anyHealthy = false
			}
		}
		ok := op.Result == Ok
		if anyHealthy {
			majority++
			if ok {
				majorityOK++
			}
		}
		if nodeHealthy {
			inside++
			if ok {
				insideOK++
			}
		}
	}
	return
}

func anyTrue(bs []bool) bool {
	for _, b := range bs {
		if b {
			return true
		}
	}
	return false
}

// maxClockJump bounds a clock fault's jump, either way.
const maxClockJump = 2 * time.Minute

// ClockJump derives a clock fault's jump from its pick: between one second
// and maxClockJump, forwards or backwards.
func ClockJump(pick uint64) time.Duration {
	r := rand.New(rand.NewPCG(pick, 0x636c6f636b)) // "clock"
	d := time.Second + time.Duration(r.Int64N(int64(maxClockJump-time.Second)))
	if r.IntN(2) == 0 {
		d = -d
	}
	return d.Round(time.Millisecond)
}

// hasClockFaults reports whether faults include a clock jump.
func hasClockFaults(faults []string) bool {
	return contains(faults, FaultClockJump) || contains(faults, FaultClockJumpLeader)
}
