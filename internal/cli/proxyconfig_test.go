package cli

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpproxyv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/xdsserver"
)

func sockAddr(ip string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: ip, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port}}}}
}

func mustAny(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func filter(t *testing.T, name string, m proto.Message) *listenerv3.Filter {
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(t, m)}}
}

// istioConfig is metadata naming the Istio resource at path, as Istio and
// weft control put it on clusters and routes.
func istioConfig(t *testing.T, path string) *corev3.Metadata {
	t.Helper()
	st, err := structpb.NewStruct(map[string]any{"config": path})
	if err != nil {
		t.Fatal(err)
	}
	return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"istio": st}}
}

// fakeProxyConfig is what a control plane with two proxies holds for
// reviews-v1-abcde.default, by type.
func fakeProxyConfig(t *testing.T) map[string][]proto.Message {
	const reviews = "reviews.default.svc.cluster.local"
	eds := &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
	headerMatch := &routev3.HeaderMatcher{Name: "end-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "jason"}}}}
	return map[string][]proto.Message{
		"clusters": {
			&clusterv3.Cluster{Name: "inbound|9080||", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}},
			&clusterv3.Cluster{Name: "outbound|9080|v2|" + reviews, ClusterDiscoveryType: eds, Metadata: istioConfig(t,
				"/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews")},
			&clusterv3.Cluster{Name: "outbound|9080||" + reviews, ClusterDiscoveryType: eds},
			&clusterv3.Cluster{Name: "PassthroughCluster", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}},
		},
		"listeners": {
			&listenerv3.Listener{Name: "inbound|9080", Address: sockAddr("127.0.0.1", 20002), FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{filter(t, "envoy.filters.network.http_connection_manager", &hcmv3.HttpConnectionManager{
					RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: &routev3.RouteConfiguration{Name: "inbound|9080"}}})}}}},
			&listenerv3.Listener{Name: "outbound", Address: sockAddr("127.0.0.1", 20003), FilterChains: []*listenerv3.FilterChain{{
				Filters: []*listenerv3.Filter{filter(t, "envoy.filters.network.http_connection_manager", &hcmv3.HttpConnectionManager{
					RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: "http_proxy"}}})}}}},
			&listenerv3.Listener{Name: "virtualOutbound", Address: sockAddr("0.0.0.0", 15001),
				DefaultFilterChain: &listenerv3.FilterChain{Filters: []*listenerv3.Filter{filter(t, "envoy.filters.network.tcp_proxy",
					&tcpproxyv3.TcpProxy{ClusterSpecifier: &tcpproxyv3.TcpProxy_Cluster{Cluster: "PassthroughCluster"}})}}},
		},
		"routes": {
			&routev3.RouteConfiguration{Name: "http_proxy", VirtualHosts: []*routev3.VirtualHost{{
				Name:    reviews + ":9080",
				Domains: []string{reviews + ":9080", "reviews.default.svc:9080", "reviews.default:9080", "reviews:9080"},
				Routes: []*routev3.Route{
					{Metadata: istioConfig(t, "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews-split"),
						Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}, Headers: []*routev3.HeaderMatcher{headerMatch}},
						Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_WeightedClusters{
							WeightedClusters: &routev3.WeightedCluster{Clusters: []*routev3.WeightedCluster_ClusterWeight{
								{Name: "outbound|9080|v2|" + reviews, Weight: wrapperspb.UInt32(90)},
								{Name: "outbound|9080|v3|" + reviews, Weight: wrapperspb.UInt32(10)}}}}}}},
					{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/old"}},
						Action: &routev3.Route_Redirect{Redirect: &routev3.RedirectAction{
							PathRewriteSpecifier: &routev3.RedirectAction_PathRedirect{PathRedirect: "/new"}}}},
					{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "/down/.*"}}},
						Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{Status: 503}}},
					{Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
						Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "outbound|9080||" + reviews}}}},
				},
			}}},
		},
		"endpoints": {
			&endpointv3.ClusterLoadAssignment{ClusterName: "outbound|9080||" + reviews, Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{
					{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr("127.0.0.1", 20012)}}},
					{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: sockAddr("127.0.0.1", 20006)}},
						LoadBalancingWeight: wrapperspb.UInt32(3)},
				}}}},
		},
	}
}

