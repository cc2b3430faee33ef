package model

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	endpointv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/endpoint/v3"
	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	hcmv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/tcp_proxy/v3"
	dnsfilterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/udp/dns_filter/v3"
	tlsv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/upstreams/http/v3"
	// The gRPC-Web filter's configuration has nothing weft-proxy reads; its
	// type is linked so that /config_dump can print it.
	_ "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/grpc_web/v3"
)

const (
	typeHCM       = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeRouter    = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	nameHCM       = "envoy.filters.network.http_connection_manager"
	nameRouter    = "envoy.filters.http.router"
	nameFault     = router.FaultFilterName
	typeFault     = router.FaultTypeURL
	nameCors      = router.CorsFilterName
	typeCors      = router.CorsTypeURL
	nameGrpcWeb   = "envoy.filters.http.grpc_web"
	typeGrpcWeb   = "type.googleapis.com/envoy.extensions.filters.http.grpc_web.v3.GrpcWeb"
	nameRawBuffer = "envoy.transport_sockets.raw_buffer"
	nameTLS       = "envoy.transport_sockets.tls"
	nameTCPProxy  = "envoy.filters.network.tcp_proxy"
	typeTCPProxy  = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"

	nameHTTPInspector     = "envoy.filters.listener.http_inspector"
	typeHTTPInspector     = "type.googleapis.com/envoy.extensions.filters.listener.http_inspector.v3.HttpInspector"
	nameOriginalDstFilter = "envoy.filters.listener.original_dst"
	typeOriginalDstFilter = "type.googleapis.com/envoy.extensions.filters.listener.original_dst.v3.OriginalDst"
	nameDNSFilter         = "envoy.filters.udp.dns_filter"
	typeDNSFilter         = "type.googleapis.com/envoy.extensions.filters.udp.dns_filter.v3.DnsFilterConfig"
	typeRawBuffer         = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
	typeUpstreamTLS       = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
	typeDownstreamTLS     = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"
)

// compiledListener is an accepted Listener, compiled as far as it can be on
// its own (route configurations from RDS and clusters are joined in build).
type compiledListener struct {
	name    string
	address string
	bind    bool
	udp     bool
	origDst bool
	inspect bool
	timeout time.Duration
	cont    bool
	chains  []*compiledChain
	dflt    *compiledChain
	dns     *DNSConfig
}

// compiledChain is one filter chain of a listener.
type compiledChain struct {
	name      string
	destPort  uint32
	protocols []string
	// HTTP connection manager: rds names the route configuration to use;
	// empty when inline is set.
	http   bool
	rds    string
	inline *router.Table
	// filters are the HTTP filters before the router, in order.
	filters []httpFilter
	// statPrefix is the connection manager's stat_prefix, which labels its
	// fault counters.
	statPrefix string
	// tcp_proxy: the cluster (or weighted clusters), and how long a
	// connection may last (0: no limit).
	tcpCluster  string
	tcpWeighted []WeightedCluster
	tcpMaxAge   time.Duration
	// tls terminates TLS (the chain's transport socket); nil: plain.
	tls *ServerTLS
}

// httpFilter is a compiled HTTP filter other than the router.
type httpFilter struct {
	kind filterKind
	// faultDefault is a fault filter's own configuration; nil when it
	// injects nothing.
	faultDefault *router.Fault
}

type filterKind uint8

const (
	filterFault filterKind = iota + 1
	filterCors
	filterGrpcWeb
)

// has reports whether the chain has a filter of kind k.
func (c *compiledChain) has(k filterKind) bool {
	for _, f := range c.filters {
		if f.kind == k {
			return true
		}
	}
	return false
}

// routeConfigName is the name of the route configuration the chain uses.
func (c *compiledChain) routeConfigName() string {
	if c.inline != nil {
		return c.inline.Name()
	}
	return c.rds
}

// allChains returns the filter chains and the default chain.
func (l *compiledListener) allChains() []*compiledChain {
	if l.dflt == nil {
		return l.chains
	}
	return append(slices.Clip(l.chains), l.dflt)
}

// compiledCluster is an accepted Cluster.
type compiledCluster struct {
	spec upstream.ClusterSpec
	// eds is the ClusterLoadAssignment name for an EDS cluster; empty
	// otherwise, in which case spec.Endpoints is complete.
	eds string
	// lbWarning is set when lb_policy is not supported and round robin is used.
	lbWarning string
}

func socketAddress(a *corev3.Address) (host string, port uint32, err error) {
	host, port, udp, err := anySocketAddress(a)
	if err == nil && udp {
		return "", 0, fmt.Errorf("socket_address.protocol UDP is not supported here, only TCP")
	}
	return host, port, err
}

func anySocketAddress(a *corev3.Address) (host string, port uint32, udp bool, err error) {
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", 0, false, fmt.Errorf("must be a socket_address")
	}
	if sa.GetNamedPort() != "" {
		return "", 0, false, fmt.Errorf("socket_address.named_port is not supported, use port_value")
	}
	if sa.GetAddress() == "" {
		return "", 0, false, fmt.Errorf("socket_address.address is empty")
	}
	if sa.GetPortValue() > 65535 {
		return "", 0, false, fmt.Errorf("socket_address.port_value %d is not a port number", sa.GetPortValue())
	}
	return sa.GetAddress(), sa.GetPortValue(), sa.GetProtocol() == corev3.SocketAddress_UDP, nil
}

// Envoy's default listener_filters_timeout.
const defaultListenerFiltersTimeout = 15 * time.Second

