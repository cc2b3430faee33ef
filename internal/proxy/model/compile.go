package model

import (
	"fmt"
	"net"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"

	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

const (
	typeHCM       = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
	typeRouter    = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
	nameHCM       = "envoy.filters.network.http_connection_manager"
	nameRouter    = "envoy.filters.http.router"
	nameRawBuffer = "envoy.transport_sockets.raw_buffer"
	typeRawBuffer = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// compiledListener is an accepted Listener, compiled as far as it can be on
// its own.
type compiledListener struct {
	name    string
	address string
	// rds names the route configuration to use; empty when inline is set.
	rds    string
	inline *router.Table
}

// routeConfigName is the name of the route configuration the listener uses.
func (l *compiledListener) routeConfigName() string {
	if l.inline != nil {
		return l.inline.Name()
	}
	return l.rds
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
	sa := a.GetSocketAddress()
	if sa == nil {
		return "", 0, fmt.Errorf("must be a socket_address")
	}
	if sa.GetProtocol() != corev3.SocketAddress_TCP {
		return "", 0, fmt.Errorf("socket_address.protocol %s is not supported, only TCP", sa.GetProtocol())
	}
	if sa.GetNamedPort() != "" {
		return "", 0, fmt.Errorf("socket_address.named_port is not supported, use port_value")
	}
	if sa.GetAddress() == "" {
		return "", 0, fmt.Errorf("socket_address.address is empty")
	}
	return sa.GetAddress(), sa.GetPortValue(), nil
}

// compileListener compiles one Listener. portMap rebinds wildcard listeners
// (0.0.0.0:FROM) to 127.0.0.1:TO, for gateways that share a host.
func compileListener(l *listenerv3.Listener, portMap map[uint32]uint32) (*compiledListener, error) {
	if err := l.Validate(); err != nil {
		return nil, err
	}
	host, port, err := socketAddress(l.GetAddress())
	if err != nil {
		return nil, fmt.Errorf("address: %w", err)
	}
	if to, ok := portMap[port]; ok && (host == "0.0.0.0" || host == "::") {
		host, port = "127.0.0.1", to
	}
	out := &compiledListener{name: l.GetName(), address: net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10))}
	chains := l.GetFilterChains()
	field := "filter_chains[0]"
	switch {
	case len(chains) == 0 && l.GetDefaultFilterChain() != nil:
		chains = []*listenerv3.FilterChain{l.GetDefaultFilterChain()}
		field = "default_filter_chain"
	case len(chains) == 0:
		return nil, fmt.Errorf("filter_chains: a listener needs one filter chain")
	case len(chains) > 1:
		return nil, fmt.Errorf("filter_chains: weft-proxy supports exactly one filter chain, got %d", len(chains))
	}
	fc := chains[0]
	if ts := fc.GetTransportSocket(); ts != nil {
		return nil, fmt.Errorf("%s.transport_socket %q: TLS termination is not supported by weft-proxy yet", field, ts.GetName())
	}
	var hcm *hcmv3.HttpConnectionManager
	for i, f := range fc.GetFilters() {
		tc := f.GetTypedConfig()
		if tc.GetTypeUrl() != typeHCM {
			return nil, fmt.Errorf("%s.filters[%d] %q (%s): only %s is supported", field, i, f.GetName(), tc.GetTypeUrl(), nameHCM)
		}
		if hcm != nil {
			return nil, fmt.Errorf("%s.filters[%d]: a second http_connection_manager", field, i)
		}
		hcm = &hcmv3.HttpConnectionManager{}
		if err := tc.UnmarshalTo(hcm); err != nil {
			return nil, fmt.Errorf("%s.filters[%d].typed_config: %w", field, i, err)
		}
		if err := hcm.Validate(); err != nil {
			return nil, fmt.Errorf("%s.filters[%d].typed_config: %w", field, i, err)
		}
		field = fmt.Sprintf("%s.filters[%d].typed_config", field, i)
	}
	if hcm == nil {
		return nil, fmt.Errorf("%s.filters: no %s", field, nameHCM)
	}
	for i, hf := range hcm.GetHttpFilters() {
		tu := hf.GetTypedConfig().GetTypeUrl()
		switch {
		case tu == typeRouter || (tu == "" && hf.GetName() == nameRouter):
			if i != len(hcm.GetHttpFilters())-1 {
				return nil, fmt.Errorf("%s.http_filters[%d]: %s must be the last filter", field, i, nameRouter)
			}
		case hf.GetIsOptional() || hf.GetDisabled():
			// Envoy skips optional filters it does not know.
		default:
			return nil, fmt.Errorf("%s.http_filters[%d] %q (%s) is not supported by weft-proxy", field, i, hf.GetName(), tu)
		}
	}
	switch rs := hcm.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_Rds:
		out.rds = rs.Rds.GetRouteConfigName()
		if out.rds == "" {
			return nil, fmt.Errorf("%s.rds.route_config_name is empty", field)
		}
	case *hcmv3.HttpConnectionManager_RouteConfig:
		t, err := router.Compile(rs.RouteConfig)
		if err != nil {
			return nil, fmt.Errorf("%s.route_config: %w", field, err)
		}
		out.inline = t
	default:
		return nil, fmt.Errorf("%s: only rds and route_config are supported (scoped_routes is not)", field)
	}
	return out, nil
}

