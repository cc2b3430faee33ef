package translate

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	dnsv3 "github.com/envoyproxy/go-control-plane/envoy/data/dns/v3"
	httpinspectorv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/listener/http_inspector/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	dnsfilterv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/udp/dns_filter/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

// Names and ports of transparent mode, from docs/xds.md.
const (
	virtualOutboundName       = "virtualOutbound"
	virtualInboundName        = "virtualInbound"
	dnsListenerName           = "dns"
	passthroughCluster        = "PassthroughCluster"
	inboundPassthroughCluster = "InboundPassthroughCluster"
	blackHoleCluster          = "BlackHoleCluster"
	virtualOutboundPort       = 15001
	virtualInboundPort        = 15006
	dnsPort                   = 15053
	dnsFilterName             = "envoy.filters.udp.dns_filter"
)

// sniffTimeout bounds protocol detection on ports that declare no protocol.
// Envoy's default (15 s) would stall server-first protocols for that long.
const sniffTimeout = 100 * time.Millisecond

// portKind is how a service port is proxied.
type portKind int

const (
	portSniffed portKind = iota // no protocol declared: detect HTTP
	portHTTP
	portTCP
)

func kindOf(protocol string) portKind {
	switch strings.ToUpper(protocol) {
	case "":
		return portSniffed
	case "HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB":
		return portHTTP
	}
	return portTCP
}

// transparentSidecar builds the listeners and route configurations of a
// sidecar whose traffic iptables redirects to it.
func (t *translator) transparentSidecar() ([]*listenerv3.Listener, []*routev3.RouteConfiguration) {
	fallback := passthroughCluster
	if t.snap.Mesh.OutboundTrafficPolicy == snapshot.RegistryOnly {
		fallback = blackHoleCluster
	}
	outbound := &listenerv3.Listener{
		Name:           virtualOutboundName,
		Address:        socketAddress("0.0.0.0", virtualOutboundPort),
		UseOriginalDst: wrapperspb.Bool(true),
		FilterChains:   []*listenerv3.FilterChain{tcpProxyChain(virtualOutboundName, []tcpDest{{cluster: fallback}}, nil)},
	}
	listeners := []*listenerv3.Listener{outbound, t.virtualInbound(), t.dnsListener()}
	httpPorts := map[uint32]bool{}
	mesh := t.meshHosts(func(vs *virtualService) bool { return len(vs.spec.GetTcp()) > 0 })
	for _, svc := range t.snap.Services {
		if svc.VIP == "" {
			continue
		}
		for _, port := range svc.Ports {
			if strings.EqualFold(port.Protocol, "UDP") {
				continue
			}
			dests, host := t.tcpRoute(mesh[svc.Hostname], svc, port.Number)
			listeners = append(listeners, vipListener(svc, port, dests, t.tcpMaxAge(host)))
			if kindOf(port.Protocol) != portTCP {
				httpPorts[port.Number] = true
			}
		}
	}
	var routes []*routev3.RouteConfiguration
	for port := range httpPorts {
		routes = append(routes, t.shared.routeConfig(t, strconv.Itoa(int(port)), port))
	}
	return listeners, routes
}

// vipListener takes the connections to one service port at its VIP. Its
// TCP connections go to dests (see tcpRoute), or to the service when there
// are none. maxAge, when set, is the DestinationRule's
// tcp.maxConnectionDuration, which ends a TCP connection that old, as
// Istio sets it on its tcp_proxy.
func vipListener(svc *registry.Service, port registry.Port, dests []tcpDest, maxAge *durationpb.Duration) *listenerv3.Listener {
	name := fmt.Sprintf("%s_%d", svc.VIP, port.Number)
	l := &listenerv3.Listener{
		Name:       name,
		Address:    socketAddress(svc.VIP, port.Number),
		BindToPort: wrapperspb.Bool(false),
	}
	if len(dests) == 0 {
		dests = []tcpDest{{cluster: clusterKey{host: svc.Hostname, port: port.Number}.name()}}
	}
	h := hcm(name)
	h.RouteSpecifier = rds(strconv.Itoa(int(port.Number)))
	httpChain := hcmChain(name, h)
	switch kindOf(port.Protocol) {
	case portHTTP:
		l.FilterChains = []*listenerv3.FilterChain{httpChain}
	case portTCP:
		l.FilterChains = []*listenerv3.FilterChain{tcpProxyChain(name, dests, maxAge)}
	default:
		l.ListenerFilters = []*listenerv3.ListenerFilter{{
			Name:       wellknown.HTTPInspector,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(&httpinspectorv3.HttpInspector{})},
		}}
		l.ListenerFiltersTimeout = durationpb.New(sniffTimeout)
		l.ContinueOnListenerFiltersTimeout = true
		httpChain.FilterChainMatch = &listenerv3.FilterChainMatch{ApplicationProtocols: []string{"http/1.1", "h2c"}}
		l.FilterChains = []*listenerv3.FilterChain{httpChain}
		l.DefaultFilterChain = tcpProxyChain(name, dests, maxAge)
	}
	return l
}

