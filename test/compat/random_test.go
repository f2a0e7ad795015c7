package compat

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

var (
	randomOps  = flag.Int("compat.ops", 200, "operations per seed of TestRandom")
	randomSeed = flag.Int64("compat.seed", 0, "run TestRandom with this seed only (-1: a seed from the clock); 0 runs the default seeds")
)

// defaultSeeds keep `go test` reproducible; -compat.seed explores others.
var defaultSeeds = []int64{1, 2, 3}

// maxReportedDiffs bounds the diffs printed for one seed: after the first,
// the two keyspaces usually differ and every later step does too.
const maxReportedDiffs = 5

// TestRandom runs seeded random sequences of operations on both systems and
// compares them step by step. On a failure it prints the seed; rerun with
//
//	go test ./test/compat -run TestRandom -compat.seed=SEED -compat.ops=N
func TestRandom(t *testing.T) {
	seeds := defaultSeeds
	switch {
	case *randomSeed == -1:
		seeds = []int64{time.Now().UnixNano()}
	case *randomSeed != 0:
		seeds = []int64{*randomSeed}
	}
	for _, seed := range seeds {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			g := &gen{rng: rand.New(rand.NewPCG(uint64(seed), 0))}
			seq := make([]step, *randomOps)
			for i := range seq {
				g.step = i
				seq[i] = g.op(0)
			}
			diffs := runBoth(seq)
			if len(diffs) == 0 {
				return
			}
			var b strings.Builder
			for i, d := range diffs {
				if i == maxReportedDiffs {
					fmt.Fprintf(&b, "... and %d more steps differ\n", len(diffs)-i)
					break
				}
				fmt.Fprintf(&b, "%v\n", d)
			}
			t.Errorf("seed %d: %d of %d steps differ from etcd (rerun: go test ./test/compat -run TestRandom -compat.seed=%d -compat.ops=%d):\n%s",
				seed, len(diffs), len(seq), seed, *randomOps, b.String())
		})
	}
}

// gen builds random steps. It never looks at results, so the same seed
// gives the same sequence on both systems.
type gen struct {
	rng  *rand.Rand
	step int // index of the step being generated
}

// Few keys, so operations collide; "a" is a prefix of two of them.
var (
	randomKeys   = []string{"a", "aa", "ab", "b", "c", "d"}
	randomValues = []string{"", "0", "1", "2", "10"}
	cmpResults   = []string{"=", "!=", ">", "<"}
)

func (g *gen) pct(p int) bool    { return g.rng.IntN(100) < p }
func (g *gen) key() string       { return randomKeys[g.rng.IntN(len(randomKeys))] }
func (g *gen) value() string     { return randomValues[g.rng.IntN(len(randomValues))] }
func (g *gen) result() string    { return cmpResults[g.rng.IntN(len(cmpResults))] }
func (g *gen) small(n int) int64 { return int64(g.rng.IntN(n)) }

// rev refers to an earlier step's revision (or none, or far future).
func (g *gen) rev() rev {
	switch {
	case g.step == 0 || g.pct(5):
		return lit(0)
	case g.pct(3):
		return future
	}
	return atStep(g.rng.IntN(g.step))
}

// keys picks the key part of a read or delete: a key, a prefix, a range
// (sometimes empty or inverted) or from a key on.
func (g *gen) keys() (string, []opt) {
	k := g.key()
	switch g.rng.IntN(6) {
	case 0:
		return k, []opt{withPrefix}
	case 1:
		return k, []opt{withRange(g.key())}
	case 2:
		return k, []opt{withFromKey}
	}
	return k, nil
}

func (g *gen) op(depth int) step {
	switch r := g.rng.IntN(100); {
	case r < 35:
		return g.put(depth > 0)
	case r < 60:
		return g.get()
	case r < 78 || depth >= 2:
		return g.del()
	default:
		return g.txn(depth)
	}
}

