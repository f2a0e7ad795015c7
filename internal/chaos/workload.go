package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/redis/go-redis/v9"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// The workloads.
const (
	// WorkloadRegister reads, writes and compare-and-sets a few keys.
	WorkloadRegister = "register"
	// WorkloadAppend reads and appends to a few list-valued keys.
	WorkloadAppend = "append"
)

// Bounds of the client loops.
const (
	// maxOpsPerClient bounds one client's operations in one run.
	maxOpsPerClient = 1_000_000
	// maxAppendAttempts bounds the compare-and-retry loop of one append
	// that loses races on its mod-revision comparison.
	maxAppendAttempts = 8
	// backoffAfterError keeps a client whose node is down or cut off from
	// piling up indeterminate operations (each one stays open to the end
	// of its key's history and widens the checker's search).
	backoffAfterError = 100 * time.Millisecond
)

// client is one sequential worker pinned to one node.
type client struct {
	id, node int
	workload string
	cli      *clientv3.Client
	// rdb is the Redis client of an AP workload's client (ap.go).
	rdb  *redis.Client
	rng  *rand.Rand
	cfg  *Config
	t0   time.Time
	hist *History

	process, gen int
	seq          int
	// seen is the last value this client read or wrote per register key:
	// what its compare-and-sets compare against, so they contend.
	seen map[string]string
	// healed returns how many faults the nemesis has healed so far.
	healed func() int64
	// added lists, per set key, the elements this client added, saw
	// acknowledged and has not tried to remove: what its SREMs pick from.
	added map[string][]string
}

