// Package etcdtest starts the real etcd (the go.etcd.io/etcd/server/v3
// version in go.mod, embedded) that the side-by-side suites compare
// Concord with.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// readyTimeout bounds the wait for the member to serve.
const readyTimeout = 30 * time.Second

// Start starts a single-member etcd on loopback ports that were free, with
// its defaults (max-txn-ops 128, max-request-bytes 1.5 MiB, no
// auto-compaction: as Concord's) and quiet logs, data in dir; tune, if
// not nil, changes the config first. It returns once the member serves.
func Start(name, dir string, tune func(*embed.Config)) (*embed.Etcd, error) {
	clientURL, err := freeURL()
	if err != nil {
		return nil, err
	}
	peerURL, err := freeURL()
	if err != nil {
		return nil, err
	}
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	cfg.ListenClientUrls = []url.URL{clientURL}
	cfg.AdvertiseClientUrls = []url.URL{clientURL}
	cfg.ListenPeerUrls = []url.URL{peerURL}
	cfg.AdvertisePeerUrls = []url.URL{peerURL}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.LogOutputs = []string{"/dev/null"}
	if tune != nil {
		tune(cfg)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-e.Server.ReadyNotify():
		return e, nil
	case err := <-e.Err():
		e.Close()
		return nil, err
	case <-time.After(readyTimeout):
		e.Close()
		return nil, fmt.Errorf("etcdtest: etcd not ready after %v", readyTimeout)
	}
}

// freeURL returns an http URL on a loopback port that was free a moment ago.
func freeURL() (url.URL, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return url.URL{}, err
	}
	addr := l.Addr().String()
	l.Close()
	return url.URL{Scheme: "http", Host: addr}, nil
}