// virtualInbound takes the connections iptables redirects to 15006 and
// sends each to the local application's port, by original destination
// port. Ports the workload does not declare pass through unchanged.
func (t *translator) virtualInbound() *listenerv3.Listener {
	l := &listenerv3.Listener{
		Name:               virtualInboundName,
		Address:            socketAddress("0.0.0.0", virtualInboundPort),
		UseOriginalDst:     wrapperspb.Bool(true),
		DefaultFilterChain: tcpProxyChain(virtualInboundName, []tcpDest{{cluster: inboundPassthroughCluster}}, nil),
	}
	for _, p := range t.proxy.Ports {
		name := fmt.Sprintf("inbound|%d", p.Port)
		var chain *listenerv3.FilterChain
		if kindOf(registry.ProtocolFromName(p.Name)) == portHTTP {
			chain = hcmChain(name, inboundHCM(name, p))
		} else {
			// Undeclared inbound ports are proxied as TCP: the application
			// speaks whatever it speaks.
			chain = tcpProxyChain(name, []tcpDest{{cluster: inboundClusterName(p.Port)}}, nil)
		}
		chain.FilterChainMatch = &listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(p.Port)}
		l.FilterChains = append(l.FilterChains, chain)
	}
	return l
}

// dnsListener answers the mesh's host names with their VIPs on
// 127.0.0.1:15053, where iptables sends the workload's DNS.
func (t *translator) dnsListener() *listenerv3.Listener {
	table := &dnsv3.DnsTable{}
	for _, svc := range t.snap.Services {
		if svc.VIP == "" {
			continue
		}
		table.VirtualDomains = append(table.VirtualDomains, &dnsv3.DnsTable_DnsVirtualDomain{
			Name: svc.Hostname,
			Endpoint: &dnsv3.DnsTable_DnsEndpoint{EndpointConfig: &dnsv3.DnsTable_DnsEndpoint_AddressList{
				AddressList: &dnsv3.DnsTable_AddressList{Address: []string{svc.VIP}},
			}},
		})
	}
	cfg := &dnsfilterv3.DnsFilterConfig{
		StatPrefix: dnsListenerName,
		ServerConfig: &dnsfilterv3.DnsFilterConfig_ServerContextConfig{
			ConfigSource: &dnsfilterv3.DnsFilterConfig_ServerContextConfig_InlineDnsTable{InlineDnsTable: table},
		},
	}
	addr := socketAddress("127.0.0.1", dnsPort)
	addr.GetSocketAddress().Protocol = corev3.SocketAddress_UDP
	return &listenerv3.Listener{
		Name:    dnsListenerName,
		Address: addr,
		ListenerFilters: []*listenerv3.ListenerFilter{{
			Name:       dnsFilterName,
			ConfigType: &listenerv3.ListenerFilter_TypedConfig{TypedConfig: mustAny(cfg)},
		}},
	}
}

// hcmChain is a filter chain holding one HTTP connection manager.
func hcmChain(name string, h *hcmv3.HttpConnectionManager) *listenerv3.FilterChain {
	return &listenerv3.FilterChain{
		Name: name,
		Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)},
		}},
	}
}

// tcpDest is one destination of a TCP route: a cluster and its weight.
type tcpDest struct {
	cluster string
	weight  uint32
}

// tcpProxyChain is a filter chain that proxies the connection's bytes to
// one of dests (by weight, when there are several), for at most maxAge
// when that is set.
func tcpProxyChain(name string, dests []tcpDest, maxAge *durationpb.Duration) *listenerv3.FilterChain {
	tp := &tcpproxyv3.TcpProxy{
		StatPrefix:                      strings.ReplaceAll(name, "|", "_"),
		MaxDownstreamConnectionDuration: proto.CloneOf(maxAge),
	}
	if len(dests) == 1 {
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_Cluster{Cluster: dests[0].cluster}
	} else {
		wc := &tcpproxyv3.TcpProxy_WeightedCluster{}
		for _, d := range dests {
			wc.Clusters = append(wc.Clusters, &tcpproxyv3.TcpProxy_WeightedCluster_ClusterWeight{Name: d.cluster, Weight: d.weight})
		}
		tp.ClusterSpecifier = &tcpproxyv3.TcpProxy_WeightedClusters{WeightedClusters: wc}
	}
	return &listenerv3.FilterChain{
		Name: name,
		Filters: []*listenerv3.Filter{{
			Name:       wellknown.TCPProxy,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(tp)},
		}},
	}
}

