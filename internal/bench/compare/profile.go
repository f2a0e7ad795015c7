package compare

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// maxProfileBytes bounds one member's CPU profile as fetched: a 60 s
// profile of a busy server is a few hundred KiB.
const maxProfileBytes = 64 << 20

// profileMembers takes a CPU profile of every member of c at once, each
// over d, from the /debug/pprof/profile endpoint that --enable-pprof puts
// on the client port (etcd's and Concord's alike). It blocks for d and
// writes member i's profile to prefix + "-" + name + ".pb.gz". It returns
// the profiles in member order.
func profileMembers(ctx context.Context, c *cluster, d time.Duration, prefix string) ([]*profile.Profile, error) {
	secs := int(d / time.Second)
	if secs < 1 {
		return nil, fmt.Errorf("compare: a profile needs at least 1s, the run is %v", d)
	}
	type result struct {
		p   *profile.Profile
		err error
	}
	results := make([]chan result, len(c.members))
	for i, m := range c.members {
		results[i] = make(chan result, 1)
		go func(m *member, out chan<- result) {
			p, err := fetchProfile(ctx, m.client, secs, prefix+"-"+m.name+".pb.gz")
			if err != nil {
				err = fmt.Errorf("compare: profile %s: %w", m.name, err)
			}
			out <- result{p, err}
		}(m, results[i])
	}
	var out []*profile.Profile
	var first error
	for _, ch := range results {
		r := <-ch
		if r.err != nil && first == nil {
			first = r.err
		}
		out = append(out, r.p)
	}
	return out, first
}

// fetchProfile gets a secs-long CPU profile from hostPort, saves the raw
// bytes to path and parses them.
func fetchProfile(ctx context.Context, hostPort string, secs int, path string) (*profile.Profile, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Duration(secs)*time.Second+30*time.Second)
	defer cancel()
	url := fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", hostPort, secs)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxProfileBytes+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s: %s", url, resp.Status, strings.TrimSpace(string(b)))
	}
	if len(b) > maxProfileBytes {
		return nil, fmt.Errorf("GET %s: profile larger than %d bytes", url, maxProfileBytes)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return nil, err
	}
	return profile.ParseData(b)
}