// compileRoute compiles one RouteConfiguration.
func compileRoute(rc *routev3.RouteConfiguration) (*router.Table, error) {
	if err := rc.Validate(); err != nil {
		return nil, err
	}
	return router.Compile(rc)
}

// compileCluster compiles one Cluster.
func compileCluster(c *clusterv3.Cluster) (*compiledCluster, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	if c.GetClusterType() != nil {
		return nil, fmt.Errorf("cluster_type %q: custom cluster types are not supported", c.GetClusterType().GetName())
	}
	if ts := c.GetTransportSocket(); ts != nil && ts.GetName() != nameRawBuffer && ts.GetTypedConfig().GetTypeUrl() != typeRawBuffer {
		return nil, fmt.Errorf("transport_socket %q: upstream TLS is not supported by weft-proxy yet", ts.GetName())
	}
	if len(c.GetTransportSocketMatches()) > 0 {
		return nil, fmt.Errorf("transport_socket_matches: not supported by weft-proxy yet")
	}
	out := &compiledCluster{spec: upstream.ClusterSpec{Name: c.GetName(), ConnectTimeout: upstream.DefaultConnectTimeout}}
	if d := c.GetConnectTimeout(); d != nil {
		out.spec.ConnectTimeout = d.AsDuration()
		if out.spec.ConnectTimeout <= 0 {
			out.spec.ConnectTimeout = upstream.DefaultConnectTimeout
		}
	}
	switch p := c.GetLbPolicy(); p {
	case clusterv3.Cluster_ROUND_ROBIN:
		out.spec.LB = upstream.RoundRobin
	case clusterv3.Cluster_LEAST_REQUEST:
		out.spec.LB = upstream.LeastRequest
	case clusterv3.Cluster_RANDOM:
		out.spec.LB = upstream.Random
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
	case clusterv3.Cluster_STATIC, clusterv3.Cluster_STRICT_DNS, clusterv3.Cluster_LOGICAL_DNS:
		// DNS names are resolved when a connection is made.
		la := c.GetLoadAssignment()
		if la == nil {
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
	return out, nil
}

// compileCLA compiles one ClusterLoadAssignment into its usable endpoints.
func compileCLA(cla *endpointv3.ClusterLoadAssignment) ([]upstream.EndpointSpec, error) {
	if err := cla.Validate(); err != nil {
		return nil, err
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
				w = lw.GetValue()
			}
			out = append(out, upstream.EndpointSpec{Address: net.JoinHostPort(host, strconv.FormatUint(uint64(port), 10)), Weight: w})
		}
	}
	return out, nil
}
