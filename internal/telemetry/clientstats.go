package telemetry

import (
	"math"
	"sort"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
)

// ClientTotals are a node's cumulative client request counters, summed
// over methods.
type ClientTotals struct {
	Requests, Errors uint64
	// Latencies counts the latency observations.
	Latencies uint64
	// Buckets maps each latency bucket's upper bound (seconds) to its
	// cumulative count.
	Buckets map[float64]uint64
}

// ClientTotals sums the client RPC counters of the registry.
func (m *Metrics) ClientTotals() ClientTotals {
	out := ClientTotals{Buckets: map[float64]uint64{}}
	if m == nil {
		return out
	}
	fams, err := m.clientReg.Gather()
	if err != nil {
		return out
	}
	for _, f := range fams {
		switch f.GetName() {
		case Namespace + "_grpc_requests_total":
			for _, mt := range f.GetMetric() {
				n := uint64(mt.GetCounter().GetValue())
				out.Requests += n
				if labelValue(mt, "code") != "OK" {
					out.Errors += n
				}
			}
		case Namespace + "_grpc_request_duration_seconds":
			for _, mt := range f.GetMetric() {
				out.Latencies += mt.GetHistogram().GetSampleCount()
				for _, b := range mt.GetHistogram().GetBucket() {
					out.Buckets[b.GetUpperBound()] += b.GetCumulativeCount()
				}
			}
		}
	}
	return out
}

func labelValue(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

// ThroughputPoint is one interval of a node's client traffic.
type ThroughputPoint struct {
	Time time.Time `json:"time"`
	// RequestsPerSec and ErrorsPerSec are rates over the interval.
	RequestsPerSec float64 `json:"requests_per_sec"`
	ErrorsPerSec   float64 `json:"errors_per_sec"`
	// P50Ms and P99Ms are latency quantiles over the interval, estimated
	// from the histogram buckets (upper bounds); 0 with no requests.
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
}

// Throughput keeps the last points of a node's client traffic, one per
// Sample call. It is safe for concurrent use.
type Throughput struct {
	mu     sync.Mutex
	last   ClientTotals
	lastAt time.Time
	// points holds at most maxPoints, oldest first.
	points    []ThroughputPoint
	maxPoints int
}

// NewThroughput keeps up to maxPoints points.
func NewThroughput(maxPoints int) *Throughput { return &Throughput{maxPoints: maxPoints} }

// Sample adds a point from the totals now, relative to the previous call.
func (t *Throughput) Sample(now time.Time, tot ClientTotals) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.lastAt.IsZero() {
		dt := now.Sub(t.lastAt).Seconds()
		if dt > 0 {
			p := ThroughputPoint{Time: now,
				RequestsPerSec: float64(tot.Requests-t.last.Requests) / dt,
				ErrorsPerSec:   float64(tot.Errors-t.last.Errors) / dt,
			}
			n := tot.Latencies - t.last.Latencies
			p.P50Ms, p.P99Ms = quantileMs(t.last.Buckets, tot.Buckets, n, 0.5), quantileMs(t.last.Buckets, tot.Buckets, n, 0.99)
			t.points = append(t.points, p)
			if len(t.points) > t.maxPoints {
				t.points = t.points[len(t.points)-t.maxPoints:]
			}
		}
	}
	t.last, t.lastAt = tot, now
}

// Points returns the kept points, oldest first; the caller owns them.
func (t *Throughput) Points() []ThroughputPoint {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]ThroughputPoint(nil), t.points...)
}

// quantileMs estimates quantile q of the n observations between two
// cumulative bucket snapshots, as the upper bound of the bucket it falls
// in (the largest bound when it falls above every bucket).
func quantileMs(before, after map[float64]uint64, n uint64, q float64) float64 {
	if n == 0 {
		return 0
	}
	bounds := make([]float64, 0, len(after))
	for b := range after {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := uint64(math.Ceil(q * float64(n)))
	for _, b := range bounds {
		if after[b]-before[b] >= rank {
			return b * 1000
		}
	}
	if len(bounds) == 0 {
		return 0
	}
	return bounds[len(bounds)-1] * 1000
}