// compileListener compiles one Listener. portMap rebinds wildcard listeners
// (0.0.0.0:FROM) to 127.0.0.1:TO, for gateways that share a host.
func compileListener(l *listenerv3.Listener, portMap map[uint32]uint32) (*compiledListener, error) {
	if l.GetName() == "" {
		return nil, fmt.Errorf("name is empty")
	}
	host, port, udp, err := anySocketAddress(l.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	bind := l.GetBindToPort() == nil || l.GetBindToPort().GetValue()
	if to, ok := portMap[port]; ok && bind && (host == "0.0.0.0" || host == "::") {
		host, port = "127.0.0.1", to
	}
	out := &compiledListener{
		name: l.GetName(), address: net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10)),
		bind: bind, udp: udp, origDst: l.GetUseOriginalDst().GetValue(),
		timeout: defaultListenerFiltersTimeout, cont: l.GetContinueOnListenerFiltersTimeout(),
	}
	if d := l.GetListenerFiltersTimeout(); d != nil {
		// Zero disables the timeout, as in Envoy.
		out.timeout = d.AsDuration()
	}
	if len(l.GetAdditionalAddresses()) > 0 {
		return nil, fmt.Errorf("additional_addresses: not supported by weft-proxy")
	}
	if udp {
		return compileUDPListener(l, out)
	}
	for i, lf := range l.GetListenerFilters() {
		field := fmt.Sprintf("listener_filters[%d]", i)
		if lf.GetFilterDisabled() != nil {
			return nil, fmt.Errorf("%s.filter_disabled: not supported by weft-proxy", field)
		}
		switch tu := lf.GetTypedConfig().GetTypeUrl(); {
		case tu == typeHTTPInspector || (tu == "" && lf.GetName() == nameHTTPInspector):
			out.inspect = true
		case tu == typeOriginalDstFilter || (tu == "" && lf.GetName() == nameOriginalDstFilter):
			// Reading the original destination is what use_original_dst
			// does too; the hand-off is use_original_dst's alone.
		default:
			return nil, fmt.Errorf("%s %q (%s): weft-proxy supports only %s", field, lf.GetName(), tu, nameHTTPInspector)
		}
	}
	for i, fc := range l.GetFilterChains() {
		c, err := compileChain(fc, fmt.Sprintf("filter_chains[%d]", i))
		if err != nil {
			return nil, err
		}
		out.chains = append(out.chains, c)
	}
	if fc := l.GetDefaultFilterChain(); fc != nil {
		if fc.GetFilterChainMatch() != nil {
			return nil, fmt.Errorf("default_filter_chain.filter_chain_match: must be empty")
		}
		if out.dflt, err = compileChain(fc, "default_filter_chain"); err != nil {
			return nil, err
		}
	}
	if len(out.chains) == 0 && out.dflt == nil {
		return nil, fmt.Errorf("filter_chains: a listener needs a filter chain or a default_filter_chain")
	}
	// Envoy rejects two chains with the same match: the choice would be
	// ambiguous.
	seen := map[string]int{}
	for i, c := range out.chains {
		k := fmt.Sprint(c.destPort, c.protocols)
		if j, ok := seen[k]; ok {
			return nil, fmt.Errorf("filter_chains[%d]: same filter_chain_match as filter_chains[%d]", i, j)
		}
		seen[k] = i
	}
	return out, nil
}

// compileChain compiles one filter chain: its match and its single
// terminal network filter (http_connection_manager or tcp_proxy).
func compileChain(fc *listenerv3.FilterChain, field string) (*compiledChain, error) {
	out := &compiledChain{name: fc.GetName()}
	if ts := fc.GetTransportSocket(); ts != nil {
		t, err := compileDownstreamTLS(ts)
		if err != nil {
			return nil, fmt.Errorf("%s.transport_socket: %w", field, err)
		}
		out.tls = t
	}
	if m := fc.GetFilterChainMatch(); m != nil {
		mf := field + ".filter_chain_match"
		switch {
		case len(m.GetPrefixRanges()) > 0:
			return nil, fmt.Errorf("%s.prefix_ranges: not supported by weft-proxy", mf)
		case len(m.GetSourcePrefixRanges()) > 0 || len(m.GetDirectSourcePrefixRanges()) > 0 || len(m.GetSourcePorts()) > 0:
			return nil, fmt.Errorf("%s: source matches are not supported by weft-proxy", mf)
		case m.GetSourceType() != listenerv3.FilterChainMatch_ANY:
			return nil, fmt.Errorf("%s.source_type: not supported by weft-proxy", mf)
		case len(m.GetServerNames()) > 0:
			return nil, fmt.Errorf("%s.server_names: not supported by weft-proxy (no TLS inspector)", mf)
		case m.GetTransportProtocol() != "" && m.GetTransportProtocol() != "raw_buffer":
			return nil, fmt.Errorf("%s.transport_protocol %q: only raw_buffer is supported", mf, m.GetTransportProtocol())
		}
		if p := m.GetDestinationPort(); p != nil {
			out.destPort = p.GetValue()
		}
		out.protocols = slices.Clone(m.GetApplicationProtocols())
	}
	fs := fc.GetFilters()
	if len(fs) != 1 {
		return nil, fmt.Errorf("%s.filters: weft-proxy supports exactly one network filter (%s or %s), got %d", field, nameHCM, nameTCPProxy, len(fs))
	}
	f := fs[0]
	field += ".filters[0]"
	tc := f.GetTypedConfig()
	switch tc.GetTypeUrl() {
	case typeHCM:
		return out, compileHCM(out, tc, field+".typed_config")
	case typeTCPProxy:
		if out.tls != nil {
			return nil, fmt.Errorf("%s: a transport socket (TLS termination) on a tcp_proxy chain is not supported by weft-proxy", field)
		}
		tp := &tcpproxyv3.TcpProxy{}
		if err := tc.UnmarshalTo(tp); err != nil {
			return nil, fmt.Errorf("%s.typed_config: %w", field, err)
		}
		if tp.GetTunnelingConfig() != nil {
			return nil, fmt.Errorf("%s.typed_config.tunneling_config: not supported by weft-proxy", field)
		}
		out.tcpCluster = tp.GetCluster()
		if wc := tp.GetWeightedClusters(); wc != nil {
			for i, c := range wc.GetClusters() {
				if c.GetName() == "" {
					return nil, fmt.Errorf("%s.typed_config.weighted_clusters.clusters[%d].name: empty", field, i)
				}
				if c.GetWeight() < 1 {
					return nil, fmt.Errorf("%s.typed_config.weighted_clusters.clusters[%d].weight: must be at least 1", field, i)
				}
				if c.GetMetadataMatch() != nil {
					return nil, fmt.Errorf("%s.typed_config.weighted_clusters.clusters[%d].metadata_match: not supported by weft-proxy", field, i)
				}
				out.tcpWeighted = append(out.tcpWeighted, WeightedCluster{Name: c.GetName(), Weight: c.GetWeight()})
			}
			if len(out.tcpWeighted) == 0 {
				return nil, fmt.Errorf("%s.typed_config.weighted_clusters.clusters: empty", field)
			}
		}
		if out.tcpCluster == "" && out.tcpWeighted == nil {
			return nil, fmt.Errorf("%s.typed_config: cluster or weighted_clusters is required", field)
		}
		if d := tp.GetMaxDownstreamConnectionDuration(); d != nil {
			if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
				return nil, fmt.Errorf("%s.typed_config.max_downstream_connection_duration: must be a duration of 0 or more", field)
			}
			out.tcpMaxAge = d.AsDuration()
		}
		return out, nil
	}
	return nil, fmt.Errorf("%s %q (%s): only %s and %s are supported", field, f.GetName(), tc.GetTypeUrl(), nameHCM, nameTCPProxy)
}

