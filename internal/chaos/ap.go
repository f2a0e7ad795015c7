package chaos

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The AP workloads run on the AP keyspaces (internal/ap) over the Redis
// port of every node (go-redis, one connection per client, pinned to its
// node, no retries), in keyspace 0 (N=3, R=2, W=2):
//
//   - ap-counter: INCRBY of 1 to maxIncrement on a few counters;
//   - ap-set: SADD of an element no one added before ("c<client>.<seq>")
//     on a few sets, and now and then SREM of one this client added and
//     saw acknowledged.
//
// Keys live Config.KeyLifetime, as the other workloads' do, and change
// at every heal of a fault too: a key written during a fault is not
// written after it. That is what lets the check see hinted handoff: a
// write taken while every preferred node of its key was cut off from its
// coordinator lives only on fallbacks, as hints and as the coordinator's
// own copy, which no anti-entropy exchange covers (the coordinator is not
// preferred). The next write through that coordinator would carry the
// copy to the preferred nodes anyway (it merges its own copy in); on a
// key nobody writes again, only hinted handoff does.
//
// The check (CheckAP), once every fault is healed and the clients are
// done: every node is asked for its own replica of every key used
// (CONCORD REPLICA), again every apPollInterval until, for each key, the
// replicas of its preferred nodes agree and no node holds a hint under it
// any more, or Config.APConvergeTimeout passes. Then, on every preferred
// replica: a counter is at least the sum of the acknowledged increments
// and at most that plus the indeterminate ones; a set holds every
// acknowledged add not followed by a remove of the element that may have
// applied (an indeterminate SREM, or one that answered 1), no element
// whose remove was acknowledged, and nothing never added.
// --unsafe-ap-drop-hints starts nodes that acknowledge hints without
// storing them: under partitions the run must fail.

// The AP workloads.
const (
	// WorkloadAPCounter increments a few AP counters.
	WorkloadAPCounter = "ap-counter"
	// WorkloadAPSet adds unique elements to a few AP sets, and removes
	// some.
	WorkloadAPSet = "ap-set"
)

// The AP workloads' operation kinds. Value is the increment (decimal) or
// the element; Out the reply: the counter after the increment, or the
// number of elements SADD added or SREM removed.
const (
	KindIncr Kind = "incr"
	KindSAdd Kind = "sadd"
	KindSRem Kind = "srem"
)

// Tunables of the AP workloads and their check.
const (
	// redisPort is every node's Redis port inside its namespace.
	redisPort = 6379
	// maxIncrement bounds one INCRBY.
	maxIncrement = 5
	// apRemoveOneIn: an ap-set client removes one of its elements in one
	// operation out of apRemoveOneIn.
	apRemoveOneIn = 4
	// apPollInterval paces the rounds of replica reads of the check.
	apPollInterval = 250 * time.Millisecond
	// apReadTimeout bounds one node's answer to one round.
	apReadTimeout = 5 * time.Second
	// nodeAntiEntropyInterval is the nodes' anti-entropy interval when
	// Config.APAntiEntropyInterval leaves it to them (ap's default).
	nodeAntiEntropyInterval = 10 * time.Second
	// apConvergeSlack is the default bound's margin over the
	// anti-entropy interval: a round, its exchanges, gossip noticing a
	// healed node, a handoff round.
	apConvergeSlack = 5 * time.Second
	// maxAPViolations bounds the violations reported (CheckAP still
	// counts them all).
	maxAPViolations = 20
	// maxListed bounds the elements a violation lists.
	maxListed = 5
)

func isAP(workload string) bool { return workload == WorkloadAPCounter || workload == WorkloadAPSet }

// hasAP reports whether workloads include an AP one.
func hasAP(workloads []string) bool {
	for _, w := range workloads {
		if isAP(w) {
			return true
		}
	}
	return false
}

// convergeTimeout is the AP check's bound.
func (c Config) convergeTimeout() time.Duration {
	if c.APConvergeTimeout > 0 {
		return c.APConvergeTimeout
	}
	ae := nodeAntiEntropyInterval
	if c.APAntiEntropyInterval > 0 {
		ae = c.APAntiEntropyInterval
	}
	return ae + apConvergeSlack
}

// newRedis returns a client of the Redis port at addr that never retries
// (a retried INCRBY could apply twice) and gives each command timeout.
func newRedis(addr string, timeout time.Duration) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr: addr, Protocol: 2, DisableIdentity: true,
		MaxRetries: -1, PoolSize: 1, DialTimeout: time.Second,
		ReadTimeout: timeout, WriteTimeout: timeout, ContextTimeoutEnabled: true,
	})
}

