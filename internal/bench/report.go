package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/status"
)

// Report is the outcome of one Run. Its JSON form is `concord bench --json`.
type Report struct {
	Workload     Workload `json:"workload"`
	Mix          Mix      `json:"mix,omitempty"`
	Dist         Dist     `json:"dist"`
	Serializable bool     `json:"serializable,omitempty"`
	Endpoints    []string `json:"endpoints"`
	LeaderOnly   bool     `json:"leader_only,omitempty"`
	Conns        int      `json:"conns"`
	Clients      int      `json:"clients"`
	KeySize      int      `json:"key_size"`
	ValueSize    int      `json:"value_size"`
	KeySpace     int      `json:"key_space"`
	// Rate is the target ops/s; 0 for a closed loop.
	Rate float64 `json:"target_rate,omitempty"`

	// DurationSec is from the first op's start to the last op's end.
	DurationSec float64 `json:"duration_s"`
	// Ops counts successful ops; Errors the failed ones.
	Ops    int64 `json:"ops"`
	Errors int64 `json:"errors"`
	// Throughput is successful ops per second.
	Throughput float64 `json:"ops_per_s"`
	// Latency covers successful ops.
	Latency Latency `json:"latency"`
	// ByKind splits Latency by op kind (read, update, rmw) for mixed runs.
	ByKind map[string]Latency `json:"by_kind,omitempty"`
	// ErrorsByCode counts failed ops by gRPC code name.
	ErrorsByCode map[string]int64 `json:"errors_by_code,omitempty"`
	// ErrorSamples holds the first error message seen for each code.
	ErrorSamples map[string]string `json:"error_samples,omitempty"`
	// CASConflicts counts txn-put ops whose compare failed (another writer
	// got there first): successful ops, not errors.
	CASConflicts int64 `json:"cas_conflicts,omitempty"`
}

// Name is the workload with its options, e.g. "range(serializable)" or
// "mixed(ycsb-a,zipfian)".
func (r *Report) Name() string {
	switch {
	case r.Workload == Mixed:
		return fmt.Sprintf("mixed(ycsb-%s,%s)", r.Mix, r.Dist)
	case r.Workload == Range && r.Serializable:
		return "range(serializable)"
	case r.Workload == Range:
		return "range(linearizable)"
	}
	return string(r.Workload)
}

// WriteText writes r for a human.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	target := "all endpoints"
	if r.LeaderOnly {
		target = "leader only"
	}
	fmt.Fprintf(&b, "workload   %s, %d clients over %d conns, %d endpoints (%s)\n", r.Name(), r.Clients, r.Conns, len(r.Endpoints), target)
	fmt.Fprintf(&b, "keys       %d-byte keys, %d-byte values, %d-key space, %s\n", r.KeySize, r.ValueSize, r.KeySpace, r.Dist)
	if r.Rate > 0 {
		fmt.Fprintf(&b, "rate       %.0f ops/s target (open loop)\n", r.Rate)
	}
	fmt.Fprintf(&b, "ops        %d ok, %d errors in %.2fs\n", r.Ops, r.Errors, r.DurationSec)
	fmt.Fprintf(&b, "throughput %.1f ops/s\n", r.Throughput)
	writeLatency(&b, "latency   ", r.Latency)
	for _, k := range slices.Sorted(maps.Keys(r.ByKind)) {
		writeLatency(&b, fmt.Sprintf("  %-8s", k), r.ByKind[k])
	}
	if r.CASConflicts > 0 {
		fmt.Fprintf(&b, "cas        %d compares failed (conflicts)\n", r.CASConflicts)
	}
	for _, code := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
		fmt.Fprintf(&b, "error      %s: %d (e.g. %s)\n", code, r.ErrorsByCode[code], r.ErrorSamples[code])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func writeLatency(b *strings.Builder, label string, l Latency) {
	fmt.Fprintf(b, "%s avg %.3fms  p50 %.3fms  p90 %.3fms  p99 %.3fms  p99.9 %.3fms  max %.3fms  (n=%d)\n",
		label, l.AvgMs, l.P50Ms, l.P90Ms, l.P99Ms, l.P999Ms, l.MaxMs, l.Count)
}

// ErrorCode names err's gRPC code as the client saw it: etcd's typed
// errors and plain gRPC statuses by their code, a client-side deadline as
// DeadlineExceeded, anything else as Unknown.
func ErrorCode(err error) string {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		return ee.Code().String()
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "DeadlineExceeded"
	}
	if errors.Is(err, context.Canceled) {
		return "Canceled"
	}
	if s, ok := status.FromError(err); ok {
		return s.Code().String()
	}
	return "Unknown"
}
