package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"golang.org/x/sys/unix"

	"github.com/weftmesh/weft/internal/iptables"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// netns is a network namespace made for a test.
type netns struct {
	name string
	fd   int
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func newNetns(t *testing.T, name string) *netns {
	t.Helper()
	exec.Command("ip", "netns", "del", name).Run() // left over from a crash
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v\n%s", name, err, out)
		}
	})
	fd, err := unix.Open("/run/netns/"+name, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return &netns{name: name, fd: fd}
}

// do runs f on an OS thread switched into the namespace: sockets f creates
// (listening or dialled) belong to the namespace for their whole life.
func (n *netns) do(t *testing.T, f func()) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	var err error
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		// The thread is left locked, so it exits with the goroutine
		// instead of going back to the pool in the wrong namespace.
		if err = unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
			return
		}
		f()
	}()
	wg.Wait()
	if err != nil {
		t.Fatalf("setns %s: %v", n.name, err)
	}
}

func (n *netns) dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	var err error
	n.do(t, func() { c, err = net.DialTimeout("tcp", addr, 2*time.Second) })
	if err != nil {
		t.Fatalf("dial %s in %s: %v", addr, n.name, err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	t.Cleanup(func() { c.Close() })
	return c
}

func (n *netns) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			done := make(chan struct{})
			go func() {
				defer close(done)
				runtime.LockOSThread()
				if err = unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
					return
				}
				c, err = (&net.Dialer{}).DialContext(ctx, network, addr)
			}()
			<-done
			return c, err
		},
	}}
}

func (n *netns) listener(t *testing.T, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	var err error
	n.do(t, func() { ln, err = net.Listen("tcp", addr) })
	if err != nil {
		t.Fatalf("listen %s in %s: %v", addr, n.name, err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func (n *netns) listen(t *testing.T, addr string, serve func(net.Conn)) {
	t.Helper()
	ln := n.listener(t, addr)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				serve(c)
			}()
		}
	}()
}

// nsRunner runs iptables commands inside a namespace.
type nsRunner struct{ ns string }

func (r nsRunner) LookPath(name string) (string, error) { return iptables.ExecRunner{}.LookPath(name) }