// apKey picks a key of the current epoch, as key does, and of the number
// of faults healed so far: the keys written during a fault are not
// written after it.
func (c *client) apKey(prefix string) string {
	epoch := int64(time.Since(c.t0) / c.cfg.KeyLifetime)
	return fmt.Sprintf("chaos/%s/%d.%d/%d", prefix, epoch, c.healed(), c.rng.IntN(c.cfg.Keys))
}

// ap performs one AP operation; op.Key and op.Start are set here.
func (c *client) ap(ctx context.Context, op *Op) {
	var err error
	switch c.workload {
	case WorkloadAPCounter:
		op.Key = c.apKey("c")
		by := 1 + c.rng.Int64N(maxIncrement)
		op.Kind, op.Value = KindIncr, strconv.FormatInt(by, 10)
		op.Start = c.now()
		var v int64
		if v, err = c.rdb.IncrBy(ctx, op.Key, by).Result(); err == nil {
			op.Out = strconv.FormatInt(v, 10)
		}
	case WorkloadAPSet:
		op.Key = c.apKey("s")
		mine := c.added[op.Key]
		op.Kind, op.Value = KindSAdd, fmt.Sprintf("c%d.%d", c.id, c.seq)
		if len(mine) > 0 && c.rng.IntN(apRemoveOneIn) == 0 {
			i := c.rng.IntN(len(mine))
			op.Kind, op.Value = KindSRem, mine[i]
			c.added[op.Key] = append(mine[:i:i], mine[i+1:]...)
		}
		op.Start = c.now()
		var n int64
		if op.Kind == KindSAdd {
			n, err = c.rdb.SAdd(ctx, op.Key, op.Value).Result()
		} else {
			n, err = c.rdb.SRem(ctx, op.Key, op.Value).Result()
		}
		if err == nil {
			op.Out = strconv.FormatInt(n, 10)
			if op.Kind == KindSAdd {
				c.added[op.Key] = append(c.added[op.Key], op.Value)
			}
		}
	}
	op.Result = Ok
	if err != nil {
		op.Result, op.Err = apResult(err), err.Error()
	}
}

// apResult is the result of an AP write that failed with err: fail only
// when the server refused it before doing anything (out of space, wrong
// type, a malformed command, shutting down); anything else, timeouts,
// lost connections and NOREPLICAS included, may have been stored by the
// coordinator and so may still spread: info.
func apResult(err error) Result {
	var re redis.Error
	if !errors.As(err, &re) {
		return Info
	}
	for _, p := range []string{"NOSPACE", "WRONGTYPE", "ERR wrong number", "ERR syntax", "ERR unknown command", "ERR server is shutting down"} {
		if strings.HasPrefix(err.Error(), p) {
			return Fail
		}
	}
	return Info
}

// APReplica is what one node answered to CONCORD REPLICA for one key.
type APReplica struct {
	// Node is the node's index in the cluster (0-based).
	Node int
	// Preferred is set when the node is in the key's preference list.
	Preferred bool
	// Type is what TYPE would answer: none, string, set or hash.
	Type string
	// Value is a string's value, or a set's members in order joined by
	// spaces.
	Value string
	// Hints is the number of states the node holds under the key for
	// other nodes.
	Hints int
	// Err is why the node did not answer, if it did not.
	Err string
}

// APKey is what the check read of one key's replicas.
type APKey struct {
	Workload, Key string
	// Replicas are the last answers of every node.
	Replicas []APReplica
	// Converged is set when the preferred replicas agreed and no node
	// held a hint under the key, After the workload ended.
	Converged bool
	After     time.Duration
}

// converged reports whether every node answered, the preferred replicas
// agree and no hint is left.
func converged(rs []APReplica) bool {
	var pref *APReplica
	for i := range rs {
		r := &rs[i]
		if r.Err != "" || r.Hints > 0 {
			return false
		}
		if !r.Preferred {
			continue
		}
		if pref != nil && (r.Type != pref.Type || r.Value != pref.Value) {
			return false
		}
		pref = r
	}
	return pref != nil
}

// APReport is the AP workloads' verdict.
type APReport struct {
	// Keys is the number of keys checked; Converged of them agreed within
	// Bound, the slowest Slowest after the workload ended.
	Keys, Converged int
	Bound, Slowest  time.Duration
	// Increments and Adds are the acknowledged INCRBYs and SADDs.
	Increments, Adds int
	// Found counts the violations; Violations holds the first ones.
	Found      int
	Violations []string
}

