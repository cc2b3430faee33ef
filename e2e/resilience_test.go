package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy"
)

// sidecarLoops is how many event loops the mesh's sidecars run: as
// WEFT_EVENT_LOOPS says, else weft-proxy's default for the GOMAXPROCS the
// sidecars inherit.
func sidecarLoops(t *testing.T) int {
	if v := os.Getenv("WEFT_EVENT_LOOPS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("WEFT_EVENT_LOOPS=%q: %v", v, err)
		}
		return n
	}
	threads, _ := strconv.Atoi(os.Getenv("GOMAXPROCS"))
	return proxy.SidecarLoops(threads)
}

// outboundClient is an HTTP client that uses the productpage sidecar as
// its proxy, as productpage does; each request gets its own connection.
func (m *mesh) outboundClient(timeout time.Duration) *http.Client {
	m.t.Helper()
	var outbound int
	for _, p := range readUpState(m.t, m.dataDir).Procs {
		if strings.HasPrefix(p.Name, "productpage-") {
			outbound = p.OutboundPort
		}
	}
	if outbound == 0 {
		m.t.Fatal("up.json has no productpage sidecar")
	}
	proxy, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", outbound))
	return &http.Client{Timeout: timeout, Transport: &http.Transport{Proxy: http.ProxyURL(proxy), DisableKeepAlives: true}}
}

// loopbackServiceEntry is a ServiceEntry for NAME.example.com, port 80
// (HTTP), with one endpoint on 127.0.0.1 per port given, followed by a
// YAML document separator.
func loopbackServiceEntry(name string, ports ...int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: %s
spec:
  hosts:
  - %s.example.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
`, name, name)
	for _, p := range ports {
		fmt.Fprintf(&b, "  - address: 127.0.0.1\n    ports:\n      http: %d\n", p)
	}
	b.WriteString("---\n")
	return b.String()
}

// noRetries is a VirtualService for NAME.example.com that turns off Istio's
// default retries, so each request meets the endpoint it was sent to.
func noRetries(name string) string {
	return fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: %[1]s
spec:
  hosts:
  - %[1]s.example.com
  http:
  - retries:
      attempts: 0
    route:
    - destination:
        host: %[1]s.example.com
`, name)
}

// statusCounts sends n GETs to url, one after another, and counts the
// answers by status; a 404's body is logged (it names what had no route).
func statusCounts(t *testing.T, client *http.Client, url string, n int) map[int]int {
	t.Helper()
	codes := map[int]int{}
	for i := range n {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes[resp.StatusCode]++
		if resp.StatusCode == http.StatusNotFound {
			t.Logf("request %d: 404 %q", i, b)
		}
	}
	return codes
}

// serveLoopback runs h on a loopback port for the test and returns the
// port.
func serveLoopback(t *testing.T, h http.Handler) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().(*net.TCPAddr).Port
}

