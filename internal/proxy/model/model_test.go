package model

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	hcmv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/http_connection_manager/v3"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

func anys(t testing.TB, ms ...proto.Message) []*anypb.Any {
	t.Helper()
	out := make([]*anypb.Any, len(ms))
	for i, m := range ms {
		a, err := anypb.New(m)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = a
	}
	return out
}

const (
	cRev = "outbound|9080||reviews.default.svc.cluster.local"
	cIn  = "inbound|9080||"
)

func newCompiler(published *[]*Model) *Compiler {
	return New(Options{Publish: func(m *Model) { *published = append(*published, m) }})
}

func TestCompileWaitsUntilComplete(t *testing.T) {
	var got []*Model
	c := newCompiler(&got)
	steps := []struct {
		typeURL     string
		res         []proto.Message
		wantPending string // substring; "" means a model is published
	}{
		{xdsclient.TypeCluster, []proto.Message{xdstest.EDSCluster(cRev), xdstest.StaticCluster(cIn, "127.0.0.1:9999")}, "listeners (LDS)"},
		{xdsclient.TypeListener, []proto.Message{xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy")}, `route configuration "http_proxy"`},
		{xdsclient.TypeRoute, []proto.Message{xdstest.RouteConfig("http_proxy", xdstest.VirtualHost("reviews:9080", []string{"reviews:9080"}, xdstest.PrefixRoute("/", cRev)))}, `endpoints of cluster "` + cRev + `"`},
		{xdsclient.TypeEndpoint, []proto.Message{xdstest.CLA(cRev, "10.0.0.1:15006", "10.0.0.2:15006")}, ""},
	}
	for i, s := range steps {
		if err := c.Apply(s.typeURL, "1", anys(t, s.res...)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if s.wantPending != "" {
			if len(got) != 0 || !strings.Contains(c.Pending(), s.wantPending) {
				t.Fatalf("step %d: published %d models, pending %q; want none, pending %q", i, len(got), c.Pending(), s.wantPending)
			}
			continue
		}
		if len(got) != 1 || c.Pending() != "" {
			t.Fatalf("step %d: published %d models, pending %q; want 1", i, len(got), c.Pending())
		}
	}
	if n := c.Names(xdsclient.TypeEndpoint); len(n) != 1 || n[0] != cRev {
		t.Errorf("EDS names = %v", n)
	}
	if n := c.Names(xdsclient.TypeRoute); len(n) != 1 || n[0] != "http_proxy" {
		t.Errorf("RDS names = %v", n)
	}
	m := c.Current()
	if len(m.Listeners) != 1 || m.Listeners[0].Address != "127.0.0.1:15001" || m.Listeners[0].FilterChains[0].RouteConfig != "http_proxy" {
		t.Fatalf("listeners = %+v", m.Listeners)
	}
	req, _ := http.NewRequest("GET", "http://reviews:9080/x", nil)
	if r, err := m.Listeners[0].FilterChains[0].Routes.Select(req); err != nil || r.Cluster != cRev {
		t.Errorf("Select = %v, %v", r, err)
	}
	if eps := m.Clusters[cRev].Endpoints(); len(eps) != 2 {
		t.Errorf("%s has %d endpoints, want 2", cRev, len(eps))
	}
	if eps := m.Clusters[cIn].Endpoints(); len(eps) != 1 || eps[0].Address() != "127.0.0.1:9999" {
		t.Errorf("static cluster endpoints wrong")
	}

	// An endpoint update publishes a new model and keeps the pool of the
	// endpoint that stayed.
	kept := m.Clusters[cRev].Endpoints()[1]
	if err := c.Apply(xdsclient.TypeEndpoint, "2", anys(t, xdstest.CLA(cRev, "10.0.0.2:15006", "10.0.0.3:15006"))); err != nil {
		t.Fatal(err)
	}
	m2 := c.Current()
	if len(got) != 2 || m2 == m {
		t.Fatalf("endpoint update did not publish a new model")
	}
	var addrs []string
	for _, e := range m2.Clusters[cRev].Endpoints() {
		addrs = append(addrs, e.Address())
	}
	if strings.Join(addrs, ",") != "10.0.0.2:15006,10.0.0.3:15006" {
		t.Errorf("endpoints after update = %v", addrs)
	}
	if m2.Clusters[cRev].Endpoints()[0] != kept {
		t.Errorf("endpoint 10.0.0.2 got a new connection pool")
	}
}

func TestCompileEndpointsHealthAndPriority(t *testing.T) {
	cla := xdstest.CLA(cRev, "10.0.0.1:1", "10.0.0.2:1")
	cla.Endpoints[0].LbEndpoints[1].HealthStatus = corev3.HealthStatus_UNHEALTHY
	cla.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(7)
	backup := xdstest.CLA(cRev, "10.0.0.9:1").Endpoints[0]
	backup.Priority = 1
	cla.Endpoints = append(cla.Endpoints, backup)
	eps, err := compileCLA(cla)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 1 || eps[0].Address != "10.0.0.1:1" || eps[0].Weight != 7 {
		t.Errorf("endpoints = %+v, want only the healthy priority-0 one with weight 7", eps)
	}
	cla.Endpoints[0].LbEndpoints[0].HealthStatus = corev3.HealthStatus_DRAINING
	if eps, _ = compileCLA(cla); len(eps) != 1 || eps[0].Address != "10.0.0.9:1" {
		t.Errorf("with priority 0 all unhealthy, endpoints = %+v, want the priority-1 one", eps)
	}
}

// TestCompileEndpointSidecar: an endpoint whose EDS metadata says a mesh
// proxy serves it (envoy.transport_socket_match tlsMode: istio, as Istio's
// control plane and weft's mark them) is compiled as one.
func TestCompileEndpointSidecar(t *testing.T) {
	cla := xdstest.CLA(cRev, "10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1")
	meta := func(mode string) *corev3.Metadata {
		return &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
			"envoy.transport_socket_match": {Fields: map[string]*structpb.Value{"tlsMode": structpb.NewStringValue(mode)}},
		}}
	}
	cla.Endpoints[0].LbEndpoints[0].Metadata = meta("istio")
	cla.Endpoints[0].LbEndpoints[1].Metadata = meta("disabled")
	eps, err := compileCLA(cla)
	if err != nil {
		t.Fatal(err)
	}
	if len(eps) != 3 || !eps[0].Sidecar || eps[1].Sidecar || eps[2].Sidecar {
		t.Errorf("endpoints = %+v, want only the first marked Sidecar", eps)
	}
}

func TestCompileRejectsWithPreciseMessage(t *testing.T) {
	tcpListener := xdstest.RDSListener("tcp", "127.0.0.1:1", "x")
	tcpListener.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anys(t, &wrapperspb.StringValue{})[0]}
	withLua := xdstest.RDSListener("lua", "127.0.0.1:2", "x")
	hcm := &hcmv3.HttpConnectionManager{}
	withLua.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)
	hcm.HttpFilters = append([]*hcmv3.HttpFilter{{Name: "envoy.filters.http.lua", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: anys(t, &wrapperspb.StringValue{})[0]}}}, hcm.HttpFilters...)
	withLua.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: anys(t, hcm)[0]}
	origDst := xdstest.EDSCluster("passthrough")
	origDst.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
	pipe := xdstest.CLA(cRev, "10.0.0.1:1")
	pipe.Endpoints[0].LbEndpoints[0].GetEndpoint().Address = &corev3.Address{Address: &corev3.Address_Pipe{Pipe: &corev3.Pipe{Path: "/tmp/s"}}}
	zeroTimeout := xdstest.EDSCluster("slow")
	zeroTimeout.ConnectTimeout = durationpb.New(0)
	zeroWeight := xdstest.CLA(cRev, "10.0.0.1:1")
	zeroWeight.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
	badPort := xdstest.CLA(cRev, "10.0.0.1:1")
	badPort.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: 70000}
	tests := []struct {
		name    string
		typeURL string
		res     []proto.Message
		want    []string
	}{
		{"connect timeout of zero", xdsclient.TypeCluster, []proto.Message{zeroTimeout},
			[]string{`Cluster "slow"`, "connect_timeout", "positive"}},
		{"endpoint weight of zero", xdsclient.TypeEndpoint, []proto.Message{zeroWeight},
			[]string{"lb_endpoints[0].load_balancing_weight", "at least 1"}},
		{"port out of range", xdsclient.TypeEndpoint, []proto.Message{badPort},
			[]string{"port_value 70000"}},
		{"cluster without a name", xdsclient.TypeCluster, []proto.Message{xdstest.EDSCluster("")},
			[]string{"name is empty"}},
		{"listener without HTTP connection manager", xdsclient.TypeListener, []proto.Message{tcpListener},
			[]string{`Listener "tcp"`, "filter_chains[0].filters[0]", "http_connection_manager"}},
		{"unsupported HTTP filter", xdsclient.TypeListener, []proto.Message{withLua},
			[]string{`Listener "lua"`, "http_filters[0]", "envoy.filters.http.lua", "not supported"}},
		{"two listeners on one address", xdsclient.TypeListener, []proto.Message{xdstest.RDSListener("a", "127.0.0.1:5", "x"), xdstest.RDSListener("b", "127.0.0.1:5", "x")},
			[]string{`Listener "b"`, "127.0.0.1:5", `"a"`}},
		{"bad regex in inline route", xdsclient.TypeListener, []proto.Message{xdstest.InlineListener("in", "127.0.0.1:6",
			xdstest.RouteConfig("inbound|9080", xdstest.VirtualHost("v", []string{"*"}, xdstest.RegexRoute("(", cIn))))},
			[]string{`Listener "in"`, "route_config", "inbound|9080", "safe_regex"}},
		{"bad regex in RDS", xdsclient.TypeRoute, []proto.Message{xdstest.RouteConfig("http_proxy", xdstest.VirtualHost("v", []string{"*"}, xdstest.RegexRoute("(", cIn)))},
			[]string{"http_proxy", "safe_regex"}},
		{"ORIGINAL_DST cluster", xdsclient.TypeCluster, []proto.Message{origDst},
			[]string{`Cluster "passthrough"`, "ORIGINAL_DST"}},
		{"pipe endpoint", xdsclient.TypeEndpoint, []proto.Message{pipe},
			[]string{`ClusterLoadAssignment "` + cRev + `"`, "endpoints[0].lb_endpoints[0].endpoint.address", "socket_address"}},
		{"wrong resource type", xdsclient.TypeCluster, []proto.Message{xdstest.CLA(cRev)},
			[]string{"resources[0] has type", "ClusterLoadAssignment"}},
		{"duplicate names", xdsclient.TypeCluster, []proto.Message{xdstest.EDSCluster("x"), xdstest.EDSCluster("x")},
			[]string{`Cluster "x"`, "twice"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []*Model
			c := newCompiler(&got)
			// A complete, good configuration first, which refers to the
			// route configuration and load assignment the cases break.
			good := []struct {
				typeURL string
				ms      []proto.Message
			}{
				{xdsclient.TypeCluster, []proto.Message{xdstest.StaticCluster(cIn, "127.0.0.1:9"), xdstest.EDSCluster(cRev)}},
				{xdsclient.TypeListener, []proto.Message{
					xdstest.InlineListener("inbound|9080", "127.0.0.1:7", xdstest.RouteConfig("inbound|9080", xdstest.VirtualHost("v", []string{"*"}, xdstest.PrefixRoute("/", cIn)))),
					xdstest.RDSListener("outbound", "127.0.0.1:8", "http_proxy")}},
				{xdsclient.TypeRoute, []proto.Message{xdstest.RouteConfig("http_proxy", xdstest.VirtualHost("v", []string{"*"}, xdstest.PrefixRoute("/", cRev)))}},
				{xdsclient.TypeEndpoint, []proto.Message{xdstest.CLA(cRev, "10.0.0.1:1")}},
			}
			for _, g := range good {
				if err := c.Apply(g.typeURL, "good", anys(t, g.ms...)); err != nil {
					t.Fatal(err)
				}
			}
			before := c.Current()
			if before == nil {
				t.Fatal("good configuration was not published")
			}
			err := c.Apply(tc.typeURL, "bad", anys(t, tc.res...))
			if err == nil {
				t.Fatal("Apply accepted a bad resource")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if c.Current() != before || len(got) != 1 {
				t.Errorf("a rejected response replaced the model")
			}
			if v := c.Resources().Versions[tc.typeURL]; v == "bad" {
				t.Errorf("rejected version recorded as accepted")
			}
		})
	}
}

