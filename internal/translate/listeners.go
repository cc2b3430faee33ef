package translate

import (
	"fmt"
	"slices"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	grpcwebv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/grpc_web/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
)

// Route configuration names from docs/xds.md.
const (
	outboundListenerName = "outbound"
	httpProxyRouteName   = "http_proxy"
)

// outboundListener is the sidecar's explicit (HTTP_PROXY) listener on
// 127.0.0.1:port, routing with RDS http_proxy.
func outboundListener(port uint32) *listenerv3.Listener {
	h := hcm(outboundListenerName)
	h.RouteSpecifier = rds(httpProxyRouteName)
	h.HttpProtocolOptions = &corev3.Http1ProtocolOptions{AllowAbsoluteUrl: wrapperspb.Bool(true)}
	return listener(outboundListenerName, "127.0.0.1", port, h)
}

// inboundListener accepts mesh traffic for one workload port on
// IP:listenPort and sends it to the local application.
func (t *translator) inboundListener(p nodemeta.Port) *listenerv3.Listener {
	name := fmt.Sprintf("inbound|%d", p.Port)
	h := inboundHCM(name, p)
	ip := t.proxy.IP
	if ip == "" {
		ip = "0.0.0.0"
	}
	listen := p.ListenPort
	if listen == 0 {
		listen = p.Port
	}
	return listener(name, ip, listen, h)
}

// inboundHCM is the connection manager of a workload port: everything to
// the local application, and for a port declared gRPC-Web (a name such as
// grpc-web or grpc-web-api) Envoy's gRPC-Web filter first, as Istio adds
// it, so that browsers' gRPC-Web calls reach the application as gRPC.
func inboundHCM(name string, p nodemeta.Port) *hcmv3.HttpConnectionManager {
	h := hcm(name)
	h.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: inboundRoutes(p.Port)}
	if registry.ProtocolFromName(p.Name) == "GRPC-WEB" {
		withGrpcWeb(h)
	}
	return h
}

// withGrpcWeb puts Envoy's gRPC-Web filter first among h's HTTP filters.
func withGrpcWeb(h *hcmv3.HttpConnectionManager) {
	h.HttpFilters = append([]*hcmv3.HttpFilter{{
		Name:       wellknown.GRPCWeb,
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&grpcwebv3.GrpcWeb{})},
	}}, h.HttpFilters...)
}

// gatewayListener serves the Gateway servers on one port: 0.0.0.0:PORT, or
// 127.0.0.1:PortMap[PORT] when the proxy remaps it. With a GRPC-WEB server
// among them, the gateway turns browsers' gRPC-Web calls into gRPC itself
// (the filter leaves other requests alone).
func (t *translator) gatewayListener(port uint32, grpcWeb bool) *listenerv3.Listener {
	name := fmt.Sprintf("0.0.0.0_%d", port)
	h := hcm(name)
	h.RouteSpecifier = rds(gatewayRouteName(port))
	if grpcWeb {
		withGrpcWeb(h)
	}
	ip, bind := t.gatewayBind(port)
	return listener(name, ip, bind, h)
}

// gatewayBind is where a gateway listens for a Gateway port: 0.0.0.0:PORT,
// or 127.0.0.1:PortMap[PORT] when the proxy remaps it.
func (t *translator) gatewayBind(port uint32) (ip string, bind uint32) {
	if mapped, ok := t.proxy.PortMap[port]; ok && mapped != 0 {
		return "127.0.0.1", mapped
	}
	return "0.0.0.0", port
}

// tcpMaxAge is how long a TCP connection to host may last: as Istio, the
// top-level tcp.maxConnectionDuration of host's DestinationRule (not a
// port's or a subset's); nil for no limit.
func (t *translator) tcpMaxAge(host string) *durationpb.Duration {
	return t.drs[host].spec.GetTrafficPolicy().GetConnectionPool().GetTcp().GetMaxConnectionDuration()
}

