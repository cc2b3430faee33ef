package e2e

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestBookinfoFaultInjection follows Istio's fault injection task: with
// jason routed to reviews v2, a 7 s delay on his calls to ratings makes
// productpage give up on reviews (3 s timeout, 2 attempts), and an HTTP
// abort makes reviews show that ratings are unavailable. Everyone else is
// untouched.
func TestBookinfoFaultInjection(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml", "virtual-service-reviews-test-v2.yaml")
	jason := m.user()
	jason.login("jason")
	anon := m.user()

	t.Run("delay", func(t *testing.T) {
		m.applyWait("virtual-service-ratings-test-delay.yaml")
		start := time.Now()
		body := jason.page("/productpage")
		took := time.Since(start)
		if !strings.Contains(body, "Sorry, product reviews are currently unavailable for this book.") {
			t.Errorf("jason's product page shows reviews; with ratings delayed by 7 s it should say they are unavailable:\n%s", excerpt(body))
		}
		// productpage waits 3 s for reviews and tries twice.
		if took < 6*time.Second {
			t.Errorf("jason's product page took %v; productpage's two 3 s attempts at reviews should have taken at least 6 s", took)
		}
		start = time.Now()
		r, err := anon.getReviews()
		if err != nil {
			t.Fatal(err)
		}
		if r.version() != "v1" {
			t.Errorf("anonymous reviews from %s, want v1", r.version())
		}
		if took := time.Since(start); took > 5*time.Second {
			t.Errorf("an anonymous request took %v: the delay is only for jason", took)
		}
	})

	t.Run("abort", func(t *testing.T) {
		m.applyWait("virtual-service-ratings-test-abort.yaml")
		r, err := jason.getReviews()
		if err != nil {
			t.Fatal(err)
		}
		if r.version() != "v2" || len(r.Reviews) == 0 {
			t.Fatalf("jason's reviews = %+v, want v2's", r)
		}
		for _, rv := range r.Reviews {
			if rv.Rating == nil || rv.Rating.Error != "Ratings service is currently unavailable" {
				t.Errorf("jason's review by %s has rating %+v; with ratings aborted it should say the service is unavailable", rv.Reviewer, rv.Rating)
			}
		}
		if got := anon.versions(10); got["v1"] != 10 {
			t.Errorf("anonymous versions = %v, want all v1", got)
		}
		// reviews v2's sidecar, the caller of ratings, injected the abort
		// (one call to ratings per request).
		if got := m.adminStat("reviews", "v2", `envoy_http_fault_aborts_injected{envoy_http_conn_manager_prefix="outbound"}`); got < 1 {
			t.Errorf("reviews v2's sidecar counts %v injected aborts, want at least 1", got)
		}
	})
}