// put builds a put. In a txn it never ignores the value or lease: etcd
// v3.7.3 checks those against the state before the txn, so after a from-key
// delete of the key in the same txn it panics in apply and the whole server
// dies (Concord answers "key not found"); TestWrite and TestTxnWrites cover
// the options in the cases etcd survives.
func (g *gen) put(inTxn bool) step {
	var o []opt
	v := g.value()
	if g.pct(40) {
		o = append(o, withPrevKV)
	}
	if !inTxn && g.pct(6) {
		o = append(o, withIgnoreValue)
		if g.pct(80) {
			v = ""
		}
	}
	if !inTxn && g.pct(4) {
		o = append(o, withIgnoreLease)
	}
	if g.pct(2) {
		o = append(o, withLease(1+g.small(1000)))
	}
	return put(g.key(), v, o...)
}

var (
	sortTargets = []clientv3.SortTarget{clientv3.SortByKey, clientv3.SortByVersion, clientv3.SortByCreateRevision, clientv3.SortByModRevision, clientv3.SortByValue}
	sortOrders  = []clientv3.SortOrder{clientv3.SortNone, clientv3.SortAscend, clientv3.SortDescend}
)

func (g *gen) get() step {
	k, o := g.keys()
	if g.pct(25) {
		o = append(o, withLimit(1+g.small(3)))
	}
	if g.pct(25) {
		o = append(o, withSort(sortTargets[g.rng.IntN(len(sortTargets))], sortOrders[g.rng.IntN(len(sortOrders))]))
	}
	if g.pct(10) {
		o = append(o, withKeysOnly)
	}
	if g.pct(8) {
		o = append(o, withCountOnly)
	}
	if g.pct(20) {
		o = append(o, withRev(g.rev()))
	}
	for _, f := range []func(rev) opt{withMinMod, withMaxMod, withMinCreate, withMaxCreate} {
		if g.pct(8) {
			o = append(o, f(g.rev()))
		}
	}
	return get(k, o...)
}

func (g *gen) del() step {
	k, o := g.keys()
	if g.pct(50) {
		o = append(o, withPrevKV)
	}
	return del(k, o...)
}

func (g *gen) cmp() cmp {
	k := g.key()
	var c cmp
	switch g.rng.IntN(5) {
	case 0:
		c = cmpValue(k, g.result(), g.value())
	case 1:
		c = cmpVersion(k, g.result(), g.small(4))
	case 2:
		c = cmpCreate(k, g.result(), g.rev())
	case 3:
		c = cmpMod(k, g.result(), g.rev())
	default:
		c = cmpLease(k, g.result(), g.small(2))
	}
	switch g.rng.IntN(8) {
	case 0:
		c = c.prefixed()
	case 1:
		c = c.to(g.key())
	case 2:
		c = c.fromKey()
	}
	return c
}

// txnMarker is the key a writing txn puts first in both branches; see txn.
const txnMarker = "~txn"

func (g *gen) txn(depth int) step {
	cmps := make([]cmp, g.rng.IntN(4))
	for i := range cmps {
		cmps[i] = g.cmp()
	}
	branch := func() []step {
		ops := make([]step, g.rng.IntN(4))
		for i := range ops {
			ops[i] = g.op(depth + 1)
		}
		return ops
	}
	then, els := branch(), branch()
	if depth == 0 && (writes(then) || writes(els)) {
		// Inside a writing txn etcd gives ops before its first write the
		// header revision from before the txn, and Concord does not (a
		// known difference, TestTxnWrites/read-then-write); a first write
		// keeps the random test comparing everything else.
		first := put(txnMarker, g.value())
		then = append([]step{first}, then...)
		els = append([]step{first}, els...)
	}
	return txn(cmps, then, els)
}

// writes reports whether any op of ops, nested txns included, writes.
func writes(ops []step) bool {
	for _, s := range ops {
		if s.writes {
			return true
		}
	}
	return false
}