// run issues operations until the deadline or ctx ends.
func (c *client) run(ctx context.Context, deadline time.Time) {
	if c.workload == WorkloadLock {
		c.lockLoop(ctx, deadline)
		return
	}
	for i := 0; i < maxOpsPerClient && ctx.Err() == nil && time.Now().Before(deadline); i++ {
		op := c.one(ctx)
		c.hist.Add(op)
		if op.Result == Info {
			// The open operation never ends: continue as a new process.
			c.gen++
			c.process = c.id + c.cfg.Clients*c.gen
		}
		pause := time.Duration(0)
		if c.cfg.ThinkTime > 0 {
			pause = time.Duration(c.rng.Int64N(int64(2 * c.cfg.ThinkTime)))
		}
		if op.Result != Ok {
			pause += backoffAfterError
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (c *client) key(prefix string) string {
	epoch := int64(time.Since(c.t0) / c.cfg.KeyLifetime)
	return fmt.Sprintf("chaos/%s/%d/%d", prefix, epoch, c.rng.IntN(c.cfg.Keys))
}

func (c *client) now() int64 { return int64(time.Since(c.t0)) }

// one performs and records one operation.
func (c *client) one(ctx context.Context) Op {
	op := Op{Process: c.process, Client: c.id, Node: c.node, Workload: c.workload}
	c.seq++
	value := fmt.Sprintf("%d.%d", c.id, c.seq)
	octx, cancel := context.WithTimeout(ctx, c.cfg.OpTimeout)
	defer cancel()
	switch c.workload {
	case WorkloadRegister:
		op.Key = c.key("r")
		switch r := c.rng.IntN(10); {
		case r < 5:
			op.Kind = KindRead
		case r < 8 || c.seen[op.Key] == "":
			op.Kind, op.Value = KindWrite, value
		default:
			op.Kind, op.Old, op.Value = KindCAS, c.seen[op.Key], value
		}
		op.Start = c.now()
		c.register(octx, &op)
	case WorkloadAppend:
		op.Key = c.key("a")
		op.Kind = KindRead
		if c.rng.IntN(2) == 0 {
			op.Kind, op.Value = KindAppend, value
		}
		op.Start = c.now()
		c.append(octx, &op)
	case WorkloadBank:
		op.Start = c.now()
		c.bank(octx, &op)
	case WorkloadAPCounter, WorkloadAPSet:
		c.ap(octx, &op)
	}
	op.End = c.now()
	return op
}

func (c *client) register(ctx context.Context, op *Op) {
	var err error
	switch op.Kind {
	case KindRead:
		var resp *clientv3.GetResponse
		if resp, err = c.cli.Get(ctx, op.Key); err == nil {
			op.Out = value(resp.Kvs)
			c.seen[op.Key] = op.Out
		}
	case KindWrite:
		var resp *clientv3.PutResponse
		if resp, err = c.cli.Put(ctx, op.Key, op.Value); err == nil {
			c.seen[op.Key] = op.Value
			op.Revision = resp.Header.Revision
		}
	case KindCAS:
		var resp *clientv3.TxnResponse
		resp, err = c.cli.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(op.Key), "=", op.Old)).
			Then(clientv3.OpPut(op.Key, op.Value)).
			Commit()
		if err == nil {
			op.Succeeded = resp.Succeeded
			if resp.Succeeded {
				c.seen[op.Key] = op.Value
				op.Revision = resp.Header.Revision
			}
		}
	}
	c.finish(op, err)
}

// append reads the list and its mod revision, then writes the list plus
// one element under a Txn that compares the mod revision; a lost race
// (comparison false) certainly wrote nothing, so it retries from the
// fresh value the Txn's Else branch returns. Only the last attempt can be
// indeterminate.
func (c *client) append(ctx context.Context, op *Op) {
	c.appendGuarded(ctx, op, nil)
}

// appendGuarded is append with guard compared too (a lock's fence: see
// lock.go); a write the guard refuses, the list unchanged, fails as
// "fenced". A read op only reads.
func (c *client) appendGuarded(ctx context.Context, op *Op, guard []clientv3.Cmp) {
	resp, err := c.cli.Get(ctx, op.Key)
	if err != nil {
		// Nothing written yet: a failed read of either kind had no effect.
		op.Result, op.Err = Fail, err.Error()
		return
	}
	if op.Kind == KindRead {
		op.Result, op.Out = Ok, value(resp.Kvs)
		return
	}
	cur, rev := value(resp.Kvs), modRevision(resp.Kvs)
	for attempt := 0; attempt < maxAppendAttempts; attempt++ {
		cmps := append([]clientv3.Cmp{clientv3.Compare(clientv3.ModRevision(op.Key), "=", rev)}, guard...)
		tresp, err := c.cli.Txn(ctx).
			If(cmps...).
			Then(clientv3.OpPut(op.Key, appendElem(cur, op.Value))).
			Else(clientv3.OpGet(op.Key)).
			Commit()
		if err != nil {
			c.finish(op, err)
			return
		}
		if tresp.Succeeded {
			op.Result, op.Revision = Ok, tresp.Header.Revision
			return
		}
		if len(tresp.Responses) != 1 || tresp.Responses[0].GetResponseRange() == nil {
			op.Result, op.Err = Fail, fmt.Sprintf("txn else branch returned %d responses", len(tresp.Responses))
			return
		}
		kvs := tresp.Responses[0].GetResponseRange().Kvs
		if len(guard) > 0 && modRevision(kvs) == rev {
			// The list is as read: the guard refused the write.
			op.Result, op.Err = Fail, "fenced: the lock is no longer held"
			return
		}
		cur, rev = value(kvs), modRevision(kvs)
	}
	op.Result, op.Err = Fail, fmt.Sprintf("lost the mod-revision race %d times", maxAppendAttempts)
}

// finish sets op's result from err. Reads that fail had no effect.
// Writes are conservative: any error but a validation error
// (InvalidArgument) may have been applied, so it is info.
func (c *client) finish(op *Op, err error) {
	switch {
	case err == nil:
		op.Result = Ok
	case op.Kind == KindRead || invalidArgument(err):
		op.Result, op.Err = Fail, err.Error()
	default:
		op.Result, op.Err = Info, err.Error()
	}
}

func invalidArgument(err error) bool { return errCode(err) == codes.InvalidArgument }

// errCode is the gRPC code of a client error, whether clientv3 turned it
// into an etcd error or left it a status.
func errCode(err error) codes.Code {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code()
	}
	return status.Code(err)
}

type mvccKV = mvccpb.KeyValue

func value(kvs []*mvccKV) string {
	if len(kvs) == 0 {
		return ""
	}
	return string(kvs[0].Value)
}

func modRevision(kvs []*mvccKV) int64 {
	if len(kvs) == 0 {
		return 0
	}
	return kvs[0].ModRevision
}
