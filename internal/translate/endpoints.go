package translate

import (
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// loadAssignment lists the endpoints of an outbound cluster from the
// registry, grouped by locality. A subset keeps the endpoints whose labels
// include the subset's; an endpoint without the cluster's port is skipped.
// A cluster nothing backs (unknown host, port or subset) gets no endpoints.
func (t *translator) loadAssignment(k clusterKey) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: k.name()}
	svc := t.snap.Service(k.host)
	if svc == nil || svc.Port(k.port) == nil {
		return cla
	}
	var want map[string]string
	if k.subset != "" {
		sub := t.drs[k.host].subset(k.subset)
		if sub == nil {
			return cla
		}
		want = sub.GetLabels()
	}
	byLocality := map[string][]*endpointv3.LbEndpoint{}
	for _, ep := range svc.Endpoints {
		dial, ok := ep.Ports[k.port]
		if !ok || dial == 0 || ep.Address == "" || !hasLabels(ep.Labels, want) {
			continue
		}
		byLocality[ep.Locality] = append(byLocality[ep.Locality], lbEndpoint(ep.Address, dial, ep.Weight))
	}
	for _, loc := range slices.Sorted(maps.Keys(byLocality)) {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:    locality(loc),
			LbEndpoints: byLocality[loc],
		})
	}
	return cla
}

// lbEndpoint is one endpoint; weight 0 leaves the weight unset.
func lbEndpoint(ip string, port, weight uint32) *endpointv3.LbEndpoint {
	ep := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
		Endpoint: &endpointv3.Endpoint{Address: socketAddress(ip, port)},
	}}
	if weight > 0 {
		ep.LoadBalancingWeight = wrapperspb.UInt32(weight)
	}
	return ep
}

// locality parses region/zone/subzone; empty means none.
func locality(s string) *corev3.Locality {
	if s == "" {
		return nil
	}
	parts := strings.SplitN(s, "/", 3)
	parts = append(parts, "", "")
	return &corev3.Locality{Region: parts[0], Zone: parts[1], SubZone: parts[2]}
}
