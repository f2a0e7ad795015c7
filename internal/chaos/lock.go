package chaos

import (
	"context"
	"fmt"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// The lock workload: clients take one of a few etcd locks
// (clientv3/concurrency Mutex, on leases) and, while they believe they
// hold it, append entries to the lock's data key with a Txn guarded by the
// lock (fencing: the lock key must still exist with the create revision
// it was taken with, Mutex.IsOwner, and the list must not have changed
// since it was read). A holder does not check whether its session is
// still alive between its writes: a holder cut off or paused past its
// lease's TTL goes on writing, as real ones do, and only the fence stops
// it. The check: in the data key's final list, the entries of each hold
// are contiguous (no other holder's entry between two of them), and the
// list is linearizable as an append-only list (porcupine, the append
// model). --unsafe-lock-no-fence drops the lock from the guard, and the
// run must then fail under faults.

// WorkloadLock takes locks and appends under them.
const WorkloadLock = "lock"

// Tunables of the lock workload.
const (
	// lockTTL is each session's lease TTL, in seconds: short, so a holder
	// cut off loses its lock within a fault's hold.
	lockTTL = 2
	// lockWait bounds one attempt to take a lock.
	lockWait = 5 * time.Second
	// writesPerHold is how many appends a holder makes per hold, a think
	// time apart, so that faults fall between them.
	writesPerHold = 4
	// locks is the number of distinct locks the clients contend for.
	locks = 2
)

func lockName(n int) string { return fmt.Sprintf("chaos/lock/%d", n) }
func lockData(n int) string { return fmt.Sprintf("chaos/lockdata/%d", n) }

// lockLoop runs the lock workload until the deadline or ctx ends.
func (c *client) lockLoop(ctx context.Context, deadline time.Time) {
	hold := 0
	for i := 0; i < maxOpsPerClient && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		n := c.rng.IntN(locks)
		sess, err := concurrency.NewSession(c.cli, concurrency.WithTTL(lockTTL), concurrency.WithContext(ctx))
		if err != nil {
			c.pause(ctx, backoffAfterError)
			continue
		}
		m := concurrency.NewMutex(sess, lockName(n))
		lctx, cancel := context.WithTimeout(ctx, lockWait)
		err = m.Lock(lctx)
		cancel()
		if err != nil {
			sess.Close()
			c.pause(ctx, backoffAfterError)
			continue
		}
		hold++
		for w := range writesPerHold {
			op := Op{Process: c.process, Client: c.id, Node: c.node, Workload: WorkloadLock, Kind: KindAppend, Key: lockData(n),
				Value: fmt.Sprintf("c%d.h%d.%d", c.id, hold, w)}
			op.Start = c.now()
			c.guardedAppend(ctx, m, &op)
			op.End = c.now()
			c.hist.Add(op)
			if op.Result == Info {
				c.gen++
				c.process = c.id + c.cfg.Clients*c.gen
			}
			c.pause(ctx, c.cfg.ThinkTime)
		}
		uctx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
		_ = m.Unlock(uctx) // a lost lock has nothing to unlock; the lease ends it anyway
		cancel()
		sess.Close()
	}
}

// guardedAppend appends op.Value to the data key under the lock's fence
// (none with UnsafeLockNoFence), retrying a lost race on the list (which
// wrote nothing).
func (c *client) guardedAppend(ctx context.Context, m *concurrency.Mutex, op *Op) {
	octx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	defer cancel()
	var guard []clientv3.Cmp
	if !c.cfg.UnsafeLockNoFence {
		guard = []clientv3.Cmp{m.IsOwner()}
	}
	c.appendGuarded(octx, op, guard)
}

// pause sleeps up to 2·d (uniform), or until ctx ends.
func (c *client) pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-ctx.Done():
	case <-time.After(time.Duration(c.rng.Int64N(int64(2 * d)))):
	}
}

// CheckHolds checks a lock data key's final list: the entries of each hold
// ("c<client>.h<hold>.<n>") must be contiguous and in order. It returns
// the violations, at most max.
func CheckHolds(key, list string, max int) []string {
	var out []string
	done := map[string]bool{} // holds whose entries ended
	prevHold, prevN := "", -1
	for _, e := range strings.Fields(list) {
		i := strings.LastIndexByte(e, '.')
		if i < 0 {
			out = append(out, fmt.Sprintf("%s: entry %q is not a hold's", key, e))
			continue
		}
		hold := e[:i]
		var n int
		fmt.Sscan(e[i+1:], &n)
		switch {
		case hold == prevHold && n <= prevN:
			out = append(out, fmt.Sprintf("%s: hold %s wrote entry %d after entry %d", key, hold, n, prevN))
		case hold != prevHold && done[hold]:
			out = append(out, fmt.Sprintf("%s: hold %s wrote %q after hold %s wrote in between: two holders at once", key, hold, e, prevHold))
		}
		if hold != prevHold && prevHold != "" {
			done[prevHold] = true
		}
		prevHold, prevN = hold, n
		if len(out) >= max {
			break
		}
	}
	return out
}

// checkLocks reads every lock data key through cli and checks it.
func checkLocks(ctx context.Context, cli *clientv3.Client, max int) ([]string, error) {
	var out []string
	for n := range locks {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		resp, err := cli.Get(ctx, lockData(n))
		cancel()
		if err != nil {
			return nil, fmt.Errorf("chaos: read %s: %w", lockData(n), err)
		}
		out = append(out, CheckHolds(lockData(n), value(resp.Kvs), max-len(out))...)
	}
	return out, nil
}
