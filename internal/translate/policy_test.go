package translate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
)

// TestMergeTrafficPolicy checks which connection pool, outlier detection
// and load balancer a cluster ends up with when a DestinationRule sets
// them at several levels, following Istio: port-level settings replace
// rather than inherit, and a subset replaces each part it sets.
func TestMergeTrafficPolicy(t *testing.T) {
	pool := func(maxConns int32) *v1alpha3.ConnectionPoolSettings {
		return &v1alpha3.ConnectionPoolSettings{Tcp: &v1alpha3.ConnectionPoolSettings_TCPSettings{MaxConnections: maxConns}}
	}
	outlier := func(n uint32) *v1alpha3.OutlierDetection {
		return &v1alpha3.OutlierDetection{Consecutive_5XxErrors: wrapperspb.UInt32(n)}
	}
	lb := func(s v1alpha3.LoadBalancerSettings_SimpleLB) *v1alpha3.LoadBalancerSettings {
		return &v1alpha3.LoadBalancerSettings{LbPolicy: &v1alpha3.LoadBalancerSettings_Simple{Simple: s}}
	}
	portLevel := func(port uint32, tp *v1alpha3.TrafficPolicy) *v1alpha3.TrafficPolicy_PortTrafficPolicy {
		return &v1alpha3.TrafficPolicy_PortTrafficPolicy{
			Port:           &v1alpha3.PortSelector{Number: port},
			ConnectionPool: tp.GetConnectionPool(), OutlierDetection: tp.GetOutlierDetection(), LoadBalancer: tp.GetLoadBalancer(),
		}
	}
	rule := &v1alpha3.TrafficPolicy{
		ConnectionPool: pool(100), OutlierDetection: outlier(5), LoadBalancer: lb(v1alpha3.LoadBalancerSettings_RANDOM),
		PortLevelSettings: []*v1alpha3.TrafficPolicy_PortTrafficPolicy{
			portLevel(9090, &v1alpha3.TrafficPolicy{ConnectionPool: pool(9)}),
			portLevel(9090, &v1alpha3.TrafficPolicy{ConnectionPool: pool(1)}), // shadowed: the first wins
		},
	}
	tests := []struct {
		name       string
		rule, sub  *v1alpha3.TrafficPolicy
		port       uint32
		want       *v1alpha3.TrafficPolicy // nil: no policy at all
		wantPolicy bool
	}{
		{name: "no rule", port: 9080},
		{name: "rule only", rule: rule, port: 9080, wantPolicy: true,
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(100), OutlierDetection: outlier(5), LoadBalancer: lb(v1alpha3.LoadBalancerSettings_RANDOM)}},
		{name: "rule port level replaces, nothing inherited", rule: rule, port: 9090, wantPolicy: true,
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(9)}},
		{name: "subset overrides only what it sets", rule: rule, port: 9080, wantPolicy: true,
			sub:  &v1alpha3.TrafficPolicy{OutlierDetection: outlier(2)},
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(100), OutlierDetection: outlier(2), LoadBalancer: lb(v1alpha3.LoadBalancerSettings_RANDOM)}},
		{name: "subset over the rule's port level", rule: rule, port: 9090, wantPolicy: true,
			sub:  &v1alpha3.TrafficPolicy{OutlierDetection: outlier(2)},
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(9), OutlierDetection: outlier(2)}},
		{name: "subset port level replaces everything", rule: rule, port: 9080, wantPolicy: true,
			sub: &v1alpha3.TrafficPolicy{
				OutlierDetection:  outlier(2),
				PortLevelSettings: []*v1alpha3.TrafficPolicy_PortTrafficPolicy{portLevel(9080, &v1alpha3.TrafficPolicy{ConnectionPool: pool(3)})},
			},
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(3)}},
		{name: "subset port level for another port", rule: rule, port: 9080, wantPolicy: true,
			sub: &v1alpha3.TrafficPolicy{
				LoadBalancer:      lb(v1alpha3.LoadBalancerSettings_ROUND_ROBIN),
				PortLevelSettings: []*v1alpha3.TrafficPolicy_PortTrafficPolicy{portLevel(9090, &v1alpha3.TrafficPolicy{ConnectionPool: pool(3)})},
			},
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(100), OutlierDetection: outlier(5), LoadBalancer: lb(v1alpha3.LoadBalancerSettings_ROUND_ROBIN)}},
		{name: "subset without a rule-wide policy", port: 9080, wantPolicy: true,
			sub:  &v1alpha3.TrafficPolicy{ConnectionPool: pool(7)},
			want: &v1alpha3.TrafficPolicy{ConnectionPool: pool(7)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := proto.Clone(rule)
			got := mergeTrafficPolicy(tt.rule, tt.sub, tt.port)
			if (got != nil) != tt.wantPolicy {
				t.Fatalf("policy = %v, want one: %v", got, tt.wantPolicy)
			}
			if tt.want != nil && !proto.Equal(got, tt.want) {
				t.Errorf("merged policy\n got %v\nwant %v", got, tt.want)
			}
			if !proto.Equal(before, rule) {
				t.Error("merging modified the DestinationRule")
			}
		})
	}
}

