// kind-config-check: checks a kind cluster config (kind-config.yaml) before
// `kind create cluster` is asked to make a cluster Hypha cannot run on.
//
//	kind-config-check [-hypha-config deploy/config.yaml] [-operator deploy/operator.yaml] kind-config.yaml
//
// kind's own loader and validation are internal packages of its module
// (sigs.k8s.io/kind/pkg/internal/apis/config/...), which no other module can
// import. This decodes the file the way that loader does (go.yaml.in/yaml/v3
// with KnownFields: an unknown or misspelt field is an error naming it and
// its line) into kind's public v1alpha4 types, applies kind's public
// defaults, and then checks what kind's validation checks that matters here
// (subnets, kubeProxyMode, node roles) and what Hypha needs: no default CNI,
// no kube-proxy, podSubnet equal to Hypha's cluster CIDR (read from
// deploy/config.yaml, where the agent's routing.clusterCIDRs and the
// operator's ipam.clusterPool.cidrs must agree), a node for each operator
// replica (deploy/operator.yaml; required anti-affinity). Every problem is
// printed on its own line, naming the field; exit status 1.
// hack/kind/kind-validate.sh runs kind's own loader and validation (kind
// itself, stopped before it needs a container runtime); `make kind-check`
// and test/e2e/kind-config.test.ts run both.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"

	yaml "go.yaml.in/yaml/v3"
	"sigs.k8s.io/kind/pkg/apis/config/v1alpha4"
)

// kind's internal config has NoneProxyMode ("none", no kube-proxy
// DaemonSet); the public v1alpha4 package names only the proxy modes.
const noneProxyMode v1alpha4.ProxyMode = "none"

func main() {
	hyphaConfig := flag.String("hypha-config", "deploy/config.yaml", "the ConfigMap with Hypha's agent.yaml and operator.yaml")
	operatorManifest := flag.String("operator", "deploy/operator.yaml", "the operator's Deployment (its replicas)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: %s [flags] kind-config.yaml\n", os.Args[0])
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	path := flag.Arg(0)
	summary, problems := check(path, *hyphaConfig, *operatorManifest)
	if len(problems) > 0 {
		for _, p := range problems {
			fmt.Fprintf(os.Stderr, "%s: %s\n", path, p)
		}
		os.Exit(1)
	}
	fmt.Printf("%s: ok (%s)\n", path, summary)
}

func check(path, hyphaConfig, operatorManifest string) (string, []string) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", []string{err.Error()}
	}
	cfg, err := decode(raw)
	if err != nil {
		return "", []string{err.Error()}
	}
	v1alpha4.SetDefaultsCluster(cfg)

	var problems []string
	add := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	n := &cfg.Networking

	// What kind's validation would refuse (pkg/internal/apis/config/validate.go).
	if !regexp.MustCompile(`^[a-z0-9.-]+$`).MatchString(cfg.Name) && cfg.Name != "" {
		add("name: %q is not a valid cluster name (lower-case letters, digits, '.' and '-')", cfg.Name)
	}
	if n.IPFamily != v1alpha4.IPv4Family {
		add("networking.ipFamily: %q: Hypha is IPv4 only (ipv4)", n.IPFamily)
	}
	pod, podErr := prefix(n.PodSubnet)
	if podErr != nil {
		add("networking.podSubnet: %v", podErr)
	}
	svc, svcErr := prefix(n.ServiceSubnet)
	if svcErr != nil {
		add("networking.serviceSubnet: %v", svcErr)
	}
	if podErr == nil && svcErr == nil && pod.Overlaps(svc) {
		add("networking.serviceSubnet: %s overlaps networking.podSubnet %s", svc, pod)
	}
	roles := map[v1alpha4.NodeRole]int{}
	for i, node := range cfg.Nodes {
		switch node.Role {
		case v1alpha4.ControlPlaneRole, v1alpha4.WorkerRole:
			roles[node.Role]++
		default:
			add("nodes[%d].role: %q is not a node role (control-plane or worker)", i, node.Role)
		}
	}
	if roles[v1alpha4.ControlPlaneRole] < 1 {
		add("nodes: no control-plane node (kind needs at least one)")
	}

	// What Hypha needs.
	if !n.DisableDefaultCNI {
		add("networking.disableDefaultCNI: must be true (Hypha is the CNI; kindnet would be installed too)")
	}
	if n.KubeProxyMode != noneProxyMode {
		add("networking.kubeProxyMode: %q: must be none (Hypha replaces kube-proxy)", n.KubeProxyMode)
	}
	cidrs, err := hyphaClusterCIDRs(hyphaConfig)
	if err != nil {
		add("%v", err)
	} else if podErr == nil && (len(cidrs) != 1 || cidrs[0] != pod) {
		add("networking.podSubnet: %s is not Hypha's cluster CIDR %s (%s: agent.yaml routing.clusterCIDRs, operator.yaml ipam.clusterPool.cidrs)",
			pod, joinPrefixes(cidrs), hyphaConfig)
	}
	replicas, err := operatorReplicas(operatorManifest)
	if err != nil {
		add("%v", err)
	} else if len(cfg.Nodes) < replicas {
		add("nodes: %d, fewer than the operator's %d replicas (%s: one per node, required anti-affinity)", len(cfg.Nodes), replicas, operatorManifest)
	}
	if len(problems) > 0 {
		return "", problems
	}
	return fmt.Sprintf("%s %s, %d nodes: %d control-plane, %d worker; podSubnet %s = Hypha's cluster CIDR; serviceSubnet %s; kubeProxyMode none; default CNI disabled",
		cfg.APIVersion, cfg.Kind, len(cfg.Nodes), roles[v1alpha4.ControlPlaneRole], roles[v1alpha4.WorkerRole], pod, svc), nil
}