// tcpRoute is where the VirtualService vs (which applies to sidecars for
// svc's host; nil if none does) sends TCP connections to svc on port: the
// destinations of its first TCP route whose match applies (a route without
// matches applies everywhere), as Istio picks it, and the host of the first
// of them. nil means none does, and the connection goes to the service
// (whose host is then the one returned).
func (t *translator) tcpRoute(vs *virtualService, svc *registry.Service, port uint32) ([]tcpDest, string) {
	if vs == nil {
		return nil, svc.Hostname
	}
	dests, host := t.tcpDests(vs, port, func(m *v1alpha3.L4MatchAttributes) bool {
		return t.l4MatchApplies(m, vs.res.Namespace, svc, port)
	})
	if dests == nil {
		return nil, svc.Hostname
	}
	return dests, host
}

// tcpDests returns the destinations of vs's first TCP route with a match
// that applies (or none: it applies everywhere) and at least one
// destination, for connections to port, and the host of the first of them;
// nil if no route does.
func (t *translator) tcpDests(vs *virtualService, port uint32, applies func(*v1alpha3.L4MatchAttributes) bool) ([]tcpDest, string) {
	for _, r := range vs.spec.GetTcp() {
		if len(r.GetMatch()) > 0 && !slices.ContainsFunc(r.GetMatch(), applies) {
			continue
		}
		var dests []tcpDest
		var total uint32
		host := ""
		for _, d := range r.GetRoute() {
			if d.GetDestination().GetHost() == "" {
				continue
			}
			k := t.destination(d.GetDestination(), vs.res.Namespace, port)
			if host == "" {
				host = k.host
			}
			t.refs[k] = true
			w := uint32(max(d.GetWeight(), 0))
			dests = append(dests, tcpDest{cluster: k.name(), weight: w})
			total += w
		}
		if total > 0 {
			dests = slices.DeleteFunc(dests, func(d tcpDest) bool { return d.weight == 0 })
		} else {
			for i := range dests {
				dests[i].weight = 1 // no weights at all: split evenly
			}
		}
		if len(dests) > 0 {
			return dests, host
		}
	}
	return nil, ""
}

// l4MatchApplies reports whether a TCP route's match applies to
// connections from this proxy to svc on port: its port, destination
// subnets (the service's VIP), gateways ("mesh"), source labels and
// source namespace.
func (t *translator) l4MatchApplies(m *v1alpha3.L4MatchAttributes, vsNamespace string, svc *registry.Service, port uint32) bool {
	if m.GetPort() != 0 && m.GetPort() != port {
		return false
	}
	if subnets := m.GetDestinationSubnets(); len(subnets) > 0 {
		vip, err := netip.ParseAddr(svc.VIP)
		if err != nil || !slices.ContainsFunc(subnets, func(s string) bool { return inSubnet(vip, s) }) {
			return false
		}
	}
	if gws := m.GetGateways(); len(gws) > 0 && !slices.ContainsFunc(gws, func(g string) bool { return resolveGateway(g, vsNamespace) == meshGateway }) {
		return false
	}
	return t.fromSource(m.GetSourceLabels(), m.GetSourceNamespace())
}

// inSubnet reports whether ip is in s, a CIDR or a single address.
func inSubnet(ip netip.Addr, s string) bool {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Contains(ip)
	}
	a, err := netip.ParseAddr(s)
	return err == nil && a == ip
}

// passthroughClusters are the clusters transparent listeners fall back to.
func passthroughClusters() []*clusterv3.Cluster {
	originalDst := func(name string) *clusterv3.Cluster {
		c := &clusterv3.Cluster{
			Name:                 name,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST},
			LbPolicy:             clusterv3.Cluster_CLUSTER_PROVIDED,
		}
		applyConnectionPool(c, nil, "") // Istio's defaults, as for every cluster
		return c
	}
	return []*clusterv3.Cluster{
		originalDst(passthroughCluster),
		originalDst(inboundPassthroughCluster),
		{
			Name:                 blackHoleCluster,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			ConnectTimeout:       durationpb.New(defaultConnectTimeout),
		},
	}
}
