package router

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	// Registers PreviousHostsPredicate so that test YAML can carry it in an
	// Any, as Istio's default retry policy does.
	_ "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/extensions/retry/host/previous_hosts/v3"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// parseConfig decodes an Envoy RouteConfiguration written as YAML.
func parseConfig(tb testing.TB, y string) *routev3.RouteConfiguration {
	tb.Helper()
	return xdstest.RouteConfigYAML(tb, y)
}

func mustCompile(tb testing.TB, y string) *Table {
	tb.Helper()
	t, err := Compile(parseConfig(tb, y))
	if err != nil {
		tb.Fatalf("Compile: %v", err)
	}
	return t
}

// oneRoute builds a table with one catch-all virtual host whose routes are
// the given match (YAML flow mapping) to cluster "hit".
func oneRoute(tb testing.TB, match string) *Table {
	tb.Helper()
	return mustCompile(tb, `
name: test
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - name: r
    match: `+match+`
    route: {cluster: hit}
`)
}

// newRequest builds a request as a client would; headers are name, value
// pairs (a repeated name adds a value).
func newRequest(method, target, host string, headers ...string) *http.Request {
	req := httptest.NewRequest(method, target, nil)
	if host != "" {
		req.Host = host
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Add(headers[i], headers[i+1])
	}
	return req
}

// readRequest parses a raw HTTP/1.1 request the way net/http's server does.
func readRequest(tb testing.TB, raw string) *http.Request {
	tb.Helper()
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		tb.Fatalf("ReadRequest: %v", err)
	}
	return req
}

// selected returns the name of the cluster or virtual host chosen, or the
// error text.
func selectedVH(t *Table, req *http.Request) string {
	r, err := t.Select(req)
	if err != nil {
		return "error: " + err.Error()
	}
	return r.VirtualHost
}

func TestRegexProgramSizeLimit(t *testing.T) {
	// Bounded repetition is how real patterns outgrow the limit.
	huge := "/api/v1/products/[0-9]{1,100}/reviews"
	for _, tc := range []struct {
		pattern string
		wantErr bool
	}{
		{"/reviews/[0-9]+", false},
		{"/api/v1/products/[0-9]+/(reviews|ratings)", false},
		{huge, true},
	} {
		_, err := compileFullRegex(tc.pattern)
		if (err != nil) != tc.wantErr {
			t.Errorf("compileFullRegex(%.40q...) error = %v, want error %v", tc.pattern, err, tc.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "max program size of 100") {
			t.Errorf("error %q does not say what limit was passed", err)
		}
	}
}
