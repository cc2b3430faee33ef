package model

import (
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/proxy/upstream"
	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	upstreamhttpv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/v3"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// istioCluster is a cluster as Istio translates a DestinationRule with
// connectionPool and outlierDetection.
func istioCluster(t *testing.T) *clusterv3.Cluster {
	c := xdstest.EDSCluster(cRev)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
		MaxConnections: wrapperspb.UInt32(1), MaxPendingRequests: wrapperspb.UInt32(2), MaxRequests: wrapperspb.UInt32(3), MaxRetries: wrapperspb.UInt32(4),
	}}}
	po, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(7 * time.Second), MaxRequestsPerConnection: wrapperspb.UInt32(5),
			MaxConnectionDuration: durationpb.New(9 * time.Second)},
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{nameHTTPProtocolOptions: po}
	c.OutlierDetection = &clusterv3.OutlierDetection{
		Consecutive_5Xx: wrapperspb.UInt32(6), Interval: durationpb.New(time.Second), BaseEjectionTime: durationpb.New(2 * time.Second),
		MaxEjectionPercent: wrapperspb.UInt32(40), EnforcingSuccessRate: wrapperspb.UInt32(0),
		ConsecutiveGatewayFailure: wrapperspb.UInt32(0), EnforcingConsecutiveGatewayFailure: wrapperspb.UInt32(100),
		SplitExternalLocalOriginErrors: true, ConsecutiveLocalOriginFailure: wrapperspb.UInt32(3), EnforcingConsecutiveLocalOriginFailure: wrapperspb.UInt32(100),
		EnforcingLocalOriginSuccessRate: wrapperspb.UInt32(0),
	}
	c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{
		KeepaliveProbes: wrapperspb.UInt32(4), KeepaliveTime: wrapperspb.UInt32(60), KeepaliveInterval: wrapperspb.UInt32(10)}}
	c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 25}}
	return c
}

func TestCompileClusterResilience(t *testing.T) {
	cc, err := compileCluster(istioCluster(t))
	if err != nil {
		t.Fatal(err)
	}
	s := cc.spec
	if want := (upstream.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 2, MaxRequests: 3, MaxRetries: 4}); s.CircuitBreakers == nil || *s.CircuitBreakers != want {
		t.Errorf("circuit breakers %+v, want %+v", s.CircuitBreakers, want)
	}
	if s.IdleTimeout != 7*time.Second || s.MaxRequestsPerConnection != 5 || s.MaxConnectionDuration != 9*time.Second {
		t.Errorf("idle timeout %v, max requests per connection %d, max connection duration %v", s.IdleTimeout, s.MaxRequestsPerConnection, s.MaxConnectionDuration)
	}
	if want := (upstream.TCPKeepalive{Probes: 4, Idle: time.Minute, Interval: 10 * time.Second}); s.TCPKeepalive == nil || *s.TCPKeepalive != want {
		t.Errorf("TCP keepalive %+v, want %+v", s.TCPKeepalive, want)
	}
	want := upstream.DefaultOutlierDetection()
	want.Consecutive5xx, want.Interval, want.BaseEjectionTime, want.MaxEjectionPercent = 6, time.Second, 2*time.Second, 40
	want.ConsecutiveGatewayFailure, want.EnforcingGatewayFailure = 0, 100
	want.SplitLocalOrigin, want.ConsecutiveLocalOriginFailure = true, 3
	if s.Outlier == nil || *s.Outlier != want {
		t.Errorf("outlier detection %+v, want %+v", s.Outlier, want)
	}
	if s.HealthyPanicThreshold == nil || *s.HealthyPanicThreshold != 25 {
		t.Errorf("healthy panic threshold %v", s.HealthyPanicThreshold)
	}
	// Defaults: a bare threshold and outlier_detection with only
	// enforcing_success_rate 0.
	c := xdstest.EDSCluster(cRev)
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{}, {Priority: corev3.RoutingPriority_HIGH, MaxRequests: wrapperspb.UInt32(1)}}}
	c.OutlierDetection = &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	cc, err = compileCluster(c)
	if err != nil {
		t.Fatal(err)
	}
	if *cc.spec.CircuitBreakers != upstream.DefaultCircuitBreakers() || *cc.spec.Outlier != upstream.DefaultOutlierDetection() {
		t.Errorf("defaults: %+v %+v", cc.spec.CircuitBreakers, cc.spec.Outlier)
	}
}

