package deploy

import (
	"fmt"
	"strings"
	"testing"
)

func TestMember(t *testing.T) {
	const cluster = "concord-0=http://concord-0.concord-peer.db.svc:2380," +
		"concord-1=http://concord-1.concord-peer.db.svc:2380," +
		"concord-2=http://concord-2.concord-peer.db.svc:2380"
	for _, tc := range []struct {
		pod   string
		state string
	}{
		{"concord-0", "new"},
		{"concord-2", "new"},
		{"concord-3", "existing"}, // scaled up by one: joins
		{"concord-10", "existing"},
	} {
		m, err := StatefulSet{Pod: tc.pod, Namespace: "db", Service: "concord-peer", Replicas: 3}.Member()
		if err != nil {
			t.Fatalf("%s: %v", tc.pod, err)
		}
		want := Member{
			Name:                    tc.pod,
			AdvertiseClientURL:      "http://" + tc.pod + ".concord-peer.db.svc:2379",
			InitialAdvertisePeerURL: "http://" + tc.pod + ".concord-peer.db.svc:2380",
			InitialCluster:          cluster,
			InitialClusterState:     tc.state,
		}
		if m != want {
			t.Errorf("%s:\n got %+v\nwant %+v", tc.pod, m, want)
		}
	}
}

func TestMemberHyphenatedSetAndPorts(t *testing.T) {
	m, err := StatefulSet{Pod: "my-kv-1", Namespace: "ns", Service: "peers", Replicas: 1, ClientPort: 1, PeerPort: 2}.Member()
	if err != nil {
		t.Fatal(err)
	}
	if m.InitialCluster != "my-kv-0=http://my-kv-0.peers.ns.svc:2" || m.InitialClusterState != "existing" ||
		m.AdvertiseClientURL != "http://my-kv-1.peers.ns.svc:1" {
		t.Fatalf("got %+v", m)
	}
}

func TestMemberErrors(t *testing.T) {
	ok := StatefulSet{Pod: "concord-0", Namespace: "db", Service: "concord-peer", Replicas: 3}
	for name, tc := range map[string]func(*StatefulSet){
		"no ordinal":       func(s *StatefulSet) { s.Pod = "concord" },
		"empty ordinal":    func(s *StatefulSet) { s.Pod = "concord-" },
		"no set":           func(s *StatefulSet) { s.Pod = "-1" },
		"negative":         func(s *StatefulSet) { s.Pod = "concord--1" },
		"leading zero":     func(s *StatefulSet) { s.Pod = "concord-01" },
		"letters":          func(s *StatefulSet) { s.Pod = "concord-abc" },
		"no service":       func(s *StatefulSet) { s.Service = "" },
		"no namespace":     func(s *StatefulSet) { s.Namespace = "" },
		"zero replicas":    func(s *StatefulSet) { s.Replicas = 0 },
		"too many replica": func(s *StatefulSet) { s.Replicas = maxReplicas + 1 },
	} {
		s := ok
		tc(&s)
		if m, err := s.Member(); err == nil {
			t.Errorf("%s: want an error, got %+v", name, m)
		} else if !strings.HasPrefix(err.Error(), "deploy: ") {
			t.Errorf("%s: error %q lacks the package prefix", name, err)
		}
	}
}

func TestParsePeers(t *testing.T) {
	svc, n, err := ParsePeers("concord-peer:3")
	if err != nil || svc != "concord-peer" || n != 3 {
		t.Fatalf("got %q %d %v", svc, n, err)
	}
	for _, bad := range []string{"", "concord-peer", ":3", "concord-peer:", "concord-peer:0", "concord-peer:-1", "concord-peer:x", "concord-peer:100"} {
		if _, _, err := ParsePeers(bad); err == nil {
			t.Errorf("ParsePeers(%q): want an error", bad)
		}
	}
}

func ExampleStatefulSet_Member() {
	// Pod concord-3 of a set started with 3 replicas: scaling up by one
	// makes it join the cluster of concord-0..2.
	m, err := StatefulSet{Pod: "concord-3", Namespace: "default", Service: "concord-peer", Replicas: 3}.Member()
	if err != nil {
		panic(err)
	}
	fmt.Println(m.Name, m.InitialClusterState)
	fmt.Println(m.InitialAdvertisePeerURL)
	fmt.Println(strings.ReplaceAll(m.InitialCluster, ",", "\n"))
	// Output:
	// concord-3 existing
	// http://concord-3.concord-peer.default.svc:2380
	// concord-0=http://concord-0.concord-peer.default.svc:2380
	// concord-1=http://concord-1.concord-peer.default.svc:2380
	// concord-2=http://concord-2.concord-peer.default.svc:2380
}
