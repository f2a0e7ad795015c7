package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestErrorCode(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{rpctypes.Error(rpctypes.ErrGRPCNoLeader), "Unavailable"},
		{rpctypes.Error(rpctypes.ErrGRPCTooManyOps), "InvalidArgument"},
		{status.Error(codes.ResourceExhausted, "slow down"), "ResourceExhausted"},
		{fmt.Errorf("wrapped: %w", context.DeadlineExceeded), "DeadlineExceeded"},
		{context.Canceled, "Canceled"},
		{errors.New("boom"), "Unknown"},
	} {
		if got := ErrorCode(tc.err); got != tc.want {
			t.Errorf("ErrorCode(%v) = %s, want %s", tc.err, got, tc.want)
		}
	}
}

func TestReportMergesWorkers(t *testing.T) {
	r := &runner{cfg: DefaultConfig()}
	r.cfg.Workload, r.cfg.Mix, r.cfg.Endpoints = Mixed, MixF, []string{"a:1"}
	mk := func(lat time.Duration, kind string, errs map[string]int64) *worker {
		w := &worker{hist: NewHistogram(), byKind: map[string]*Histogram{kind: NewHistogram()},
			errCodes: errs, errSample: map[string]string{}}
		for code := range errs {
			w.errSample[code] = "sample " + code
		}
		w.hist.Record(lat)
		w.byKind[kind].Record(lat)
		return w
	}
	rep := r.report([]*worker{
		mk(time.Millisecond, "read", map[string]int64{"Unavailable": 2}),
		mk(3*time.Millisecond, "rmw", map[string]int64{"Unavailable": 1, "DeadlineExceeded": 4}),
	}, 2*time.Second)
	if rep.Ops != 2 || rep.Errors != 7 || rep.Throughput != 1 {
		t.Fatalf("ops %d errors %d throughput %v", rep.Ops, rep.Errors, rep.Throughput)
	}
	if rep.ErrorsByCode["Unavailable"] != 3 || rep.ErrorsByCode["DeadlineExceeded"] != 4 {
		t.Fatalf("errors by code %v", rep.ErrorsByCode)
	}
	if rep.ByKind["read"].Count != 1 || rep.ByKind["rmw"].Count != 1 || rep.Latency.MaxMs != 3 {
		t.Fatalf("by kind %v, latency %+v", rep.ByKind, rep.Latency)
	}
	if rep.Name() != "mixed(ycsb-f,uniform)" {
		t.Fatalf("name %q", rep.Name())
	}

	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"throughput 1.0 ops/s", "p99.9", "Unavailable: 3 (e.g. sample Unavailable)", "rmw"} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text report lacks %q:\n%s", want, text.String())
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Latency != rep.Latency || back.ErrorsByCode["DeadlineExceeded"] != 4 {
		t.Fatalf("JSON round trip lost data: %s", b)
	}
}

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	ok.Endpoints = []string{"127.0.0.1:2379"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for name, mutate := range map[string]func(*Config){
		"no endpoints":     func(c *Config) { c.Endpoints = nil },
		"key too short":    func(c *Config) { c.KeySize, c.KeySpace = 2, 1000 },
		"no stop":          func(c *Config) { c.Total, c.Duration = 0, 0 },
		"unknown mix":      func(c *Config) { c.Workload, c.Mix = Mixed, "z" },
		"unknown workload": func(c *Config) { c.Workload = "delete" },
		"unknown dist":     func(c *Config) { c.Dist = "hot" },
		"zero clients":     func(c *Config) { c.Clients = 0 },
	} {
		c := ok
		mutate(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate accepted %+v", name, c)
		}
	}
}
