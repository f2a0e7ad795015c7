// Package kubernetes holds Concord's Kubernetes manifests. It has no Go
// code: its test decodes every manifest strictly into the k8s.io/api types
// (an unknown or duplicate field fails) and checks that the pieces agree
// with each other and with what concord start --k8s-peers derives.
package kubernetes

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/concorddb/concord/internal/deploy"
)

// manifests holds every object of the folder's YAML files, by kind.
type manifests struct {
	sets     []*appsv1.StatefulSet
	services map[string]*corev1.Service
	pdbs     []*policyv1.PodDisruptionBudget
}

func load(t *testing.T) manifests {
	t.Helper()
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	m := manifests{services: map[string]*corev1.Service{}}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range bytes.Split(data, []byte("\n---\n")) {
			var tm struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
			}
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s #%d: %v", f, i, err)
			}
			var (
				obj  any
				keep = func() {}
			)
			switch tm.APIVersion + " " + tm.Kind {
			case "apps/v1 StatefulSet":
				s := &appsv1.StatefulSet{}
				m.sets, obj = append(m.sets, s), s
			case "v1 Service":
				s := &corev1.Service{}
				obj, keep = s, func() { m.services[s.Name] = s }
			case "policy/v1 PodDisruptionBudget":
				p := &policyv1.PodDisruptionBudget{}
				m.pdbs, obj = append(m.pdbs, p), p
			default:
				t.Fatalf("%s #%d: unexpected %q %q", f, i, tm.APIVersion, tm.Kind)
			}
			if err := decodeStrict(doc, obj); err != nil {
				t.Fatalf("%s #%d (%s): %v", f, i, tm.Kind, err)
			}
			keep()
		}
	}
	return m
}

// decodeStrict decodes YAML as the API server does in strict mode: field
// names match case-sensitively, and an unknown or duplicate field is an
// error. (encoding/json alone would accept "clusterIp" for "clusterIP".)
func decodeStrict(doc []byte, obj any) error {
	j, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return err
	}
	strict, err := sigsjson.UnmarshalStrict(j, obj, sigsjson.DisallowUnknownFields)
	if err != nil {
		return err
	}
	return errors.Join(strict...)
}

func TestManifestsDecodeStrictly(t *testing.T) {
	for _, bad := range []string{
		"spec:\n  clusterIp: None\n",                   // wrong case
		"spec:\n  clusterIPs: [None]\n  foo: bar\n",    // unknown
		"spec:\n  type: ClusterIP\n  type: NodePort\n", // duplicate
	} {
		if err := decodeStrict([]byte("apiVersion: v1\nkind: Service\n"+bad), &corev1.Service{}); err == nil {
			t.Fatalf("%q decoded: the check would miss mistakes", bad)
		}
	}
	m := load(t)
	if len(m.sets) != 1 || len(m.pdbs) != 1 || len(m.services) != 2 {
		t.Fatalf("want 1 StatefulSet, 2 Services, 1 PodDisruptionBudget; got %d, %d, %d", len(m.sets), len(m.services), len(m.pdbs))
	}
}

func TestManifestsAgree(t *testing.T) {
	m := load(t)
	set := m.sets[0]
	labels := set.Spec.Template.Labels
	if !reflect.DeepEqual(set.Spec.Selector.MatchLabels, labels) {
		t.Errorf("StatefulSet selector %v does not match its pod labels %v", set.Spec.Selector.MatchLabels, labels)
	}
	if set.Spec.PodManagementPolicy != appsv1.ParallelPodManagement {
		t.Error("podManagementPolicy must be Parallel: no pod is ready before a quorum runs")
	}

	peer := m.services[set.Spec.ServiceName]
	if peer == nil || peer.Spec.ClusterIP != corev1.ClusterIPNone || !peer.Spec.PublishNotReadyAddresses {
		t.Fatalf("serviceName %q must be a headless Service that publishes not-ready pods", set.Spec.ServiceName)
	}
	for name, svc := range m.services {
		if !reflect.DeepEqual(svc.Spec.Selector, labels) {
			t.Errorf("Service %s selects %v, pods carry %v", name, svc.Spec.Selector, labels)
		}
	}
	if pdb := m.pdbs[0]; pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 ||
		!reflect.DeepEqual(pdb.Spec.Selector.MatchLabels, labels) {
		t.Errorf("PodDisruptionBudget must allow 1 unavailable pod of the set, got %+v", pdb.Spec)
	}

	pod := set.Spec.Template.Spec
	if pod.TerminationGracePeriodSeconds == nil || *pod.TerminationGracePeriodSeconds < 10 {
		t.Error("terminationGracePeriodSeconds must leave time to hand leadership over")
	}
	if len(pod.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Containers))
	}
	c := pod.Containers[0]
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
		t.Error("container needs cpu and memory requests")
	}
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	for probe, want := range map[*corev1.Probe]string{c.ReadinessProbe: "/readyz", c.LivenessProbe: "/livez"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != want || ports[probe.HTTPGet.Port.String()] != deploy.DefaultClientPort {
			t.Errorf("want an httpGet probe of %s on the client port, got %+v", want, probe)
		}
	}
	env := map[string]string{}
	for _, e := range c.Env {
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			env[e.Name] = e.ValueFrom.FieldRef.FieldPath
		}
	}
	if env["POD_NAME"] != "metadata.name" || env["POD_NAMESPACE"] != "metadata.namespace" {
		t.Errorf("POD_NAME and POD_NAMESPACE must come from the downward API, got %v", env)
	}
	mounts := map[string]bool{}
	for _, vm := range c.VolumeMounts {
		mounts[vm.Name] = true
	}
	for _, vct := range set.Spec.VolumeClaimTemplates {
		if !mounts[vct.Name] {
			t.Errorf("volumeClaimTemplate %s is not mounted", vct.Name)
		}
	}

	// The --k8s-peers flag must name the headless Service and the set's
	// initial size, and the URLs it derives must use the declared ports.
	var peers string
	for _, a := range c.Args {
		if v, ok := strings.CutPrefix(a, "--k8s-peers="); ok {
			peers = v
		}
	}
	service, replicas, err := deploy.ParsePeers(peers)
	if err != nil {
		t.Fatalf("args %v: %v", c.Args, err)
	}
	if service != set.Spec.ServiceName || set.Spec.Replicas == nil || int(*set.Spec.Replicas) != replicas {
		t.Errorf("--k8s-peers=%s disagrees with serviceName %s or replicas (%d wanted)", peers, set.Spec.ServiceName, replicas)
	}
	mem, err := deploy.StatefulSet{Pod: set.Name + "-0", Namespace: "ns", Service: service, Replicas: replicas,
		ClientPort: int(ports["client"]), PeerPort: int(ports["peer"])}.Member()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := deploy.StatefulSet{Pod: set.Name + "-0", Namespace: "ns", Service: service, Replicas: replicas}.Member()
	if mem != want {
		t.Errorf("container ports %v differ from the ports --k8s-peers advertises", ports)
	}
}
