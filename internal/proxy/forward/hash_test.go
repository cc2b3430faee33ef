package forward

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// hashProxy runs three named backends behind a Forwarder whose cluster
// "c" uses lb, routed with the given hash_policy YAML.
func hashProxy(t *testing.T, lb upstream.LBPolicy, policies string) *httptest.Server {
	t.Helper()
	spec := upstream.ClusterSpec{Name: "c", LB: lb}
	for i := range 3 {
		name := fmt.Sprintf("backend-%d", i)
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Add("Set-Cookie", "upstream=1")
			io.WriteString(w, name)
		}))
		t.Cleanup(b.Close)
		spec.Endpoints = append(spec.Endpoints, upstream.EndpointSpec{Address: addrOf(b)})
	}
	tbl := compileTable(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      cluster: c
      hash_policy:
`+policies)
	pools := upstream.NewPools(upstream.PoolsOptions{})
	t.Cleanup(pools.Close)
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{spec})})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		x := &chain.Exchange{W: w, R: r, RouteConfig: tbl.Name()}
		x.Route, x.RouteErr = tbl.Select(r)
		f.Serve(x)
	}))
	t.Cleanup(s.Close)
	return s
}

// backendFor sends one request and returns the backend that answered.
func backendFor(t *testing.T, req *http.Request) (string, http.Header) {
	t.Helper()
	code, body, h := do(t, req)
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, body)
	}
	return body, h
}

func TestHashPolicySticksToBackend(t *testing.T) {
	tests := []struct {
		name     string
		policies string
		// req makes request i for key k.
		req func(t *testing.T, url, k string) *http.Request
	}{
		{"header", "      - header: {header_name: x-user}\n", func(t *testing.T, url, k string) *http.Request {
			r := mustReq(t, "GET", url)
			r.Header.Set("X-User", k)
			return r
		}},
		{"cookie", "      - cookie: {name: sess}\n", func(t *testing.T, url, k string) *http.Request {
			r := mustReq(t, "GET", url)
			r.Header.Set("Cookie", "a=b; sess="+k)
			return r
		}},
		{"query parameter", "      - query_parameter: {name: user}\n", func(t *testing.T, url, k string) *http.Request {
			return mustReq(t, "GET", url+"/x?user="+k)
		}},
	}
	for _, lb := range []upstream.LBPolicy{upstream.RingHash, upstream.Maglev} {
		for _, tc := range tests {
			t.Run(lb.String()+"/"+tc.name, func(t *testing.T) {
				s := hashProxy(t, lb, tc.policies)
				used := map[string]bool{}
				for k := range 8 {
					key := fmt.Sprintf("user-%d", k)
					first, _ := backendFor(t, tc.req(t, s.URL, key))
					used[first] = true
					for range 19 {
						if got, _ := backendFor(t, tc.req(t, s.URL, key)); got != first {
							t.Fatalf("key %s went to %s, then to %s", key, first, got)
						}
					}
				}
				if len(used) < 2 {
					t.Errorf("8 keys all went to %v; want them spread over the backends", used)
				}
			})
		}
	}
}

func TestHashPolicySourceIP(t *testing.T) {
	// Every request comes from 127.0.0.1: all go to one backend, where the
	// same cluster without a hash spreads them.
	for _, tc := range []struct {
		policies string
		wantOne  bool
	}{
		{"      - connection_properties: {source_ip: true}\n", true},
		{"      - header: {header_name: x-absent}\n", false}, // no hash: random
	} {
		s := hashProxy(t, upstream.RingHash, tc.policies)
		used := map[string]bool{}
		for range 20 {
			b, _ := backendFor(t, mustReq(t, "GET", s.URL))
			used[b] = true
		}
		if (len(used) == 1) != tc.wantOne {
			t.Errorf("%s: 20 requests went to %v", strings.TrimSpace(tc.policies), used)
		}
	}
}

func TestHashPolicyGeneratedCookie(t *testing.T) {
	s := hashProxy(t, upstream.Maglev, "      - cookie: {name: sess, ttl: 60s, path: /}\n")
	first, h := backendFor(t, mustReq(t, "GET", s.URL))
	var cookie string
	for _, c := range h.Values("Set-Cookie") {
		if strings.HasPrefix(c, "sess=") {
			cookie = c
		}
	}
	if cookie == "" || !strings.Contains(cookie, "Max-Age=60") || !strings.Contains(strings.Join(h.Values("Set-Cookie"), "\n"), "upstream=1") {
		t.Fatalf("Set-Cookie %q: want the upstream's and a sess cookie with Max-Age=60", h.Values("Set-Cookie"))
	}
	value := cookie[:strings.IndexByte(cookie, ';')]
	for range 20 {
		r := mustReq(t, "GET", s.URL)
		r.Header.Set("Cookie", value)
		got, h := backendFor(t, r)
		if got != first {
			t.Fatalf("with cookie %s: went to %s, first request to %s", value, got, first)
		}
		if strings.Contains(strings.Join(h.Values("Set-Cookie"), "\n"), "sess=") {
			t.Fatalf("a new sess cookie was set though the request had one")
		}
	}
}
