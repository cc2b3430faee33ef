package translate

import (
	"maps"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/structpb"
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
		le := lbEndpoint(ep.Address, dial, ep.Weight)
		if ep.Sidecar {
			le.Metadata = sidecarMetadata
		}
		byLocality[ep.Locality] = append(byLocality[ep.Locality], le)
	}
	for _, loc := range slices.Sorted(maps.Keys(byLocality)) {
		cla.Endpoints = append(cla.Endpoints, &endpointv3.LocalityLbEndpoints{
			Locality:    locality(loc),
			LbEndpoints: byLocality[loc],
		})
	}
	return cla
}

// sidecarMetadata marks an endpoint served by a mesh proxy, as Istio's
// control plane does (Envoy's transport socket matches read it): proxies
// may speak to such an endpoint as to one of their own.
var sidecarMetadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
	SidecarMetadataKey: {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue("istio")}},
}}

// SidecarMetadataKey is the filter_metadata key of sidecarMetadata.
const SidecarMetadataKey = "envoy.transport_socket_match"

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
