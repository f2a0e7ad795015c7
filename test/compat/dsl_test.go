package compat

import (
	"context"
	"fmt"
	"strings"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// The little language the cases are written in. Keys are relative to the
// run's prefix; revisions are references resolved per system (rev).

// rev names a revision in a way that means the same on both systems.
type rev struct {
	name string
	at   func(x *exec) int64
}

// at is the header revision of the step labelled label: for a write, the
// revision it created.
func at(label string) rev {
	return rev{name: "rev(" + label + ")", at: func(x *exec) int64 {
		i, ok := x.labels[label]
		if !ok {
			panic("compat: no step labelled " + label)
		}
		return x.revs[i]
	}}
}

// atStep is the header revision of step i (0 if it failed).
func atStep(i int) rev {
	return rev{name: fmt.Sprintf("rev(step %d)", i), at: func(x *exec) int64 { return x.revs[i] }}
}

// future is far above the newest revision the run has seen: a revision no
// write will reach for a long time, on either system.
var future = rev{name: "future", at: func(x *exec) int64 { return x.newest + 1<<40 }}

// next is one above the newest revision the run has seen: the next
// revision, a future one on both systems until someone writes.
var next = rev{name: "newest+1", at: func(x *exec) int64 { return x.newest + 1 }}

// lit is a literal revision (0, negative, ...): the same number on both.
func lit(n int64) rev {
	return rev{name: fmt.Sprint(n), at: func(*exec) int64 { return n }}
}

// opt is a clientv3.OpOption that may depend on the run.
type opt struct {
	name string
	f    func(x *exec) clientv3.OpOption
}

func plain(name string, o clientv3.OpOption) opt {
	return opt{name: name, f: func(*exec) clientv3.OpOption { return o }}
}

var (
	withPrefix      = plain("prefix", clientv3.WithPrefix())
	withFromKey     = plain("from-key", clientv3.WithFromKey())
	withKeysOnly    = plain("keys-only", clientv3.WithKeysOnly())
	withCountOnly   = plain("count-only", clientv3.WithCountOnly())
	withPrevKV      = plain("prev-kv", clientv3.WithPrevKV())
	withIgnoreValue = plain("ignore-value", clientv3.WithIgnoreValue())
	withIgnoreLease = plain("ignore-lease", clientv3.WithIgnoreLease())
)

func withRange(end string) opt {
	return opt{name: fmt.Sprintf("range-end=%q", end), f: func(x *exec) clientv3.OpOption { return clientv3.WithRange(x.k(end)) }}
}

func withLimit(n int64) opt { return plain(fmt.Sprintf("limit=%d", n), clientv3.WithLimit(n)) }

func withSort(t clientv3.SortTarget, o clientv3.SortOrder) opt {
	return plain(fmt.Sprintf("sort=%v/%v", pb.RangeRequest_SortTarget(t), pb.RangeRequest_SortOrder(o)), clientv3.WithSort(t, o))
}

func withLease(id int64) opt {
	return plain(fmt.Sprintf("lease=%d", id), clientv3.WithLease(clientv3.LeaseID(id)))
}

func revOpt(name string, r rev, o func(int64) clientv3.OpOption) opt {
	return opt{name: name + "=" + r.name, f: func(x *exec) clientv3.OpOption { return o(r.at(x)) }}
}

func withRev(r rev) opt       { return revOpt("rev", r, clientv3.WithRev) }
func withMinMod(r rev) opt    { return revOpt("min-mod", r, clientv3.WithMinModRev) }
func withMaxMod(r rev) opt    { return revOpt("max-mod", r, clientv3.WithMaxModRev) }
func withMinCreate(r rev) opt { return revOpt("min-create", r, clientv3.WithMinCreateRev) }
func withMaxCreate(r rev) opt { return revOpt("max-create", r, clientv3.WithMaxCreateRev) }

func optNames(opts []opt) string {
	var b strings.Builder
	for _, o := range opts {
		b.WriteString(" ")
		b.WriteString(o.name)
	}
	return b.String()
}

func buildOpts(x *exec, opts []opt) []clientv3.OpOption {
	out := make([]clientv3.OpOption, len(opts))
	for i, o := range opts {
		out[i] = o.f(x)
	}
	return out
}

func put(key, val string, opts ...opt) step {
	return step{
		desc:   fmt.Sprintf("put %q=%s%s", key, short(val), optNames(opts)),
		writes: true,
		op:     func(x *exec) clientv3.Op { return clientv3.OpPut(x.k(key), val, buildOpts(x, opts)...) },
	}
}

// short quotes v, or only its length if it is long.
func short(v string) string {
	if len(v) > 32 {
		return fmt.Sprintf("<%d bytes>", len(v))
	}
	return fmt.Sprintf("%q", v)
}

func get(key string, opts ...opt) step {
	return step{
		desc: fmt.Sprintf("get %q%s", key, optNames(opts)),
		op:   func(x *exec) clientv3.Op { return clientv3.OpGet(x.k(key), buildOpts(x, opts)...) },
	}
}

func del(key string, opts ...opt) step {
	return step{
		desc:   fmt.Sprintf("del %q%s", key, optNames(opts)),
		writes: true,
		op:     func(x *exec) clientv3.Op { return clientv3.OpDelete(x.k(key), buildOpts(x, opts)...) },
	}
}

// cmp is a clientv3.Cmp that may depend on the run.
type cmp struct {
	name string
	f    func(x *exec) clientv3.Cmp
}

func cmpValue(key, result, v string) cmp {
	return cmp{name: fmt.Sprintf("value(%q)%s%q", key, result, v), f: func(x *exec) clientv3.Cmp {
		return clientv3.Compare(clientv3.Value(x.k(key)), result, v)
	}}
}

func cmpVersion(key, result string, v int64) cmp {
	return cmp{name: fmt.Sprintf("version(%q)%s%d", key, result, v), f: func(x *exec) clientv3.Cmp {
		return clientv3.Compare(clientv3.Version(x.k(key)), result, v)
	}}
}

func cmpCreate(key, result string, r rev) cmp {
	return cmp{name: fmt.Sprintf("create(%q)%s%s", key, result, r.name), f: func(x *exec) clientv3.Cmp {
		return clientv3.Compare(clientv3.CreateRevision(x.k(key)), result, r.at(x))
	}}
}

func cmpMod(key, result string, r rev) cmp {
	return cmp{name: fmt.Sprintf("mod(%q)%s%s", key, result, r.name), f: func(x *exec) clientv3.Cmp {
		return clientv3.Compare(clientv3.ModRevision(x.k(key)), result, r.at(x))
	}}
}

func cmpLease(key, result string, v int64) cmp {
	return cmp{name: fmt.Sprintf("lease(%q)%s%d", key, result, v), f: func(x *exec) clientv3.Cmp {
		return clientv3.Compare(clientv3.LeaseValue(x.k(key)), result, v)
	}}
}

// to makes the compare cover [key, end).
func (c cmp) to(end string) cmp {
	f := c.f
	return cmp{name: fmt.Sprintf("%s..%q", c.name, end), f: func(x *exec) clientv3.Cmp { return f(x).WithRange(x.k(end)) }}
}

// prefixed makes the compare cover every key with its key as prefix.
func (c cmp) prefixed() cmp {
	f := c.f
	return cmp{name: c.name + "*", f: func(x *exec) clientv3.Cmp { return f(x).WithPrefix() }}
}

// fromKey makes the compare cover every key from its key on.
func (c cmp) fromKey() cmp {
	f := c.f
	return cmp{name: c.name + "..", f: func(x *exec) clientv3.Cmp { return f(x).WithRange("\x00") }}
}

// txn is If(cmps...).Then(then...).Else(els...); the branches are steps
// built with put, get, del or txn.
func txn(cmps []cmp, then, els []step) step {
	return step{
		desc:   txnDesc(cmps, then, els),
		writes: writes(then) || writes(els),
		op:     func(x *exec) clientv3.Op { return txnOp(x, cmps, then, els) },
	}
}

func txnOp(x *exec, cmps []cmp, then, els []step) clientv3.Op {
	cs := make([]clientv3.Cmp, len(cmps))
	for i, c := range cmps {
		cs[i] = c.f(x)
	}
	ops := func(steps []step) []clientv3.Op {
		out := make([]clientv3.Op, len(steps))
		for i, s := range steps {
			out[i] = s.op(x)
		}
		return out
	}
	return clientv3.OpTxn(cs, ops(then), ops(els))
}

func txnDesc(cmps []cmp, then, els []step) string {
	var b strings.Builder
	b.WriteString("txn if(")
	for i, c := range cmps {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(c.name)
	}
	b.WriteString(") then(")
	for i, s := range then {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s.desc)
	}
	b.WriteString(") else(")
	for i, s := range els {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s.desc)
	}
	b.WriteString(")")
	return b.String()
}

