package proxy

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"

	"github.com/weftmesh/weft/internal/nodemeta"
	clusterv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/cluster/v3"
	endpointv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/endpoint/v3"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// backend is an upstream that answers with its name and what it received.
func backend(t *testing.T, name string) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s host=%s uri=%s xrid=%t xfp=%s", name, r.Host, r.RequestURI, r.Header.Get("X-Request-Id") != "", r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(s.Close)
	return s
}

func testMeta() nodemeta.Metadata {
	return nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: "default", Service: "productpage",
		WorkloadName: "productpage-test", ServiceAccount: "default", IP: "127.0.0.1", OutboundPort: 15001}
}

func testLogger(t *testing.T) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

type getResult struct {
	code int
	body string
}

func get(t *testing.T, c *http.Client, u string) getResult {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return getResult{resp.StatusCode, string(b)}
}

// eventually polls f until it returns "" or the deadline passes.
func eventually(t *testing.T, what string, f func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		if last = f(); last == "" {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s", what, last)
}

// meshConfig is the snapshot content the tests serve: an outbound listener
// with RDS http_proxy, an inbound listener with an inline route to a STATIC
// cluster, EDS clusters for reviews and ratings.
func meshConfig(outAddr, inAddr, reviews, ratings string) xdstest.Resources {
	const rv, rt = "outbound|9080||reviews.default.svc.cluster.local", "outbound|9080||ratings.default.svc.cluster.local"
	vhs := xdstest.RouteConfig("http_proxy",
		xdstest.VirtualHost("reviews.default.svc.cluster.local:9080", []string{"reviews:9080", "reviews.default.svc.cluster.local:9080"}, xdstest.PrefixRoute("/", rv)),
		xdstest.VirtualHost("ratings.default.svc.cluster.local:9080", []string{"ratings:9080"}, xdstest.PrefixRoute("/", rt)),
		xdstest.VirtualHost("split:9080", []string{"split:9080"}, xdstest.WeightedRoute(map[string]uint32{rv: 50, rt: 50})),
		xdstest.VirtualHost("empty:9080", []string{"empty:9080"}, xdstest.PrefixRoute("/", "outbound|9080||empty.default.svc.cluster.local")),
	)
	inRC := xdstest.RouteConfig("inbound|9080", xdstest.VirtualHost("inbound|http|9080", []string{"*"}, xdstest.PrefixRoute("/", "inbound|9080||")))
	return xdstest.Resources{
		Listeners: []types.Resource{xdstest.RDSListener("outbound", outAddr, "http_proxy"), xdstest.InlineListener("inbound|9080", inAddr, inRC)},
		Routes:    []types.Resource{vhs},
		Clusters: []types.Resource{xdstest.EDSCluster(rv), xdstest.EDSCluster(rt),
			xdstest.EDSCluster("outbound|9080||empty.default.svc.cluster.local"), xdstest.StaticCluster("inbound|9080||", reviews)},
		Endpoints: []types.Resource{xdstest.CLA(rv, reviews), xdstest.CLA(rt, ratings),
			xdstest.CLA("outbound|9080||empty.default.svc.cluster.local")},
	}
}

// runProxy runs weft-proxy with o (and the tests' logger, drain timeout
// and reconnection back-off) until the test ends, and checks that it
// stops cleanly then.
func runProxy(t *testing.T, o Options) {
	t.Helper()
	o.Logger, o.DrainTimeout = testLogger(t), time.Second
	o.MinBackoff, o.MaxBackoff = 20*time.Millisecond, 200*time.Millisecond
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- Run(ctx, o) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-runErr:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("Run did not return after cancel")
		}
	})
}