// compileHCM compiles an HTTP connection manager into c.
func compileHCM(c *compiledChain, tc *anypb.Any, field string) error {
	hcm := &hcmv3.HttpConnectionManager{}
	if err := tc.UnmarshalTo(hcm); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	c.http = true
	c.statPrefix = hcm.GetStatPrefix()
	for i, hf := range hcm.GetHttpFilters() {
		tu := hf.GetTypedConfig().GetTypeUrl()
		switch {
		case tu == typeRouter || (tu == "" && hf.GetName() == nameRouter):
			if i != len(hcm.GetHttpFilters())-1 {
				return fmt.Errorf("%s.http_filters[%d]: %s must be the last filter", field, i, nameRouter)
			}
		case tu == typeFault || (tu == "" && hf.GetName() == nameFault):
			if err := compileFaultFilter(c, hf, fmt.Sprintf("%s.http_filters[%d]", field, i)); err != nil {
				return err
			}
		case tu == typeCors || (tu == "" && hf.GetName() == nameCors):
			if err := compileCorsFilter(c, hf, fmt.Sprintf("%s.http_filters[%d]", field, i)); err != nil {
				return err
			}
		case tu == typeGrpcWeb || (tu == "" && hf.GetName() == nameGrpcWeb):
			switch {
			case c.has(filterGrpcWeb):
				return fmt.Errorf("%s.http_filters[%d]: a second %s is not supported", field, i, nameGrpcWeb)
			case hf.GetDisabled():
				return fmt.Errorf("%s.http_filters[%d].disabled: a gRPC-Web filter disabled by default is not supported", field, i)
			case hf.GetConfigDiscovery() != nil:
				return fmt.Errorf("%s.http_filters[%d].config_discovery is not supported", field, i)
			}
			// Its configuration has nothing weft-proxy uses.
			c.filters = append(c.filters, httpFilter{kind: filterGrpcWeb})
		case hf.GetIsOptional() || hf.GetDisabled():
			// Envoy skips optional filters it does not know.
		default:
			return fmt.Errorf("%s.http_filters[%d] %q (%s) is not supported by weft-proxy", field, i, hf.GetName(), tu)
		}
	}
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		c.rds = rs.Rds.GetRouteConfigName()
		if c.rds == "" {
			return fmt.Errorf("%s.rds.route_config_name is empty", field)
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		t, err := router.Compile(rs.RouteConfig)
		if err != nil {
			return fmt.Errorf("%s.route_config: %w", field, err)
		}
		c.inline = t
	default:
		return fmt.Errorf("%s: only rds and route_config are supported (scoped_routes is not)", field)
	}
	return nil
}

// compileFaultFilter compiles the fault injection filter of an HTTP
// connection manager into c.
func compileFaultFilter(c *compiledChain, hf *hcmv3.HttpFilter, field string) error {
	switch {
	case c.has(filterFault):
		return fmt.Errorf("%s: a second %s is not supported", field, nameFault)
	case hf.GetName() != nameFault:
		// Routes configure the filter under its name; weft-proxy reads
		// theirs under the well-known one.
		return fmt.Errorf("%s: the fault filter must be named %s, not %q", field, nameFault, hf.GetName())
	case hf.GetDisabled():
		return fmt.Errorf("%s.disabled: a fault filter disabled by default is not supported", field)
	case hf.GetConfigDiscovery() != nil:
		return fmt.Errorf("%s.config_discovery is not supported", field)
	}
	out := httpFilter{kind: filterFault}
	if tc := hf.GetTypedConfig(); tc != nil {
		f, err := router.CompileFault(tc)
		if err != nil {
			return fmt.Errorf("%s.typed_config: %w", field, err)
		}
		if f.Delay != nil || f.Abort != nil {
			out.faultDefault = f
		}
	}
	c.filters = append(c.filters, out)
	return nil
}

// compileCorsFilter compiles the CORS filter of an HTTP connection manager
// into c. Its own configuration (envoy.extensions.filters.http.cors.v3.Cors)
// has nothing weft-proxy uses: the policies are per route.
func compileCorsFilter(c *compiledChain, hf *hcmv3.HttpFilter, field string) error {
	switch {
	case c.has(filterCors):
		return fmt.Errorf("%s: a second %s is not supported", field, nameCors)
	case hf.GetName() != nameCors:
		// Routes configure the filter under its name; weft-proxy reads
		// theirs under the well-known one.
		return fmt.Errorf("%s: the CORS filter must be named %s, not %q", field, nameCors, hf.GetName())
	case hf.GetDisabled():
		return fmt.Errorf("%s.disabled: a CORS filter disabled by default is not supported", field)
	case hf.GetConfigDiscovery() != nil:
		return fmt.Errorf("%s.config_discovery is not supported", field)
	}
	c.filters = append(c.filters, httpFilter{kind: filterCors})
	return nil
}

// compileUDPListener compiles a UDP listener: weft-proxy serves only
// Envoy's DNS filter on UDP.
func compileUDPListener(l *listenerv3.Listener, out *compiledListener) (*compiledListener, error) {
	if !out.bind {
		return nil, fmt.Errorf("bind_to_port: a UDP listener must bind")
	}
	if len(l.GetFilterChains()) > 0 || l.GetDefaultFilterChain() != nil {
		return nil, fmt.Errorf("filter_chains: a UDP listener has none; use listener_filters")
	}
	lfs := l.GetListenerFilters()
	if len(lfs) != 1 || lfs[0].GetTypedConfig().GetTypeUrl() != typeDNSFilter {
		return nil, fmt.Errorf("listener_filters: a UDP listener needs exactly one %s (%s)", nameDNSFilter, typeDNSFilter)
	}
	cfg := &dnsfilterv3.DnsFilterConfig{}
	if err := lfs[0].GetTypedConfig().UnmarshalTo(cfg); err != nil {
		return nil, fmt.Errorf("listener_filters[0].typed_config: %w", err)
	}
	if cfg.GetServerConfig() == nil {
		return nil, fmt.Errorf("listener_filters[0].typed_config.server_config: required")
	}
	d, err := compileDNS(cfg)
	if err != nil {
		return nil, fmt.Errorf("listener_filters[0].typed_config.%w", err)
	}
	out.dns = d
	return out, nil
}

