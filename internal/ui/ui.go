// Package ui is the dashboard every node serves at / on its HTTP port:
// plain HTML, CSS and JavaScript embedded in the binary (no build step, no
// npm), charts drawn as SVG by its own small script.
//
// The page reads the node's JSON endpoints, served by internal/server:
// /api/cluster (nodes and ranges as this node sees them, from every node's
// NodeStatus), /api/stats (this node's client throughput and latency),
// /api/events (leader changes, nodes down and up) and, in concord demo,
// POST /api/fault (stop, restart, isolate, heal a node).
package ui

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard's files.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// The embedded tree is fixed at build time: a missing directory is
		// a build bug.
		panic("ui: " + err.Error())
	}
	return http.FileServer(http.FS(sub))
}