func TestProxyEndToEnd(t *testing.T) {
	reviews, ratings := backend(t, "reviews"), backend(t, "ratings")
	reviewsAddr := strings.TrimPrefix(reviews.URL, "http://")
	ratingsAddr := strings.TrimPrefix(ratings.URL, "http://")
	outAddr, inAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)

	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	meta := testMeta()
	runProxy(t, Options{XDSAddress: xds.Addr, Meta: meta, AdminAddress: adminAddr})
	plainClient := &http.Client{Timeout: 5 * time.Second}
	admin := "http://" + adminAddr

	// Not ready before any config.
	eventually(t, "/ready before config", func() string {
		resp, err := plainClient.Get(admin + "/ready")
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "waiting for") {
			return fmt.Sprintf("got %d %q, want 503 saying what it waits for", resp.StatusCode, b)
		}
		return ""
	})

	xds.Set(meta.ID(), "v1", meshConfig(outAddr, inAddr, reviewsAddr, ratingsAddr))
	eventually(t, "/ready after config", func() string {
		if r := get(t, plainClient, admin+"/ready"); r.code != 200 || r.body != "LIVE\n" {
			return fmt.Sprintf("got %d %q", r.code, r.body)
		}
		return ""
	})

	proxyURL, _ := url.Parse("http://" + outAddr)
	viaProxy := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}

	t.Run("outbound absolute-form reaches the backend by host", func(t *testing.T) {
		for _, tc := range []struct{ url, want string }{
			{"http://reviews:9080/reviews/1?x=y", "reviews host=reviews:9080 uri=/reviews/1?x=y xrid=true xfp=http"},
			{"http://ratings:9080/ratings/0", "ratings host=ratings:9080 uri=/ratings/0 xrid=true xfp=http"},
		} {
			if r := get(t, viaProxy, tc.url); r.code != 200 || r.body != tc.want {
				t.Errorf("GET %s = %d %q, want 200 %q", tc.url, r.code, r.body, tc.want)
			}
		}
	})
	t.Run("inbound inline route to static cluster", func(t *testing.T) {
		if r := get(t, plainClient, "http://"+inAddr+"/x"); r.code != 200 || !strings.HasPrefix(r.body, "reviews host="+inAddr+" uri=/x") {
			t.Errorf("inbound = %d %q", r.code, r.body)
		}
	})
	t.Run("weighted clusters split", func(t *testing.T) {
		counts := map[string]int{}
		const n = 200
		for range n {
			r := get(t, viaProxy, "http://split:9080/")
			counts[strings.Fields(r.body)[0]]++
		}
		for _, b := range []string{"reviews", "ratings"} {
			if counts[b] < n*30/100 || counts[b] > n*70/100 {
				t.Errorf("50/50 split gave %v", counts)
			}
		}
	})
	t.Run("unknown host is 404 naming it", func(t *testing.T) {
		r := get(t, viaProxy, "http://nope:9080/")
		want := `no virtual host for "nope:9080" in route config http_proxy`
		if r.code != 404 || !strings.Contains(r.body, want) {
			t.Errorf("got %d %q, want 404 containing %q", r.code, r.body, want)
		}
	})
	t.Run("cluster without endpoints is 503", func(t *testing.T) {
		r := get(t, viaProxy, "http://empty:9080/")
		want := "no healthy upstream for cluster outbound|9080||empty.default.svc.cluster.local"
		if r.code != 503 || !strings.Contains(r.body, want) {
			t.Errorf("got %d %q, want 503 containing %q", r.code, r.body, want)
		}
	})
	t.Run("config_dump", func(t *testing.T) {
		r := get(t, plainClient, admin+"/config_dump")
		var dump struct {
			Configs []map[string]any `json:"configs"`
		}
		if err := json.Unmarshal([]byte(r.body), &dump); err != nil {
			t.Fatalf("config_dump is not JSON: %v\n%s", err, r.body)
		}
		if len(dump.Configs) != 4 {
			t.Fatalf("config_dump has %d configs, want 4 (clusters, listeners, routes, endpoints)", len(dump.Configs))
		}
		for _, want := range []string{`"name": "outbound"`, `"name": "inbound|9080"`, `"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump"`, `"version_info": "v1"`} {
			if !strings.Contains(r.body, want) {
				t.Errorf("config_dump lacks %s", want)
			}
		}
	})

	t.Run("stats/prometheus counts responses per cluster", func(t *testing.T) {
		r := get(t, plainClient, admin+"/stats/prometheus")
		for _, want := range []string{
			`envoy_cluster_upstream_rq_xx{envoy_response_code_class="2",envoy_cluster_name="outbound|9080||reviews.default.svc.cluster.local"} `,
			`envoy_cluster_upstream_rq_xx{envoy_response_code_class="5",envoy_cluster_name="outbound|9080||empty.default.svc.cluster.local"} 1`,
			"# TYPE envoy_cluster_upstream_rq_total counter",
			fmt.Sprintf("\nenvoy_server_concurrency %d\n", runtime.GOMAXPROCS(0)),
		} {
			if !strings.Contains(r.body, want) {
				t.Errorf("/stats/prometheus lacks %s\n%s", want, r.body)
			}
		}
	})

	t.Run("bad regex is NACKed and old routes keep working", func(t *testing.T) {
		bad := meshConfig(outAddr, inAddr, reviewsAddr, ratingsAddr)
		rc := xdstest.RouteConfig("http_proxy", xdstest.VirtualHost("reviews.default.svc.cluster.local:9080", []string{"reviews:9080"},
			xdstest.RegexRoute("([", "outbound|9080||ratings.default.svc.cluster.local")))
		bad.Routes = []types.Resource{rc}
		xds.Set(meta.ID(), "v2", bad)
		// The proxy speaks incremental xDS; its NACK names the response
		// it rejects by nonce.
		eventually(t, "NACK", func() string {
			for _, n := range xds.DeltaRequests() {
				if strings.Contains(n.GetErrorDetail().GetMessage(), "route config http_proxy") && strings.Contains(n.GetErrorDetail().GetMessage(), `safe_regex "(["`) {
					if n.GetResponseNonce() == "" {
						return "NACK without the nonce of the response it rejects"
					}
					return ""
				}
			}
			return fmt.Sprintf("no NACK naming the route configuration yet: %v", xds.DeltaRequests())
		})
		if r := get(t, viaProxy, "http://reviews:9080/a"); r.code != 200 || !strings.HasPrefix(r.body, "reviews ") {
			t.Errorf("after NACK: %d %q", r.code, r.body)
		}
	})

	t.Run("survives control plane restart", func(t *testing.T) {
		xds.Stop()
		time.Sleep(50 * time.Millisecond)
		if r := get(t, viaProxy, "http://reviews:9080/a"); r.code != 200 || !strings.HasPrefix(r.body, "reviews ") {
			t.Errorf("with control plane down: %d %q", r.code, r.body)
		}
		if r := get(t, plainClient, admin+"/ready"); r.code != 200 {
			t.Errorf("/ready with control plane down: %d %q", r.code, r.body)
		}
		// Restart on the same port with a config that sends reviews to ratings.
		xds2 := xdstest.Start(t, xds.Addr, nil)
		next := meshConfig(outAddr, inAddr, ratingsAddr, ratingsAddr)
		xds2.Set(meta.ID(), "v3", next)
		eventually(t, "new config after reconnect", func() string {
			if r := get(t, viaProxy, "http://reviews:9080/a"); !strings.HasPrefix(r.body, "ratings ") {
				return fmt.Sprintf("reviews still answered by %q", r.body)
			}
			return ""
		})
	})
}