func ifs(c ...cmp) []cmp     { return c }
func ops(s ...step) []step   { return s }
func steps(s ...step) []step { return s }

// rawRange sends a RangeRequest clientv3 cannot build; fill gets the
// request with its key set.
func rawRange(desc, key string, fill func(x *exec, r *pb.RangeRequest)) step {
	return step{desc: "raw range " + desc, raw: func(ctx context.Context, x *exec) (any, error) {
		r := &pb.RangeRequest{Key: []byte(x.k(key))}
		fill(x, r)
		resp, err := x.sys.kv.Range(ctx, r)
		if resp == nil {
			return nil, err
		}
		return resp, err
	}}
}

// rawTxn sends a TxnRequest clientv3 cannot build.
func rawTxn(desc string, build func(x *exec) *pb.TxnRequest) step {
	return step{desc: "raw txn " + desc, raw: func(ctx context.Context, x *exec) (any, error) {
		resp, err := x.sys.kv.Txn(ctx, build(x))
		if resp == nil {
			return nil, err
		}
		return resp, err
	}}
}

// rawPut sends a PutRequest clientv3 cannot build.
func rawPut(desc string, build func(x *exec) *pb.PutRequest) step {
	return step{desc: "raw put " + desc, raw: func(ctx context.Context, x *exec) (any, error) {
		resp, err := x.sys.kv.Put(ctx, build(x))
		if resp == nil {
			return nil, err
		}
		return resp, err
	}}
}

// streamResult is what a RangeStream answered: its chunks in order.
type streamResult struct{ chunks []*pb.RangeResponse }

// stream reads key with etcd 3.7's RangeStream (clientv3's GetStream) and
// records every chunk.
func stream(key string, o ...opt) step {
	names := ""
	for _, x := range o {
		names += " " + x.name
	}
	return step{desc: fmt.Sprintf("stream %q%s", key, names), raw: func(ctx context.Context, x *exec) (any, error) {
		var opts []clientv3.OpOption
		for _, oo := range o {
			opts = append(opts, oo.f(x))
		}
		ch, err := x.sys.cli.GetStream(ctx, x.k(key), opts...)
		if err != nil {
			return nil, err
		}
		out := streamResult{}
		for c := range ch {
			if err := c.Err(); err != nil {
				return nil, err
			}
			if c.RangeResponse != nil {
				out.chunks = append(out.chunks, c.RangeResponse)
			}
		}
		return out, nil
	}}
}
