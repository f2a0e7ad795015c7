package chaos

import (
	"strings"
	"testing"
	"time"
)

func TestCheckAP(t *testing.T) {
	ops := []Op{
		{Workload: WorkloadAPCounter, Kind: KindIncr, Key: "c", Value: "3", Result: Ok},
		{Workload: WorkloadAPCounter, Kind: KindIncr, Key: "c", Value: "2", Result: Ok},
		{Workload: WorkloadAPCounter, Kind: KindIncr, Key: "c", Value: "4", Result: Info},
		{Workload: WorkloadAPCounter, Kind: KindIncr, Key: "c", Value: "5", Result: Fail},
		{Workload: WorkloadAPSet, Kind: KindSAdd, Key: "s", Value: "c1.1", Result: Ok},
		{Workload: WorkloadAPSet, Kind: KindSAdd, Key: "s", Value: "c1.2", Result: Ok},
		{Workload: WorkloadAPSet, Kind: KindSAdd, Key: "s", Value: "c1.3", Result: Info},
		{Workload: WorkloadAPSet, Kind: KindSAdd, Key: "s", Value: "c1.4", Result: Fail},
		{Workload: WorkloadAPSet, Kind: KindSRem, Key: "s", Value: "c1.2", Result: Ok, Out: "1"},
		{Workload: WorkloadAPSet, Kind: KindSAdd, Key: "s", Value: "c1.5", Result: Ok},
		{Workload: WorkloadAPSet, Kind: KindSRem, Key: "s", Value: "c1.5", Result: Info},
	}
	// replicas: three preferred nodes holding v, and a fourth node, not
	// preferred, holding other (never checked).
	replicas := func(typ, v, other string) []APReplica {
		return []APReplica{
			{Node: 0, Preferred: true, Type: typ, Value: v},
			{Node: 1, Preferred: true, Type: typ, Value: v},
			{Node: 2, Preferred: true, Type: typ, Value: v},
			{Node: 3, Type: typ, Value: other},
		}
	}
	for _, tc := range []struct {
		name           string
		counter, set   string
		replicas       func(k APKey) []APReplica
		want           string // a violation must contain it; "" for none
		wantConverged  int
		notConvergedOn string
	}{
		{name: "acked only", counter: "5", set: "c1.1"},
		{name: "every maybe applied", counter: "9", set: "c1.1 c1.3 c1.5"},
		{name: "increment lost", counter: "4", set: "c1.1", want: "holds 4, below the sum 5 of the 2 acknowledged increments: 1 LOST"},
		{name: "increment from nowhere", counter: "10", set: "c1.1", want: "above the sum 9"},
		{name: "add lost", counter: "5", set: "c1.3", want: "LOST 1 acknowledged adds: c1.1"},
		{name: "removed came back", counter: "5", set: "c1.1 c1.2", want: "whose removal was acknowledged: c1.2"},
		{name: "never added", counter: "5", set: "c1.1 c1.4", want: "never added: c1.4"},
		{name: "not converged", counter: "5", set: "c1.1", notConvergedOn: "s", want: "did not converge"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keys := []APKey{
				{Workload: WorkloadAPCounter, Key: "c", Replicas: replicas("string", tc.counter, "1")},
				{Workload: WorkloadAPSet, Key: "s", Replicas: replicas("set", tc.set, "c9.9")},
			}
			for i := range keys {
				keys[i].Converged = converged(keys[i].Replicas)
				if !keys[i].Converged {
					t.Fatalf("%s: replicas %v do not converge", keys[i].Key, keys[i].Replicas)
				}
				if keys[i].Key == tc.notConvergedOn {
					keys[i].Replicas[1].Value = "c1.1 c1.5"
					keys[i].Converged = converged(keys[i].Replicas)
				}
			}
			rep := CheckAP(ops, keys, 7*time.Second, 10)
			got := strings.Join(rep.Violations, "\n")
			if tc.want == "" {
				if rep.Found != 0 || rep.Converged != 2 || rep.Increments != 2 || rep.Adds != 3 {
					t.Fatalf("report %+v, want no violation, 2 converged, 2 increments, 3 adds", rep)
				}
				return
			}
			if !strings.Contains(got, tc.want) {
				t.Fatalf("violations %q, want one with %q", got, tc.want)
			}
		})
	}
}

func TestConverged(t *testing.T) {
	ok := []APReplica{{Preferred: true, Type: "set", Value: "a"}, {Preferred: true, Type: "set", Value: "a"}, {Type: "none"}}
	if !converged(ok) {
		t.Fatal("agreeing preferred replicas, a stale other one: not converged")
	}
	for name, rs := range map[string][]APReplica{
		"differ":       {ok[0], {Preferred: true, Type: "set", Value: "a b"}},
		"hint left":    {ok[0], ok[1], {Type: "none", Hints: 1}},
		"no answer":    {ok[0], ok[1], {Err: "timeout"}},
		"no preferred": {{Type: "none"}},
	} {
		if converged(rs) {
			t.Errorf("%s: converged", name)
		}
	}
}

func TestParseReplica(t *testing.T) {
	r, err := parseReplica([]any{"node", int64(3), "preferred", int64(1), "type", "set", "value", []any{"b", "a"}, "hints", int64(2)}, nil)
	if err != nil || !r.Preferred || r.Type != "set" || r.Value != "a b" || r.Hints != 2 {
		t.Fatalf("parseReplica = %+v, %v", r, err)
	}
	if r, err = parseReplica([]any{"type", "none", "value", nil}, nil); err != nil || r.Type != "none" || r.Value != "" {
		t.Fatalf("parseReplica of none = %+v, %v", r, err)
	}
}
