package replica

import (
	"testing"
	"time"
)

func TestRateCounterCountsTheLastSeconds(t *testing.T) {
	var c rateCounter
	t0 := time.Unix(1000, 0)
	for s := 0; s < 20; s++ {
		for i := 0; i < 50; i++ {
			c.add(t0.Add(time.Duration(s) * time.Second))
		}
	}
	// 50 a second over the last 10 full seconds; the current second is
	// not counted yet.
	if got := c.rate(t0.Add(19*time.Second + 500*time.Millisecond)); got != 45 {
		t.Fatalf("rate = %v, want 45 (9 full seconds of 50 in a 10 s window)", got)
	}
	if got := c.rate(t0.Add(20 * time.Second)); got != 50 {
		t.Fatalf("rate after the last second = %v, want 50", got)
	}
	if got := c.rate(t0.Add(60 * time.Second)); got != 0 {
		t.Fatalf("rate long after = %v, want 0", got)
	}
}
