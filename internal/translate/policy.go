package translate

import (
	"math"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"
)

// defaultConnectTimeout is Istio's mesh-wide connectTimeout, which every
// cluster gets unless a DestinationRule sets connectionPool.tcp.connectTimeout.
const defaultConnectTimeout = 10 * time.Second

// httpProtocolOptionsName is the key of Envoy's upstream HTTP protocol
// options in a cluster's typed_extension_protocol_options.
const httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"

// trafficPolicy is the policy that applies to cluster k, merged as Istio
// merges it: a port-level setting of the rule replaces the rule's policy
// for that port (its connectionPool, loadBalancer, outlierDetection and tls;
// what it leaves out is not inherited); a subset's connectionPool,
// loadBalancer, outlierDetection and tls each replace the rule's; a
// subset's port-level setting replaces all four, set or not. nil means no
// DestinationRule applies.
func (t *translator) trafficPolicy(k clusterKey) *v1alpha3.TrafficPolicy {
	dr, ok := t.drs[k.host]
	if !ok {
		return nil
	}
	var subset *v1alpha3.TrafficPolicy
	if k.subset != "" {
		subset = dr.subset(k.subset).GetTrafficPolicy()
	}
	return mergeTrafficPolicy(dr.spec.GetTrafficPolicy(), subset, k.port)
}

// mergeTrafficPolicy merges a DestinationRule's policy and a subset's for
// one port; see trafficPolicy. The result holds no port-level settings.
func mergeTrafficPolicy(rule, subset *v1alpha3.TrafficPolicy, port uint32) *v1alpha3.TrafficPolicy {
	merged, _ := forPort(rule, port)
	if subset == nil {
		return merged
	}
	sub, portLevel := forPort(subset, port)
	if merged == nil {
		return sub
	}
	if sub.GetConnectionPool() != nil || portLevel {
		merged.ConnectionPool = sub.GetConnectionPool()
	}
	if sub.GetLoadBalancer() != nil || portLevel {
		merged.LoadBalancer = sub.GetLoadBalancer()
	}
	if sub.GetOutlierDetection() != nil || portLevel {
		merged.OutlierDetection = sub.GetOutlierDetection()
	}
	if sub.GetTls() != nil || portLevel {
		merged.Tls = sub.GetTls()
	}
	if sub.GetRetryBudget() != nil {
		merged.RetryBudget = sub.GetRetryBudget()
	}
	return merged
}

// forPort returns a shallow copy of the parts of tp that apply on port:
// its first port-level setting for the port (and true) if it has one, else
// its own. The retry budget, which port-level settings do not have, is
// always tp's. It never modifies tp.
func forPort(tp *v1alpha3.TrafficPolicy, port uint32) (*v1alpha3.TrafficPolicy, bool) {
	if tp == nil {
		return nil, false
	}
	for _, pl := range tp.GetPortLevelSettings() {
		if pl.GetPort() != nil && pl.GetPort().GetNumber() == port {
			return &v1alpha3.TrafficPolicy{
				ConnectionPool:   pl.GetConnectionPool(),
				LoadBalancer:     pl.GetLoadBalancer(),
				OutlierDetection: pl.GetOutlierDetection(),
				Tls:              pl.GetTls(),
				RetryBudget:      tp.GetRetryBudget(),
			}, true
		}
	}
	return &v1alpha3.TrafficPolicy{
		ConnectionPool:   tp.GetConnectionPool(),
		LoadBalancer:     tp.GetLoadBalancer(),
		OutlierDetection: tp.GetOutlierDetection(),
		Tls:              tp.GetTls(),
		RetryBudget:      tp.GetRetryBudget(),
	}, false
}

// defaultThresholds are the circuit breaker thresholds Istio gives every
// cluster, so that Envoy's defaults (1024 connections, pending and active
// requests, 3 retries) never apply silently.
func defaultThresholds() *clusterv3.CircuitBreakers_Thresholds {
	return &clusterv3.CircuitBreakers_Thresholds{
		MaxConnections:     wrapperspb.UInt32(math.MaxUint32),
		MaxPendingRequests: wrapperspb.UInt32(math.MaxUint32),
		MaxRequests:        wrapperspb.UInt32(math.MaxUint32),
		MaxRetries:         wrapperspb.UInt32(math.MaxUint32),
		TrackRemaining:     true,
	}
}