// TestBookinfoMirroring sends all of reviews' traffic to v1 and mirrors it
// to v2, as Istio's mirroring task does with httpbin: the user sees only
// v1's answers, and v2's sidecar receives a copy of every request.
func TestBookinfoMirroring(t *testing.T) {
	m := startMesh(t)
	m.applyWait("destination-rule-all.yaml", "virtual-service-all-v1.yaml")
	v2Before := m.adminStat("reviews", "v2", `envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|9080||"}`)
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 100
    mirror:
      host: reviews
      subset: v2
    mirrorPercentage:
      value: 100.0
`)
	const n = 20
	if got := m.user().versions(n); got["v1"] != n {
		t.Fatalf("versions = %v, want all %d from v1: a mirror's answer must never reach the user", got, n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := m.adminStat("reviews", "v2", `envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|9080||"}`) - v2Before
		if got >= n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("reviews v2 received %v mirrored requests, want %d", got, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// productpage's sidecar, the caller of reviews, sent the copies.
	if got := m.adminStat("productpage", "v1", "weft_mirror_requests_sent_total"); got < n {
		t.Errorf("productpage's sidecar counts %v mirrored requests sent, want at least %d", got, n)
	}
}

// applyYAML applies a document given inline and waits for every proxy's
// ACK.
func (m *mesh) applyYAML(doc string) {
	m.t.Helper()
	f := filepath.Join(m.t.TempDir(), "config.yaml")
	if err := os.WriteFile(f, []byte(doc), 0o644); err != nil {
		m.t.Fatal(err)
	}
	m.mustWeft("apply", "--wait", "--timeout", "30s", "-f", f)
}

// adminStat reads a counter from the admin API of a sidecar of an explicit
// mode mesh, found by service and version in up.json; 0 when it is not
// there.
func (m *mesh) adminStat(service, version, metric string) float64 {
	m.t.Helper()
	st := readUpState(m.t, m.dataDir)
	if st == nil {
		m.t.Fatal("the mesh wrote no up.json")
	}
	port := 0
	for _, p := range st.Procs {
		if p.Role == "sidecar" && p.Service == service && p.Version == version {
			port = p.AdminPort
		}
	}
	if port == 0 {
		m.t.Fatalf("up.json has no sidecar of %s %s with an admin port", service, version)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: nil}}
	return scrapeStat(m.t, client, fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", port), metric)
}

// page fetches a page through the gateway and returns its body; a status
// other than 200 fails the test.
func (u *user) page(path string) string {
	u.t.Helper()
	resp, err := u.client.Get(u.base + path)
	if err != nil {
		u.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		u.t.Fatalf("GET %s: %s: %s", path, resp.Status, excerpt(string(body)))
	}
	return string(body)
}

// excerpt shortens a page for an error message.
func excerpt(s string) string {
	if len(s) > 600 {
		return s[:600] + "..."
	}
	return s
}

// TestGatewayRouteActions extends Bookinfo's gateway VirtualService with
// the route actions that do not just forward: a direct response, a
// redirect, a URI rewrite and response header operations.
func TestGatewayRouteActions(t *testing.T) {
	m := startMesh(t)
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /healthz
    directResponse:
      status: 200
      body:
        string: "ok\n"
  - match:
    - uri:
        exact: /
    redirect:
      uri: /productpage
  - match:
    - uri:
        prefix: /books
    rewrite:
      uri: /api/v1/products
    headers:
      response:
        set:
          x-served-by: weft
    route:
    - destination:
        host: productpage
        port:
          number: 9080
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
`)
	client := &http.Client{
		Timeout:       10 * time.Second,
		Transport:     &http.Transport{Proxy: nil},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	get := func(path string) (*http.Response, string) {
		t.Helper()
		resp, err := client.Get(m.gateway + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp, string(body)
	}

	if resp, body := get("/healthz"); resp.StatusCode != http.StatusOK || body != "ok\n" {
		t.Errorf("GET /healthz = %s %q, want the direct response 200 \"ok\\n\"", resp.Status, body)
	}
	resp, body := get("/")
	if want := m.gateway + "/productpage"; resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != want {
		t.Errorf("GET / = %s, Location %q (%q); want 301 to %s", resp.Status, resp.Header.Get("Location"), body, want)
	}
	resp, books := get("/books/0/reviews")
	_, api := get("/api/v1/products/0/reviews")
	if resp.StatusCode != http.StatusOK || !strings.Contains(books, `"reviews"`) {
		t.Errorf("GET /books/0/reviews = %s %q; want the reviews that /api/v1/products/0/reviews gives (%q)", resp.Status, excerpt(books), excerpt(api))
	}
	if got := resp.Header.Get("X-Served-By"); got != "weft" {
		t.Errorf("GET /books/0/reviews: x-served-by = %q, want weft (set by the route)", got)
	}
	if resp, _ := get("/productpage"); resp.Header.Get("X-Served-By") != "" {
		t.Errorf("GET /productpage has x-served-by %q: only the /books route sets it", resp.Header.Get("X-Served-By"))
	}
}

// TestCORSAtTheGateway lets a browser on another origin call the product
// API: the gateway answers the preflight itself and marks the answer to the
// real request.
func TestCORSAtTheGateway(t *testing.T) {
	m := startMesh(t)
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        prefix: /api/v1/products
    corsPolicy:
      allowOrigins:
      - exact: https://shop.example.com
      allowMethods:
      - GET
      - POST
      allowHeaders:
      - x-client
      maxAge: 24h
    route:
    - destination:
        host: productpage
        port:
          number: 9080
`)
	do := func(method, origin string, hdr map[string]string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, m.gateway+"/api/v1/products", nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{Proxy: nil}}).Do(req)
		if err != nil {
			t.Fatalf("%s with origin %q: %v", method, origin, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	pre := do(http.MethodOptions, "https://shop.example.com", map[string]string{"Access-Control-Request-Method": "POST"})
	if pre.StatusCode != http.StatusOK || pre.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Methods"), "POST") || pre.Header.Get("Access-Control-Max-Age") != "86400" {
		t.Errorf("preflight from an allowed origin: %s %v; want 200 allowing the origin, POST, max age 86400", pre.Status, pre.Header)
	}
	get := do(http.MethodGet, "https://shop.example.com", nil)
	if get.StatusCode != http.StatusOK || get.Header.Get("Access-Control-Allow-Origin") != "https://shop.example.com" {
		t.Errorf("GET from an allowed origin: %s, Access-Control-Allow-Origin %q", get.Status, get.Header.Get("Access-Control-Allow-Origin"))
	}
	other := do(http.MethodGet, "https://evil.example.com", nil)
	if got := other.Header.Get("Access-Control-Allow-Origin"); got != "" {
		t.Errorf("GET from another origin got Access-Control-Allow-Origin %q; the browser must not let it read the answer", got)
	}
}

