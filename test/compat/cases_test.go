package compat

import (
	"flag"
	"testing"
)

var showRuns = flag.Bool("compat.show", false, "log every step's normalised result on both systems")

var splitGroups = flag.Bool("compat.split", true, "split Concord's range between the keys of every read group's fixture, so that its reads cross ranges")

var splitWrites = flag.Bool("compat.split-writes", true, "split Concord's range between the keys of every write case and random sequence, so that its Txns and DeleteRanges cross ranges")

// writeSplitKeys are where a write case's or random sequence's keys are
// split (under its prefix): between the keys the cases use most (a, aa,
// ab | b | c, d, e | k | n | x, y, z) and past them.
var writeSplitKeys = []string{"b", "c", "k", "n", "x", "zz"}

// groupSplitKeys are where a read group's keys are split (under the run's
// prefix): between every two keys of fixture() and past the last.
var groupSplitKeys = []string{"aa", "ab", "b", "c", "d", "e", "f"}

// tcase is one table-driven case: steps run on a fresh prefix.
type tcase struct {
	name  string
	steps []step
	// differs, when set, says why Concord is known to differ here (and the
	// README's table lists it): the diffs are logged, not failed, and the
	// case fails if they disappear, so the table gets updated.
	differs string
}

func runCases(t *testing.T, cases []tcase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			diffs := runBoth(tc.steps)
			report(t, tc.differs, diffs)
		})
	}
}

func report(t *testing.T, differs string, diffs []diff) {
	t.Helper()
	switch {
	case differs != "" && len(diffs) == 0:
		t.Errorf("known difference %q no longer shows: update the case and the README table", differs)
	case differs != "":
		for _, d := range diffs {
			t.Logf("known difference (%s):\n%v", differs, d)
		}
	default:
		for _, d := range diffs {
			t.Errorf("differs from etcd:\n%v", d)
		}
	}
}

// group is a set of read-only cases over one setup: the setup runs once
// per system and every case continues from it (on a copy of the run's
// state), which keeps hundreds of read cases fast. A case in a group must
// not write: later cases would see it.
type group struct {
	setup []step
	cases []tcase
	// splits are the keys Concord's range is split at after setup (with
	// -compat.split); nil means groupSplitKeys.
	splits []string
}

func runGroup(t *testing.T, g group) {
	t.Helper()
	prefix := newPrefix()
	e, c := newExec(etcdSys, prefix), newExec(concordSys, prefix)
	for _, s := range g.setup {
		e.run(s)
		c.run(s)
	}
	if diffs := compareRuns(g.setup, e, c); len(diffs) > 0 {
		report(t, "", diffs)
		t.FailNow()
	}
	if *splitGroups {
		// Every read case of the group now crosses ranges on Concord.
		splits := g.splits
		if splits == nil {
			splits = groupSplitKeys
		}
		for _, k := range splits {
			splitConcord(t, prefix+k)
		}
	}
	for _, tc := range g.cases {
		t.Run(tc.name, func(t *testing.T) {
			e, c := e.clone(), c.clone()
			for _, s := range tc.steps {
				e.run(s)
				c.run(s)
			}
			all := append(append([]step(nil), g.setup...), tc.steps...)
			var diffs []diff
			for _, d := range compareRuns(all, e, c) {
				if d.step >= len(g.setup) {
					diffs = append(diffs, d)
				}
			}
			report(t, tc.differs, diffs)
		})
	}
}