// TestOutlierDetectionZeroDisables checks that a consecutive error count
// of 0 turns that ejection off rather than ejecting on every error, and
// that success-rate ejection, which Istio does not expose, stays off.
func TestOutlierDetectionZeroDisables(t *testing.T) {
	c := outboundTestCluster()
	applyOutlierDetection(c, &v1alpha3.OutlierDetection{
		Consecutive_5XxErrors: wrapperspb.UInt32(0), ConsecutiveGatewayErrors: wrapperspb.UInt32(4),
		BaseEjectionTime: durationpb.New(30e9),
	})
	od := c.GetOutlierDetection()
	for _, f := range []struct {
		name      string
		got, want *wrapperspb.UInt32Value
	}{
		{"enforcing_consecutive_5xx", od.GetEnforcingConsecutive_5Xx(), wrapperspb.UInt32(0)},
		{"enforcing_consecutive_gateway_failure", od.GetEnforcingConsecutiveGatewayFailure(), wrapperspb.UInt32(100)},
		{"consecutive_gateway_failure", od.GetConsecutiveGatewayFailure(), wrapperspb.UInt32(4)},
		{"enforcing_success_rate", od.GetEnforcingSuccessRate(), wrapperspb.UInt32(0)},
	} {
		if !proto.Equal(f.got, f.want) {
			t.Errorf("%s = %v, want %v", f.name, f.got, f.want)
		}
	}
	if got := c.GetCommonLbConfig().GetHealthyPanicThreshold(); got == nil || got.GetValue() != 0 {
		t.Errorf("healthy_panic_threshold = %v, want 0 (panic mode off, as in Istio)", got)
	}
}

func outboundTestCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{Name: "outbound|9080||reviews.default.svc.cluster.local"}
}

