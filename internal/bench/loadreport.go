package bench

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteText writes r for a human: what was loaded, a row per checkpoint,
// the ratio of the last checkpoint's throughput to the first's, and what
// went wrong.
func (r *LoadReport) WriteText(w io.Writer) error {
	var b strings.Builder
	target := "all endpoints"
	if r.LeaderOnly {
		target = "leader only"
	}
	fmt.Fprintf(&b, "load       %s of %d-byte keys and %d-byte random values, %d clients over %d conns, %d endpoints (%s), %.0fs measurements\n",
		FormatBytes(r.Bytes), r.KeySize, r.ValueSize, r.Clients, r.Conns, len(r.Endpoints), target, r.MeasureSec)
	fmt.Fprintf(&b, "loaded     %s (%d keys) in %.0fs", FormatBytes(r.LoadedBytes), r.Keys, r.DurationSec)
	if r.StopReason != "" {
		fmt.Fprintf(&b, "; stopped early: %s", r.StopReason)
	}
	b.WriteString("\n")
	if r.QuotaExceededAtBytes > 0 {
		fmt.Fprintf(&b, "quota      writes refused at %s loaded (%d bytes): %s\n", FormatBytes(r.QuotaExceededAtBytes), r.QuotaExceededAtBytes, r.QuotaError)
	}
	b.WriteString("\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "checkpoint\tloaded\telapsed s\tload MB/s\tput ops/s\tput MB/s\tput p99 ms\tget ops/s\tget MB/s\tget p99 ms\terrors\tdisk\tranges\tstop\t")
	for _, row := range r.Rows {
		disk, ranges := "-", "-"
		if row.DiskBytes > 0 {
			disk = FormatBytes(row.DiskBytes)
		}
		if row.Ranges > 0 {
			ranges = fmt.Sprint(row.Ranges)
		}
		stop := "-"
		if row.Stop != "" {
			stop = row.Stop
		}
		fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%.0f\t%.1f\t%.1f\t%.0f\t%.1f\t%.1f\t%d\t%s\t%s\t%s\t\n",
			FormatBytes(row.TargetBytes), FormatBytes(row.LoadedBytes), row.ElapsedSec, row.LoadMBps,
			row.Put.Throughput, row.PutMBps, row.Put.Latency.P99Ms,
			row.Get.Throughput, row.GetMBps, row.Get.Latency.P99Ms,
			row.Put.Errors+row.Get.Errors, disk, ranges, stop)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if n := len(r.Rows); n >= 2 {
		first, last := r.Rows[0], r.Rows[n-1]
		fmt.Fprintf(&b, "\nratio      %s / %s: put %.2f, get %.2f\n", FormatBytes(last.TargetBytes), FormatBytes(first.TargetBytes),
			ratio(last.Put.Throughput, first.Put.Throughput), ratio(last.Get.Throughput, first.Get.Throughput))
	}
	for _, code := range slices.Sorted(maps.Keys(r.ErrorsByCode)) {
		fmt.Fprintf(&b, "error      loading: %s: %d (e.g. %s)\n", code, r.ErrorsByCode[code], r.ErrorSamples[code])
	}
	for _, row := range r.Rows {
		for _, m := range []struct {
			name string
			rep  *Report
		}{{"put", row.Put}, {"get", row.Get}} {
			for _, code := range slices.Sorted(maps.Keys(m.rep.ErrorsByCode)) {
				fmt.Fprintf(&b, "error      %s at %s: %s: %d (e.g. %s)\n", m.name, FormatBytes(row.TargetBytes), code, m.rep.ErrorsByCode[code], m.rep.ErrorSamples[code])
			}
		}
	}
	switch {
	case r.AlarmError != "":
		fmt.Fprintf(&b, "alarms     not listed: %s\n", r.AlarmError)
	case len(r.Alarms) > 0:
		fmt.Fprintf(&b, "alarms     %s\n", strings.Join(r.Alarms, "; "))
	default:
		fmt.Fprintf(&b, "alarms     none\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ratio is a/b, or 0 when b is 0.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}
