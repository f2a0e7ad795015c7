package compat

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc/status"
)

var traceSteps = flag.Bool("compat.trace", false, "print each step to stderr before it runs (to find the step that crashes a server)")

// stepTimeout bounds one client call. Nothing in a case should come near
// it: a step that takes this long is reported as the error it returns.
const stepTimeout = 15 * time.Second

// exec is one run of a sequence of steps on one system.
type exec struct {
	sys    *system
	prefix string
	// revs[i] is the header revision step i answered (0 if it failed).
	revs []int64
	// labels maps a step's label to its index.
	labels map[string]int
	// newest is the highest revision this run has observed.
	newest int64
	// results[i] is step i's outcome, revisions as answered.
	results []result
	// base is the system's revision when the run began.
	base int64
}

// newExec starts a run on s under prefix, from s's current revision.
func newExec(s *system, prefix string) *exec {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	resp, err := s.cli.Get(ctx, "\x00")
	if err != nil {
		panic(fmt.Sprintf("compat: %s: current revision: %v", s.name, err))
	}
	return &exec{sys: s, prefix: prefix, labels: map[string]int{}, base: resp.Header.Revision}
}

// clone copies the run's state, for continuing it two ways.
func (x *exec) clone() *exec {
	c := *x
	c.revs = slices.Clone(x.revs)
	c.results = slices.Clone(x.results)
	c.labels = make(map[string]int, len(x.labels))
	for k, v := range x.labels {
		c.labels[k] = v
	}
	return &c
}

// k puts a case's key under the run's prefix.
func (x *exec) k(key string) string { return x.prefix + key }

// result is a step's response (a *pb.RangeResponse, *pb.PutResponse,
// *pb.DeleteRangeResponse or *pb.TxnResponse) or error.
type result struct {
	resp any
	err  error
}

// step is one client call. Exactly one of op and raw is set.
type step struct {
	desc  string
	label string
	// writes is set on puts, deletes and txns with either in a branch.
	writes bool
	// op builds the call for a system; it may use the run's revisions.
	op func(x *exec) clientv3.Op
	// raw makes a call clientv3 cannot express, on the raw gRPC client.
	raw func(ctx context.Context, x *exec) (any, error)
}

// as labels a step, for later steps' revision references.
func (s step) as(label string) step {
	s.label = label
	return s
}

// run executes s and records its result.
func (x *exec) run(s step) {
	ctx, cancel := context.WithTimeout(context.Background(), stepTimeout)
	defer cancel()
	var res result
	if s.raw != nil {
		res.resp, res.err = s.raw(ctx, x)
	} else {
		r, err := x.sys.cli.Do(ctx, s.op(x))
		res.err = err
		if err == nil {
			switch {
			case r.Get() != nil:
				res.resp = (*pb.RangeResponse)(r.Get())
			case r.Put() != nil:
				res.resp = (*pb.PutResponse)(r.Put())
			case r.Del() != nil:
				res.resp = (*pb.DeleteRangeResponse)(r.Del())
			case r.Txn() != nil:
				res.resp = (*pb.TxnResponse)(r.Txn())
			}
		}
	}
	rev := int64(0)
	if res.err == nil {
		rev = topRevision(res.resp)
	}
	if s.label != "" {
		x.labels[s.label] = len(x.revs)
	}
	x.revs = append(x.revs, rev)
	x.newest = max(x.newest, rev)
	x.results = append(x.results, res)
}

func topRevision(resp any) int64 {
	switch r := resp.(type) {
	case *pb.RangeResponse:
		return r.GetHeader().GetRevision()
	case *pb.PutResponse:
		return r.GetHeader().GetRevision()
	case *pb.DeleteRangeResponse:
		return r.GetHeader().GetRevision()
	case *pb.TxnResponse:
		return r.GetHeader().GetRevision()
	case streamResult:
		if len(r.chunks) > 0 {
			return r.chunks[len(r.chunks)-1].GetHeader().GetRevision()
		}
	}
	return 0
}

// responseOf unwraps a txn's response op; nil for an empty one.
func responseOf(op *pb.ResponseOp) any {
	switch v := op.GetResponse().(type) {
	case *pb.ResponseOp_ResponseRange:
		return v.ResponseRange
	case *pb.ResponseOp_ResponsePut:
		return v.ResponsePut
	case *pb.ResponseOp_ResponseDeleteRange:
		return v.ResponseDeleteRange
	case *pb.ResponseOp_ResponseTxn:
		return v.ResponseTxn
	}
	return nil
}

// normalised renders every step's result with revisions counted from the
// run's base ("@3" is the third revision after the run began; "0" is none)
// and keys stripped of the run's prefix: the form in which two systems'
// runs must be equal. Both number revisions as etcd does, so the counts
// must match exactly: a write that takes no revision on etcd must take
// none on Concord.
func (x *exec) normalised() []string {
	f := formatter{prefix: x.prefix, rev: func(r int64) string {
		if r == 0 {
			return "0"
		}
		return fmt.Sprintf("@%d", r-x.base)
	}}
	out := make([]string, len(x.results))
	for i, res := range x.results {
		if res.err != nil {
			out[i] = "error " + errString(res.err)
			continue
		}
		var b strings.Builder
		f.resp(&b, res.resp)
		out[i] = b.String()
	}
	return out
}

