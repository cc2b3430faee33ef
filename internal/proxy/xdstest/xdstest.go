// Package xdstest is for tests only: it runs a real go-control-plane ADS
// server on loopback and builds Envoy resources following docs/xds.md. It
// must never be imported by non-test code (the weft-proxy dependency test
// checks that go-control-plane's server does not reach the binary).
package xdstest

import (
	"context"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	// The server side is go-control-plane's, with its own (full) types:
	// Set converts weft-proxy's trimmed resources into them.
	_ "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/proxy/xdsapi"
	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	endpointv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/endpoint/v3"
	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	faultv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/fault/v3"
	routerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/matcher/v3"
)

// Server is an in-process ADS server.
type Server struct {
	Addr  string
	Cache cachev3.SnapshotCache

	t    testing.TB
	grpc *grpc.Server

	mu    sync.Mutex
	all   []*discoveryv3.DiscoveryRequest
	nacks []*discoveryv3.DiscoveryRequest
	acks  []*discoveryv3.DiscoveryRequest
	// The incremental streams' requests, and the responses sent on them.
	deltas    []*discoveryv3.DeltaDiscoveryRequest
	deltaResp []*discoveryv3.DeltaDiscoveryResponse
}

// Start starts a server on addr ("127.0.0.1:0" for any port) with an empty
// cache, or with cache when non-nil.
func Start(t testing.TB, addr string, cache cachev3.SnapshotCache) *Server {
	t.Helper()
	return start(t, addr, cache, false)
}

// StartStateOfTheWorldOnly starts a server, as Start does, that answers an
// incremental stream with Unimplemented, as a control plane that serves
// only state of the world does.
func StartStateOfTheWorldOnly(t testing.TB, addr string) *Server {
	t.Helper()
	return start(t, addr, nil, true)
}

// sotwOnly serves the state-of-the-world method of an ADS server and
// leaves the incremental one unimplemented.
type sotwOnly struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	ads serverv3.Server
}

func (s sotwOnly) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	return s.ads.StreamAggregatedResources(st)
}

func start(t testing.TB, addr string, cache cachev3.SnapshotCache, onlySotW bool) *Server {
	t.Helper()
	var ln net.Listener
	var err error
	// The port may still be in TIME_WAIT handover after a restart.
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("xds listen %s: %v", addr, err)
	}
	if cache == nil {
		cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	}
	s := &Server{Addr: ln.Addr().String(), Cache: cache, t: t, grpc: grpc.NewServer()}
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.all = append(s.all, r)
			if r.GetErrorDetail() != nil {
				s.nacks = append(s.nacks, r)
			} else if r.GetResponseNonce() != "" {
				s.acks = append(s.acks, r)
			}
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.deltas = append(s.deltas, r)
			return nil
		},
		StreamDeltaResponseFunc: func(_ int64, _ *discoveryv3.DeltaDiscoveryRequest, r *discoveryv3.DeltaDiscoveryResponse) {
			s.mu.Lock()
			defer s.mu.Unlock()
			s.deltaResp = append(s.deltaResp, r)
		},
	}
	srv := serverv3.NewServer(context.Background(), cache, cb)
	if onlySotW {
		discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, sotwOnly{ads: srv})
	} else {
		discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.grpc, srv)
	}
	go s.grpc.Serve(ln)
	t.Cleanup(s.Stop)
	return s
}

// Stop stops the server, closing every stream.
func (s *Server) Stop() { s.grpc.Stop() }

// NACKs returns the NACK requests received so far.
func (s *Server) NACKs() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), s.nacks...)
}

// Requests returns every request received so far.
func (s *Server) Requests() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), s.all...)
}

// ACKs returns the ACK requests received so far.
func (s *Server) ACKs() []*discoveryv3.DiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DiscoveryRequest(nil), s.acks...)
}

// DeltaRequests returns every incremental request received so far.
func (s *Server) DeltaRequests() []*discoveryv3.DeltaDiscoveryRequest {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DeltaDiscoveryRequest(nil), s.deltas...)
}

// DeltaResponses returns every incremental response sent so far.
func (s *Server) DeltaResponses() []*discoveryv3.DeltaDiscoveryResponse {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*discoveryv3.DeltaDiscoveryResponse(nil), s.deltaResp...)
}

// Set installs a snapshot for node id.
func (s *Server) Set(id, version string, r Resources) {
	s.t.Helper()
	snap, err := cachev3.NewSnapshot(version, map[resource.Type][]types.Resource{
		resource.ClusterType:  s.full(r.Clusters),
		resource.EndpointType: s.full(r.Endpoints),
		resource.ListenerType: s.full(r.Listeners),
		resource.RouteType:    s.full(r.Routes),
	})
	if err != nil {
		s.t.Fatalf("snapshot: %v", err)
	}
	if err := s.Cache.SetSnapshot(context.Background(), id, snap); err != nil {
		s.t.Fatalf("set snapshot: %v", err)
	}
}

// full re-decodes weft-proxy's trimmed resources as go-control-plane's
// types of the same names, which its cache needs (it reads names through a
// type switch). The bytes on the wire are the same.
func (s *Server) full(rs []types.Resource) []types.Resource {
	s.t.Helper()
	out := make([]types.Resource, len(rs))
	for i, r := range rs {
		b, err := proto.Marshal(r)
		if err != nil {
			s.t.Fatalf("marshal %T: %v", r, err)
		}
		mt, err := protoregistry.GlobalTypes.FindMessageByName(r.ProtoReflect().Descriptor().FullName())
		if err != nil {
			s.t.Fatalf("go-control-plane type of %T: %v", r, err)
		}
		m := mt.New().Interface()
		if err := proto.Unmarshal(b, m); err != nil {
			s.t.Fatalf("unmarshal %T: %v", r, err)
		}
		out[i] = m
	}
	return out
}

