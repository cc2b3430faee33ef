package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/weftmesh/weft/internal/netns"
)

// The tests in this file run workloads in network namespaces with iptables
// capture, as a cluster does. They need root; CI runs as root. Without
// root they fail and say so: a skipped test would check nothing.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("transparent-mode tests create network namespaces and iptables rules and need root (CI runs as root); run `sudo make test`")
	}
}

// startNetNSMesh starts `weft up --netns` with Bookinfo and the TCP samples
// on a subnet of its own.
func startNetNSMesh(t *testing.T, extra ...string) *mesh {
	t.Helper()
	requireRoot(t)
	subnet := fmt.Sprintf("10.%d.%d.0/24", 200+rand.IntN(50), rand.IntN(250))
	return startMesh(t, append([]string{"--netns", "--subnet", subnet, "--samples", "bookinfo,tcp"}, extra...)...)
}

// workload finds a workload's sidecar in up.json by service and version.
func (m *mesh) workload(service, version string) (ns, ip string, pid int) {
	m.t.Helper()
	b, err := os.ReadFile(m.dataDir + "/up.json")
	if err != nil {
		m.t.Fatal(err)
	}
	var st struct {
		Procs []struct {
			Role, Service, Version, NetNS, IP string
			PID                               int
		}
	}
	if err := json.Unmarshal(b, &st); err != nil {
		m.t.Fatal(err)
	}
	for _, p := range st.Procs {
		if p.Service == service && p.Version == version && p.Role == "sidecar" {
			return p.NetNS, p.IP, p.PID
		}
	}
	m.t.Fatalf("no sidecar for %s %s in up.json", service, version)
	return "", "", 0
}

// inside returns a host handle for dialling from a workload's namespace;
// the test process is root, so its connections are captured like an app's.
func (m *mesh) inside(service, version string) *netns.Host {
	ns, _, _ := m.workload(service, version)
	return &netns.Host{Namespace: ns}
}

// resolver resolves names the way an app in h's namespace does: its DNS
// queries are captured and answered by the sidecar.
func resolver(h *netns.Host) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: h.Dial}
}

// dialService resolves name inside h and connects to it there.
func dialService(t *testing.T, h *netns.Host, name string, port int) net.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	addrs, err := resolver(h).LookupHost(ctx, name)
	if err != nil {
		t.Fatalf("resolve %s inside %s: %v", name, h.Namespace, err)
	}
	c, err := h.Dial(ctx, "tcp", net.JoinHostPort(addrs[0], strconv.Itoa(port)))
	if err != nil {
		t.Fatalf("connect to %s (%s) inside %s: %v", name, addrs[0], h.Namespace, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c
}

// sidecarStat reads a counter from a sidecar's admin API inside its
// namespace.
func (m *mesh) sidecarStat(service, version, metric string) float64 {
	m.t.Helper()
	h := m.inside(service, version)
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: h.Dial}}
	return scrapeStat(m.t, client, "http://127.0.0.1:15000/stats/prometheus", metric)
}

// scrapeStat reads one sample (metric with its labels, as written) from a
// Prometheus text page; 0 when the page does not have it.
func scrapeStat(t *testing.T, client *http.Client, url, metric string) float64 {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(metric) + ` ([0-9.e+]+)$`)
	match := re.FindSubmatch(body)
	if match == nil {
		return 0
	}
	v, _ := strconv.ParseFloat(string(match[1]), 64)
	return v
}

// TestTransparentBookinfoRouting runs Istio's request-routing task with
// every workload in its own namespace and apps that have no proxy
// settings: iptables sends their traffic through their sidecars.
func TestTransparentBookinfoRouting(t *testing.T) {
	m := startNetNSMesh(t)
	_, _, _ = m.workload("productpage", "v1")
	// The apps really have no proxy settings.
	for _, p := range appPIDs(t, m) {
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p))
		for _, kv := range bytes.Split(env, []byte{0}) {
			if k, v, _ := strings.Cut(string(kv), "="); strings.EqualFold(k, "http_proxy") && v != "" {
				t.Fatalf("app pid %d has %s", p, kv)
			}
		}
	}
	requestRouting(t, m)
}