// gatewayTCPListener serves the TCP servers on one port (0.0.0.0:PORT, or
// 127.0.0.1:PortMap[PORT] when the proxy remaps it). Their connections go
// where the first VirtualService that is bound to one of their Gateways,
// for a host one of them admits, sends them: its first TCP route whose
// match applies (port and gateways), as Istio picks it. With none, there
// is no listener, and connections to the port are refused.
func (t *translator) gatewayTCPListener(port uint32, servers []gatewayServer) *listenerv3.Listener {
	for _, vs := range t.exportedVSs() {
		if len(vs.spec.GetTcp()) == 0 {
			continue
		}
		via := map[string]bool{}
		for _, srv := range servers {
			if vs.gateways[srv.gateway] && slices.ContainsFunc(vs.hosts, func(h string) bool { return srv.admits(vs.res.Namespace, h) }) {
				via[srv.gateway] = true
			}
		}
		if len(via) == 0 {
			continue
		}
		dests, host := t.tcpDests(vs, port, func(m *v1alpha3.L4MatchAttributes) bool {
			return gatewayL4MatchApplies(m, vs.res.Namespace, port, via)
		})
		if dests == nil {
			continue
		}
		name := fmt.Sprintf("0.0.0.0_%d", port)
		ip, bind := t.gatewayBind(port)
		return &listenerv3.Listener{
			Name:         name,
			Address:      socketAddress(ip, bind),
			FilterChains: []*listenerv3.FilterChain{tcpProxyChain(name, dests, t.tcpMaxAge(host))},
		}
	}
	return nil
}

// gatewayL4MatchApplies reports whether a TCP route's match applies to
// connections to a gateway's port, which arrive through the Gateways in
// via. As Istio's gateways, it looks at the match's port (the gateway's)
// and gateways only: source labels and namespace and destination subnets
// are for sidecars.
func gatewayL4MatchApplies(m *v1alpha3.L4MatchAttributes, vsNamespace string, port uint32, via map[string]bool) bool {
	if m.GetPort() != 0 && m.GetPort() != port {
		return false
	}
	gws := m.GetGateways()
	return len(gws) == 0 || slices.ContainsFunc(gws, func(g string) bool { return via[resolveGateway(g, vsNamespace)] })
}

// gatewayRouteName is the RDS name of a gateway port: http.PORT.
func gatewayRouteName(port uint32) string { return fmt.Sprintf("http.%d", port) }

// hcm is an HTTP connection manager whose HTTP filters are fault
// injection and CORS (both configured per route) and the router. The stat prefix is the
// listener name with "|" replaced by "_".
func hcm(listenerName string) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: strings.ReplaceAll(listenerName, "|", "_"),
		HttpFilters: []*hcmv3.HttpFilter{faultFilter(), corsFilter(), {
			Name:       wellknown.Router,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
}

// rds points a connection manager at a route configuration served over ADS.
func rds(name string) *hcmv3.HttpConnectionManager_Rds {
	return &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: name, ConfigSource: adsSource()}}
}

// listener binds ip:port with a single filter chain holding h.
func listener(name, ip string, port uint32, h *hcmv3.HttpConnectionManager) *listenerv3.Listener {
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(ip, port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       wellknown.HTTPConnectionManager,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(h)},
			}},
		}},
	}
}

// socketAddress is a TCP address.
func socketAddress(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Protocol:      corev3.SocketAddress_TCP,
		Address:       ip,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// inboundRoutes is the inline route configuration of an inbound listener:
// everything goes to the local application.
func inboundRoutes(port uint32) *routev3.RouteConfiguration {
	name := fmt.Sprintf("inbound|%d", port)
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    fmt.Sprintf("inbound|http|%d", port),
			Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Name:  "default",
				Match: prefixMatch("/"),
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{
					ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: inboundClusterName(port)},
					Timeout:          noTimeout(),
				}},
			}},
		}},
	}
}