// decode: kind's encoding.Parse for v1alpha4, with kind's error texts.
func decode(raw []byte) (*v1alpha4.Cluster, error) {
	var tm struct {
		Kind       string `yaml:"kind,omitempty"`
		APIVersion string `yaml:"apiVersion,omitempty"`
	}
	if err := yaml.Unmarshal(raw, &tm); err != nil {
		return nil, fmt.Errorf("could not determine kind / apiVersion for config: %w", err)
	}
	if tm.APIVersion != "kind.x-k8s.io/v1alpha4" {
		return nil, fmt.Errorf("unknown apiVersion: %q (kind.x-k8s.io/v1alpha4)", tm.APIVersion)
	}
	if tm.Kind != "Cluster" {
		return nil, fmt.Errorf("unknown kind %q for apiVersion: %s (Cluster)", tm.Kind, tm.APIVersion)
	}
	cfg := &v1alpha4.Cluster{}
	d := yaml.NewDecoder(bytes.NewReader(raw))
	d.KnownFields(true)
	if err := d.Decode(cfg); err != nil {
		return nil, fmt.Errorf("unable to decode config: %w", err)
	}
	return cfg, nil
}

func prefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, ",") {
		return netip.Prefix{}, fmt.Errorf("%q: one IPv4 prefix expected (Hypha is IPv4 only)", s)
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a valid CIDR", s)
	}
	if !p.Addr().Is4() {
		return netip.Prefix{}, fmt.Errorf("%q is not an IPv4 prefix", s)
	}
	if p.Masked() != p {
		return netip.Prefix{}, fmt.Errorf("%q has host bits set (the network is %s)", s, p.Masked())
	}
	return p, nil
}

func joinPrefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// documents: every YAML document of a file, decoded into maps.
func documents(path string) ([]map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []map[string]any
	d := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc map[string]any
		if err := d.Decode(&doc); errors.Is(err, io.EOF) {
			return out, nil
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if doc != nil {
			out = append(out, doc)
		}
	}
}

func field(m any, keys ...string) any {
	for _, k := range keys {
		mm, ok := m.(map[string]any)
		if !ok {
			return nil
		}
		m = mm[k]
	}
	return m
}

func object(path, kind, name string) (map[string]any, error) {
	docs, err := documents(path)
	if err != nil {
		return nil, err
	}
	for _, doc := range docs {
		if doc["kind"] == kind && field(doc, "metadata", "name") == name {
			return doc, nil
		}
	}
	return nil, fmt.Errorf("%s: no %s %s", path, kind, name)
}

// hyphaClusterCIDRs: the agent's routing.clusterCIDRs, which must be the
// operator's ipam.clusterPool.cidrs.
func hyphaClusterCIDRs(path string) ([]netip.Prefix, error) {
	cm, err := object(path, "ConfigMap", "hypha-config")
	if err != nil {
		return nil, err
	}
	list := func(key string, keys ...string) ([]netip.Prefix, error) {
		text, _ := field(cm, "data", key).(string)
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			return nil, fmt.Errorf("%s: data %s: %w", path, key, err)
		}
		items, _ := field(cfg, keys...).([]any)
		if len(items) == 0 {
			return nil, fmt.Errorf("%s: data %s names no %s", path, key, strings.Join(keys, "."))
		}
		var out []netip.Prefix
		for _, it := range items {
			s, _ := it.(string)
			p, err := netip.ParsePrefix(s)
			if err != nil {
				return nil, fmt.Errorf("%s: data %s %s: %q is not a CIDR", path, key, strings.Join(keys, "."), s)
			}
			out = append(out, p)
		}
		return out, nil
	}
	agent, err := list("agent.yaml", "routing", "clusterCIDRs")
	if err != nil {
		return nil, err
	}
	pool, err := list("operator.yaml", "ipam", "clusterPool", "cidrs")
	if err != nil {
		return nil, err
	}
	if joinPrefixes(agent) != joinPrefixes(pool) {
		return nil, fmt.Errorf("%s: agent.yaml routing.clusterCIDRs (%s) and operator.yaml ipam.clusterPool.cidrs (%s) differ", path, joinPrefixes(agent), joinPrefixes(pool))
	}
	return agent, nil
}

func operatorReplicas(path string) (int, error) {
	d, err := object(path, "Deployment", "hypha-operator")
	if err != nil {
		return 0, err
	}
	switch r := field(d, "spec", "replicas").(type) {
	case nil:
		return 1, nil
	case int:
		return r, nil
	default:
		return 0, fmt.Errorf("%s: spec.replicas %v is not a number", path, r)
	}
}
