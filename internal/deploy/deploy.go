// Package deploy derives a node's identity and its cluster's membership
// from the place an orchestrator gives it, so that a container image with
// no shell can still start a correct cluster.
//
// Today it knows one orchestrator: a Kubernetes StatefulSet with a headless
// Service. Its pods are named <set>-<ordinal> and each resolves as
// <pod>.<service>.<namespace>.svc, so from its own pod name a node knows
// its name, its advertised URLs and the names of every initial member:
//
//  1. Parse the pod name into the set's name and the node's ordinal.
//  2. The initial cluster is the first Replicas ordinals, in order (every
//     member must pass the same list: node ids are positions in it).
//  3. An ordinal below Replicas bootstraps ("new"); an ordinal at or above
//     it was added by scaling up, so it joins the running cluster
//     ("existing") through the initial members.
//
// A restarted pod reuses its data directory, and a node with data ignores
// the state, so the same derivation is right on first start and on every
// restart. The package is pure: the caller reads the environment
// (POD_NAME, POD_NAMESPACE) and applies the result.
package deploy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Default ports, as etcd's.
const (
	DefaultClientPort = 2379
	DefaultPeerPort   = 2380
)

// maxReplicas bounds the initial cluster a flag can ask for: every member
// is a voter of the first ranges, and Raft groups past a few dozen voters
// are a mistake rather than a plan.
const maxReplicas = 99

// StatefulSet describes one pod of a Kubernetes StatefulSet.
type StatefulSet struct {
	// Pod is the pod's name, <set>-<ordinal> (POD_NAME from the downward
	// API).
	Pod string
	// Namespace is the pod's namespace (POD_NAMESPACE).
	Namespace string
	// Service is the headless Service that gives each pod a DNS name.
	Service string
	// Replicas is the size of the initial cluster: ordinals 0..Replicas-1.
	Replicas int
	// ClientPort and PeerPort default to 2379 and 2380 when zero.
	ClientPort, PeerPort int
}

// Member is what a node needs to start: etcd's flags of the same names.
type Member struct {
	Name                    string
	AdvertiseClientURL      string
	InitialAdvertisePeerURL string
	InitialCluster          string
	InitialClusterState     string
}

// ParsePeers parses the --k8s-peers flag, SERVICE:REPLICAS.
func ParsePeers(s string) (service string, replicas int, err error) {
	service, n, ok := strings.Cut(s, ":")
	if !ok || service == "" {
		return "", 0, fmt.Errorf("deploy: %q is not SERVICE:REPLICAS", s)
	}
	replicas, err = strconv.Atoi(n)
	if err != nil || replicas < 1 || replicas > maxReplicas {
		return "", 0, fmt.Errorf("deploy: replicas in %q must be a number from 1 to %d", s, maxReplicas)
	}
	return service, replicas, nil
}

// Member derives the pod's member configuration. It returns an error if
// the pod name has no ordinal or a field is missing.
func (s StatefulSet) Member() (Member, error) {
	if s.Service == "" || s.Namespace == "" {
		return Member{}, errors.New("deploy: service and namespace are required")
	}
	if s.Replicas < 1 || s.Replicas > maxReplicas {
		return Member{}, fmt.Errorf("deploy: replicas must be from 1 to %d, not %d", maxReplicas, s.Replicas)
	}
	set, ordinal, err := splitOrdinal(s.Pod)
	if err != nil {
		return Member{}, err
	}
	clientPort, peerPort := s.ClientPort, s.PeerPort
	if clientPort == 0 {
		clientPort = DefaultClientPort
	}
	if peerPort == 0 {
		peerPort = DefaultPeerPort
	}
	peers := make([]string, s.Replicas)
	for i := range peers {
		name := set + "-" + strconv.Itoa(i)
		peers[i] = name + "=" + s.url(name, peerPort)
	}
	state := "new"
	if ordinal >= s.Replicas {
		state = "existing"
	}
	return Member{
		Name:                    s.Pod,
		AdvertiseClientURL:      s.url(s.Pod, clientPort),
		InitialAdvertisePeerURL: s.url(s.Pod, peerPort),
		InitialCluster:          strings.Join(peers, ","),
		InitialClusterState:     state,
	}, nil
}

// url is a pod's stable URL through the headless Service. The name stops
// at .svc so that it resolves through the pod's DNS search path whatever
// the cluster's domain is.
func (s StatefulSet) url(pod string, port int) string {
	return fmt.Sprintf("http://%s.%s.%s.svc:%d", pod, s.Service, s.Namespace, port)
}

// splitOrdinal splits "concord-3" into "concord" and 3.
func splitOrdinal(pod string) (set string, ordinal int, err error) {
	i := strings.LastIndexByte(pod, '-')
	if i <= 0 || pod[i-1] == '-' {
		return "", 0, fmt.Errorf("deploy: pod name %q is not <statefulset>-<ordinal>", pod)
	}
	ordinal, err = strconv.Atoi(pod[i+1:])
	if err != nil || ordinal < 0 || strconv.Itoa(ordinal) != pod[i+1:] {
		return "", 0, fmt.Errorf("deploy: pod name %q is not <statefulset>-<ordinal>", pod)
	}
	return pod[:i], ordinal, nil
}