// TestConsistentHashSticksUsers hashes reviews' load balancing on the
// end-user header that productpage passes on: a logged-in user keeps
// meeting the same reviews version, and users as a whole still spread.
func TestConsistentHashSticksUsers(t *testing.T) {
	m := startMesh(t)
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: end-user
`)
	seen := map[string]bool{}
	for i := 0; i < 12; i++ {
		name := fmt.Sprintf("reader%d", i)
		u := m.user()
		u.login(name)
		got := u.versions(5)
		if len(got) != 1 {
			t.Errorf("%s met reviews versions %v; with consistent hashing on end-user one version should answer every request", name, got)
		}
		for v := range got {
			seen[v] = true
		}
	}
	if len(seen) < 2 {
		t.Errorf("12 users all met reviews %v: consistent hashing should still spread users over the versions", seen)
	}
}

// TestH2UpgradeBetweenSidecars: a DestinationRule with h2UpgradePolicy
// UPGRADE makes productpage's sidecar speak HTTP/2 to reviews' sidecars,
// which speak HTTP/1.1 to reviews itself: every page comes back whole, with
// all three versions of reviews, and the sidecar counts HTTP/2 connections
// to reviews and none to ratings, whose rule does not ask for it.
func TestH2UpgradeBetweenSidecars(t *testing.T) {
	m := startMesh(t)
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  trafficPolicy:
    connectionPool:
      http:
        h2UpgradePolicy: UPGRADE
`)
	const n = 30
	got := m.user().versions(n)
	if len(got) != 3 || got["v1"]+got["v2"]+got["v3"] != n {
		t.Errorf("versions over HTTP/2 = %v, want all three among %d pages", got, n)
	}
	if h2 := m.adminStat("productpage", "v1", `envoy_cluster_upstream_cx_http2_total{envoy_cluster_name="outbound|9080||reviews.default.svc.cluster.local"}`); h2 < 1 {
		t.Errorf("productpage's sidecar opened %v HTTP/2 connections to reviews, want at least 1", h2)
	}
	if h2 := m.adminStat("reviews", "v2", `envoy_cluster_upstream_cx_http2_total{envoy_cluster_name="outbound|9080||ratings.default.svc.cluster.local"}`); h2 != 0 {
		t.Errorf("reviews' sidecar opened %v HTTP/2 connections to ratings, want none", h2)
	}
}