// Resources is one snapshot's content.
type Resources struct {
	Clusters, Endpoints, Listeners, Routes []types.Resource
}

func hostPort(addr string) (string, uint32) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		panic(err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		panic(err)
	}
	return h, uint32(n)
}

func socket(addr string) *corev3.Address {
	h, p := hostPort(addr)
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: h, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}}
}

// hcmListener is a listener whose one filter chain is hcm, with filters
// and then the router as its HTTP filters.
func hcmListener(name, addr string, hcm *hcmv3.HttpConnectionManager, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	hcm.HttpFilters = append(append([]*hcmv3.HttpFilter(nil), filters...), &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.router",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustMarshal(&routerv3.Router{})},
	})
	return &listenerv3.Listener{
		Name:    name,
		Address: socket(addr),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       "envoy.filters.network.http_connection_manager",
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustMarshal(hcm)},
		}}}},
	}
}

func mustMarshal(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

// RDSListener is a listener whose HTTP connection manager uses RDS
// routeConfig; filters (FaultFilter, ...) run before the router.
func RDSListener(name, addr, routeConfig string, filters ...*hcmv3.HttpFilter) *listenerv3.Listener {
	return hcmListener(name, addr, &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeConfig,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}},
		HttpProtocolOptions: &corev3.Http1ProtocolOptions{AllowAbsoluteUrl: wrapperspb.Bool(true)},
	}, filters...)
}

// FaultFilter is the fault injection HTTP filter with its own
// configuration f (an empty HTTPFault when nil), as the control plane puts
// it before the router.
func FaultFilter(f *faultv3.HTTPFault) *hcmv3.HttpFilter {
	if f == nil {
		f = &faultv3.HTTPFault{}
	}
	return &hcmv3.HttpFilter{
		Name:       "envoy.filters.http.fault",
		ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustMarshal(f)},
	}
}

// WithFault sets route's fault filter configuration
// (typed_per_filter_config) to f.
func WithFault(route *routev3.Route, f *faultv3.HTTPFault) *routev3.Route {
	if route.TypedPerFilterConfig == nil {
		route.TypedPerFilterConfig = map[string]*anypb.Any{}
	}
	route.TypedPerFilterConfig["envoy.filters.http.fault"] = mustMarshal(f)
	return route
}

// InlineListener is a listener with an inline route configuration.
func InlineListener(name, addr string, rc *routev3.RouteConfiguration) *listenerv3.Listener {
	return hcmListener(name, addr, &hcmv3.HttpConnectionManager{
		StatPrefix:     name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc},
	})
}

// RouteConfig builds a route configuration from virtual hosts.
func RouteConfig(name string, vhs ...*routev3.VirtualHost) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: vhs}
}

// VirtualHost routes prefix "/" of domains to cluster.
func VirtualHost(name string, domains []string, routes ...*routev3.Route) *routev3.VirtualHost {
	return &routev3.VirtualHost{Name: name, Domains: domains, Routes: routes}
}

// PrefixRoute routes prefix to a cluster.
func PrefixRoute(prefix, cluster string) *routev3.Route {
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
			Timeout:          durationpb.New(0),
		}},
	}
}

// RegexRoute routes paths matching re to a cluster.
func RegexRoute(re, cluster string) *routev3.Route {
	r := PrefixRoute("/", cluster)
	r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: re}}}
	return r
}

// WeightedRoute splits prefix "/" between clusters by weight.
func WeightedRoute(weights map[string]uint32) *routev3.Route {
	wc := &routev3.WeightedCluster{}
	for c, w := range weights {
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(w)})
	}
	return &routev3.Route{
		Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{
			ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
			Timeout:          durationpb.New(0),
		}},
	}
}

// EDSCluster is an EDS cluster fed over ADS.
func EDSCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{
			ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
		ConnectTimeout: durationpb.New(time.Second),
		LbPolicy:       clusterv3.Cluster_ROUND_ROBIN,
	}
}

// StaticCluster is a STATIC cluster with the given endpoint addresses.
func StaticCluster(name string, addrs ...string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       CLA(name, addrs...),
	}
}

// CLA is a ClusterLoadAssignment with one locality holding addrs.
func CLA(cluster string, addrs ...string) *endpointv3.ClusterLoadAssignment {
	lle := &endpointv3.LocalityLbEndpoints{}
	for _, a := range addrs {
		lle.LbEndpoints = append(lle.LbEndpoints, &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socket(a)}},
		})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{lle}}
}

// RouteConfigYAML decodes an Envoy RouteConfiguration written as YAML
// (Envoy's field names), failing the test on a typo.
func RouteConfigYAML(tb testing.TB, y string) *routev3.RouteConfiguration {
	tb.Helper()
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		tb.Fatalf("yaml: %v\n%s", err, y)
	}
	rc := &routev3.RouteConfiguration{}
	if err := (protojson.UnmarshalOptions{Resolver: xdsapi.Types}).Unmarshal(j, rc); err != nil {
		tb.Fatalf("protojson: %v\n%s", err, y)
	}
	return rc
}
