package chaos

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Every run also watches: one watcher per node (its client knows every
// node, as users configure clientv3, but starts on that node) follows the
// workloads' keys from the run's first revision through every fault. At
// the end each must have seen every acknowledged write exactly once, at
// its revision and with its value, in revision order, and nothing that no
// client wrote.

// maxWatchViolations bounds the violations a run reports.
const maxWatchViolations = 20

// watchCatchUp bounds how long, after the faults end, the watchers get to
// reach the newest acknowledged write.
const watchCatchUp = 60 * time.Second

// WatchedEvent is one event a watcher saw.
type WatchedEvent struct {
	Key, Value string
	Revision   int64
	Delete     bool
}

// watcher records what one watch saw.
type watcher struct {
	node int
	mu   sync.Mutex
	evs  []WatchedEvent
	err  string // why the watch ended, if it did
	last int64  // the newest revision seen
}

// startWatchers starts one watcher per client in clis, from revision from;
// they stop when ctx ends.
func startWatchers(ctx context.Context, clis []*clientv3.Client, from int64) []*watcher {
	ws := make([]*watcher, len(clis))
	for i, cli := range clis {
		w := &watcher{node: i}
		ws[i] = w
		wch := cli.Watch(ctx, "chaos/", clientv3.WithPrefix(), clientv3.WithRev(from))
		go func() {
			for resp := range wch {
				if err := resp.Err(); err != nil {
					w.mu.Lock()
					w.err = err.Error()
					w.mu.Unlock()
					return
				}
				w.mu.Lock()
				for _, ev := range resp.Events {
					w.evs = append(w.evs, WatchedEvent{Key: string(ev.Kv.Key), Value: string(ev.Kv.Value), Revision: ev.Kv.ModRevision, Delete: ev.Type == clientv3.EventTypeDelete})
					w.last = max(w.last, ev.Kv.ModRevision)
				}
				w.mu.Unlock()
			}
		}()
	}
	return ws
}

// results returns what the watchers saw and why each ended, if it did.
func results(ws []*watcher) (evs [][]WatchedEvent, errs []string, total int) {
	for _, w := range ws {
		w.mu.Lock()
		evs = append(evs, append([]WatchedEvent(nil), w.evs...))
		errs = append(errs, w.err)
		total += len(w.evs)
		w.mu.Unlock()
	}
	return evs, errs, total
}

// waitWatchers waits until every watcher has seen revision rev or the
// timeout passes.
func waitWatchers(ws []*watcher, rev int64, timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		behind := false
		for _, w := range ws {
			w.mu.Lock()
			behind = behind || (w.last < rev && w.err == "")
			w.mu.Unlock()
		}
		if !behind {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// CheckWatches checks what each watcher saw (evs[i] for watcher i; errs[i]
// why it ended early, if it did) against the history, and returns up to
// max violations.
func CheckWatches(ops []Op, evs [][]WatchedEvent, errs []string, max int) []string {
	acked := map[int64]Op{}
	var newest int64
	attempted := map[string]bool{} // key + "=" + written value
	for _, op := range ops {
		if op.Kind == KindRead || op.Result == Fail || op.Workload == WorkloadLock || op.Workload == WorkloadBank || isAP(op.Workload) {
			continue
		}
		attempted[op.Key+"="+op.Value] = true
		if op.Result == Ok && op.Revision > 0 && (op.Kind != KindCAS || op.Succeeded) {
			acked[op.Revision] = op
			newest = maxInt64(newest, op.Revision)
		}
	}
	var out []string
	add := func(format string, args ...any) {
		if len(out) < max {
			out = append(out, fmt.Sprintf(format, args...))
		}
	}
	for i, wevs := range evs {
		if errs[i] != "" {
			add("watcher %d ended: %s", i+1, errs[i])
		}
		seen := map[int64]WatchedEvent{}
		last := int64(0)
		for _, ev := range wevs {
			if !strings.HasPrefix(ev.Key, "chaos/r/") && !strings.HasPrefix(ev.Key, "chaos/a/") {
				continue // the lock and bank workloads' keys: CheckHolds, CheckBank
			}
			if ev.Revision <= last {
				add("watcher %d: event at revision %d after one at %d", i+1, ev.Revision, last)
			}
			last = maxInt64(last, ev.Revision)
			seen[ev.Revision] = ev
			if !ev.Delete && !attempted[ev.Key+"="+writtenValue(ev)] {
				add("watcher %d: %s=%q at revision %d was written by no client", i+1, ev.Key, ev.Value, ev.Revision)
			}
		}
		revs := make([]int64, 0, len(acked))
		for rev := range acked {
			revs = append(revs, rev)
		}
		sort.Slice(revs, func(a, b int) bool { return revs[a] < revs[b] })
		for _, rev := range revs {
			op := acked[rev]
			ev, ok := seen[rev]
			switch {
			case !ok && errs[i] == "":
				add("watcher %d missed the acknowledged %s of %s=%q at revision %d (it saw up to %d; newest acknowledged %d)", i+1, op.Kind, op.Key, op.Value, rev, last, newest)
			case ok && (ev.Key != op.Key || writtenValue(ev) != op.Value):
				add("watcher %d: revision %d is %s=%q, but the acknowledged %s there wrote %s=%q", i+1, rev, ev.Key, ev.Value, op.Kind, op.Key, op.Value)
			}
		}
	}
	return out
}

// writtenValue is what a client wrote to make ev: the value itself for a
// register, the appended element (the list's last) for a list.
func writtenValue(ev WatchedEvent) string {
	if strings.HasPrefix(ev.Key, "chaos/a/") {
		return lastElem(ev.Value)
	}
	return ev.Value
}

// lastElem is a list value's last element.
func lastElem(list string) string {
	f := strings.Fields(list)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

func maxInt64(a, b int64) int64 {
	if a > b {
		return a
	}
	return b
}
