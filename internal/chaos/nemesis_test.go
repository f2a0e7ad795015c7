package chaos

import (
	"reflect"
	"testing"
	"time"
)

func TestParseNemesis(t *testing.T) {
	got, err := ParseNemesis("partition-halves, kill")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{FaultKillNode, FaultKillLeader, FaultPartitionHalves}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	if got, err := ParseNemesis("none"); err != nil || len(got) != 0 {
		t.Fatalf("none: %v %v", got, err)
	}
	if got, _ := ParseNemesis("all"); len(got) != 12 {
		t.Fatalf("all: %v", got)
	}
	if got, err := ParseNemesis("split"); err != nil || !reflect.DeepEqual(got, []string{FaultSplitRange, FaultMergeRange}) {
		t.Fatalf("split: %v %v", got, err)
	}
	if _, err := ParseNemesis("kill,flood"); err == nil {
		t.Fatal("unknown fault accepted")
	}
}

func TestScheduleIsSeeded(t *testing.T) {
	kinds := faultGroups["all"]
	a := Schedule(7, kinds, 10*time.Minute, 5*time.Second)
	b := Schedule(7, kinds, 10*time.Minute, 5*time.Second)
	c := Schedule(8, kinds, 10*time.Minute, 5*time.Second)
	if !reflect.DeepEqual(a, b) {
		t.Fatal("same seed, different schedules")
	}
	if reflect.DeepEqual(a, c) {
		t.Fatal("different seeds, same schedule")
	}
	if len(a) < 40 {
		t.Fatalf("only %d faults in 10 minutes", len(a))
	}
	end := time.Duration(0)
	for _, f := range a {
		if f.At < 5*time.Second || f.At < end || f.Hold < 2500*time.Millisecond || f.Hold > 7500*time.Millisecond {
			t.Fatalf("fault %+v after one ending at %v", f, end)
		}
		end = f.At + f.Hold
	}
	if end > 10*time.Minute-5*time.Second {
		t.Fatalf("last fault ends at %v: the last interval must be quiet", end)
	}
	if s := Schedule(7, nil, time.Minute, time.Second); s != nil {
		t.Fatalf("no kinds, schedule %v", s)
	}
}

func TestSides(t *testing.T) {
	for _, n := range []int{3, 5} {
		for pick := uint64(0); pick < 20; pick++ {
			for _, kind := range []string{FaultPartitionNode, FaultPartitionLeader, FaultPartitionHalves, FaultPartitionBridge} {
				sides, bridge := Sides(kind, pick, n, 1)
				seen := map[int]bool{}
				count := 0
				for _, s := range sides {
					for _, x := range s {
						seen[x] = true
						count++
					}
				}
				if bridge >= 0 {
					seen[bridge] = true
					count++
				}
				if len(sides) != 2 || len(seen) != n || count != n {
					t.Fatalf("%s n=%d pick=%d: sides %v bridge %d", kind, n, pick, sides, bridge)
				}
				// No side holds a majority alone except the majority side of
				// a halves or single-node partition.
				if kind == FaultPartitionLeader && !reflect.DeepEqual(sides[0], []int{1}) {
					t.Fatalf("leader partition isolates %v, want [1]", sides[0])
				}
				if kind == FaultPartitionBridge && (len(sides[0]) == 0 || len(sides[1]) == 0) {
					t.Fatalf("bridge with an empty side: %v", sides)
				}
			}
		}
	}
}

func TestAvailability(t *testing.T) {
	all := []bool{true, true, true}
	tl := []segment{{from: 0, healthy: all}, {from: 100, healthy: []bool{false, true, true}}, {from: 200, healthy: []bool{false, false, false}}, {from: 300, healthy: all}}
	ops := []Op{
		{Node: 0, Start: 10, End: 20, Result: Ok},     // healthy, inside
		{Node: 0, Start: 110, End: 120, Result: Fail}, // majority exists, node outside
		{Node: 1, Start: 110, End: 120, Result: Ok},   // healthy, inside
		{Node: 1, Start: 150, End: 250, Result: Info}, // spans the no-majority stretch
		{Node: 2, Start: 310, End: 320, Result: Info}, // healthy, inside, not ok
	}
	maj, majOK, in, inOK := availability(ops, tl)
	if maj != 4 || majOK != 2 || in != 3 || inOK != 2 {
		t.Fatalf("got %d/%d %d/%d, want 2/4 2/3", majOK, maj, inOK, in)
	}
}

func TestConfigValidate(t *testing.T) {
	c := DefaultConfig()
	c.Binary, c.OutDir = "concord", "out"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, mut := range []func(*Config){
		func(c *Config) { c.Nodes = 2 },
		func(c *Config) { c.Workloads = []string{"ledger"} }, // no such workload
		func(c *Config) { c.Faults = []string{"kill"} },      // a group, not a fault
		func(c *Config) { c.Interval = 0 },
		func(c *Config) { c.Binary = "" },
		func(c *Config) { c.ReplicationFactor = 9 },
	} {
		bad := c
		mut(&bad)
		if bad.Validate() == nil {
			t.Fatalf("accepted %+v", bad)
		}
	}
}

func TestClockJumpIsBoundedAndSeeded(t *testing.T) {
	sawBack, sawForward := false, false
	for pick := uint64(0); pick < 200; pick++ {
		d := ClockJump(pick)
		if d != ClockJump(pick) {
			t.Fatalf("pick %d: not deterministic", pick)
		}
		abs := d
		if abs < 0 {
			abs, sawBack = -abs, true
		} else {
			sawForward = true
		}
		if abs < time.Second || abs > maxClockJump {
			t.Fatalf("pick %d: jump %v out of bounds", pick, d)
		}
	}
	if !sawBack || !sawForward {
		t.Fatal("jumps go only one way")
	}
	if got, _ := ParseNemesis("clock"); len(got) != 2 || !hasClockFaults(got) {
		t.Fatalf("clock group: %v", got)
	}
}