func appPIDs(t *testing.T, m *mesh) []int {
	b, err := os.ReadFile(m.dataDir + "/up.json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Procs []struct {
			Role string
			PID  int
		}
	}
	json.Unmarshal(b, &st)
	var out []int
	for _, p := range st.Procs {
		if p.Role == "app" {
			out = append(out, p.PID)
		}
	}
	if len(out) == 0 {
		t.Fatal("up.json lists no apps")
	}
	return out
}

// TestTransparentTCP sends opaque TCP through the mesh: an echo service and
// a server-first greeter, whose greeting must arrive at once (a sniffing
// proxy would wait for the client to speak first).
func TestTransparentTCP(t *testing.T) {
	m := startNetNSMesh(t)
	client := m.inside("productpage", "v1")

	c := dialService(t, client, "tcp-echo", 9000)
	fmt.Fprintf(c, "hello through the mesh\n")
	line, err := bufio.NewReader(c).ReadString('\n')
	c.Close()
	if err != nil || (line != "v1 hello through the mesh\n" && line != "v2 hello through the mesh\n") {
		t.Errorf("tcp-echo answered %q, %v; want the line back from v1 or v2", line, err)
	}

	start := time.Now()
	g := dialService(t, client, "greeter.default.svc.cluster.local", 9001)
	defer g.Close()
	first := make([]byte, 1)
	if _, err := io.ReadFull(g, first); err != nil {
		t.Fatalf("no greeting from the server-first greeter: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the greeting's first byte took %v, want under 1s", d)
	}
	rest, _ := bufio.NewReader(g).ReadString('\n')
	if got := string(first) + rest; got != "220 weft greeter ready\r\n" {
		t.Errorf("greeting = %q", got)
	}

	// Istio's tcp.maxConnections holds opaque TCP too: with one allowed
	// and g open, the client's sidecar closes a second connection at once.
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: greeter
spec:
  host: greeter.default.svc.cluster.local
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
`)
	g2 := dialService(t, client, "greeter.default.svc.cluster.local", 9001)
	if b, err := io.ReadAll(g2); err != nil || len(b) != 0 {
		t.Errorf("a second connection while one is open read %q, %v; want it closed with nothing (maxConnections 1)", b, err)
	}
	g2.Close()
	const overflow = `envoy_cluster_upstream_cx_overflow{envoy_cluster_name="outbound|9001||greeter.default.svc.cluster.local"}`
	if n := m.sidecarStat("productpage", "v1", overflow); n != 1 {
		t.Errorf("%s = %v, want 1", overflow, n)
	}
	g.Close()
	waitFor(t, "a connection to get through once the first has closed", func() bool {
		g3 := dialService(t, client, "greeter.default.svc.cluster.local", 9001)
		defer g3.Close()
		line, _ := bufio.NewReader(g3).ReadString('\n')
		return line == "220 weft greeter ready\r\n"
	})

	// tcp.maxConnectionDuration ends an opaque TCP connection at its age,
	// on both sides, as Istio's tcp_proxy has it.
	m.applyYAML(`
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tcp-echo
spec:
  host: tcp-echo
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnectionDuration: 1s
`)
	e := dialService(t, client, "tcp-echo", 9000)
	defer e.Close()
	opened := time.Now()
	e.SetDeadline(opened.Add(5 * time.Second))
	r := bufio.NewReader(e)
	fmt.Fprintf(e, "still here\n")
	if line, err := r.ReadString('\n'); err != nil || !strings.HasSuffix(line, " still here\n") {
		t.Fatalf("tcp-echo answered %q, %v before the connection's age", line, err)
	}
	if b, err := io.ReadAll(r); err != nil || len(b) != 0 {
		t.Fatalf("after the echo: read %q, %v; want the sidecar to close the connection at its age (an EOF)", b, err)
	}
	if d := time.Since(opened); d < 900*time.Millisecond || d > 3*time.Second {
		t.Errorf("the connection closed %v after it opened; maxConnectionDuration is 1s", d)
	}
}

// TestTransparentDNS resolves every name form Kubernetes allows, through
// the sidecar's DNS proxy, to the same service VIP.
func TestTransparentDNS(t *testing.T) {
	m := startNetNSMesh(t)
	r := resolver(m.inside("productpage", "v1"))
	var vip string
	for _, name := range []string{"reviews", "reviews.default", "reviews.default.svc.cluster.local"} {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		addrs, err := r.LookupHost(ctx, name)
		cancel()
		if err != nil || len(addrs) == 0 {
			t.Fatalf("resolve %s: %v", name, err)
		}
		if !strings.HasPrefix(addrs[0], "240.240.") {
			t.Errorf("%s resolved to %s, want a VIP in 240.240.0.0/16", name, addrs[0])
		}
		if vip == "" {
			vip = addrs[0]
		} else if addrs[0] != vip {
			t.Errorf("%s resolved to %s, but reviews is %s", name, addrs[0], vip)
		}
	}
}

// TestTransparentNoBypass connects straight to a peer's pod IP: the
// connection still goes through the peer's sidecar, which counts it.
func TestTransparentNoBypass(t *testing.T) {
	m := startNetNSMesh(t)
	_, reviewsIP, _ := m.workload("reviews", "v1")
	const metric = `envoy_cluster_upstream_rq_total{envoy_cluster_name="inbound|9080||"}`
	before := m.sidecarStat("reviews", "v1", metric)
	h := m.inside("productpage", "v1")
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: h.Dial}}
	const n = 5
	for i := 0; i < n; i++ {
		resp, err := client.Get("http://" + net.JoinHostPort(reviewsIP, "9080") + "/reviews/0")
		if err != nil {
			t.Fatalf("GET reviews-v1 by pod IP: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET reviews-v1 by pod IP: %s", resp.Status)
		}
	}
	if after := m.sidecarStat("reviews", "v1", metric); after-before < n {
		t.Errorf("reviews-v1's sidecar counted %v inbound requests for %d sent to its pod IP: the traffic bypassed it", after-before, n)
	}
}

// TestTransparentEgress reaches a listener outside the mesh: allowed under
// ALLOW_ANY, refused (and logged and counted) under REGISTRY_ONLY.
func TestTransparentEgress(t *testing.T) {
	for _, tc := range []struct {
		policy  string
		allowed bool
	}{{"ALLOW_ANY", true}, {"REGISTRY_ONLY", false}} {
		t.Run(tc.policy, func(t *testing.T) {
			m := startNetNSMesh(t, "--outbound-traffic-policy", tc.policy)
			_, ip, _ := m.workload("productpage", "v1")
			// The bridge's address is the host, outside the mesh.
			gw := gatewayOf(t, ip)
			l, err := net.Listen("tcp", net.JoinHostPort(gw, "0"))
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			accepted := make(chan struct{}, 1)
			go func() {
				for {
					c, err := l.Accept()
					if err != nil {
						return
					}
					accepted <- struct{}{}
					fmt.Fprintf(c, "outside\n")
					c.Close()
				}
			}()
			h := m.inside("productpage", "v1")
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			c, err := h.Dial(ctx, "tcp", l.Addr().String())
			var got string
			if err == nil {
				c.SetDeadline(time.Now().Add(3 * time.Second))
				got, _ = bufio.NewReader(c).ReadString('\n')
				c.Close()
			}
			if tc.allowed && got != "outside\n" {
				t.Errorf("ALLOW_ANY: the listener outside the mesh answered %q (dial error %v)", got, err)
			}
			if !tc.allowed {
				if got != "" {
					t.Errorf("REGISTRY_ONLY: the listener outside the mesh answered %q", got)
				}
				select {
				case <-accepted:
					t.Error("REGISTRY_ONLY: the connection reached the listener outside the mesh")
				default:
				}
				if n := m.sidecarStat("productpage", "v1", "weft_outbound_blocked_total"); n < 1 {
					t.Errorf("REGISTRY_ONLY: productpage's sidecar counted %v blocked connections, want 1", n)
				}
				_, _, pid := m.workload("productpage", "v1")
				logs, _ := os.ReadFile(fmt.Sprintf("%s/logs/%s.log", m.dataDir, procName(t, m, pid)))
				if !strings.Contains(string(logs), "REGISTRY_ONLY") {
					t.Errorf("REGISTRY_ONLY: productpage's sidecar log does not mention the refusal:\n%s", logs)
				}
			}
		})
	}
}

func gatewayOf(t *testing.T, ip string) string {
	t.Helper()
	parts := strings.Split(ip, ".")
	if len(parts) != 4 {
		t.Fatalf("pod IP %q", ip)
	}
	return strings.Join(parts[:3], ".") + ".1"
}

func procName(t *testing.T, m *mesh, pid int) string {
	b, _ := os.ReadFile(m.dataDir + "/up.json")
	var st struct {
		Procs []struct {
			Name string
			PID  int
		}
	}
	json.Unmarshal(b, &st)
	for _, p := range st.Procs {
		if p.PID == pid {
			return p.Name
		}
	}
	t.Fatalf("no process %d in up.json", pid)
	return ""
}

// TestNetNSDownLeavesNothing checks that weft down removes every namespace,
// link and rule weft up --netns made.
func TestNetNSDownLeavesNothing(t *testing.T) {
	requireRoot(t)
	before := hostNetwork()
	m := startNetNSMesh(t)
	if during := hostNetwork(); during == before || !meshLink.MatchString(during) {
		t.Fatal("weft up --netns changed nothing on the host; the test cannot tell what down removes")
	}
	m.mustWeft("down")
	if after := hostNetwork(); after != before {
		t.Errorf("weft down left the host's network changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

// TestNetNSUpAfterCrash kills the supervisor of a --netns mesh outright:
// its processes die with it, and the next weft up removes the namespaces
// and bridge it left and starts cleanly.
func TestNetNSUpAfterCrash(t *testing.T) {
	m := startNetNSMesh(t)
	b, err := os.ReadFile(m.dataDir + "/up.json")
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		SupervisorPID int
		Network       string
	}
	json.Unmarshal(b, &st)
	old := readUpState(t, m.dataDir)
	syscall.Kill(st.SupervisorPID, syscall.SIGKILL)
	for deadline := time.Now().Add(10 * time.Second); len(meshProcesses(old)) > 0 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
	}
	if left := meshProcesses(old); len(left) > 0 {
		t.Fatalf("processes outlived their killed supervisor: %v", left)
	}
	if out, _ := exec.Command("ip", "netns", "list").Output(); !strings.Contains(string(out), st.Network+"-") {
		t.Fatalf("the crash left no namespaces of %s behind; the test cannot check their cleanup", st.Network)
	}
	m.mustWeft(m.upArgs(true)...)
	if got := m.user().versions(3); len(got) == 0 {
		t.Fatal("no answer from the product page after the restart")
	}
	ns, _ := exec.Command("ip", "netns", "list").Output()
	if n := strings.Count(string(ns), st.Network+"-"); n != len(appPIDs(t, m)) {
		t.Errorf("%d namespaces of %s after the restart, want one per workload (%d):\n%s", n, st.Network, len(appPIDs(t, m)), ns)
	}
}

// TestNetNSNeedsRoot runs weft up --netns as an ordinary user: it refuses
// with a message that says why, and changes nothing.
func TestNetNSNeedsRoot(t *testing.T) {
	requireRoot(t) // to become another user
	dir := t.TempDir()
	os.Chmod(dir, 0o777)
	cmd := exec.Command(binDir+"/weft", "up", "--netns", "--data-dir", dir+"/mesh", "--bin-dir", binDir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("weft up --netns succeeded as uid 65534:\n%s", out)
	}
	if !strings.Contains(string(out), "needs root") {
		t.Errorf("weft up --netns as uid 65534 does not say it needs root:\n%s", out)
	}
}

// TestTransparentGRPC calls the grpc sample from productpage's namespace
// as an application with no proxy settings would: it resolves grpc-echo,
// connects to its address, and iptables hands the connection to the
// client's sidecar, which speaks HTTP/2 to grpc-echo's sidecar, which
// speaks it to the server. A unary call, an error status (trailers) and a
// server stream's first message have to come through.
func TestTransparentGRPC(t *testing.T) {
	m := startNetNSMesh(t, "--samples", "grpc")
	h := m.inside("productpage", "v1")
	conn, err := grpc.NewClient("passthrough:///grpc-echo:7070",
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			host, port, _ := net.SplitHostPort(addr)
			addrs, err := resolver(h).LookupHost(ctx, host)
			if err != nil {
				return nil, err
			}
			return h.Dial(ctx, "tcp", net.JoinHostPort(addrs[0], port))
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := healthpb.NewHealthClient(conn)
	waitFor(t, "a call to grpc-echo to succeed", func() bool {
		resp, err := check(client, "grpc-echo")
		if err != nil {
			t.Logf("Check: %v", err)
			return false
		}
		if resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(grpc-echo) = %v, want SERVING", resp.GetStatus())
		}
		return true
	})
	if _, err := check(client, "no.such.Service"); status.Code(err) != codes.NotFound {
		t.Errorf("Check(no.such.Service): %v; want the server's NotFound status", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{Service: "grpc-echo"})
	if err != nil {
		t.Fatalf("Watch: %v", err)
	}
	if msg, err := watch.Recv(); err != nil || msg.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch's first message: %v, %v; want SERVING", msg, err)
	}
	// The calls went through productpage's sidecar, over HTTP/2.
	const h2 = `envoy_cluster_upstream_cx_http2_total{envoy_cluster_name="outbound|7070||grpc-echo.default.svc.cluster.local"}`
	if n := m.sidecarStat("productpage", "v1", h2); n < 1 {
		t.Errorf("%s = %v: the calls did not go through the client's sidecar over HTTP/2", h2, n)
	}
}

// TestTransparentTCPTrafficShifting follows Istio's TCP traffic shifting
// task: all of tcp-echo's connections to v1 by a VirtualService's TCP
// route, then 80 % to v1 and 20 % to v2.
func TestTransparentTCPTrafficShifting(t *testing.T) {
	m := startNetNSMesh(t)
	client := m.inside("productpage", "v1")
	const rule = `
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: tcp-echo-destination
spec:
  host: tcp-echo
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo
spec:
  hosts:
  - tcp-echo
  tcp:
  - match:
    - port: 9000
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v1
      weight: %d
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v2
      weight: %d
`
	// versions opens n connections and counts which version answered.
	versions := func(n int) map[string]int {
		got := map[string]int{}
		for range n {
			c := dialService(t, client, "tcp-echo", 9000)
			fmt.Fprintf(c, "hello\n")
			line, err := bufio.NewReader(c).ReadString('\n')
			c.Close()
			if err != nil {
				t.Fatalf("tcp-echo: %v", err)
			}
			v, _, _ := strings.Cut(line, " ")
			got[v]++
		}
		return got
	}
	m.applyYAML(fmt.Sprintf(rule, 100, 0))
	if got := versions(20); got["v1"] != 20 {
		t.Fatalf("with every connection routed to v1: %v", got)
	}
	m.applyYAML(fmt.Sprintf(rule, 80, 20))
	got := versions(100)
	// 80/20 over 100 connections: v2 gets 20 on average; fewer than 3 or
	// more than 40 happens about once in a million runs.
	if got["v1"]+got["v2"] != 100 || got["v2"] < 3 || got["v2"] > 40 {
		t.Errorf("with 80/20 weights, 100 connections went %v", got)
	}

	// The same at the ingress gateway: a TCP server, and a VirtualService
	// bound to its Gateway that sends every connection to v2, while the
	// sidecars keep their 80/20.
	port := freePorts(t, 1)[0]
	m.applyYAML(ingressGateway("tcp-echo-gateway", port, "TCP") + fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: tcp-echo-ingress
spec:
  hosts:
  - "*"
  gateways:
  - tcp-echo-gateway
  tcp:
  - match:
    - port: %d
    route:
    - destination:
        host: tcp-echo
        port:
          number: 9000
        subset: v2
`, port))
	atGateway := map[string]int{}
	for range 10 {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", port), 5*time.Second)
		if err != nil {
			t.Fatalf("the gateway's TCP port %d: %v", port, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "hello gateway\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		c.Close()
		if err != nil || !strings.HasSuffix(line, " hello gateway\n") {
			t.Fatalf("tcp-echo through the gateway answered %q, %v", line, err)
		}
		v, _, _ := strings.Cut(line, " ")
		atGateway[v]++
	}
	if atGateway["v2"] != 10 {
		t.Errorf("through the gateway, with every connection routed to v2: %v", atGateway)
	}
}

// ingressGateway is a Gateway for the ingress gateway with one server, on
// port with protocol, for every host, followed by a document separator.
func ingressGateway(name string, port int, protocol string) string {
	return fmt.Sprintf(`
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: %s
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: %d
      name: %s
      protocol: %s
    hosts:
    - "*"
---`, name, port, strings.ToLower(protocol), protocol)
}