// TestCircuitBreaking follows Istio's circuit breaking task: with one
// connection and one pending request allowed, a third concurrent request
// is refused at once with 503 and x-envoy-overloaded, instead of queueing
// behind a slow service.
func TestCircuitBreaking(t *testing.T) {
	m := startMesh(t)
	release := make(chan struct{})
	var arrived atomic.Int32
	port := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		select {
		case <-release:
		case <-r.Context().Done():
		}
		io.WriteString(w, "slow answer\n")
	}))
	m.applyYAML(loopbackServiceEntry("slow", port) + `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: slow
spec:
  host: slow.example.com
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
      http:
        http1MaxPendingRequests: 1
        maxRequestsPerConnection: 1
`)
	client := m.outboundClient(20 * time.Second)
	var wg sync.WaitGroup
	codes := make([]int, 2)
	get := func(i int) {
		defer wg.Done()
		resp, err := client.Get("http://slow.example.com/")
		if err != nil {
			t.Errorf("request %d: %v", i, err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		codes[i] = resp.StatusCode
	}
	wg.Add(1)
	go get(0)
	waitFor(t, "the first request to reach the slow service", func() bool { return arrived.Load() == 1 })
	wg.Add(1)
	go get(1)
	// The second request waits in the sidecar for the one connection: the
	// sidecar counts it as a connection overflow.
	waitFor(t, "the second request to wait for a connection", func() bool {
		return m.adminStat("productpage", "v1", `envoy_cluster_upstream_cx_overflow{envoy_cluster_name="outbound|80||slow.example.com"}`) >= 1
	})

	start := time.Now()
	resp, err := client.Get("http://slow.example.com/")
	if err != nil {
		t.Fatalf("third request: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("X-Envoy-Overloaded") != "true" {
		t.Errorf("third concurrent request: %s, x-envoy-overloaded %q, %q; want an immediate 503 overflow", resp.Status, resp.Header.Get("X-Envoy-Overloaded"), body)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("the refused request took %v; a circuit breaker answers at once", took)
	}
	close(release)
	wg.Wait()
	if codes[0] != http.StatusOK || codes[1] != http.StatusOK {
		t.Errorf("the two requests within the limits got %v, want 200 for both", codes)
	}
	if got := m.adminStat("productpage", "v1", `envoy_cluster_upstream_rq_pending_overflow{envoy_cluster_name="outbound|80||slow.example.com"}`); got < 1 {
		t.Errorf("productpage's sidecar counts %v pending overflows, want at least 1", got)
	}
}

// TestOutlierDetection gives a service two endpoints, one of which fails
// every request: after its first 503 the sidecar ejects it, and the users
// only meet the healthy one.
func TestOutlierDetection(t *testing.T) {
	m := startMesh(t)
	var badHits atomic.Int32
	bad := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		badHits.Add(1)
		http.Error(w, "broken", http.StatusServiceUnavailable)
	}))
	good := serveLoopback(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fine\n")
	}))
	m.applyYAML(loopbackServiceEntry("flaky", bad, good) + `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: flaky
spec:
  host: flaky.example.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    outlierDetection:
      consecutive5xxErrors: 1
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
---
` + noRetries("flaky"))
	codes := statusCounts(t, m.outboundClient(5*time.Second), "http://flaky.example.com/", 20)
	if n := badHits.Load(); n != 1 {
		t.Errorf("the failing endpoint got %d requests; after its first 503 it should have been ejected", n)
	}
	if codes[http.StatusOK] < 19 {
		t.Errorf("answers %v: at most one request should meet the failing endpoint", codes)
	}
	if got := m.adminStat("productpage", "v1", `envoy_cluster_outlier_detection_ejections_active{envoy_cluster_name="outbound|80||flaky.example.com"}`); got != 1 {
		t.Errorf("productpage's sidecar has %v endpoints ejected, want 1", got)
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestConnectionPolicies: a DestinationRule that splits local origin
// errors out ejects an endpoint nothing listens on after its first refused
// connection (no 5xx answer ever came from it), and its
// maxConnectionDuration closes the sidecar's kept-alive connection to the
// other endpoint once it is that old, with no request needed.
func TestConnectionPolicies(t *testing.T) {
	m := startMesh(t)
	var opened, closed atomic.Int32
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fine\n") }),
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				opened.Add(1)
			case http.StateClosed:
				closed.Add(1)
			}
		},
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	m.applyYAML(loopbackServiceEntry("halfdead", deadPort, ln.Addr().(*net.TCPAddr).Port) + `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: halfdead
spec:
  host: halfdead.example.com
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
    connectionPool:
      tcp:
        maxConnectionDuration: 2s
        tcpKeepalive:
          time: 60s
          interval: 10s
    outlierDetection:
      splitExternalLocalOriginErrors: true
      consecutiveLocalOriginFailures: 1
      consecutive5xxErrors: 0
      interval: 1s
      baseEjectionTime: 3m
      maxEjectionPercent: 100
---
` + noRetries("halfdead"))
	codes := statusCounts(t, m.outboundClient(5*time.Second), "http://halfdead.example.com/", 10)
	if codes[http.StatusOK] < 9 {
		t.Errorf("answers %v: only the first request to the dead endpoint may fail", codes)
	}
	stat := func(name string) float64 {
		return m.adminStat("productpage", "v1", name+`{envoy_cluster_name="outbound|80||halfdead.example.com"}`)
	}
	if got := stat("envoy_cluster_outlier_detection_ejections_enforced_consecutive_local_origin_failure"); got != 1 {
		t.Errorf("local origin ejections %v, want 1", got)
	}
	if got := stat("envoy_cluster_outlier_detection_ejections_active"); got != 1 {
		t.Errorf("%v endpoints ejected, want 1", got)
	}
	// The requests went one after another over one kept-alive connection,
	// which the sidecar closes at two seconds of age. Each event loop
	// keeps connections of its own (as each of Envoy's workers does),
	// and each request came on a new connection to the sidecar, which
	// took turns between its loops.
	loops := int(m.adminStat("productpage", "v1", "weft_event_loops"))
	if want := sidecarLoops(t); loops != want {
		t.Errorf("the sidecar runs %d event loops, want %d", loops, want)
	}
	if n := int(opened.Load()); n > max(1, loops) {
		t.Errorf("the healthy endpoint saw %d connections for sequential requests, want at most %d (one per event loop)", n, max(1, loops))
	}
	if served := m.adminStat("productpage", "v1", "weft_event_loop_requests_total"); loops > 0 && served < 9 {
		t.Errorf("the event loops served %v of the requests, want the 9 or more answered", served)
	}
	waitFor(t, "the sidecar to close its connection at maxConnectionDuration", func() bool { return closed.Load() >= 1 })
}