func TestCompileClusterResilienceRejected(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(c *clusterv3.Cluster)
		want   []string
	}{
		{"success rate enforced by default", func(c *clusterv3.Cluster) { c.OutlierDetection.EnforcingSuccessRate = nil },
			[]string{"outlier_detection.enforcing_success_rate", "set it to 0"}},
		{"failure percentage", func(c *clusterv3.Cluster) { c.OutlierDetection.EnforcingFailurePercentage = wrapperspb.UInt32(10) },
			[]string{"outlier_detection.enforcing_failure_percentage", "not supported"}},
		{"local origin success rate enforced by default", func(c *clusterv3.Cluster) { c.OutlierDetection.EnforcingLocalOriginSuccessRate = nil },
			[]string{"outlier_detection.enforcing_local_origin_success_rate", "set it to 0"}},
		{"local origin enforcing over 100", func(c *clusterv3.Cluster) {
			c.OutlierDetection.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(101)
		}, []string{"enforcing_consecutive_local_origin_failure 101"}},
		{"keepalive time 0", func(c *clusterv3.Cluster) {
			c.UpstreamConnectionOptions.TcpKeepalive.KeepaliveTime = wrapperspb.UInt32(0)
		},
			[]string{"upstream_connection_options.tcp_keepalive.keepalive_time 0", "1 to 32767 seconds"}},
		{"keepalive probes 200", func(c *clusterv3.Cluster) {
			c.UpstreamConnectionOptions.TcpKeepalive.KeepaliveProbes = wrapperspb.UInt32(200)
		},
			[]string{"tcp_keepalive.keepalive_probes 200"}},
		{"percent over 100", func(c *clusterv3.Cluster) { c.OutlierDetection.MaxEjectionPercent = wrapperspb.UInt32(101) },
			[]string{"max_ejection_percent 101", "0 to 100"}},
		{"zero interval", func(c *clusterv3.Cluster) { c.OutlierDetection.Interval = durationpb.New(0) },
			[]string{"outlier_detection.interval", "positive"}},
		{"retry budget interval", func(c *clusterv3.Cluster) {
			c.CircuitBreakers.Thresholds[0].RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetInterval: durationpb.New(time.Second)}
		}, []string{"circuit_breakers.thresholds[0].retry_budget.budget_interval", "not supported"}},
		{"retry budget over 100 %", func(c *clusterv3.Cluster) {
			c.CircuitBreakers.Thresholds[0].RetryBudget = &clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 150}}
		}, []string{"retry_budget.budget_percent 150", "0 to 100"}},
		{"two DEFAULT thresholds", func(c *clusterv3.Cluster) {
			c.CircuitBreakers.Thresholds = append(c.CircuitBreakers.Thresholds, &clusterv3.CircuitBreakers_Thresholds{})
		}, []string{"thresholds[1]", "second threshold", "DEFAULT"}},
		{"negative max connection duration", func(c *clusterv3.Cluster) {
			po, _ := anypb.New(&upstreamhttpv3.HttpProtocolOptions{CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{MaxConnectionDuration: durationpb.New(-time.Second)}})
			c.TypedExtensionProtocolOptions[nameHTTPProtocolOptions] = po
		}, []string{nameHTTPProtocolOptions, "common_http_protocol_options.max_connection_duration", "0 or more"}},
		{"HTTP/2 keepalive without a timeout", func(c *clusterv3.Cluster) {
			c.TypedExtensionProtocolOptions[nameHTTPProtocolOptions] = h2Options(t, &corev3.Http2ProtocolOptions{
				ConnectionKeepalive: &corev3.KeepaliveSettings{Interval: durationpb.New(time.Second)}})
		}, []string{"explicit_http_config.http2_protocol_options.connection_keepalive.timeout", "required"}},
		{"HTTP/2 max concurrent streams 0", func(c *clusterv3.Cluster) {
			c.TypedExtensionProtocolOptions[nameHTTPProtocolOptions] = h2Options(t, &corev3.Http2ProtocolOptions{MaxConcurrentStreams: wrapperspb.UInt32(0)})
		}, []string{"http2_protocol_options.max_concurrent_streams 0", "from 1"}},
		{"panic threshold over 100", func(c *clusterv3.Cluster) { c.CommonLbConfig.HealthyPanicThreshold.Value = 150 },
			[]string{"healthy_panic_threshold 150"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := istioCluster(t)
			tc.mutate(c)
			_, err := compileCluster(c)
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// A retry budget reaches the breaker's settings, Envoy's defaults filling
// what it leaves out.
func TestCompileClusterRetryBudget(t *testing.T) {
	for _, tc := range []struct {
		rb          *clusterv3.CircuitBreakers_Thresholds_RetryBudget
		pct         float64
		minRetrying uint32
	}{
		{&clusterv3.CircuitBreakers_Thresholds_RetryBudget{}, 20, 3},
		{&clusterv3.CircuitBreakers_Thresholds_RetryBudget{BudgetPercent: &typev3.Percent{Value: 50}, MinRetryConcurrency: wrapperspb.UInt32(1)}, 50, 1},
	} {
		c := istioCluster(t)
		c.CircuitBreakers.Thresholds[0].RetryBudget = tc.rb
		cc, err := compileCluster(c)
		if err != nil {
			t.Fatal(err)
		}
		cb := cc.spec.CircuitBreakers
		if !cb.RetryBudget || cb.BudgetPercent != tc.pct || cb.MinRetryConcurrency != tc.minRetrying {
			t.Errorf("retry budget %v: compiled %+v, want %g %% and at least %d", tc.rb, cb, tc.pct, tc.minRetrying)
		}
	}
}

// h2Options is HTTP protocol options that speak HTTP/2 upstream with o.
func h2Options(t *testing.T, o *corev3.Http2ProtocolOptions) *anypb.Any {
	t.Helper()
	po, err := anypb.New(&upstreamhttpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: o}}}})
	if err != nil {
		t.Fatal(err)
	}
	return po
}