func (r nsRunner) Run(ctx context.Context, stdin, name string, args ...string) (string, error) {
	return iptables.ExecRunner{}.Run(ctx, stdin, "ip", append([]string{"netns", "exec", r.ns, name}, args...)...)
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestTransparentCaptureInNetns runs weft-proxy as uid 1337 in a network
// namespace with Weft's iptables capture rules, and an application (root)
// next to it that knows nothing about the proxy. Servers live in a second
// namespace across a veth pair.
func TestTransparentCaptureInNetns(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("this test needs root: it creates network namespaces, veth pairs and iptables rules (CI runs as root)")
	}
	id := os.Getpid() % 100000
	app := newNetns(t, fmt.Sprintf("weft-tp-app-%d", id))
	srv := newNetns(t, fmt.Sprintf("weft-tp-srv-%d", id))
	// Interface names are per namespace; both ends are created inside
	// them, so they disappear with the namespaces.
	run(t, "ip", "-n", app.name, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", srv.name)
	run(t, "ip", "-n", app.name, "addr", "add", "10.77.0.2/24", "dev", "eth0")
	run(t, "ip", "-n", srv.name, "addr", "add", "10.77.0.3/24", "dev", "eth0")
	run(t, "ip", "-n", app.name, "link", "set", "eth0", "up")
	run(t, "ip", "-n", srv.name, "link", "set", "eth0", "up")
	// Service VIPs need a route for connect() to get as far as iptables.
	run(t, "ip", "-n", app.name, "route", "add", "default", "via", "10.77.0.3")

	go http.Serve(srv.listener(t, "10.77.0.3:9080"), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "reviews-v1 host=%s", r.Host)
	}))
	srv.listen(t, "10.77.0.3:7000", func(c net.Conn) { io.Copy(c, c) })
	srv.listen(t, "10.77.0.3:8888", func(c net.Conn) { io.WriteString(c, "external\n") })

	rules := iptables.Build(iptables.Options{})
	if err := iptables.NewApplier(iptables.ApplierOptions{Runner: nsRunner{ns: app.name}}).Apply(context.Background(), rules); err != nil {
		t.Fatalf("installing capture rules: %v", err)
	}

	var xds *xdstest.Server
	app.do(t, func() { xds = xdstest.Start(t, "127.0.0.1:0", nil) })
	meta := nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: "default", WorkloadName: "app-1", IP: "10.77.0.2"}
	const reviews = "outbound|9080||reviews.default.svc.cluster.local"
	const echo = "outbound|7000||echo.default.svc.cluster.local"
	snapshot := func(outboundCluster string) xdstest.Resources {
		return xdstest.Resources{
			Clusters: []types.Resource{xdstest.StaticCluster(reviews, "10.77.0.3:9080"), xdstest.StaticCluster(echo, "10.77.0.3:7000"),
				xdstest.OriginalDstCluster("PassthroughCluster"), xdstest.BlackHoleCluster()},
			Listeners: []types.Resource{
				xdstest.OriginalDstListener("virtualOutbound", "0.0.0.0:15001", nil, xdstest.TCPProxyChain(outboundCluster)),
				xdstest.VirtualListener("240.240.0.5_9080", "240.240.0.5:9080", nil, xdstest.RDSChain("9080")),
				xdstest.VirtualListener("240.240.0.6_7000", "240.240.0.6:7000", nil, xdstest.TCPProxyChain(echo)),
			},
			Routes: []types.Resource{xdstest.RouteConfig("9080", xdstest.VirtualHost("reviews.default.svc.cluster.local:9080",
				[]string{"reviews:9080", "240.240.0.5", "240.240.0.5:9080"}, xdstest.PrefixRoute("/", reviews)))},
		}
	}
	xds.Set(meta.ID(), "1", snapshot("PassthroughCluster"))

	bin := proxyBinary(t)
	os.Chmod(filepath.Dir(bin), 0o755) // uid 1337 must reach it
	var logs syncBuffer
	cmd := exec.Command("nsenter", "--net=/run/netns/"+app.name, "--setuid=1337", "--setgid=1337", "--",
		bin, "--xds-address", xds.Addr, "--workload-name", "app-1", "--ip", "10.77.0.2", "--admin-port", "15000", "--drain-timeout", "1s")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		exitStatus(t, cmd, 5*time.Second)
		if t.Failed() {
			t.Logf("weft-proxy log:\n%s", logs.String())
		}
	})
	c := app.client()
	get := func(url string) (string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return string(b), err
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if b, err := get("http://127.0.0.1:15000/ready"); err == nil && b == "LIVE\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("weft-proxy not ready in the namespace")
		}
		time.Sleep(50 * time.Millisecond)
	}

	// HTTP to a service VIP is routed by the route configuration: the VIP
	// exists nowhere, the route's cluster does.
	if b, err := get("http://240.240.0.5:9080/ratings"); err != nil || b != "reviews-v1 host=240.240.0.5:9080" {
		t.Errorf("GET via VIP = %q, %v; want reviews-v1", b, err)
	}
	// Opaque TCP to a VIP goes to the echo service.
	ec := app.dial(t, "240.240.0.6:7000")
	io.WriteString(ec, "opaque\x00bytes")
	got := make([]byte, len("opaque\x00bytes"))
	if _, err := io.ReadFull(ec, got); err != nil || string(got) != "opaque\x00bytes" {
		t.Errorf("TCP echo through the VIP = %q, %v", got, err)
	}
	// ALLOW_ANY: an address outside the mesh is passed through.
	greeting := func() (string, error) {
		conn := app.dial(t, "10.77.0.3:8888")
		defer conn.Close()
		b, err := io.ReadAll(conn)
		return string(b), err
	}
	if b, err := greeting(); b != "external\n" {
		t.Errorf("ALLOW_ANY: external server said %q, %v", b, err)
	}
	stats, _ := get("http://127.0.0.1:15000/stats/prometheus")
	if !strings.Contains(stats, `envoy_cluster_upstream_cx_total{envoy_cluster_name="PassthroughCluster"} 1`) {
		t.Errorf("the external connection did not go through PassthroughCluster:\n%s", stats)
	}

	// REGISTRY_ONLY: the same connection is refused, logged and counted.
	xds.Set(meta.ID(), "2", snapshot("BlackHoleCluster"))
	deadline = time.Now().Add(10 * time.Second)
	for {
		b, _ := greeting()
		if b == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("REGISTRY_ONLY never took effect: external server still reachable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	stats, _ = get("http://127.0.0.1:15000/stats/prometheus")
	if !strings.Contains(stats, "weft_outbound_blocked_total 1") {
		t.Errorf("blocked connection not counted:\n%s", stats)
	}
	// The log line comes through the proxy's stderr pipe, which can lag
	// behind the closed connection the client saw.
	want := "blocked outbound connection to 10.77.0.3:8888 (REGISTRY_ONLY)"
	for deadline := time.Now().Add(5 * time.Second); !strings.Contains(logs.String(), want); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Errorf("log lacks %q", want)
			break
		}
	}
}