// TestApplyLoadBalancer checks the load balancer a cluster gets from its
// merged loadBalancer settings, consistent hash included, with Istio's
// defaults where a size is left out.
func TestApplyLoadBalancer(t *testing.T) {
	hash := func(ch *v1alpha3.LoadBalancerSettings_ConsistentHashLB) *v1alpha3.LoadBalancerSettings {
		ch.HashKey = &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"}
		return &v1alpha3.LoadBalancerSettings{LbPolicy: &v1alpha3.LoadBalancerSettings_ConsistentHash{ConsistentHash: ch}}
	}
	ring := func(n uint64) *clusterv3.Cluster {
		return &clusterv3.Cluster{LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{MinimumRingSize: wrapperspb.UInt64(n)}}}
	}
	tests := []struct {
		name   string
		lb     *v1alpha3.LoadBalancerSettings
		policy clusterv3.Cluster_LbPolicy
		config *clusterv3.Cluster // its lb_config is wanted; nil: none
	}{
		{"no settings: Istio's default", nil, clusterv3.Cluster_LEAST_REQUEST, nil},
		{"simple", &v1alpha3.LoadBalancerSettings{LbPolicy: &v1alpha3.LoadBalancerSettings_Simple{Simple: v1alpha3.LoadBalancerSettings_RANDOM}},
			clusterv3.Cluster_RANDOM, nil},
		{"no algorithm, no size: ring of 1024", hash(&v1alpha3.LoadBalancerSettings_ConsistentHashLB{}), clusterv3.Cluster_RING_HASH, ring(1024)},
		{"no algorithm, deprecated size", hash(&v1alpha3.LoadBalancerSettings_ConsistentHashLB{MinimumRingSize: 2048}), clusterv3.Cluster_RING_HASH, ring(2048)},
		{"ringHash without size: Envoy's default", hash(&v1alpha3.LoadBalancerSettings_ConsistentHashLB{
			HashAlgorithm: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_RingHash{}},
		}), clusterv3.Cluster_RING_HASH, nil},
		{"ringHash size wins over the deprecated one", hash(&v1alpha3.LoadBalancerSettings_ConsistentHashLB{
			MinimumRingSize: 2048,
			HashAlgorithm:   &v1alpha3.LoadBalancerSettings_ConsistentHashLB_RingHash_{RingHash: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_RingHash{MinimumRingSize: 8}},
		}), clusterv3.Cluster_RING_HASH, ring(8)},
		{"maglev without size: Envoy's default", hash(&v1alpha3.LoadBalancerSettings_ConsistentHashLB{
			HashAlgorithm: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_MagLev{}},
		}), clusterv3.Cluster_MAGLEV, nil},
		{"maglev table size", hash(&v1alpha3.LoadBalancerSettings_ConsistentHashLB{
			HashAlgorithm: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_Maglev{Maglev: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_MagLev{TableSize: 251}},
		}), clusterv3.Cluster_MAGLEV, &clusterv3.Cluster{LbConfig: &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: wrapperspb.UInt64(251)}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &clusterv3.Cluster{}
			applyLoadBalancer(c, tt.lb)
			want := &clusterv3.Cluster{LbPolicy: tt.policy}
			if tt.config != nil {
				want.LbConfig = tt.config.LbConfig
			}
			if !proto.Equal(c, want) {
				t.Errorf("got %v, want %v", c, want)
			}
		})
	}
}