func TestQuitQuitQuitDrainsAndStops(t *testing.T) {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "slow done")
	}))
	defer slow.Close()
	slowAddr := strings.TrimPrefix(slow.URL, "http://")
	outAddr, inAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	xds := xdstest.Start(t, "127.0.0.1:0", nil)
	meta := testMeta()
	xds.Set(meta.ID(), "v1", meshConfig(outAddr, inAddr, slowAddr, slowAddr))
	runErr := make(chan error, 1)
	go func() {
		runErr <- Run(context.Background(), Options{XDSAddress: xds.Addr, Meta: meta, AdminAddress: adminAddr,
			DrainTimeout: 3 * time.Second, Logger: testLogger(t)})
	}()
	c := &http.Client{Timeout: 5 * time.Second}
	admin := "http://" + adminAddr
	eventually(t, "ready", func() string {
		resp, err := c.Get(admin + "/ready")
		if err != nil {
			return err.Error()
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return resp.Status
		}
		return ""
	})
	if r := get(t, c, admin+"/quitquitquit"); r.code != http.StatusMethodNotAllowed {
		t.Errorf("GET /quitquitquit = %d, want 405", r.code)
	}
	inflight := make(chan getResult, 1)
	go func() { inflight <- get(t, c, "http://"+inAddr+"/") }()
	time.Sleep(100 * time.Millisecond)
	resp, err := c.Post(admin+"/quitquitquit", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if r := <-inflight; r.code != 200 || r.body != "slow done" {
		t.Errorf("in-flight request during drain: %d %q", r.code, r.body)
	}
	select {
	case err := <-runErr:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after /quitquitquit")
	}
	if _, err := net.DialTimeout("tcp", inAddr, time.Second); err == nil {
		t.Errorf("inbound listener still open after shutdown")
	}
}

