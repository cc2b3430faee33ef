package translate

import (
	"fmt"
	"slices"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/registry"
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

// outboundCluster is the EDS cluster k with the DestinationRule policy
// that applies to it (see trafficPolicy): load balancer, connection pool,
// outlier detection and TLS origination, and the rule's name in its
// metadata.
func (t *translator) outboundCluster(k clusterKey) *clusterv3.Cluster {
	tp := t.trafficPolicy(k)
	c := &clusterv3.Cluster{
		Name:                 k.name(),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
	}
	applyLoadBalancer(c, tp.GetLoadBalancer())
	applyConnectionPool(c, tp.GetConnectionPool(), t.portProtocol(k.host, k.port))
	applyRetryBudget(c, tp.GetRetryBudget())
	applyOutlierDetection(c, tp.GetOutlierDetection())
	applyTLS(c, tp.GetTls(), k.host)
	if dr, ok := t.drs[k.host]; ok {
		c.Metadata = configMetadata("destination-rule", dr.res, k.subset)
	}
	return c
}

// portProtocol is the declared protocol of a service port, "" when the
// port or the service is unknown.
func (t *translator) portProtocol(host string, port uint32) string {
	if svc := t.snap.Service(host); svc != nil {
		for _, p := range svc.Ports {
			if p.Number == port {
				return p.Protocol
			}
		}
	}
	return ""
}

// applyLoadBalancer sets c's load balancer from a cluster's merged
// loadBalancer settings, as Istio does: a simple load balancer maps to
// Envoy's, and nil (or UNSPECIFIED) gets Istio's default. A consistentHash
// makes the cluster MAGLEV (maglev.tableSize in maglev_lb_config, Envoy's
// default table when it is 0) or RING_HASH (ringHash.minimumRingSize in
// ring_hash_lb_config, Envoy's default when it is 0). With neither
// algorithm named, Istio's older form, it is RING_HASH with the deprecated
// minimumRingSize, or 1024 when that is 0. The hash key goes on the routes
// to the cluster (see hashPolicy).
func applyLoadBalancer(c *clusterv3.Cluster, lb *v1alpha3.LoadBalancerSettings) {
	c.LbPolicy = simpleLb(lb)
	ch := lb.GetConsistentHash()
	if ch == nil {
		if ss := slowStart(lb); ss != nil {
			switch c.LbPolicy {
			case clusterv3.Cluster_ROUND_ROBIN:
				c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{SlowStartConfig: ss}}
			case clusterv3.Cluster_LEAST_REQUEST:
				c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{SlowStartConfig: ss}}
			}
		}
		return
	}
	switch {
	case ch.GetMaglev() != nil:
		c.LbPolicy = clusterv3.Cluster_MAGLEV
		if n := ch.GetMaglev().GetTableSize(); n != 0 {
			c.LbConfig = &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{
				TableSize: wrapperspb.UInt64(n),
			}}
		}
	case ch.GetRingHash() != nil:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		if n := ch.GetRingHash().GetMinimumRingSize(); n != 0 {
			c.LbConfig = ringHashConfig(n)
		}
	default:
		c.LbPolicy = clusterv3.Cluster_RING_HASH
		n := ch.GetMinimumRingSize() //nolint:staticcheck // deprecated, still honoured as in Istio
		if n == 0 {
			n = defaultMinimumRingSize
		}
		c.LbConfig = ringHashConfig(n)
	}
}

// slowStart is Envoy's slow start configuration for a DestinationRule's
// warmup (or the older warmupDurationSecs), as Istio writes it: a new
// endpoint's share of the traffic grows over the duration, from
// minimumPercent of its weight, at a pace set by aggression. nil without
// either.
func slowStart(lb *v1alpha3.LoadBalancerSettings) *clusterv3.Cluster_SlowStartConfig {
	w := lb.GetWarmup()
	d := w.GetDuration()
	if d == nil {
		d = lb.GetWarmupDurationSecs()
	}
	if d == nil {
		return nil
	}
	out := &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: proto.CloneOf(d)}
	if a := w.GetAggression(); a.GetValue() > 0 { // 0: Envoy's default, 1
		out.Aggression = &corev3.RuntimeDouble{DefaultValue: a.GetValue(), RuntimeKey: "upstream.slow_start_aggression"}
	}
	if m := w.GetMinimumPercent(); m != nil {
		out.MinWeightPercent = &typev3.Percent{Value: m.GetValue()}
	}
	return out
}

// defaultMinimumRingSize is the ring size Istio sets when a consistentHash
// names no algorithm and no (deprecated) minimumRingSize; it is Envoy's own
// default.
const defaultMinimumRingSize = 1024

func ringHashConfig(minSize uint64) *clusterv3.Cluster_RingHashLbConfig_ {
	return &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
		MinimumRingSize: wrapperspb.UInt64(minSize),
	}}
}

// simpleLb maps Istio's simple load balancers to Envoy's. PASSTHROUGH is
// not supported yet and gets the default, as do nil and UNSPECIFIED.
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
// application, one per workload port, at 127.0.0.1:targetPort, with
// Istio's default connect timeout and circuit breakers.
func (t *translator) inboundClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	for _, p := range t.proxy.Ports {
		target := p.TargetPort
		if target == 0 {
			target = p.Port
		}
		name := inboundClusterName(p.Port)
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: name,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{
					LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint("127.0.0.1", target, 0)},
				}},
			},
		}
		// Istio's defaults: a DestinationRule's connectionPool applies
		// only to outbound clusters here. The application is spoken to
		// in its port's protocol: HTTP/2 for an http2 or grpc port.
		applyConnectionPool(c, nil, registry.ProtocolFromName(p.Name))
		out = append(out, c)
	}
	return out
}