// TestHashPolicy checks the route hash key of each consistentHash form.
func TestHashPolicy(t *testing.T) {
	type ch = v1alpha3.LoadBalancerSettings_ConsistentHashLB
	type hp = routev3.RouteAction_HashPolicy
	tests := []struct {
		name string
		in   *ch
		want *hp
	}{
		{"no key", &ch{}, nil},
		{"header", &ch{HashKey: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpHeaderName{HttpHeaderName: "x-user"}},
			&hp{PolicySpecifier: &routev3.RouteAction_HashPolicy_Header_{Header: &routev3.RouteAction_HashPolicy_Header{HeaderName: "x-user"}}}},
		{"cookie without ttl: Envoy never sets it", &ch{HashKey: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpCookie{
			HttpCookie: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "s"}}},
			&hp{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "s"}}}},
		{"session cookie: path and a 0s ttl", &ch{HashKey: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpCookie{
			HttpCookie: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HTTPCookie{Name: "s", Path: "/app", Ttl: durationpb.New(0)}}},
			&hp{PolicySpecifier: &routev3.RouteAction_HashPolicy_Cookie_{Cookie: &routev3.RouteAction_HashPolicy_Cookie{Name: "s", Path: "/app", Ttl: durationpb.New(0)}}}},
		{"source IP", &ch{HashKey: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_UseSourceIp{UseSourceIp: true}},
			&hp{PolicySpecifier: &routev3.RouteAction_HashPolicy_ConnectionProperties_{ConnectionProperties: &routev3.RouteAction_HashPolicy_ConnectionProperties{SourceIp: true}}}},
		{"query parameter", &ch{HashKey: &v1alpha3.LoadBalancerSettings_ConsistentHashLB_HttpQueryParameterName{HttpQueryParameterName: "shard"}},
			&hp{PolicySpecifier: &routev3.RouteAction_HashPolicy_QueryParameter_{QueryParameter: &routev3.RouteAction_HashPolicy_QueryParameter{Name: "shard"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := hashPolicy(tt.in); !proto.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestUpstreamProtocol checks the HTTP version a cluster's protocol options
// name: HTTP/2 for an HTTP port whose DestinationRule asks for
// h2UpgradePolicy UPGRADE and for every HTTP2 or GRPC port, the client's
// for useClientProtocol, and none (HTTP/1.1, Envoy's default) otherwise.
func TestUpstreamProtocol(t *testing.T) {
	httpPolicy := func(h *v1alpha3.ConnectionPoolSettings_HTTPSettings) *v1alpha3.ConnectionPoolSettings {
		return &v1alpha3.ConnectionPoolSettings{Http: h}
	}
	upgrade := httpPolicy(&v1alpha3.ConnectionPoolSettings_HTTPSettings{H2UpgradePolicy: v1alpha3.ConnectionPoolSettings_HTTPSettings_UPGRADE})
	for _, tc := range []struct {
		name     string
		cp       *v1alpha3.ConnectionPoolSettings
		protocol string
		want     string // "h2", "h1", "downstream" or "" (no options)
	}{
		{"no policy", nil, "HTTP", ""},
		{"upgrade on an HTTP port", upgrade, "HTTP", "h2"},
		{"upgrade on a TCP port", upgrade, "TCP", ""},
		{"upgrade on an undeclared port", upgrade, "", ""},
		{"do not upgrade", httpPolicy(&v1alpha3.ConnectionPoolSettings_HTTPSettings{H2UpgradePolicy: v1alpha3.ConnectionPoolSettings_HTTPSettings_DO_NOT_UPGRADE, MaxRequestsPerConnection: 5}), "HTTP", "h1"},
		{"client protocol", httpPolicy(&v1alpha3.ConnectionPoolSettings_HTTPSettings{UseClientProtocol: true}), "HTTP", "downstream"},
		{"gRPC port with options", httpPolicy(&v1alpha3.ConnectionPoolSettings_HTTPSettings{MaxRequestsPerConnection: 5}), "GRPC", "h2"},
		{"gRPC port without a policy", nil, "GRPC", "h2"},
		{"HTTP2 port without a policy", nil, "HTTP2", "h2"},
		{"gRPC port, do not upgrade", httpPolicy(&v1alpha3.ConnectionPoolSettings_HTTPSettings{H2UpgradePolicy: v1alpha3.ConnectionPoolSettings_HTTPSettings_DO_NOT_UPGRADE}), "GRPC", "h2"},
		{"gRPC port, client protocol", httpPolicy(&v1alpha3.ConnectionPoolSettings_HTTPSettings{UseClientProtocol: true}), "GRPC", "downstream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := &clusterv3.Cluster{}
			applyConnectionPool(c, tc.cp, tc.protocol)
			a := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsName]
			got := ""
			if a != nil {
				o := &upstreamhttpv3.HttpProtocolOptions{}
				if err := a.UnmarshalTo(o); err != nil {
					t.Fatal(err)
				}
				switch {
				case o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
					got = "h2"
				case o.GetExplicitHttpConfig().GetHttpProtocolOptions() != nil:
					got = "h1"
				case o.GetUseDownstreamProtocolConfig() != nil:
					got = "downstream"
				}
			}
			if got != tc.want {
				t.Errorf("protocol options name %q, want %q", got, tc.want)
			}
		})
	}
}
