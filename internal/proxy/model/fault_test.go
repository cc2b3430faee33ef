package model

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/fault"
	commonfaultv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/filters/network/http_connection_manager/v3"
	typev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/v3"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

func abortAll(status uint32) *faultv3.HTTPFault {
	return &faultv3.HTTPFault{Abort: &faultv3.FaultAbort{
		ErrorType:  &faultv3.FaultAbort_HttpStatus{HttpStatus: status},
		Percentage: &typev3.FractionalPercent{Numerator: 100},
	}}
}

// TestFaultFilterChain: an HTTP connection manager with the fault filter
// before the router compiles into a chain that injects the route's fault,
// or the filter's own for routes without one.
func TestFaultFilterChain(t *testing.T) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") }))
	defer be.Close()
	var got []*Model
	c := newCompiler(&got)
	routes := xdstest.RouteConfig("http_proxy", xdstest.VirtualHost("v", []string{"*"},
		xdstest.WithFault(xdstest.PrefixRoute("/abort", cIn), abortAll(418)),
		xdstest.WithFault(xdstest.PrefixRoute("/quiet", cIn), &faultv3.HTTPFault{}),
		xdstest.PrefixRoute("/", cIn)))
	defaultFault := &faultv3.HTTPFault{Delay: &commonfaultv3.FaultDelay{
		FaultDelaySecifier: &commonfaultv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(1000)},
		Percentage:         &typev3.FractionalPercent{Numerator: 100},
	}}
	steps := []struct {
		typeURL string
		res     proto.Message
	}{
		{xdsclient.TypeCluster, xdstest.StaticCluster(cIn, strings.TrimPrefix(be.URL, "http://"))},
		{xdsclient.TypeListener, xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy", xdstest.FaultFilter(defaultFault))},
		{xdsclient.TypeRoute, routes},
	}
	for _, s := range steps {
		if err := c.Apply(s.typeURL, "1", anys(t, s.res)); err != nil {
			t.Fatalf("Apply %s: %v", s.typeURL, err)
		}
	}
	m := c.Current()
	if m == nil {
		t.Fatalf("no model: %s", c.Pending())
	}
	fc := m.Listeners[0].FilterChains[0]
	ff, ok := fc.Chain.(*fault.Filter)
	if !ok {
		t.Fatalf("chain is %T, want the fault filter first", fc.Chain)
	}
	for _, tc := range []struct {
		path     string
		wantCode int
		wantBody string
	}{
		{"/abort", 418, "fault filter abort"},
		{"/quiet", 200, "backend"},
		{"/other", 200, "backend"},
	} {
		req := httptest.NewRequest("GET", "http://reviews:9080"+tc.path, nil)
		rec := httptest.NewRecorder()
		x := &chain.Exchange{W: rec, R: req, RouteConfig: fc.RouteConfig}
		x.Route, x.RouteErr = fc.Routes.Select(req)
		fc.Chain.Serve(x)
		if rec.Code != tc.wantCode || rec.Body.String() != tc.wantBody {
			t.Errorf("%s: %d %q, want %d %q", tc.path, rec.Code, rec.Body.String(), tc.wantCode, tc.wantBody)
		}
	}
	// Only /other had no fault of its own: the filter's default delayed it.
	if st := ff.Stats(); st != (fault.Stats{DelaysInjected: 1, AbortsInjected: 1}) {
		t.Errorf("fault stats %+v, want one delay (filter default) and one abort (route)", st)
	}

	// Without the fault filter the chain is the forwarder alone.
	if err := c.Apply(xdsclient.TypeListener, "2", anys(t, xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy"))); err != nil {
		t.Fatal(err)
	}
	if _, ok := c.Current().Listeners[0].FilterChains[0].Chain.(*fault.Filter); ok {
		t.Error("a listener without the fault filter got one")
	}

	// With the filter but no fault anywhere (neither its own config nor a
	// route's), the filter has nothing to do and is left out; a route
	// that gains a fault brings it back.
	if err := c.Apply(xdsclient.TypeListener, "3", anys(t, xdstest.RDSListener("outbound", "127.0.0.1:15001", "http_proxy", xdstest.FaultFilter(&faultv3.HTTPFault{})))); err != nil {
		t.Fatal(err)
	}
	plain := xdstest.RouteConfig("http_proxy", xdstest.VirtualHost("v", []string{"*"}, xdstest.PrefixRoute("/", cIn)))
	if err := c.Apply(xdsclient.TypeRoute, "3", anys(t, plain)); err != nil {
		t.Fatal(err)
	}
	if ch := c.Current().Listeners[0].FilterChains[0].Chain; isFault(ch) {
		t.Errorf("chain is %T with no fault configured anywhere, want the forwarder alone", ch)
	}
	if err := c.Apply(xdsclient.TypeRoute, "4", anys(t, routes)); err != nil {
		t.Fatal(err)
	}
	if ch := c.Current().Listeners[0].FilterChains[0].Chain; !isFault(ch) {
		t.Errorf("chain is %T after a route got a fault, want the fault filter first", ch)
	}
}

func isFault(h chain.Handler) bool {
	_, ok := h.(*fault.Filter)
	return ok
}

func TestFaultFilterRejected(t *testing.T) {
	named := xdstest.FaultFilter(nil)
	named.Name = "fault"
	disabled := xdstest.FaultFilter(nil)
	disabled.Disabled = true
	routerFirst := xdstest.RDSListener("l", "127.0.0.1:1", "x")
	hcm := &hcmv3.HttpConnectionManager{}
	routerFirst.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm)
	hcm.HttpFilters = append(hcm.HttpFilters, xdstest.FaultFilter(nil))
	routerFirst.FilterChains[0].Filters[0].GetTypedConfig().MarshalFrom(hcm)
	tests := []struct {
		name string
		l    proto.Message
		want string
	}{
		{"unsupported part of the default", xdstest.RDSListener("l", "127.0.0.1:1", "x", xdstest.FaultFilter(&faultv3.HTTPFault{UpstreamCluster: "c"})),
			`Listener "l": filter_chains[0].filters[0].typed_config.http_filters[0].typed_config: upstream_cluster "c" is not supported`},
		{"another name", xdstest.RDSListener("l", "127.0.0.1:1", "x", named),
			`Listener "l": filter_chains[0].filters[0].typed_config.http_filters[0]: the fault filter must be named envoy.filters.http.fault, not "fault"`},
		{"twice", xdstest.RDSListener("l", "127.0.0.1:1", "x", xdstest.FaultFilter(nil), xdstest.FaultFilter(nil)),
			`Listener "l": filter_chains[0].filters[0].typed_config.http_filters[1]: a second envoy.filters.http.fault is not supported`},
		{"disabled", xdstest.RDSListener("l", "127.0.0.1:1", "x", disabled),
			`http_filters[0].disabled: a fault filter disabled by default is not supported`},
		{"after the router", routerFirst,
			`http_filters[0]: envoy.filters.http.router must be the last filter`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []*Model
			err := newCompiler(&got).Apply(xdsclient.TypeListener, "1", anys(t, tc.l))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Apply error %v, want it to contain %q", err, tc.want)
			}
		})
	}
}