func TestPortMapRebindsWildcardListeners(t *testing.T) {
	l := xdstest.RDSListener("0.0.0.0_80", "0.0.0.0:80", "http.80")
	cl, err := compileListener(l, map[uint32]uint32{80: 8080})
	if err != nil {
		t.Fatal(err)
	}
	if cl.address != "127.0.0.1:8080" {
		t.Errorf("address = %s, want 127.0.0.1:8080", cl.address)
	}
	cl, _ = compileListener(xdstest.RDSListener("0.0.0.0_443", "0.0.0.0:443", "http.443"), map[uint32]uint32{80: 8080})
	if cl.address != "0.0.0.0:443" {
		t.Errorf("unmapped port moved to %s", cl.address)
	}
}

// TestApplyReusesUnchangedResources checks that a response is compiled
// only where it changed: a resource whose encoding is the one accepted
// keeps its compiled form and the version it was accepted at, whether it
// comes as the same Any (incremental xDS) or as a new one with the same
// bytes (state of the world).
func TestApplyReusesUnchangedResources(t *testing.T) {
	var got []*Model
	c := newCompiler(&got)
	const cOther = "outbound|9080||ratings.default.svc.cluster.local"
	first := anys(t, xdstest.EDSCluster(cRev), xdstest.EDSCluster(cOther))
	if err := c.Apply(xdsclient.TypeCluster, "1", first); err != nil {
		t.Fatal(err)
	}
	rev, other := c.clusters[cRev].comp, c.clusters[cOther].comp
	changed := xdstest.EDSCluster(cOther)
	changed.LbPolicy = clusterv3.Cluster_RANDOM
	if err := c.Apply(xdsclient.TypeCluster, "2", append([]*anypb.Any{first[0]}, anys(t, changed)...)); err != nil {
		t.Fatal(err)
	}
	if c.clusters[cRev].comp != rev || c.clusters[cRev].res.Version != "1" {
		t.Errorf("an unchanged cluster (same Any) was compiled again, or took the new version %q", c.clusters[cRev].res.Version)
	}
	if c.clusters[cOther].comp == other || c.clusters[cOther].res.Version != "2" {
		t.Errorf("a changed cluster kept its old compiled form, or version %q", c.clusters[cOther].res.Version)
	}
	// The same bytes in new Anys, and a duplicate: still rejected.
	again := anys(t, xdstest.EDSCluster(cRev), changed)
	if err := c.Apply(xdsclient.TypeCluster, "3", again); err != nil {
		t.Fatal(err)
	}
	if c.clusters[cRev].comp != rev {
		t.Error("an unchanged cluster (equal bytes) was compiled again")
	}
	if err := c.Apply(xdsclient.TypeCluster, "4", append(again, anys(t, xdstest.EDSCluster(cRev))...)); err == nil || !strings.Contains(err.Error(), "sent twice") {
		t.Errorf("a reused cluster sent twice: err = %v", err)
	}
	// Endpoints too.
	cla := anys(t, xdstest.CLA(cRev, "10.0.0.1:15006"), xdstest.CLA(cOther, "10.0.0.2:15006"))
	if err := c.Apply(xdsclient.TypeEndpoint, "1", cla); err != nil {
		t.Fatal(err)
	}
	eps := c.endpoints[cRev].comp
	if err := c.Apply(xdsclient.TypeEndpoint, "2", append(anys(t, xdstest.CLA(cRev, "10.0.0.1:15006")), anys(t, xdstest.CLA(cOther, "10.0.0.3:15006"))...)); err != nil {
		t.Fatal(err)
	}
	if &c.endpoints[cRev].comp[0] != &eps[0] {
		t.Error("unchanged endpoints were compiled again")
	}
	if got := c.endpoints[cOther].comp[0].Address; got != "10.0.0.3:15006" {
		t.Errorf("changed endpoints compiled to %v", got)
	}
}