// compileDNS compiles a DNS filter's inline table.
func compileDNS(cfg *dnsfilterv3.DnsFilterConfig) (*DNSConfig, error) {
	sc := cfg.GetServerConfig()
	if sc.GetExternalDnsTable() != nil {
		return nil, fmt.Errorf("server_config.external_dns_table: not supported by weft-proxy, use inline_dns_table")
	}
	out := &DNSConfig{Domains: map[string][]netip.Addr{}}
	for i, vd := range sc.GetInlineDnsTable().GetVirtualDomains() {
		field := fmt.Sprintf("server_config.inline_dns_table.virtual_domains[%d]", i)
		name := strings.TrimSuffix(strings.ToLower(vd.GetName()), ".")
		if name == "" {
			return nil, fmt.Errorf("%s.name is empty", field)
		}
		al := vd.GetEndpoint().GetAddressList()
		if al == nil {
			return nil, fmt.Errorf("%s.endpoint: only address_list is supported", field)
		}
		for j, a := range al.GetAddress() {
			ip, err := netip.ParseAddr(a)
			if err != nil {
				return nil, fmt.Errorf("%s.endpoint.address_list.address[%d]: %q is not an IP address", field, j, a)
			}
			out.Domains[name] = append(out.Domains[name], ip.Unmap())
		}
	}
	for i, a := range cfg.GetClientConfig().GetUpstreamResolvers() {
		h, p, err := socketAddress(a)
		if err != nil {
			// Resolvers are UDP addresses in Envoy's examples.
			h, p, _, err = anySocketAddress(a)
			if err != nil {
				return nil, fmt.Errorf("client_config.upstream_resolvers[%d]: %w", i, err)
			}
		}
		out.Upstreams = append(out.Upstreams, net.JoinHostPort(h, strconv.FormatUint(uint64(p), 10)))
	}
	return out, nil
}

// compileRoute compiles one RouteConfiguration, reusing what it can of
// prev, the table of its accepted version (nil for a new one).
func compileRoute(enc *router.Encoded, prev *router.Table) (*router.Table, error) {
	if enc.Config.GetName() == "" {
		return nil, fmt.Errorf("name is empty")
	}
	return enc.Compile(prev)
}

// compileSlowStart reads a slow_start_config; nil gives nil.
func compileSlowStart(ss *clusterv3.Cluster_SlowStartConfig, field string) (*upstream.SlowStart, error) {
	if ss == nil {
		return nil, nil
	}
	w := ss.GetSlowStartWindow()
	if err := w.CheckValid(); w == nil || err != nil || w.AsDuration() <= 0 {
		return nil, fmt.Errorf("%s.slow_start_window: required, a positive duration", field)
	}
	out := &upstream.SlowStart{Window: w.AsDuration(), Aggression: upstream.DefaultSlowStartAggression, MinWeightPercent: upstream.DefaultSlowStartMinPercent}
	if a := ss.GetAggression(); a.GetDefaultValue() > 0 {
		// (Envoy falls back to 1 for 0 or less; runtime_key: weft-proxy
		// has no runtime layer.)
		out.Aggression = a.GetDefaultValue()
	}
	if p := ss.GetMinWeightPercent(); p != nil {
		if p.GetValue() < 0 || p.GetValue() > 100 {
			return nil, fmt.Errorf("%s.min_weight_percent %g: must be from 0 to 100", field, p.GetValue())
		}
		out.MinWeightPercent = p.GetValue()
	}
	return out, nil
}

// compileCluster compiles one Cluster.
func compileCluster(c *clusterv3.Cluster) (*compiledCluster, error) {
	if c.GetName() == "" {
		return nil, fmt.Errorf("name is empty")
	}
	if c.GetClusterType() != nil {
		return nil, fmt.Errorf("cluster_type %q: custom cluster types are not supported", c.GetClusterType().GetName())
	}
	if len(c.GetTransportSocketMatches()) > 0 {
		return nil, fmt.Errorf("transport_socket_matches: not supported by weft-proxy yet")
	}
	out := &compiledCluster{spec: upstream.ClusterSpec{Name: c.GetName(), ConnectTimeout: upstream.DefaultConnectTimeout}}
	tlsSpec, err := compileUpstreamTLS(c.GetTransportSocket())
	if err != nil {
		return nil, fmt.Errorf("transport_socket: %w", err)
	}
	out.spec.TLS = tlsSpec
	if d := c.GetConnectTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() <= 0 {
			return nil, fmt.Errorf("connect_timeout %s: must be a positive duration", d.AsDuration())
		}
		out.spec.ConnectTimeout = d.AsDuration()
	}
	switch p := c.GetLbPolicy(); p {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.spec.LB = upstream.RoundRobin
		ss, err := compileSlowStart(c.GetRoundRobinLbConfig().GetSlowStartConfig(), "round_robin_lb_config.slow_start_config")
		if err != nil {
			return nil, err
		}
		out.spec.SlowStart = ss
	case clusterv3.Cluster_LEAST_REQUEST:
		out.spec.LB = upstream.LeastRequest
		ss, err := compileSlowStart(c.GetLeastRequestLbConfig().GetSlowStartConfig(), "least_request_lb_config.slow_start_config")
		if err != nil {
			return nil, err
		}
		out.spec.SlowStart = ss
	case clusterv3.Cluster_RANDOM:
		out.spec.LB = upstream.Random
	case clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV:
		if err := compileHashLB(c, &out.spec); err != nil {
			return nil, err
		}
	default:
		out.spec.LB = upstream.RoundRobin
		out.lbWarning = fmt.Sprintf("lb_policy %s is not supported by weft-proxy; using ROUND_ROBIN", p)
	}
	switch t := c.GetType(); t {
	case clusterv3.Cluster_EDS:
		out.eds = c.GetEdsClusterConfig().GetServiceName()
		if out.eds == "" {
			out.eds = c.GetName()
		}
	case clusterv3.Cluster_ORIGINAL_DST:
		if p := c.GetLbPolicy(); p != clusterv3.Cluster_CLUSTER_PROVIDED {
			return nil, fmt.Errorf("lb_policy %s: an ORIGINAL_DST cluster needs CLUSTER_PROVIDED", p)
		}
		if c.GetLoadAssignment() != nil || c.GetOriginalDstLbConfig() != nil {
			return nil, fmt.Errorf("an ORIGINAL_DST cluster takes neither load_assignment nor original_dst_lb_config in weft-proxy")
		}
		out.spec.OriginalDst = true
		out.spec.LB, out.lbWarning = upstream.RoundRobin, ""
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		// DNS names are resolved when a connection is made.
		la := c.GetLoadAssignment()
		if la == nil {
			if t == clusterv3.Cluster_STATIC {
				// A STATIC cluster without endpoints (Istio's
				// BlackHoleCluster) refuses every connection.
				break
			}
			return nil, fmt.Errorf("load_assignment: a %s cluster needs one", t)
		}
		eps, err := compileEndpoints(la)
		if err != nil {
			return nil, fmt.Errorf("load_assignment.%w", err)
		}
		out.spec.Endpoints = eps
	default:
		return nil, fmt.Errorf("type %s: not supported by weft-proxy (use EDS, STATIC, STRICT_DNS or LOGICAL_DNS)", t)
	}
	if err := compileCircuitBreakers(c, &out.spec); err != nil {
		return nil, err
	}
	if err := compileHTTPProtocolOptions(c, &out.spec); err != nil {
		return nil, err
	}
	if err := compileTCPKeepalive(c, &out.spec); err != nil {
		return nil, err
	}
	if err := compileOutlierDetection(c, &out.spec); err != nil {
		return nil, err
	}
	if t := c.GetCommonLbConfig().GetHealthyPanicThreshold(); t != nil {
		v := t.GetValue()
		if v < 0 || v > 100 {
			return nil, fmt.Errorf("common_lb_config.healthy_panic_threshold %g: must be a percentage from 0 to 100", v)
		}
		out.spec.HealthyPanicThreshold = &v
	}
	return out, nil
}