// TestClusterRemovedAndBack removes a service (its cluster, endpoints and
// routes) and brings it back at another address, over both xDS protocols
// against go-control-plane's snapshot cache. The proxy drops what it no
// longer refers to, so it must subscribe again and use the new address,
// never the old one.
func TestClusterRemovedAndBack(t *testing.T) {
	for _, sotw := range []bool{false, true} {
		name := "delta"
		if sotw {
			name = "state of the world"
		}
		t.Run(name, func(t *testing.T) {
			reviews, ratings, ratings2 := backend(t, "reviews"), backend(t, "ratings"), backend(t, "ratings-new")
			addr := func(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }
			outAddr, inAddr := freeAddr(t), freeAddr(t)
			xds := xdstest.Start(t, "127.0.0.1:0", nil)
			meta := testMeta()
			runProxy(t, Options{XDSAddress: xds.Addr, Meta: meta, AdminAddress: freeAddr(t), StateOfTheWorld: sotw})
			proxyURL, _ := url.Parse("http://" + outAddr)
			viaProxy := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{Proxy: http.ProxyURL(proxyURL)}}
			expect := func(what string, code int, body string) {
				t.Helper()
				eventually(t, what, func() string {
					resp, err := viaProxy.Get("http://ratings:9080/ratings/0")
					if err != nil {
						return err.Error()
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != code || !strings.HasPrefix(string(b), body) {
						return fmt.Sprintf("got %d %q, want %d %q...", resp.StatusCode, b, code, body)
					}
					return ""
				})
			}

			full := meshConfig(outAddr, inAddr, addr(reviews), addr(ratings))
			xds.Set(meta.ID(), "v1", full)
			expect("ratings with the first config", 200, "ratings host=")

			// ratings goes: its virtual host, cluster and endpoints.
			const rt = "outbound|9080||ratings.default.svc.cluster.local"
			without := meshConfig(outAddr, inAddr, addr(reviews), addr(ratings))
			rc := without.Routes[0].(*routev3.RouteConfiguration)
			rc.VirtualHosts = slices.DeleteFunc(rc.VirtualHosts, func(vh *routev3.VirtualHost) bool {
				return strings.HasPrefix(vh.Name, "ratings.") || vh.Name == "split:9080"
			})
			without.Clusters = slices.DeleteFunc(without.Clusters, func(r types.Resource) bool { return r.(*clusterv3.Cluster).Name == rt })
			without.Endpoints = slices.DeleteFunc(without.Endpoints, func(r types.Resource) bool {
				return r.(*endpointv3.ClusterLoadAssignment).ClusterName == rt
			})
			xds.Set(meta.ID(), "v2", without)
			expect("ratings removed", http.StatusNotFound, "no virtual host")

			// It comes back at another address.
			xds.Set(meta.ID(), "v3", meshConfig(outAddr, inAddr, addr(reviews), addr(ratings2)))
			expect("ratings back at its new address", 200, "ratings-new host=")
			for i := range 20 {
				if r := get(t, viaProxy, "http://ratings:9080/"); r.code != 200 || !strings.HasPrefix(r.body, "ratings-new ") {
					t.Fatalf("request %d after ratings came back: %d %q; want only the new address", i, r.code, r.body)
				}
			}
		})
	}
}