// TestDropsWhatIsNoLongerReferred checks that the endpoints of a cluster
// that is gone, and a route configuration no listener uses any more, are
// dropped: they take no memory, and when the cluster comes back its old
// endpoints (whose addresses may be gone too) are not used; the proxy
// waits for new ones, as Envoy does.
func TestDropsWhatIsNoLongerReferred(t *testing.T) {
	var got []*Model
	c := newCompiler(&got)
	const cOther = "outbound|9080||ratings.default.svc.cluster.local"
	apply := func(typeURL string, ms ...proto.Message) {
		t.Helper()
		if err := c.Apply(typeURL, "v", anys(t, ms...)); err != nil {
			t.Fatal(err)
		}
	}
	both := []proto.Message{xdstest.EDSCluster(cRev), xdstest.EDSCluster(cOther)}
	apply(xdsclient.TypeCluster, both...)
	apply(xdsclient.TypeListener, xdstest.RDSListener("a", "127.0.0.1:15001", "routes-a"), xdstest.RDSListener("b", "127.0.0.1:15002", "routes-b"))
	apply(xdsclient.TypeRoute,
		xdstest.RouteConfig("routes-a", xdstest.VirtualHost("reviews", []string{"*"}, xdstest.PrefixRoute("/", cRev))),
		xdstest.RouteConfig("routes-b", xdstest.VirtualHost("ratings", []string{"*"}, xdstest.PrefixRoute("/", cOther))))
	apply(xdsclient.TypeEndpoint, xdstest.CLA(cRev, "10.0.0.1:15006"), xdstest.CLA(cOther, "10.0.0.2:15006"))
	if c.Pending() != "" || len(c.endpoints) != 2 || len(c.routes) != 2 {
		t.Fatalf("pending %q, %d endpoints, %d routes; want a model from 2 and 2", c.Pending(), len(c.endpoints), len(c.routes))
	}

	// The ratings cluster and listener b go: so do their endpoints and routes.
	apply(xdsclient.TypeCluster, xdstest.EDSCluster(cRev))
	apply(xdsclient.TypeListener, xdstest.RDSListener("a", "127.0.0.1:15001", "routes-a"))
	if _, ok := c.endpoints[cOther]; ok || len(c.endpoints) != 1 {
		t.Errorf("endpoints kept for %d clusters after %s went: %v", len(c.endpoints), cOther, c.Names(xdsclient.TypeEndpoint))
	}
	if _, ok := c.routes["routes-b"]; ok || len(c.routes) != 1 {
		t.Errorf("%d route configurations kept after the only listener using routes-b went", len(c.routes))
	}
	if len(c.byHash[xdsclient.TypeEndpoint]) != 1 || len(c.byHash[xdsclient.TypeRoute]) != 1 {
		t.Errorf("the reuse indexes still hold what was dropped: %d endpoints, %d routes",
			len(c.byHash[xdsclient.TypeEndpoint]), len(c.byHash[xdsclient.TypeRoute]))
	}
	if c.Pending() != "" {
		t.Fatalf("pending %q after removals", c.Pending())
	}
	// A late answer to the dropped subscriptions is neither kept nor
	// checked: an invalid resource in it does not fail the rest.
	apply(xdsclient.TypeEndpoint, xdstest.CLA(cRev, "10.0.0.1:15006"), xdstest.CLA(cOther, "10.0.0.2:15006"))
	apply(xdsclient.TypeRoute,
		xdstest.RouteConfig("routes-a", xdstest.VirtualHost("reviews", []string{"*"}, xdstest.PrefixRoute("/", cRev))),
		xdstest.RouteConfig("routes-b", xdstest.VirtualHost("ratings", []string{"*"}, xdstest.PrefixRoute("/", cOther))))
	if len(c.endpoints) != 1 || len(c.routes) != 1 {
		t.Errorf("a late answer for what is no longer referred to was kept: %d endpoints, %d routes", len(c.endpoints), len(c.routes))
	}
	bad := xdstest.CLA(cOther, "10.0.0.2:15006")
	bad.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
	if err := c.Apply(xdsclient.TypeEndpoint, "v", anys(t, xdstest.CLA(cRev, "10.0.0.7:15006"), bad)); err != nil {
		t.Errorf("an invalid load assignment no cluster refers to failed the response: %v", err)
	}
	if eps := c.Current().Clusters[cRev].Endpoints(); len(eps) != 1 || eps[0].Address() != "10.0.0.7:15006" || len(c.endpoints) != 1 {
		t.Errorf("after a response with an unreferred resource: %s has %v, %d load assignments kept", cRev, eps, len(c.endpoints))
	}

	// They come back: the proxy waits for their endpoints and routes
	// instead of using the old ones.
	published := len(got)
	apply(xdsclient.TypeCluster, both...)
	if p := c.Pending(); !strings.Contains(p, `endpoints of cluster "`+cOther+`"`) || len(got) != published {
		t.Fatalf("cluster back: pending %q, published %d models; want it waiting for its endpoints", p, len(got)-published)
	}
	apply(xdsclient.TypeEndpoint, xdstest.CLA(cOther, "10.0.0.9:15006"))
	apply(xdsclient.TypeListener, xdstest.RDSListener("a", "127.0.0.1:15001", "routes-a"), xdstest.RDSListener("b", "127.0.0.1:15002", "routes-b"))
	if p := c.Pending(); !strings.Contains(p, `route configuration "routes-b"`) {
		t.Fatalf("listener back: pending %q; want it waiting for routes-b", p)
	}
	apply(xdsclient.TypeRoute, xdstest.RouteConfig("routes-b", xdstest.VirtualHost("ratings", []string{"*"}, xdstest.PrefixRoute("/", cOther))))
	if c.Pending() != "" {
		t.Fatalf("pending %q", c.Pending())
	}
	if eps := c.Current().Clusters[cOther].Endpoints(); len(eps) != 1 || eps[0].Address() != "10.0.0.9:15006" {
		t.Errorf("%s's endpoints after it came back: %v; want only the new 10.0.0.9:15006", cOther, eps)
	}
}