// errString is what a client can observe of an error: its gRPC code and
// message (clientv3 turns etcd's known errors into rpctypes.EtcdError).
func errString(err error) string {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return fmt.Sprintf("%v %q", ee.Code(), ee.Error())
	}
	if s, ok := status.FromError(err); ok {
		return fmt.Sprintf("%v %q", s.Code(), s.Message())
	}
	return fmt.Sprintf("non-gRPC %q", err.Error())
}

type formatter struct {
	prefix string
	rev    func(int64) string
}

func (f formatter) key(k []byte) string {
	s := string(k)
	if rest, ok := strings.CutPrefix(s, f.prefix); ok {
		return fmt.Sprintf("%q", rest)
	}
	return fmt.Sprintf("outside-prefix:%q", s)
}

func (f formatter) kv(b *strings.Builder, kv *mvccpb.KeyValue) {
	if kv == nil {
		b.WriteString("nil")
		return
	}
	fmt.Fprintf(b, "{%s=%s create=%s mod=%s ver=%d lease=%d}", f.key(kv.GetKey()), short(string(kv.GetValue())),
		f.rev(kv.GetCreateRevision()), f.rev(kv.GetModRevision()), kv.GetVersion(), kv.GetLease())
}

func (f formatter) kvs(b *strings.Builder, kvs []*mvccpb.KeyValue) {
	b.WriteString("[")
	for i, kv := range kvs {
		if i > 0 {
			b.WriteString(" ")
		}
		f.kv(b, kv)
	}
	b.WriteString("]")
}

func (f formatter) header(b *strings.Builder, h *pb.ResponseHeader) {
	if h == nil {
		b.WriteString("header=nil")
		return
	}
	fmt.Fprintf(b, "rev=%s", f.rev(h.GetRevision()))
}

func (f formatter) resp(b *strings.Builder, resp any) {
	switch r := resp.(type) {
	case *pb.RangeResponse:
		b.WriteString("range ")
		f.header(b, r.GetHeader())
		fmt.Fprintf(b, " count=%d more=%v kvs=", r.GetCount(), r.GetMore())
		f.kvs(b, r.GetKvs())
	case *pb.PutResponse:
		b.WriteString("put ")
		f.header(b, r.GetHeader())
		b.WriteString(" prev=")
		f.kv(b, r.GetPrevKv())
	case *pb.DeleteRangeResponse:
		b.WriteString("delete ")
		f.header(b, r.GetHeader())
		fmt.Fprintf(b, " deleted=%d prevs=", r.GetDeleted())
		f.kvs(b, r.GetPrevKvs())
	case *pb.TxnResponse:
		b.WriteString("txn ")
		f.header(b, r.GetHeader())
		fmt.Fprintf(b, " succeeded=%v responses=[", r.GetSucceeded())
		for i, op := range r.GetResponses() {
			if i > 0 {
				b.WriteString("; ")
			}
			if inner := responseOf(op); inner != nil {
				f.resp(b, inner)
			} else {
				b.WriteString("empty")
			}
		}
		b.WriteString("]")
	case streamResult:
		b.WriteString("stream")
		for _, c := range r.chunks {
			b.WriteString(" [")
			if c.GetHeader() != nil {
				f.header(b, c.GetHeader())
				fmt.Fprintf(b, " count=%d more=%v ", c.GetCount(), c.GetMore())
			}
			b.WriteString("kvs=")
			f.kvs(b, c.GetKvs())
			b.WriteString("]")
		}
	case nil:
		b.WriteString("no response")
	default:
		fmt.Fprintf(b, "unexpected %T", r)
	}
}

// diff is one step whose normalised results differ.
type diff struct {
	step          int
	desc          string
	etcd, concord string
}

func (d diff) String() string {
	return fmt.Sprintf("step %d: %s\n\tetcd:    %s\n\tconcord: %s", d.step, d.desc, d.etcd, d.concord)
}

// runBoth runs steps on both systems under one fresh prefix, interleaved
// step by step, and returns the steps whose normalised results differ.
func runBoth(steps []step) []diff {
	prefix := newPrefix()
	e, c := newExec(etcdSys, prefix), newExec(concordSys, prefix)
	if *splitWrites {
		// Every multi-key case now crosses ranges on Concord: its Txns
		// and DeleteRanges are txns across ranges.
		for _, k := range writeSplitKeys {
			if err := splitConcordAt(prefix + k); err != nil {
				panic(fmt.Sprintf("compat: %v", err))
			}
		}
	}
	for i, s := range steps {
		if *traceSteps {
			fmt.Fprintf(os.Stderr, "TRACE %d %s\n", i, s.desc)
		}
		e.run(s)
		c.run(s)
	}
	return compareRuns(steps, e, c)
}

func compareRuns(steps []step, e, c *exec) []diff {
	en, cn := e.normalised(), c.normalised()
	if *showRuns {
		for i := range en {
			fmt.Printf("step %d: %s\n\tetcd:    %s\n\tconcord: %s\n", i, steps[i].desc, en[i], cn[i])
		}
	}
	var out []diff
	for i := range en {
		if en[i] != cn[i] {
			out = append(out, diff{step: i, desc: steps[i].desc, etcd: en[i], concord: cn[i]})
		}
	}
	return out
}
