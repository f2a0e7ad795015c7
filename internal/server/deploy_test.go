package server

import (
	"os"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/concorddb/concord/internal/telemetry"
)

// TestDeployFilesNameRealMetrics checks that every metric the Grafana
// dashboard and the alert rules query is exported: by a live node's scrape,
// or, for the Go runtime and process metrics, by a real process's registry.
func TestDeployFilesNameRealMetrics(t *testing.T) {
	c := startHTTPCluster(t, 3, LocalOptions{})
	putRetry(t, client(t, c, 0), "k", "v")
	_, names := scrape(t, c, 0)
	fams, err := telemetry.New(telemetry.Options{Process: true}).Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if !strings.HasPrefix(f.GetName(), telemetry.Namespace+"_") {
			names[f.GetName()] = true
		}
	}
	ident := regexp.MustCompile(`\b(?:concord|go|process)_[a-z0-9_]+\b`)
	for _, file := range []string{"../../deploy/grafana/concord.json", "../../deploy/prometheus/alerts.yaml"} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		found := map[string]bool{}
		for _, m := range ident.FindAllString(string(data), -1) {
			found[m] = true
		}
		if len(found) == 0 {
			t.Fatalf("%s names no metric", file)
		}
		var missing []string
		for m := range found {
			base := m
			for _, suffix := range []string{"_bucket", "_sum", "_count"} {
				if b, ok := strings.CutSuffix(m, suffix); ok && names[b] {
					base = b
				}
			}
			if !names[base] {
				missing = append(missing, m)
			}
		}
		sort.Strings(missing)
		if len(missing) > 0 {
			t.Errorf("%s queries metrics no node exports: %v", file, missing)
		}
	}
}