// applyConnectionPool sets the connect timeout, the circuit breakers and
// the upstream HTTP options of c from a DestinationRule's connectionPool,
// as Istio does. With no connectionPool (nil), c gets Istio's defaults.
// Zero means "not set" for every integer field, as in Istio. protocol is
// the service port's protocol, which picks the HTTP version Envoy uses
// upstream when HTTP options have to be emitted; they always are for an
// HTTP2, GRPC or GRPC-WEB port, whose endpoints speak only HTTP/2.
//
// http.h2UpgradePolicy UPGRADE makes an HTTP port's cluster speak HTTP/2 to
// its endpoints, and http.useClientProtocol the protocol each request came
// in with, as in Istio. http.maxConcurrentStreams and http.http2KeepAlive
// go into the HTTP/2 options, and so apply where the cluster speaks HTTP/2;
// tcp.maxConnectionDuration goes into the common HTTP options (and, for a
// TCP service, into its tcp_proxy: see vipListener), and tcp.tcpKeepalive
// into the cluster's upstream connection options.
func applyConnectionPool(c *clusterv3.Cluster, cp *v1alpha3.ConnectionPoolSettings, protocol string) {
	th := defaultThresholds()
	c.ConnectTimeout = durationpb.New(defaultConnectTimeout)
	common := &corev3.HttpProtocolOptions{}
	h2 := &corev3.Http2ProtocolOptions{}
	if h := cp.GetHttp(); h != nil {
		if n := h.GetMaxConcurrentStreams(); n > 0 {
			h2.MaxConcurrentStreams = wrapperspb.UInt32(uint32(n))
		}
		if ka := h.GetHttp2KeepAlive(); ka != nil {
			h2.ConnectionKeepalive = &corev3.KeepaliveSettings{Interval: proto.CloneOf(ka.GetInterval()), Timeout: proto.CloneOf(ka.GetTimeout())}
		}
		if h.GetHttp2MaxRequests() > 0 {
			th.MaxRequests = wrapperspb.UInt32(uint32(h.GetHttp2MaxRequests()))
		}
		if h.GetHttp1MaxPendingRequests() > 0 {
			th.MaxPendingRequests = wrapperspb.UInt32(uint32(h.GetHttp1MaxPendingRequests()))
		}
		if h.GetMaxRetries() > 0 {
			th.MaxRetries = wrapperspb.UInt32(uint32(h.GetMaxRetries()))
		}
		if h.GetMaxRequestsPerConnection() > 0 {
			common.MaxRequestsPerConnection = wrapperspb.UInt32(uint32(h.GetMaxRequestsPerConnection()))
		}
		if h.GetIdleTimeout() != nil {
			common.IdleTimeout = proto.CloneOf(h.GetIdleTimeout())
		}
	}
	if tcp := cp.GetTcp(); tcp != nil {
		if tcp.GetConnectTimeout() != nil {
			c.ConnectTimeout = proto.CloneOf(tcp.GetConnectTimeout())
		}
		if tcp.GetMaxConnections() > 0 {
			th.MaxConnections = wrapperspb.UInt32(uint32(tcp.GetMaxConnections()))
		}
		if common.IdleTimeout == nil && tcp.GetIdleTimeout() != nil {
			common.IdleTimeout = proto.CloneOf(tcp.GetIdleTimeout())
		}
		if d := tcp.GetMaxConnectionDuration(); d != nil {
			common.MaxConnectionDuration = proto.CloneOf(d)
		}
		if ka := tcp.GetTcpKeepalive(); ka != nil {
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: tcpKeepalive(ka)}
		}
	}
	c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{th}}
	switch h := cp.GetHttp(); {
	case h.GetUseClientProtocol():
		protocol = ""
	case h.GetH2UpgradePolicy() == v1alpha3.ConnectionPoolSettings_HTTPSettings_UPGRADE && strings.EqualFold(protocol, "HTTP"):
		protocol = "HTTP2"
	default:
		if common.IdleTimeout == nil && common.MaxRequestsPerConnection == nil && common.MaxConnectionDuration == nil && !isHTTP2(protocol) {
			return
		}
	}
	opts := &upstreamhttpv3.HttpProtocolOptions{CommonHttpProtocolOptions: common}
	setUpstreamProtocol(opts, protocol, h2)
	c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: mustAny(opts)}
}

// applyRetryBudget sets the retry budget of c's circuit breaker (which
// applyConnectionPool made) from a DestinationRule's retryBudget, as Istio
// does: retries in flight are bounded by a share of the requests in flight
// (20 % unless set) but never below minRetryConcurrency (3 unless set),
// instead of by max_retries.
func applyRetryBudget(c *clusterv3.Cluster, rb *v1alpha3.TrafficPolicy_RetryBudget) {
	if rb == nil {
		return
	}
	out := &clusterv3.CircuitBreakers_Thresholds_RetryBudget{}
	if p := rb.GetPercent(); p != nil {
		out.BudgetPercent = &typev3.Percent{Value: p.GetValue()}
	}
	if n := rb.GetMinRetryConcurrency(); n > 0 {
		out.MinRetryConcurrency = wrapperspb.UInt32(n)
	}
	// budgetInterval is not translated (weft-proxy counts only the
	// requests in flight); the config package warns about it.
	c.CircuitBreakers.Thresholds[0].RetryBudget = out
}

// isHTTP2 reports whether a port protocol is one Istio always speaks
// HTTP/2 for, upstream as downstream: HTTP2, GRPC and GRPC-WEB.
func isHTTP2(protocol string) bool {
	switch strings.ToUpper(protocol) {
	case "HTTP2", "GRPC", "GRPC-WEB":
		return true
	}
	return false
}