// readReplicas asks every node for its replica of every key, then again
// for the keys that have not converged, until all have or bound passes.
// A node that fails a round is asked again in the next.
func readReplicas(ctx context.Context, c *Cluster, keys []APKey, bound time.Duration) {
	clis := make([]*redis.Client, c.Size())
	for i := range clis {
		clis[i] = newRedis(c.RedisAddr(i), apReadTimeout)
		defer clis[i].Close()
	}
	t0 := time.Now()
	for {
		left := 0
		for k := range keys {
			if !keys[k].Converged {
				keys[k].Replicas = make([]APReplica, c.Size())
				left++
			}
		}
		if left == 0 {
			return
		}
		for i, cli := range clis {
			rctx, cancel := context.WithTimeout(ctx, apReadTimeout)
			pipe := cli.Pipeline()
			cmds := make([]*redis.Cmd, len(keys))
			for k := range keys {
				if !keys[k].Converged {
					cmds[k] = pipe.Do(rctx, "CONCORD", "REPLICA", keys[k].Key)
				}
			}
			_, _ = pipe.Exec(rctx) // each command carries its own error
			cancel()
			for k, cmd := range cmds {
				if cmd == nil {
					continue
				}
				r, err := parseReplica(cmd.Val(), cmd.Err())
				if err != nil {
					r.Err = err.Error()
				}
				r.Node = i
				keys[k].Replicas[i] = r
			}
		}
		for k := range keys {
			if !keys[k].Converged && converged(keys[k].Replicas) {
				keys[k].Converged, keys[k].After = true, time.Since(t0)
			}
		}
		if time.Since(t0) > bound || ctx.Err() != nil {
			return
		}
		time.Sleep(apPollInterval)
	}
}

// parseReplica decodes a RESP2 answer of CONCORD REPLICA: a flat array
// of node, preferred, type, value and hints with their values.
func parseReplica(v any, err error) (APReplica, error) {
	var r APReplica
	if err != nil {
		return r, err
	}
	a, ok := v.([]any)
	if !ok || len(a)%2 != 0 {
		return r, fmt.Errorf("chaos: CONCORD REPLICA answered %T %v", v, v)
	}
	for i := 0; i < len(a); i += 2 {
		name, _ := a[i].(string)
		switch x := a[i+1]; name {
		case "preferred":
			n, _ := x.(int64)
			r.Preferred = n == 1
		case "type":
			r.Type, _ = x.(string)
		case "hints":
			n, _ := x.(int64)
			r.Hints = int(n)
		case "value":
			switch x := x.(type) {
			case string:
				r.Value = x
			case []any:
				ms := make([]string, len(x))
				for j, m := range x {
					ms[j], _ = m.(string)
				}
				sort.Strings(ms)
				r.Value = strings.Join(ms, " ")
			}
		}
	}
	return r, nil
}

