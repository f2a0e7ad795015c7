package compat

import (
	"flag"
	"testing"
)

var showRuns = flag.Bool("compat.show", false, "log every step's normalised result on both systems")

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

func TestSmoke(t *testing.T) {
	runCases(t, []tcase{
		{name: "put-get", steps: steps(
			put("a", "1").as("a1"),
			get("a"),
			put("a", "2", withPrevKV),
			get("a", withRev(at("a1"))),
			del("a", withPrevKV),
			get("a"),
		)},
	})
}
