package e2e

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

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
	m.applyYAML(fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: slow
spec:
  hosts:
  - slow.example.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      http: %d
---
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
`, port))
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
	m.applyYAML(fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: flaky
spec:
  hosts:
  - flaky.example.com
  ports:
  - number: 80
    name: http
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports:
      http: %d
  - address: 127.0.0.1
    ports:
      http: %d
---
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
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: flaky
spec:
  hosts:
  - flaky.example.com
  http:
  - retries:
      attempts: 0
    route:
    - destination:
        host: flaky.example.com
`, bad, good))
	client := m.outboundClient(5 * time.Second)
	codes := map[int]int{}
	for i := 0; i < 20; i++ {
		resp, err := client.Get("http://flaky.example.com/")
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