// compileHashLB reads a RING_HASH cluster's ring_hash_lb_config or a
// MAGLEV cluster's maglev_lb_config, with Envoy's defaults (ring of 1024 to
// 8M entries; Maglev table of 65537 entries, which must be prime).
// weft-proxy places endpoints with its own hash function whichever
// hash_function is configured: a key always maps to the same endpoint in
// weft-proxy, though not necessarily to the one Envoy would choose.
func compileHashLB(c *clusterv3.Cluster, spec *upstream.ClusterSpec) error {
	var field string
	if c.GetLbPolicy() == clusterv3.Cluster_RING_HASH {
		spec.LB, field = upstream.RingHash, "ring_hash_lb_config"
		if c.GetMaglevLbConfig() != nil {
			return fmt.Errorf("maglev_lb_config: set on a RING_HASH cluster (use ring_hash_lb_config)")
		}
		rc := c.GetRingHashLbConfig()
		spec.Hash.MinRingSize = upstream.DefaultMinRingSize
		if x := rc.GetMinimumRingSize(); x != nil {
			spec.Hash.MinRingSize = x.GetValue()
			if spec.Hash.MinRingSize == 0 {
				return fmt.Errorf("%s.minimum_ring_size: must be at least 1", field)
			}
		}
		spec.Hash.MaxRingSize = upstream.DefaultMaxRingSize
		if x := rc.GetMaximumRingSize(); x != nil {
			spec.Hash.MaxRingSize = x.GetValue()
			if spec.Hash.MaxRingSize == 0 {
				return fmt.Errorf("%s.maximum_ring_size: must be at least 1", field)
			}
		}
	} else {
		spec.LB, field = upstream.Maglev, "maglev_lb_config"
		if c.GetRingHashLbConfig() != nil {
			return fmt.Errorf("ring_hash_lb_config: set on a MAGLEV cluster (use maglev_lb_config)")
		}
		spec.Hash.TableSize = upstream.DefaultMaglevTableSize
		if x := c.GetMaglevLbConfig().GetTableSize(); x != nil {
			spec.Hash.TableSize = x.GetValue()
		}
	}
	if err := upstream.CheckHashConfig(spec.LB, spec.Hash); err != nil {
		return fmt.Errorf("lb_policy %s: %s.%w", c.GetLbPolicy(), field, err)
	}
	return nil
}

// compileCircuitBreakers reads circuit_breakers.thresholds. Only priority
// DEFAULT applies: weft-proxy has no high priority routes, so HIGH
// thresholds are accepted and, as in Envoy for a proxy without such
// routes, never used.
func compileCircuitBreakers(c *clusterv3.Cluster, spec *upstream.ClusterSpec) error {
	cb := c.GetCircuitBreakers()
	if cb == nil {
		return nil
	}
	if len(cb.GetPerHostThresholds()) > 0 {
		return fmt.Errorf("circuit_breakers.per_host_thresholds: not supported by weft-proxy")
	}
	seen := map[corev3.RoutingPriority]bool{}
	for i, t := range cb.GetThresholds() {
		field := fmt.Sprintf("circuit_breakers.thresholds[%d]", i)
		if seen[t.GetPriority()] {
			return fmt.Errorf("%s: a second threshold for priority %s", field, t.GetPriority())
		}
		seen[t.GetPriority()] = true
		if t.GetMaxConnectionPools() != nil {
			return fmt.Errorf("%s.max_connection_pools: not supported by weft-proxy", field)
		}
		if t.GetPriority() != corev3.RoutingPriority_DEFAULT {
			continue
		}
		v := upstream.DefaultCircuitBreakers()
		if x := t.GetMaxConnections(); x != nil {
			v.MaxConnections = x.GetValue()
		}
		if x := t.GetMaxPendingRequests(); x != nil {
			v.MaxPendingRequests = x.GetValue()
		}
		if x := t.GetMaxRequests(); x != nil {
			v.MaxRequests = x.GetValue()
		}
		if x := t.GetMaxRetries(); x != nil {
			v.MaxRetries = x.GetValue()
		}
		if rb := t.GetRetryBudget(); rb != nil {
			f := field + ".retry_budget"
			if d := rb.GetBudgetInterval(); d != nil && d.AsDuration() != 0 {
				return fmt.Errorf("%s.budget_interval: not supported by weft-proxy (it counts the requests in flight only)", f)
			}
			v.RetryBudget, v.BudgetPercent, v.MinRetryConcurrency = true, upstream.DefaultBudgetPercent, upstream.DefaultMinRetryConcurrency
			if p := rb.GetBudgetPercent(); p != nil {
				if p.GetValue() < 0 || p.GetValue() > 100 {
					return fmt.Errorf("%s.budget_percent %g: must be from 0 to 100", f, p.GetValue())
				}
				v.BudgetPercent = p.GetValue()
			}
			if x := rb.GetMinRetryConcurrency(); x != nil {
				v.MinRetryConcurrency = x.GetValue()
			}
		}
		spec.CircuitBreakers = &v
	}
	return nil
}

// Key and type of the upstream HTTP protocol options.
const (
	nameHTTPProtocolOptions = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	typeHTTPProtocolOptions = "type.googleapis.com/" + nameHTTPProtocolOptions
)

