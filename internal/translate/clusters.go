package translate

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"istio.io/api/networking/v1alpha3"
)

// defaultLbPolicy is Istio's load balancer when no DestinationRule says.
const defaultLbPolicy = clusterv3.Cluster_LEAST_REQUEST

// outbound returns the EDS clusters and their load assignments: the shared
// ones (one per service port and per DestinationRule subset of it), plus one
// for every cluster this proxy's routes reference that nothing backs, with
// no endpoints.
func (t *translator) outbound() ([]*clusterv3.Cluster, []*endpointv3.ClusterLoadAssignment) {
	extra := map[clusterKey]bool{}
	for k := range t.refs {
		if !t.shared.keys[k] {
			extra[k] = true
		}
	}
	if len(extra) == 0 {
		return t.shared.clusters, t.shared.endpoints
	}
	clusters, endpoints := t.buildClusters(extra)
	return append(slices.Clone(t.shared.clusters), clusters...), append(slices.Clone(t.shared.endpoints), endpoints...)
}

// lbPolicy is the load balancer of a cluster. The most specific setting
// wins: the subset's port-level, the subset's, the rule's port-level, the
// rule's; then Istio's default.
func (t *translator) lbPolicy(k clusterKey) clusterv3.Cluster_LbPolicy {
	dr, ok := t.drs[k.host]
	if !ok {
		return defaultLbPolicy
	}
	var policies []*v1alpha3.TrafficPolicy
	if k.subset != "" {
		policies = append(policies, dr.subset(k.subset).GetTrafficPolicy())
	}
	policies = append(policies, dr.spec.GetTrafficPolicy())
	for _, tp := range policies {
		for _, pl := range tp.GetPortLevelSettings() {
			if pl.GetPort().GetNumber() == k.port && pl.GetLoadBalancer().GetLbPolicy() != nil {
				return simpleLb(pl.GetLoadBalancer())
			}
		}
		if tp.GetLoadBalancer().GetLbPolicy() != nil {
			return simpleLb(tp.GetLoadBalancer())
		}
	}
	return defaultLbPolicy
}

// simpleLb maps Istio's simple load balancers to Envoy's. Consistent hash
// and PASSTHROUGH are not supported yet and get the default.
func simpleLb(lb *v1alpha3.LoadBalancerSettings) clusterv3.Cluster_LbPolicy {
	switch lb.GetSimple() {
	case v1alpha3.LoadBalancerSettings_ROUND_ROBIN:
		return clusterv3.Cluster_ROUND_ROBIN
	case v1alpha3.LoadBalancerSettings_RANDOM:
		return clusterv3.Cluster_RANDOM
	case v1alpha3.LoadBalancerSettings_LEAST_REQUEST, v1alpha3.LoadBalancerSettings_LEAST_CONN:
		return clusterv3.Cluster_LEAST_REQUEST
	}
	return defaultLbPolicy
}

// inboundClusterName is the cluster of the local application behind a
// service port: inbound|PORT||.
func inboundClusterName(port uint32) string { return fmt.Sprintf("inbound|%d||", port) }

// inboundClusters are the static clusters of a sidecar's local
// application, one per workload port, at 127.0.0.1:targetPort.
func (t *translator) inboundClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, p := range t.proxy.Ports {
		target := p.TargetPort
		if target == 0 {
			target = p.Port
		}
		name := inboundClusterName(p.Port)
		out = append(out, &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("127.0.0.1", target, 0)},
				}},
			},
		})
	}
	return out
}
