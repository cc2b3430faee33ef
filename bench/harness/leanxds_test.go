package harness

import (
	"slices"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

func wire(t *testing.T, m proto.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func typed(t *testing.T, m proto.Message) *listenerv3.Filter_TypedConfig {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Filter_TypedConfig{TypedConfig: a}
}

func TestLeanDecode(t *testing.T) {
	ads := &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}
	for _, tc := range []struct {
		cl        *clusterv3.Cluster
		name, eds string
	}{
		{&clusterv3.Cluster{Name: "outbound|8080||a", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads}}, "outbound|8080||a", "outbound|8080||a"},
		{&clusterv3.Cluster{Name: "b", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: ads, ServiceName: "b-eds"}}, "b", "b-eds"},
		{&clusterv3.Cluster{Name: "inbound|9080||", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}}, "inbound|9080||", ""},
	} {
		name, eds, err := clusterNames(wire(t, tc.cl))
		if err != nil || name != tc.name || eds != tc.eds {
			t.Errorf("clusterNames(%s) = %q, %q, %v; want %q, %q", tc.cl.GetName(), name, eds, err, tc.name, tc.eds)
		}
	}

	l := &listenerv3.Listener{Name: "outbound", FilterChains: []*listenerv3.FilterChain{
		{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.tcp_proxy", ConfigType: typed(t, &tcpproxyv3.TcpProxy{StatPrefix: "x"})}}},
		{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: typed(t, &hcmv3.HttpConnectionManager{
			StatPrefix:     "outbound",
			RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{ConfigSource: ads, RouteConfigName: "http_proxy"}},
		})}}},
		{Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: typed(t, &hcmv3.HttpConnectionManager{
			RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inline"}},
		})}}},
	}}
	rds, err := listenerRoutes(wire(t, l), []string{"earlier"})
	if want := []string{"earlier", "http_proxy"}; err != nil || !slices.Equal(rds, want) {
		t.Errorf("listenerRoutes = %q, %v; want %q", rds, err, want)
	}

	cla := &endpointv3.ClusterLoadAssignment{ClusterName: "outbound|8080||a", Endpoints: []*endpointv3.LocalityLbEndpoints{{}}}
	if name, err := lastString(wire(t, cla), claClusterName); err != nil || name != "outbound|8080||a" {
		t.Errorf("CLA cluster name = %q, %v", name, err)
	}

	rc := &routev3.RouteConfiguration{Name: "http_proxy", VirtualHosts: []*routev3.VirtualHost{
		{Name: "a.bench.svc.cluster.local:8080", Domains: []string{"a"}}, {Name: "b.bench.svc.cluster.local:8080"}}}
	name, vhosts, err := routeNames(wire(t, rc))
	if want := []string{"a.bench.svc.cluster.local:8080", "b.bench.svc.cluster.local:8080"}; err != nil || name != "http_proxy" || !slices.Equal(vhosts, want) {
		t.Errorf("routeNames = %q, %q, %v; want http_proxy, %q", name, vhosts, err, want)
	}

	// Truncated input is an error, not a silent empty name.
	b := wire(t, rc)
	if _, _, err := routeNames(b[:len(b)-3]); err == nil {
		t.Error("routeNames of truncated bytes: no error")
	}
}