// compileHTTPProtocolOptions reads the upstream HTTP protocol options: the
// protocol (explicit_http_config's HTTP/1.1 or HTTP/2, or
// use_downstream_protocol_config) and common_http_protocol_options; and
// the deprecated Cluster fields http2_protocol_options and
// max_requests_per_connection. Other extension protocol options are
// ignored.
func compileHTTPProtocolOptions(c *clusterv3.Cluster, spec *upstream.ClusterSpec) error {
	if x := c.GetMaxRequestsPerConnection(); x != nil {
		spec.MaxRequestsPerConnection = x.GetValue()
	}
	if h2 := c.GetHttp2ProtocolOptions(); h2 != nil {
		spec.Protocol = upstream.HTTP2
		if err := compileHTTP2Options(h2, "http2_protocol_options", &spec.HTTP2); err != nil {
			return err
		}
	}
	a := c.GetTypedExtensionProtocolOptions()[nameHTTPProtocolOptions]
	if a == nil {
		return nil
	}
	field := fmt.Sprintf("typed_extension_protocol_options[%q]", nameHTTPProtocolOptions)
	if a.GetTypeUrl() != typeHTTPProtocolOptions {
		return fmt.Errorf("%s: type %s, want %s", field, a.GetTypeUrl(), typeHTTPProtocolOptions)
	}
	o := &upstreamhttpv3.HttpProtocolOptions{}
	if err := a.UnmarshalTo(o); err != nil {
		return fmt.Errorf("%s: %w", field, err)
	}
	var h2 *corev3.Http2ProtocolOptions
	var h2Field string
	switch {
	case o.GetExplicitHttpConfig().GetHttp2ProtocolOptions() != nil:
		spec.Protocol = upstream.HTTP2
		h2, h2Field = o.GetExplicitHttpConfig().GetHttp2ProtocolOptions(), ".explicit_http_config.http2_protocol_options"
	case o.GetExplicitHttpConfig().GetHttpProtocolOptions() != nil:
		spec.Protocol = upstream.HTTP1
	case o.GetUseDownstreamProtocolConfig() != nil:
		spec.Protocol = upstream.Downstream
		h2, h2Field = o.GetUseDownstreamProtocolConfig().GetHttp2ProtocolOptions(), ".use_downstream_protocol_config.http2_protocol_options"
	}
	if h2 != nil {
		if err := compileHTTP2Options(h2, field+h2Field, &spec.HTTP2); err != nil {
			return err
		}
	}
	co := o.GetCommonHttpProtocolOptions()
	if co == nil {
		return nil
	}
	field += ".common_http_protocol_options"
	if d := co.GetMaxConnectionDuration(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return fmt.Errorf("%s.max_connection_duration: must be a duration of 0 or more", field)
		}
		spec.MaxConnectionDuration = d.AsDuration() // 0: no limit, as unset
	}
	switch {
	case co.GetMaxStreamDuration() != nil:
		return fmt.Errorf("%s.max_stream_duration: not supported by weft-proxy", field)
	case co.GetMaxHeadersCount() != nil:
		return fmt.Errorf("%s.max_headers_count: not supported by weft-proxy", field)
	}
	if d := co.GetIdleTimeout(); d != nil {
		if err := d.CheckValid(); err != nil || d.AsDuration() < 0 {
			return fmt.Errorf("%s.idle_timeout: must be a duration of 0 or more", field)
		}
		spec.IdleTimeout = d.AsDuration()
		if spec.IdleTimeout == 0 {
			spec.IdleTimeout = -1 // 0s disables the timeout in Envoy
		}
	}
	if x := co.GetMaxRequestsPerConnection(); x != nil {
		spec.MaxRequestsPerConnection = x.GetValue()
	}
	return nil
}

// compileHTTP2Options reads the HTTP/2 options weft-proxy acts on:
// max_concurrent_streams, and connection_keepalive's interval and timeout.
// The others (window sizes, frame limits) keep weft-proxy's own values.
func compileHTTP2Options(o *corev3.Http2ProtocolOptions, field string, dst *upstream.HTTP2Options) error {
	if x := o.GetMaxConcurrentStreams(); x != nil {
		if x.GetValue() < 1 || x.GetValue() > 1<<31-1 {
			return fmt.Errorf("%s.max_concurrent_streams %d: must be from 1 to 2147483647", field, x.GetValue())
		}
		dst.MaxConcurrentStreams = x.GetValue()
	}
	ka := o.GetConnectionKeepalive()
	if ka == nil {
		return nil
	}
	field += ".connection_keepalive"
	if ka.GetConnectionIdleInterval() != nil {
		return fmt.Errorf("%s.connection_idle_interval: not supported by weft-proxy", field)
	}
	timeout := ka.GetTimeout()
	if err := timeout.CheckValid(); timeout == nil || err != nil || timeout.AsDuration() < time.Millisecond {
		return fmt.Errorf("%s.timeout: required, at least 1ms", field)
	}
	if iv := ka.GetInterval(); iv != nil {
		if err := iv.CheckValid(); err != nil || iv.AsDuration() < 0 || iv.AsDuration() > 0 && iv.AsDuration() < time.Millisecond {
			return fmt.Errorf("%s.interval: must be 0 (no PINGs) or at least 1ms", field)
		}
		dst.PingInterval, dst.PingTimeout = iv.AsDuration(), timeout.AsDuration()
	}
	return nil
}

// compileUpstreamTLS reads a cluster's transport socket: nil for none or
// raw_buffer, TLS settings for envoy.transport_sockets.tls, with Envoy's
// meanings: the server's chain is checked when the validation context
// names a trust anchor (trusted_ca, a file, or system_root_certs), and its
// names only against match_typed_subject_alt_names. A context with any
// field weft-proxy does not act on (SDS secrets, a combined validation
// context, ALPN, TLS parameters, the deprecated SAN matchers...) is
// refused rather than half applied: TLS that checks less than it was told
// to must not pass for the real thing. The files are read when a
// connection is made, so a sidecar without them fails those connections
// (503) rather than refuse every cluster it is sent.
func compileUpstreamTLS(ts *corev3.TransportSocket) (*upstream.TLS, error) {
	if ts == nil {
		return nil, nil
	}
	switch u := ts.GetTypedConfig().GetTypeUrl(); {
	case u == typeRawBuffer || u == "" && ts.GetName() == nameRawBuffer:
		return nil, nil
	case u != typeUpstreamTLS:
		return nil, fmt.Errorf("%q (%s): only %s and %s are supported", ts.GetName(), u, nameRawBuffer, nameTLS)
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", nameTLS, err)
	}
	if f := unsupportedField(ctx.ProtoReflect(), "", tlsFields); f != "" {
		return nil, fmt.Errorf("%s: %s is not supported by weft-proxy", nameTLS, f)
	}
	out := &upstream.TLS{ServerName: ctx.GetSni()}
	file := func(field string, d *corev3.DataSource) (string, error) {
		if f := d.GetFilename(); f != "" {
			return f, nil
		}
		return "", fmt.Errorf("%s: weft-proxy reads certificates and keys from files only (filename)", field)
	}
	common := ctx.GetCommonTlsContext()
	switch certs := common.GetTlsCertificates(); len(certs) {
	case 0:
	case 1:
		var err error
		if out.CertFile, err = file("common_tls_context.tls_certificates[0].certificate_chain", certs[0].GetCertificateChain()); err != nil {
			return nil, err
		}
		if out.KeyFile, err = file("common_tls_context.tls_certificates[0].private_key", certs[0].GetPrivateKey()); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("common_tls_context.tls_certificates: weft-proxy presents one client certificate, got %d", len(certs))
	}
	if vc := common.GetValidationContext(); vc != nil {
		const f = "common_tls_context.validation_context"
		switch {
		case vc.GetTrustedCa() != nil && vc.GetSystemRootCerts() != nil:
			return nil, fmt.Errorf("%s: trusted_ca and system_root_certs are exclusive", f)
		case vc.GetTrustedCa() != nil:
			var err error
			if out.CAFile, err = file(f+".trusted_ca", vc.GetTrustedCa()); err != nil {
				return nil, err
			}
			out.Verify = true
		case vc.GetSystemRootCerts() != nil:
			out.Verify = true
		}
		var sans []string
		for i, m := range vc.GetMatchTypedSubjectAltNames() {
			exact := m.GetMatcher().GetExact()
			if exact == "" || m.GetSanType() != tlsv3.SubjectAltNameMatcher_DNS && m.GetSanType() != tlsv3.SubjectAltNameMatcher_URI {
				return nil, fmt.Errorf("%s.match_typed_subject_alt_names[%d]: weft-proxy matches DNS and URI names exactly only", f, i)
			}
			sans = append(sans, exact)
		}
		out.SANs = strings.Join(sans, "\n")
	}
	return out, nil
}