// apKeys lists the keys of the AP operations in ops, in order.
func apKeys(ops []Op) []APKey {
	seen := map[string]bool{}
	var out []APKey
	for _, op := range ops {
		if isAP(op.Workload) && !seen[op.Key] {
			seen[op.Key] = true
			out = append(out, APKey{Workload: op.Workload, Key: op.Key})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// CheckAP checks what the replicas of every AP key hold, as read after
// healing (keys), against the history, and reports up to maxViolations
// violations.
func CheckAP(ops []Op, keys []APKey, bound time.Duration, maxViolations int) APReport {
	rep := APReport{Keys: len(keys), Bound: bound}
	add := func(format string, args ...any) {
		rep.Found++
		if len(rep.Violations) < maxViolations {
			rep.Violations = append(rep.Violations, fmt.Sprintf(format, args...))
		}
	}
	byKey := map[string][]Op{}
	for _, op := range ops {
		if isAP(op.Workload) {
			byKey[op.Key] = append(byKey[op.Key], op)
			switch {
			case op.Result != Ok:
			case op.Kind == KindIncr:
				rep.Increments++
			case op.Kind == KindSAdd:
				rep.Adds++
			}
		}
	}
	for _, k := range keys {
		if k.Converged {
			rep.Converged++
			rep.Slowest = max(rep.Slowest, k.After)
		} else {
			add("%s %s: the replicas did not converge within %v after the workload: %s", k.Workload, k.Key, bound, describeReplicas(k.Replicas))
		}
		for _, r := range k.Replicas {
			if !r.Preferred || r.Err != "" {
				continue
			}
			where := fmt.Sprintf("%s %s: the replica on n%d", k.Workload, k.Key, r.Node+1)
			if k.Workload == WorkloadAPCounter {
				checkCounter(byKey[k.Key], r, where, add)
			} else {
				checkSet(byKey[k.Key], r, where, add)
			}
		}
	}
	return rep
}

// checkCounter: acked <= value <= acked + indeterminate.
func checkCounter(ops []Op, r APReplica, where string, add func(string, ...any)) {
	var acked, maybe int64
	var nAcked int
	for _, op := range ops {
		by, _ := strconv.ParseInt(op.Value, 10, 64)
		switch op.Result {
		case Ok:
			acked += by
			nAcked++
		case Info:
			maybe += by
		}
	}
	var v int64
	switch r.Type {
	case "none":
	case "string":
		var err error
		if v, err = strconv.ParseInt(r.Value, 10, 64); err != nil {
			add("%s holds %q, not a counter", where, r.Value)
			return
		}
	default:
		add("%s holds a %s, not a counter", where, r.Type)
		return
	}
	switch {
	case v < acked:
		add("%s holds %d, below the sum %d of the %d acknowledged increments: %d LOST", where, v, acked, nAcked, acked-v)
	case v > acked+maybe:
		add("%s holds %d, above the sum %d of every increment that may have applied", where, v, acked+maybe)
	}
}

// checkSet: every acknowledged add not followed by a remove that may have
// applied (acknowledged or indeterminate) is there; nothing whose remove
// was acknowledged, and nothing never added, is.
func checkSet(ops []Op, r APReplica, where string, add func(string, ...any)) {
	if r.Type != "none" && r.Type != "set" {
		add("%s holds a %s, not a set", where, r.Type)
		return
	}
	has := map[string]bool{}
	for _, m := range strings.Fields(r.Value) {
		has[m] = true
	}
	// added: acknowledged adds; tried: adds that may have applied;
	// removed: acknowledged removes (SREM answered 1); mayRemove: removes
	// that may have applied (those and the indeterminate ones).
	added, tried := map[string]bool{}, map[string]bool{}
	removed, mayRemove := map[string]bool{}, map[string]bool{}
	for _, op := range ops {
		switch {
		case op.Kind == KindSAdd && op.Result != Fail:
			tried[op.Value] = true
			added[op.Value] = added[op.Value] || op.Result == Ok
		case op.Kind == KindSRem && (op.Result == Info || op.Result == Ok && op.Out == "1"):
			mayRemove[op.Value] = true
			removed[op.Value] = removed[op.Value] || op.Result == Ok
		}
	}
	var lost, back, never []string
	for e := range added {
		if added[e] && !mayRemove[e] && !has[e] {
			lost = append(lost, e)
		}
	}
	for e := range has {
		switch {
		case !tried[e]:
			never = append(never, e)
		case removed[e]:
			back = append(back, e)
		}
	}
	if len(lost) > 0 {
		add("%s LOST %d acknowledged adds: %s", where, len(lost), listed(lost))
	}
	if len(back) > 0 {
		add("%s holds %d elements whose removal was acknowledged: %s", where, len(back), listed(back))
	}
	if len(never) > 0 {
		add("%s holds %d elements never added: %s", where, len(never), listed(never))
	}
}

// listed names up to maxListed elements, in order.
func listed(es []string) string {
	sort.Strings(es)
	if len(es) > maxListed {
		return strings.Join(es[:maxListed], " ") + fmt.Sprintf(" (and %d more)", len(es)-maxListed)
	}
	return strings.Join(es, " ")
}

// describeReplicas says what each node answered last.
func describeReplicas(rs []APReplica) string {
	var parts []string
	for _, r := range rs {
		var s string
		switch {
		case r.Err != "":
			s = "error " + r.Err
		default:
			v := r.Value
			if n := strings.Count(v, " ") + 1; r.Type == "set" && n > maxListed {
				v = fmt.Sprintf("%d members", n)
			}
			s = fmt.Sprintf("%s %q", r.Type, v)
			if r.Preferred {
				s += " (preferred)"
			}
			if r.Hints > 0 {
				s += fmt.Sprintf(", %d hints", r.Hints)
			}
		}
		parts = append(parts, fmt.Sprintf("n%d %s", r.Node+1, s))
	}
	return strings.Join(parts, "; ")
}
