package server

import (
	"context"
	"fmt"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/concorddb/concord/internal/meta"
)

// chromium returns the path of a headless-capable Chromium or Chrome.
func chromium() (string, bool) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, true
		}
	}
	return "", false
}

// TestDashboardFailoverInBrowser drives the dashboard in headless
// Chromium: it sees 3 nodes, stops the user range's leader from the page,
// sees another node take over, and restarts the stopped node.
func TestDashboardFailoverInBrowser(t *testing.T) {
	exe, ok := chromium()
	if !ok {
		t.Skip("no chromium on PATH (apt-get install chromium): the dashboard browser test needs it")
	}
	c := startHTTPCluster(t, 3, LocalOptions{Faults: true})
	putRetry(t, client(t, c, 0), "k", "v")
	li := leaderOf(t, c, meta.UserRangeID)
	leader := li + 1
	page := c.HTTPURLs()[(li+1)%3] + "/"

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Flag("headless", true), chromedp.DisableGPU)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

	// waitJS polls a boolean JavaScript expression until it holds.
	waitJS := func(what, expr string) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for {
			ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
			if err != nil {
				t.Fatalf("%s: %v", what, err)
			}
			if ok {
				return
			}
			if time.Now().After(deadline) {
				html, _ := chromedp.Run(ctx, chromedp.OuterHTML("main"))
				t.Fatalf("timed out waiting for %s; page:\n%s", what, html)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	click := func(action string, node int) {
		t.Helper()
		js := fmt.Sprintf(`(() => { const b = document.querySelector('button[data-action=%q][data-node="%d"]'); if (!b || b.disabled) return false; b.click(); return true; })()`, action, node)
		waitJS(action+" button", js)
	}

	if err := chromedp.Do(ctx, chromedp.Navigate(page)); err != nil {
		t.Fatal(err)
	}
	waitJS("3 nodes up", `document.querySelectorAll('#nodes tbody tr[data-status="up"]').length === 3`)
	waitJS("the user range's leader", fmt.Sprintf(`(document.querySelector('#ranges tr[data-range="2"]') || {dataset: {}}).dataset.leader === "%d"`, leader))

	click("stop", leader)
	waitJS("the stopped node", fmt.Sprintf(`(document.querySelector('#nodes tr[data-node="%d"]') || {dataset: {}}).dataset.status === "stopped"`, leader))
	waitJS("a new leader", fmt.Sprintf(`(() => { const r = document.querySelector('#ranges tr[data-range="2"]'); return !!r && r.dataset.leader !== "0" && r.dataset.leader !== "%d"; })()`, leader))
	waitJS("a leader-change event", `document.querySelectorAll('#events li[data-kind="leader"]').length > 0`)
	waitJS("the charts", `document.querySelectorAll('#chart-throughput polyline').length === 2`)

	click("restart", leader)
	waitJS("the restarted node up", fmt.Sprintf(`(document.querySelector('#nodes tr[data-node="%d"]') || {dataset: {}}).dataset.status === "up"`, leader))
	if c.Node(li) == nil {
		t.Fatal("the node restarted from the page is not running")
	}
}