// The HTTP/2 options weft-proxy acts on reach the cluster's spec.
func TestCompileClusterHTTP2Options(t *testing.T) {
	c := xdstest.EDSCluster(cRev)
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{nameHTTPProtocolOptions: h2Options(t, &corev3.Http2ProtocolOptions{
		MaxConcurrentStreams: wrapperspb.UInt32(8),
		ConnectionKeepalive:  &corev3.KeepaliveSettings{Interval: durationpb.New(30 * time.Second), Timeout: durationpb.New(5 * time.Second)},
	})}
	cc, err := compileCluster(c)
	if err != nil {
		t.Fatal(err)
	}
	want := upstream.HTTP2Options{MaxConcurrentStreams: 8, PingInterval: 30 * time.Second, PingTimeout: 5 * time.Second}
	if cc.spec.Protocol != upstream.HTTP2 || cc.spec.HTTP2 != want {
		t.Errorf("protocol %v, HTTP/2 options %+v; want HTTP/2, %+v", cc.spec.Protocol, cc.spec.HTTP2, want)
	}
}

// TestCompileClusterProtocol reads the HTTP version a cluster speaks
// upstream from its protocol options, as Istio writes them.
func TestCompileClusterProtocol(t *testing.T) {
	explicit := func(h2 bool) *upstreamhttpv3.HttpProtocolOptions {
		e := &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}}}
		if h2 {
			e.ProtocolConfig = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}
		}
		return &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: e}}
	}
	downstream := &upstreamhttpv3.HttpProtocolOptions{UpstreamProtocolOptions: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
		UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}, Http2ProtocolOptions: &corev3.Http2ProtocolOptions{}}}}
	for _, tc := range []struct {
		name       string
		opts       *upstreamhttpv3.HttpProtocolOptions
		deprecated bool
		want       upstream.Protocol
	}{
		{"no options", nil, false, upstream.HTTP1},
		{"explicit HTTP/1.1", explicit(false), false, upstream.HTTP1},
		{"explicit HTTP/2", explicit(true), false, upstream.HTTP2},
		{"downstream's", downstream, false, upstream.Downstream},
		{"deprecated http2_protocol_options", nil, true, upstream.HTTP2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := xdstest.EDSCluster(cRev)
			if tc.opts != nil {
				a, err := anypb.New(tc.opts)
				if err != nil {
					t.Fatal(err)
				}
				c.TypedExtensionProtocolOptions = map[string]*anypb.Any{nameHTTPProtocolOptions: a}
			}
			if tc.deprecated {
				c.Http2ProtocolOptions = &corev3.Http2ProtocolOptions{}
			}
			cc, err := compileCluster(c)
			if err != nil {
				t.Fatal(err)
			}
			if cc.spec.Protocol != tc.want {
				t.Errorf("protocol %s, want %s", cc.spec.Protocol, tc.want)
			}
		})
	}
}

// A round robin or least request cluster's slow start reaches its spec,
// Envoy's defaults filling what it leaves out; a window is required.
func TestCompileClusterSlowStart(t *testing.T) {
	c := xdstest.EDSCluster(cRev)
	c.LbPolicy = clusterv3.Cluster_ROUND_ROBIN
	c.LbConfig = &clusterv3.Cluster_RoundRobinLbConfig_{RoundRobinLbConfig: &clusterv3.Cluster_RoundRobinLbConfig{
		SlowStartConfig: &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(30 * time.Second)}}}
	cc, err := compileCluster(c)
	if err != nil {
		t.Fatal(err)
	}
	if want := (upstream.SlowStart{Window: 30 * time.Second, Aggression: 1, MinWeightPercent: 10}); cc.spec.SlowStart == nil || *cc.spec.SlowStart != want {
		t.Errorf("round robin slow start %+v, want %+v", cc.spec.SlowStart, want)
	}
	c.LbPolicy = clusterv3.Cluster_LEAST_REQUEST
	c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
		SlowStartConfig: &clusterv3.Cluster_SlowStartConfig{SlowStartWindow: durationpb.New(time.Minute),
			Aggression: &corev3.RuntimeDouble{DefaultValue: 2, RuntimeKey: "k"}, MinWeightPercent: &typev3.Percent{Value: 25}}}}
	if cc, err = compileCluster(c); err != nil {
		t.Fatal(err)
	}
	if want := (upstream.SlowStart{Window: time.Minute, Aggression: 2, MinWeightPercent: 25}); cc.spec.SlowStart == nil || *cc.spec.SlowStart != want {
		t.Errorf("least request slow start %+v, want %+v", cc.spec.SlowStart, want)
	}
	c.LbConfig = &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{
		SlowStartConfig: &clusterv3.Cluster_SlowStartConfig{}}}
	if _, err := compileCluster(c); err == nil || !strings.Contains(err.Error(), "least_request_lb_config.slow_start_config.slow_start_window: required") {
		t.Errorf("a slow start without a window: %v", err)
	}
}
