package router

import (
	"net/http"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// encode splits rc's encoding, as the proxy receives it.
func encode(tb testing.TB, rc *routev3.RouteConfiguration) *Encoded {
	tb.Helper()
	b, err := proto.MarshalOptions{Deterministic: true}.Marshal(rc)
	if err != nil {
		tb.Fatal(err)
	}
	e, err := Split(b)
	if err != nil {
		tb.Fatalf("Split: %v", err)
	}
	return e
}

// vhOf returns the compiled virtual host a request to host selects.
func vhOf(t *testing.T, tbl *Table, host string) *virtualHost {
	t.Helper()
	vh := tbl.findVirtualHost(host, "http")
	if vh == nil {
		t.Fatalf("no virtual host for %s", host)
	}
	return vh
}

func TestEncodedReusesUnchangedVirtualHosts(t *testing.T) {
	const y = `
name: http_proxy
virtual_hosts:
- name: a
  domains: [a, "a:80"]
  routes: [{match: {prefix: /}, route: {cluster: ca}}]
- name: b
  domains: [b]
  routes: [{match: {prefix: /}, route: {cluster: cb}}]
- name: c
  domains: ["*.c"]
  routes: [{match: {prefix: /}, route: {cluster: cc}}]
`
	rc := parseConfig(t, y)
	t1, err := encode(t, rc).Compile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if t1.Name() != "http_proxy" || t1.enc == nil || len(t1.enc.parts) != 3 {
		t.Fatalf("table %q keeps %+v", t1.Name(), t1.enc)
	}
	cluster := func(tbl *Table, host string) string {
		t.Helper()
		r, err := tbl.Select(newRequest("GET", "/", host))
		if err != nil {
			return "error: " + err.Error()
		}
		return r.Cluster
	}

	// b changes, d is added: a and c are shared, b and d compiled.
	rc2 := proto.Clone(rc).(*routev3.RouteConfiguration)
	rc2.VirtualHosts[1].Routes[0].GetRoute().ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: "cb2"}
	rc2.VirtualHosts = append(rc2.VirtualHosts, parseConfig(t, `
name: x
virtual_hosts:
- name: d
  domains: [d]
  routes: [{match: {prefix: /}, route: {cluster: cd}}]
`).VirtualHosts...)
	t2, err := encode(t, rc2).Compile(t1)
	if err != nil {
		t.Fatal(err)
	}
	for _, host := range []string{"a", "x.c"} {
		if vhOf(t, t2, host) != vhOf(t, t1, host) {
			t.Errorf("unchanged virtual host of %s was compiled again", host)
		}
	}
	if vhOf(t, t2, "b") == vhOf(t, t1, "b") {
		t.Error("changed virtual host b was reused")
	}
	for host, want := range map[string]string{"a": "ca", "a:80": "ca", "b": "cb2", "y.c": "cc", "d": "cd"} {
		if got := cluster(t2, host); got != want {
			t.Errorf("%s routes to %s, want %s", host, got, want)
		}
	}
	if got := cluster(t1, "b"); got != "cb" {
		t.Errorf("the earlier table changed: b routes to %s", got)
	}

	// A change outside the virtual hosts (a header every route adds)
	// compiles them all again, and they carry it.
	rc3 := proto.Clone(rc2).(*routev3.RouteConfiguration)
	rc3.RequestHeadersToAdd = []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-mesh", Value: "weft"}}}
	t3, err := encode(t, rc3).Compile(t2)
	if err != nil {
		t.Fatal(err)
	}
	if vhOf(t, t3, "a") == vhOf(t, t2, "a") {
		t.Error("virtual host a was reused after the route configuration's own fields changed")
	}
	r, err := t3.Select(newRequest("GET", "/", "a"))
	if err != nil {
		t.Fatal(err)
	}
	h := http.Header{}
	r.RequestHeaders.Apply(h, nil)
	if h.Get("x-mesh") != "weft" {
		t.Errorf("request headers after the change: %v, want x-mesh: weft", h)
	}

	// A new virtual host that takes a reused one's domain: rejected, and
	// named.
	rc4 := proto.Clone(rc2).(*routev3.RouteConfiguration)
	rc4.VirtualHosts[3].Domains = []string{"d", "A"}
	if _, err := encode(t, rc4).Compile(t2); err == nil || !strings.Contains(err.Error(), `route config http_proxy: virtual host "d": domains: domain "A" is already used by virtual host "a"`) {
		t.Errorf("duplicate domain: err = %v", err)
	}
	// The same with the reused virtual host second.
	rc5 := proto.Clone(rc2).(*routev3.RouteConfiguration)
	rc5.VirtualHosts[0], rc5.VirtualHosts[3] = rc5.VirtualHosts[3], rc5.VirtualHosts[0]
	rc5.VirtualHosts[0].Domains = []string{"d", "a"}
	if _, err := encode(t, rc5).Compile(t2); err == nil || !strings.Contains(err.Error(), `virtual host "a": domains: domain "a" is already used by virtual host "d"`) {
		t.Errorf("duplicate domain, reused second: err = %v", err)
	}
}

func TestSplitRejectsMalformed(t *testing.T) {
	b, err := proto.Marshal(parseConfig(t, `
name: http_proxy
virtual_hosts:
- name: a
  domains: [a]
`))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Split(b[:len(b)-1]); err == nil {
		t.Error("Split of a truncated encoding succeeded")
	}
	// A virtual host's bytes that do not decode are reported when
	// compiled, with its index.
	bad := append([]byte{fieldVirtualHosts<<3 | 2, 2, 0xff, 0xff}, b...)
	e, err := Split(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Compile(nil); err == nil || !strings.HasPrefix(err.Error(), "route config http_proxy: virtual host 0: ") {
		t.Errorf("undecodable virtual host: err = %v", err)
	}
}
