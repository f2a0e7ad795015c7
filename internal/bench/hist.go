package bench

import (
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Histogram bounds: latencies are recorded in microseconds from 1 µs to
// maxLatency with 3 significant digits (0.1% error), HDR's usual setting.
const (
	maxLatency    = time.Minute
	histSigDigits = 3
)

// Histogram records op latencies. It is not safe for concurrent use: each
// worker records into its own and Run merges them.
type Histogram struct {
	h   *hdrhistogram.Histogram
	max time.Duration // exact, where HDR's Max is rounded to its bucket
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	return &Histogram{h: hdrhistogram.New(1, maxLatency.Microseconds(), histSigDigits)}
}

// Record adds one latency; values past maxLatency count as maxLatency.
func (h *Histogram) Record(d time.Duration) {
	us := max(d.Microseconds(), 1)
	_ = h.h.RecordValue(min(us, maxLatency.Microseconds())) // cannot fail within bounds
	h.max = max(h.max, d)
}

// Merge adds every value of o into h.
func (h *Histogram) Merge(o *Histogram) {
	h.h.Merge(o.h)
	h.max = max(h.max, o.max)
}

// Count is the number of latencies recorded.
func (h *Histogram) Count() int64 { return h.h.TotalCount() }

// Summary returns the count, mean, percentiles and max.
func (h *Histogram) Summary() Latency {
	if h.Count() == 0 {
		return Latency{}
	}
	// The histogram reports a bucket's upper end, which can lie above the
	// largest latency recorded (kept exactly): no percentile exceeds it.
	ms := func(us int64) float64 { return float64(min(us, h.max.Microseconds())) / 1000 }
	return Latency{
		Count:  h.Count(),
		AvgMs:  h.h.Mean() / 1000,
		P50Ms:  ms(h.h.ValueAtQuantile(50)),
		P90Ms:  ms(h.h.ValueAtQuantile(90)),
		P99Ms:  ms(h.h.ValueAtQuantile(99)),
		P999Ms: ms(h.h.ValueAtQuantile(99.9)),
		MaxMs:  float64(h.max.Microseconds()) / 1000,
	}
}

// Latency summarizes a histogram, in milliseconds.
type Latency struct {
	Count  int64   `json:"count"`
	AvgMs  float64 `json:"avg_ms"`
	P50Ms  float64 `json:"p50_ms"`
	P90Ms  float64 `json:"p90_ms"`
	P99Ms  float64 `json:"p99_ms"`
	P999Ms float64 `json:"p99_9_ms"`
	MaxMs  float64 `json:"max_ms"`
}
