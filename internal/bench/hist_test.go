package bench

import (
	"math"
	"testing"
	"time"
)

func TestHistogramPercentiles(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 1000; i++ {
		h.Record(time.Duration(i) * time.Millisecond)
	}
	s := h.Summary()
	near := func(name string, got, want float64) {
		t.Helper()
		if math.Abs(got-want) > want*0.002 {
			t.Errorf("%s = %v, want %v ± 0.2%%", name, got, want)
		}
	}
	if s.Count != 1000 {
		t.Fatalf("count %d", s.Count)
	}
	near("avg", s.AvgMs, 500.5)
	near("p50", s.P50Ms, 500)
	near("p90", s.P90Ms, 900)
	near("p99", s.P99Ms, 990)
	near("p99.9", s.P999Ms, 999)
	if s.MaxMs != 1000 {
		t.Errorf("max %v, want exactly 1000", s.MaxMs)
	}
}

func TestHistogramMergeAndClamp(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	a.Record(100 * time.Microsecond)
	b.Record(2 * maxLatency) // clamped in the buckets, exact in max
	b.Record(0)              // counted as 1 µs
	a.Merge(b)
	s := a.Summary()
	if s.Count != 3 {
		t.Fatalf("count %d, want 3", s.Count)
	}
	if s.MaxMs != float64((2 * maxLatency).Milliseconds()) {
		t.Fatalf("max %v", s.MaxMs)
	}
	if (&Histogram{h: NewHistogram().h}).Summary() != (Latency{}) {
		t.Fatal("empty histogram has a non-zero summary")
	}
}

// A percentile never reads above the largest latency recorded, though the
// histogram's buckets round up (149.834 ms lands in a bucket ending at
// 149.887 ms).
func TestPercentilesNeverExceedTheMax(t *testing.T) {
	h := NewHistogram()
	h.Record(149834 * time.Microsecond)
	l := h.Summary()
	if !(l.P50Ms <= l.P99Ms && l.P99Ms <= l.P999Ms && l.P999Ms <= l.MaxMs) {
		t.Fatalf("percentiles above the max: %+v", l)
	}
}