// tlsFields are the fields of an UpstreamTlsContext, and of the messages
// under it, that weft-proxy acts on.
var tlsFields = map[protoreflect.Name]bool{
	"sni": true, "common_tls_context": true, // UpstreamTlsContext
	"tls_certificates": true, "validation_context": true, // CommonTlsContext
	"certificate_chain": true, "private_key": true, // TlsCertificate
	"filename":   true,                                                                   // DataSource
	"trusted_ca": true, "system_root_certs": true, "match_typed_subject_alt_names": true, // CertificateValidationContext
	"san_type": true, "matcher": true, "exact": true, // SubjectAltNameMatcher, StringMatcher
}

// unsupportedField names the first field set under m (with its path) that
// is not in allowed, or that its trimmed type does not know (the control
// plane set a field weft-proxy has no code for); "" if there is none.
func unsupportedField(m protoreflect.Message, path string, allowed map[protoreflect.Name]bool) string {
	join := func(name string) string {
		if path == "" {
			return name
		}
		return path + "." + name
	}
	if raw := m.GetUnknown(); len(raw) > 0 {
		num, _, _ := protowire.ConsumeTag(raw)
		return join(fmt.Sprintf("field %d of %s", num, m.Descriptor().Name()))
	}
	var found string
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		p := join(string(fd.Name()))
		switch {
		case !allowed[fd.Name()]:
			found = p
		case fd.IsList() && fd.Message() != nil:
			for i := range v.List().Len() {
				if found = unsupportedField(v.List().Get(i).Message(), fmt.Sprintf("%s[%d]", p, i), allowed); found != "" {
					break
				}
			}
		case fd.Message() != nil && !fd.IsMap():
			found = unsupportedField(v.Message(), p, allowed)
		}
		return found == ""
	})
	return found
}

// downstreamTLSFields are the fields of a DownstreamTlsContext, and of
// the messages under it, that weft-proxy acts on.
var downstreamTLSFields = map[protoreflect.Name]bool{
	"common_tls_context": true, "tls_certificates": true, "alpn_protocols": true,
	"certificate_chain": true, "private_key": true, "filename": true,
}

// compileDownstreamTLS reads a filter chain's transport socket: nil for
// raw_buffer, TLS termination for envoy.transport_sockets.tls with one
// certificate and key in files (and ALPN); any other field is refused.
func compileDownstreamTLS(ts *corev3.TransportSocket) (*ServerTLS, error) {
	switch u := ts.GetTypedConfig().GetTypeUrl(); {
	case u == typeRawBuffer || u == "" && ts.GetName() == nameRawBuffer:
		return nil, nil
	case u != typeDownstreamTLS:
		return nil, fmt.Errorf("%q (%s): only %s and %s are supported", ts.GetName(), u, nameRawBuffer, nameTLS)
	}
	ctx := &tlsv3.DownstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", nameTLS, err)
	}
	if f := unsupportedField(ctx.ProtoReflect(), "", downstreamTLSFields); f != "" {
		return nil, fmt.Errorf("%s: %s is not supported by weft-proxy", nameTLS, f)
	}
	common := ctx.GetCommonTlsContext()
	certs := common.GetTlsCertificates()
	if len(certs) != 1 || certs[0].GetCertificateChain().GetFilename() == "" || certs[0].GetPrivateKey().GetFilename() == "" {
		return nil, fmt.Errorf("%s: common_tls_context.tls_certificates: weft-proxy serves exactly one certificate, with its chain and key in files (filename)", nameTLS)
	}
	return &ServerTLS{CertFile: certs[0].GetCertificateChain().GetFilename(), KeyFile: certs[0].GetPrivateKey().GetFilename(),
		ALPN: slices.Clone(common.GetAlpnProtocols())}, nil
}

// compileTCPKeepalive reads upstream_connection_options.tcp_keepalive.
func compileTCPKeepalive(c *clusterv3.Cluster, spec *upstream.ClusterSpec) error {
	ka := c.GetUpstreamConnectionOptions().GetTcpKeepalive()
	if ka == nil {
		return nil
	}
	const f = "upstream_connection_options.tcp_keepalive"
	v := upstream.TCPKeepalive{Probes: ka.GetKeepaliveProbes().GetValue()}
	for _, d := range []struct {
		name string
		x    interface{ GetValue() uint32 }
		dst  *time.Duration
		set  bool
	}{
		{"keepalive_time", ka.GetKeepaliveTime(), &v.Idle, ka.GetKeepaliveTime() != nil},
		{"keepalive_interval", ka.GetKeepaliveInterval(), &v.Interval, ka.GetKeepaliveInterval() != nil},
	} {
		if !d.set {
			continue
		}
		// Linux takes 1 to 32767 seconds.
		if n := d.x.GetValue(); n < 1 || n > 32767 {
			return fmt.Errorf("%s.%s %d: must be from 1 to 32767 seconds", f, d.name, n)
		}
		*d.dst = time.Duration(d.x.GetValue()) * time.Second
	}
	if ka.GetKeepaliveProbes() != nil && (v.Probes < 1 || v.Probes > 127) {
		return fmt.Errorf("%s.keepalive_probes %d: must be from 1 to 127", f, v.Probes)
	}
	spec.TCPKeepalive = &v
	return nil
}

