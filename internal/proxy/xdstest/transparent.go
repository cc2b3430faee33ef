package xdstest

import (
	"sort"
	"time"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	dnsv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/data/dns/v3"
	httpinspectorv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/listener/http_inspector/v3"
	hcmv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/tcp_proxy/v3"
	dnsfilterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/udp/dns_filter/v3"
)

// Transparent mode resources, shaped as docs/xds.md's "Transparent mode"
// section says.

// TCPProxyChain is a filter chain with a tcp_proxy to cluster.
func TCPProxyChain(cluster string) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{Filters: []*listenerv3.Filter{{
		Name: "envoy.filters.network.tcp_proxy",
		ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustMarshal(&tcpproxyv3.TcpProxy{
			StatPrefix: cluster, ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: cluster}})},
	}}}
}

// RDSChain is a filter chain with an HTTP connection manager using RDS
// routeConfig.
func RDSChain(routeConfig string) *listenerv3.FilterChain {
	return RDSListener("x", "0.0.0.0:1", routeConfig).FilterChains[0]
}

// InlineChain is a filter chain with an HTTP connection manager and an
// inline route configuration.
func InlineChain(rc *hcmv3.HttpConnectionManager_RouteConfig) *listenerv3.FilterChain {
	return hcmListener("x", "0.0.0.0:1", &hcmv3.HttpConnectionManager{StatPrefix: "inbound", RouteSpecifier: rc}).FilterChains[0]
}

// MatchPort sets fc's filter_chain_match.destination_port.
func MatchPort(fc *listenerv3.FilterChain, port uint32) *listenerv3.FilterChain {
	if fc.FilterChainMatch == nil {
		fc.FilterChainMatch = &listenerv3.FilterChainMatch{}
	}
	fc.FilterChainMatch.DestinationPort = wrapperspb.UInt32(port)
	return fc
}

// MatchHTTP sets fc's filter_chain_match.application_protocols to HTTP/1.1
// and h2c.
func MatchHTTP(fc *listenerv3.FilterChain) *listenerv3.FilterChain {
	if fc.FilterChainMatch == nil {
		fc.FilterChainMatch = &listenerv3.FilterChainMatch{}
	}
	fc.FilterChainMatch.ApplicationProtocols = []string{"http/1.1", "h2c"}
	return fc
}

// OriginalDstListener is a bound use_original_dst listener (virtualOutbound,
// virtualInbound) with chains and a default chain (either may be empty).
func OriginalDstListener(name, addr string, dflt *listenerv3.FilterChain, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: socket(addr), UseOriginalDst: wrapperspb.Bool(true),
		FilterChains: chains, DefaultFilterChain: dflt}
}

// VirtualListener is a bind_to_port: false listener (VIP_PORT).
func VirtualListener(name, addr string, dflt *listenerv3.FilterChain, chains ...*listenerv3.FilterChain) *listenerv3.Listener {
	return &listenerv3.Listener{Name: name, Address: socket(addr), BindToPort: wrapperspb.Bool(false),
		FilterChains: chains, DefaultFilterChain: dflt}
}

// WithHTTPInspector adds the HTTP inspector to l with listener_filters_timeout
// timeout, continuing on timeout.
func WithHTTPInspector(l *listenerv3.Listener, timeout time.Duration) *listenerv3.Listener {
	l.ListenerFilters = append(l.ListenerFilters, &listenerv3.ListenerFilter{
		Name:       "envoy.filters.listener.http_inspector",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustMarshal(&httpinspectorv3.HttpInspector{})},
	})
	l.ListenerFiltersTimeout = durationpb.New(timeout)
	l.ContinueOnListenerFiltersTimeout = true
	return l
}

// OriginalDstCluster is an ORIGINAL_DST cluster (PassthroughCluster,
// InboundPassthroughCluster).
func OriginalDstCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
		LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		ConnectTimeout:       durationpb.New(time.Second),
	}
}

// BlackHoleCluster is a STATIC cluster with no endpoints.
func BlackHoleCluster() *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 "BlackHoleCluster",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
	}
}

// DNSListener is the UDP listener "dns" on addr with the DNS filter
// answering domains (name → addresses).
func DNSListener(addr string, domains map[string][]string) *listenerv3.Listener {
	names := make([]string, 0, len(domains))
	for n := range domains {
		names = append(names, n)
	}
	sort.Strings(names)
	table := &dnsv3.DnsTable{}
	for _, n := range names {
		table.VirtualDomains = append(table.VirtualDomains, &dnsv3.DnsTable_DnsVirtualDomain{
			Name: n,
			Endpoint: &dnsv3.DnsTable_DnsEndpoint{EndpointConfig: &dnsv3.DnsTable_DnsEndpoint_AddressList{
				AddressList: &dnsv3.DnsTable_AddressList{Address: domains[n]}}},
		})
	}
	cfg := &dnsfilterv3.DnsFilterConfig{
		StatPrefix: "dns",
		ServerConfig: &dnsfilterv3.DnsFilterConfig_ServerContextConfig{
			ConfigSource: &dnsfilterv3.DnsFilterConfig_ServerContextConfig_InlineDnsTable{InlineDnsTable: table}},
		ClientConfig: &dnsfilterv3.DnsFilterConfig_ClientContextConfig{},
	}
	a := socket(addr)
	a.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	return &listenerv3.Listener{Name: "dns", Address: a, ListenerFilters: []*listenerv3.ListenerFilter{{
		Name:       "envoy.filters.udp.dns_filter",
		ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustMarshal(cfg)},
	}}}
}