// fakeControlPlane serves proxy-status and proxy-config like a control
// plane with the proxies reviews-v1-abcde.default and reviews-v2-fghij.default.
func fakeControlPlane(t *testing.T) string {
	t.Helper()
	const id = "sidecar~127.0.0.1~reviews-v1-abcde.default~default.svc.cluster.local"
	config := fakeProxyConfig(t)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/proxy-status", func(w http.ResponseWriter, _ *http.Request) {
		json.NewEncoder(w).Encode([]xdsserver.ProxyStatus{
			{ID: id, Type: "sidecar", Namespace: "default", Workload: "reviews-v1-abcde"},
			{ID: "sidecar~127.0.0.1~reviews-v2-fghij.default~default.svc.cluster.local", Type: "sidecar", Namespace: "default", Workload: "reviews-v2-fghij"},
		})
	})
	mux.HandleFunc("GET /api/v1/proxy-config", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("proxy") != id {
			w.WriteHeader(http.StatusNotFound)
			json.NewEncoder(w).Encode(map[string]string{"error": "proxy is not connected"})
			return
		}
		typ := r.URL.Query().Get("type")
		out := controlapi.ProxyConfig{Proxy: id, Type: typ, Version: "1", Resources: []json.RawMessage{}}
		for _, m := range config[typ] {
			b, err := protojson.Marshal(mustAny(t, m))
			if err != nil {
				t.Error(err)
			}
			out.Resources = append(out.Resources, b)
		}
		json.NewEncoder(w).Encode(out)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func TestProxyConfig(t *testing.T) {
	addr := fakeControlPlane(t)
	for _, tc := range []struct {
		name string
		args []string
		want string // stdout, or the error on stderr
		fail bool
	}{
		{name: "clusters", args: []string{"clusters", "reviews-v1-abcde.default"}, want: `
SERVICE FQDN                        PORT   SUBSET   DIRECTION   TYPE           DESTINATION RULE
                                    9080   -        inbound     STATIC         -
PassthroughCluster                  -      -        -           ORIGINAL_DST   -
reviews.default.svc.cluster.local   9080   -        outbound    EDS            -
reviews.default.svc.cluster.local   9080   v2       outbound    EDS            reviews.default
`},
		{name: "listeners", args: []string{"listeners", "reviews-v1"}, want: `
NAME              ADDRESS:PORT      TYPE   ROUTE
inbound|9080      127.0.0.1:20002   HTTP   inline: inbound|9080
outbound          127.0.0.1:20003   HTTP   http_proxy
virtualOutbound   0.0.0.0:15001     TCP    cluster: PassthroughCluster
`},
		{name: "routes", args: []string{"routes", "reviews-v1-abcde"}, want: `
NAME         DOMAINS                                          MATCH            ACTION                                                                                                           VIRTUAL SERVICE
http_proxy   reviews.default.svc.cluster.local:9080 +3 more   /* (1 header)    outbound|9080|v2|reviews.default.svc.cluster.local 90%, outbound|9080|v3|reviews.default.svc.cluster.local 10%   reviews-split.default
http_proxy   reviews.default.svc.cluster.local:9080 +3 more   /old             redirect 301 path=/new                                                                                           -
http_proxy   reviews.default.svc.cluster.local:9080 +3 more   regex /down/.*   direct response 503                                                                                              -
http_proxy   reviews.default.svc.cluster.local:9080 +3 more   /*               outbound|9080||reviews.default.svc.cluster.local                                                                 -
`},
		{name: "endpoints", args: []string{"endpoints", "reviews-v1-abcde.default"}, want: `
ENDPOINT          CLUSTER                                            WEIGHT
127.0.0.1:20006   outbound|9080||reviews.default.svc.cluster.local   3
127.0.0.1:20012   outbound|9080||reviews.default.svc.cluster.local   1
`},
		{name: "unknown proxy", args: []string{"clusters", "ratings"}, fail: true, want: `
error: proxy "ratings" not found; connected proxies:
  reviews-v1-abcde.default
  reviews-v2-fghij.default
`},
		{name: "ambiguous proxy", args: []string{"clusters", "reviews"}, fail: true, want: `
error: proxy "reviews" is ambiguous; it matches:
  reviews-v1-abcde.default
  reviews-v2-fghij.default
`},
		{name: "bad output", args: []string{"clusters", "reviews-v1", "-o", "yaml"}, fail: true, want: `
error: output format "yaml": want short or json
`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := run(append([]string{"proxy-config", "--server", addr}, tc.args...), &out, &errb)
			got := out.String()
			if tc.fail {
				got = errb.String()
			}
			if (code != 0) != tc.fail {
				t.Errorf("exit code %d; stderr %s", code, errb.String())
			}
			if want := strings.TrimPrefix(tc.want, "\n"); got != want {
				t.Errorf("weft proxy-config %s printed:\n%s\nwant:\n%s", strings.Join(tc.args, " "), got, want)
			}
		})
	}
}

func TestProxyConfigAllAndJSON(t *testing.T) {
	addr := fakeControlPlane(t)
	var out, errb bytes.Buffer
	if code := run([]string{"pc", "all", "reviews-v1", "--server", addr}, &out, &errb); code != 0 {
		t.Fatalf("weft pc all: exit %d: %s", code, errb.String())
	}
	var headers []string
	for _, section := range strings.Split(out.String(), "\n\n") {
		headers = append(headers, strings.Fields(section)[0]+" "+strings.Fields(section)[1])
	}
	if want := "SERVICE FQDN|NAME ADDRESS:PORT|NAME DOMAINS|ENDPOINT CLUSTER"; strings.Join(headers, "|") != want {
		t.Errorf("weft pc all printed sections %q, want %q:\n%s", headers, want, out.String())
	}

	out.Reset()
	if code := run([]string{"proxy-config", "all", "reviews-v1", "-o", "json", "--server", addr}, &out, &errb); code != 0 {
		t.Fatalf("weft proxy-config all -o json: exit %d: %s", code, errb.String())
	}
	var items []struct {
		Type string `json:"@type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(out.Bytes(), &items); err != nil {
		t.Fatalf("-o json is not a JSON array: %v\n%s", err, out.String())
	}
	var got []string
	for _, it := range items {
		got = append(got, it.Type[strings.LastIndex(it.Type, ".")+1:]+" "+it.Name)
	}
	want := "Cluster inbound|9080|| Cluster outbound|9080|v2|reviews.default.svc.cluster.local " +
		"Cluster outbound|9080||reviews.default.svc.cluster.local Cluster PassthroughCluster " +
		"Listener inbound|9080 Listener outbound Listener virtualOutbound RouteConfiguration http_proxy ClusterLoadAssignment "
	if strings.Join(got, " ") != want {
		t.Errorf("-o json resources:\n%s\nwant\n%s", strings.Join(got, " "), want)
	}
}
