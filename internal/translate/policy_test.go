package translate

import (
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
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