// compileOutlierDetection reads outlier_detection: the consecutive 5xx and
// gateway failure detectors. Success rate and failure percentage
// detection are not implemented: a configuration that enforces them is
// rejected (enforcing_success_rate defaults to 100, so it must be set to 0,
// as Istio does).
func compileOutlierDetection(c *clusterv3.Cluster, spec *upstream.ClusterSpec) error {
	od := c.GetOutlierDetection()
	if od == nil {
		return nil
	}
	if c.GetType() == clusterv3.Cluster_ORIGINAL_DST {
		return fmt.Errorf("outlier_detection: not supported on an ORIGINAL_DST cluster")
	}
	const f = "outlier_detection"
	v := upstream.DefaultOutlierDetection()
	switch {
	case od.GetEnforcingSuccessRate() == nil || od.GetEnforcingSuccessRate().GetValue() > 0:
		return fmt.Errorf("%s.enforcing_success_rate: success rate ejection is not supported by weft-proxy; set it to 0 (it defaults to 100)", f)
	case od.GetSplitExternalLocalOriginErrors() && (od.GetEnforcingLocalOriginSuccessRate() == nil || od.GetEnforcingLocalOriginSuccessRate().GetValue() > 0):
		return fmt.Errorf("%s.enforcing_local_origin_success_rate: local origin success rate ejection is not supported by weft-proxy; set it to 0 (with split_external_local_origin_errors it defaults to 100)", f)
	case od.GetEnforcingFailurePercentage().GetValue() > 0:
		return fmt.Errorf("%s.enforcing_failure_percentage: failure percentage ejection is not supported by weft-proxy; set it to 0", f)
	case od.GetDetectDegradedHosts().GetValue():
		return fmt.Errorf("%s.detect_degraded_hosts: not supported by weft-proxy", f)
	}
	if x := od.GetConsecutive_5Xx(); x != nil {
		v.Consecutive5xx = x.GetValue()
	}
	if x := od.GetConsecutiveGatewayFailure(); x != nil {
		v.ConsecutiveGatewayFailure = x.GetValue()
	}
	v.SplitLocalOrigin = od.GetSplitExternalLocalOriginErrors()
	if x := od.GetConsecutiveLocalOriginFailure(); x != nil {
		v.ConsecutiveLocalOriginFailure = x.GetValue()
	}
	for _, p := range []struct {
		name string
		x    interface{ GetValue() uint32 }
		dst  *uint32
		ok   bool
	}{
		{"enforcing_consecutive_5xx", od.GetEnforcingConsecutive_5Xx(), &v.Enforcing5xx, od.GetEnforcingConsecutive_5Xx() != nil},
		{"enforcing_consecutive_gateway_failure", od.GetEnforcingConsecutiveGatewayFailure(), &v.EnforcingGatewayFailure, od.GetEnforcingConsecutiveGatewayFailure() != nil},
		{"enforcing_consecutive_local_origin_failure", od.GetEnforcingConsecutiveLocalOriginFailure(), &v.EnforcingLocalOriginFailure, od.GetEnforcingConsecutiveLocalOriginFailure() != nil},
		{"max_ejection_percent", od.GetMaxEjectionPercent(), &v.MaxEjectionPercent, od.GetMaxEjectionPercent() != nil},
	} {
		if !p.ok {
			continue
		}
		if p.x.GetValue() > 100 {
			return fmt.Errorf("%s.%s %d: must be a percentage from 0 to 100", f, p.name, p.x.GetValue())
		}
		*p.dst = p.x.GetValue()
	}
	for _, d := range []struct {
		name string
		x    interface {
			CheckValid() error
			AsDuration() time.Duration
		}
		dst *time.Duration
		ok  bool
	}{
		{"interval", od.GetInterval(), &v.Interval, od.GetInterval() != nil},
		{"base_ejection_time", od.GetBaseEjectionTime(), &v.BaseEjectionTime, od.GetBaseEjectionTime() != nil},
		{"max_ejection_time", od.GetMaxEjectionTime(), &v.MaxEjectionTime, od.GetMaxEjectionTime() != nil},
		{"max_ejection_time_jitter", od.GetMaxEjectionTimeJitter(), &v.MaxEjectionTimeJitter, od.GetMaxEjectionTimeJitter() != nil},
	} {
		if !d.ok {
			continue
		}
		if err := d.x.CheckValid(); err != nil || d.x.AsDuration() < 0 {
			return fmt.Errorf("%s.%s: must be a duration of 0 or more", f, d.name)
		}
		*d.dst = d.x.AsDuration()
	}
	if v.Interval <= 0 {
		return fmt.Errorf("%s.interval: must be positive", f)
	}
	v.AlwaysEjectOneHost = od.GetAlwaysEjectOneHost().GetValue()
	spec.Outlier = &v
	return nil
}

// compileCLA compiles one ClusterLoadAssignment into its usable endpoints.
func compileCLA(cla *endpointv3.ClusterLoadAssignment) ([]upstream.EndpointSpec, error) {
	if cla.GetClusterName() == "" {
		return nil, fmt.Errorf("cluster_name is empty")
	}
	return compileEndpoints(cla)
}

// compileEndpoints returns the healthy endpoints of the lowest priority that
// has any, as Envoy uses priority 0 first and spills over only when it is
// unhealthy. Endpoint weights are kept; locality weights are not used.
func compileEndpoints(cla *endpointv3.ClusterLoadAssignment) ([]upstream.EndpointSpec, error) {
	var (
		best uint32
		have bool
		out  []upstream.EndpointSpec
	)
	for i, lle := range cla.GetEndpoints() {
		for j, le := range lle.GetLbEndpoints() {
			field := fmt.Sprintf("endpoints[%d].lb_endpoints[%d]", i, j)
			if le.GetEndpointName() != "" {
				return nil, fmt.Errorf("%s.endpoint_name: named endpoints are not supported", field)
			}
			host, port, err := socketAddress(le.GetEndpoint().GetAddress())
			if err != nil {
				return nil, fmt.Errorf("%s.endpoint.address: %w", field, err)
			}
			switch le.GetHealthStatus() {
			case corev3.HealthStatus_UNHEALTHY, corev3.HealthStatus_DRAINING, corev3.HealthStatus_TIMEOUT:
				continue
			}
			prio := lle.GetPriority()
			if have && prio > best {
				continue
			}
			if !have || prio < best {
				best, have, out = prio, true, out[:0]
			}
			w := uint32(1)
			if lw := le.GetLoadBalancingWeight(); lw != nil {
				if w = lw.GetValue(); w == 0 {
					return nil, fmt.Errorf("%s.load_balancing_weight: must be at least 1", field)
				}
			}
			out = append(out, upstream.EndpointSpec{Address: net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10)), Weight: w,
				Sidecar: le.GetMetadata().GetFilterMetadata()["envoy.transport_socket_match"].GetFields()["tlsMode"].GetStringValue() == "istio"})
		}
	}
	return out, nil
}