// setUpstreamProtocol sets the HTTP version that HttpProtocolOptions must
// name (Envoy requires one): HTTP/2 for ports declared HTTP2, GRPC
// or GRPC-WEB, the client's own for ports that declare no protocol (they
// are sniffed), HTTP/1.1 otherwise, as Istio does. h2 are the options of
// the HTTP/2 connections, where the cluster may speak it.
func setUpstreamProtocol(o *upstreamhttpv3.HttpProtocolOptions, protocol string, h2 *corev3.Http2ProtocolOptions) {
	switch {
	case isHTTP2(protocol):
		o.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{Http2ProtocolOptions: h2},
		}}
	case protocol == "":
		o.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: h2,
		}}
	default:
		o.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_{ExplicitHttpConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig{
			ProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_ExplicitHttpConfig_HttpProtocolOptions{HttpProtocolOptions: &corev3.Http1ProtocolOptions{}},
		}}
	}
}

// tcpKeepalive is Envoy's form of a DestinationRule's tcpKeepalive, as
// Istio writes it: an unset field keeps the system's setting. Envoy takes
// whole seconds; a time or interval with a fraction of a second is rounded
// up (Istio drops the fraction, which turns 500ms into 0s).
func tcpKeepalive(ka *v1alpha3.ConnectionPoolSettings_TCPSettings_TcpKeepalive) *corev3.TcpKeepalive {
	out := &corev3.TcpKeepalive{}
	if ka.GetProbes() > 0 {
		out.KeepaliveProbes = wrapperspb.UInt32(ka.GetProbes())
	}
	seconds := func(d *durationpb.Duration) *wrapperspb.UInt32Value {
		if d == nil {
			return nil
		}
		return wrapperspb.UInt32(uint32((d.AsDuration() + time.Second - 1) / time.Second))
	}
	out.KeepaliveTime, out.KeepaliveInterval = seconds(ka.GetTime()), seconds(ka.GetInterval())
	return out
}

// applyOutlierDetection sets c's outlier detection from a DestinationRule's
// outlierDetection, as Istio does; nil leaves c without one.
//
// Success-rate ejection is off (enforcing_success_rate 0). A consecutive
// error count of 0 is sent with enforcement 0, which disables that kind of
// ejection; any other count is enforced at 100%. Local-origin failures are
// split out only when splitExternalLocalOriginErrors is set. minHealthPercent
// becomes the healthy panic threshold, 0 (Envoy's panic mode off) when
// unset. The deprecated consecutiveErrors is ignored, as Istio ignores it.
func applyOutlierDetection(c *clusterv3.Cluster, od *v1alpha3.OutlierDetection) {
	if od == nil {
		return
	}
	out := &clusterv3.OutlierDetection{EnforcingSuccessRate: wrapperspb.UInt32(0)}
	enforcing := func(n uint32) *wrapperspb.UInt32Value {
		if n > 0 {
			return wrapperspb.UInt32(100)
		}
		return wrapperspb.UInt32(0)
	}
	if e := od.GetConsecutive_5XxErrors(); e != nil {
		out.Consecutive_5Xx = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutive_5Xx = enforcing(e.GetValue())
	}
	if e := od.GetConsecutiveGatewayErrors(); e != nil {
		out.ConsecutiveGatewayFailure = wrapperspb.UInt32(e.GetValue())
		out.EnforcingConsecutiveGatewayFailure = enforcing(e.GetValue())
	}
	if od.GetInterval() != nil {
		out.Interval = proto.CloneOf(od.GetInterval())
	}
	if od.GetBaseEjectionTime() != nil {
		out.BaseEjectionTime = proto.CloneOf(od.GetBaseEjectionTime())
	}
	if od.GetMaxEjectionPercent() > 0 {
		out.MaxEjectionPercent = wrapperspb.UInt32(uint32(od.GetMaxEjectionPercent()))
	}
	if od.GetSplitExternalLocalOriginErrors() {
		// Istio turns local origin success-rate ejection off too (it
		// defaults to 100 once local origin errors are split out).
		out.SplitExternalLocalOriginErrors = true
		out.EnforcingLocalOriginSuccessRate = wrapperspb.UInt32(0)
		// As Istio: set only when above 0, so 0 means Envoy's default (5,
		// enforced).
		if n := od.GetConsecutiveLocalOriginFailures().GetValue(); n > 0 {
			out.ConsecutiveLocalOriginFailure = wrapperspb.UInt32(n)
			out.EnforcingConsecutiveLocalOriginFailure = wrapperspb.UInt32(100)
		}
	}
	c.OutlierDetection = out
	if p := od.GetMinHealthPercent(); p >= 0 {
		if c.CommonLbConfig == nil {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{}
		}
		c.CommonLbConfig.HealthyPanicThreshold = &typev3.Percent{Value: float64(p)}
	}
}
