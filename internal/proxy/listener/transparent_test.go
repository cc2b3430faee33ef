package listener

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name, in string
		want     string
		done     bool
	}{
		{"HTTP/1.1 request line", "GET /x?y=1 HTTP/1.1\r\nHost: a\r\n", ProtoHTTP11, true},
		{"HTTP/1.0 request line", "POST / HTTP/1.0\r\n", ProtoHTTP10, true},
		{"absolute form", "GET http://reviews:9080/ HTTP/1.1\r\n", ProtoHTTP11, true},
		{"h2c preface", h2Preface + "\x00\x00", ProtoH2C, true},
		{"partial h2c preface waits", "PRI * HTTP/2", "", false},
		{"partial request line waits", "GET /reviews HT", "", false},
		{"partial method waits", "GE", "", false},
		{"TLS client hello", "\x16\x03\x01\x02\x00\x01", "", true},
		{"SSH banner", "SSH-2.0-OpenSSH_9.6\r\n", "", true},
		{"redis inline command", "PING\r\n", "", true},
		{"HTTP/2 version text is not HTTP/1", "GET / HTTP/2.0\r\n", "", true},
		{"binary after method", "GET \x00\x01", "", true},
		{"too many fields", "GET / x HTTP/1.1\r\n", "", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, done := classify([]byte(tc.in))
			if got != tc.want || done != tc.done {
				t.Errorf("classify(%q) = %q, %v; want %q, %v", tc.in, got, done, tc.want, tc.done)
			}
		})
	}
}

// serve runs handle on each accepted connection of a loopback listener.
func tcpServer(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln.Addr().String()
}

// greeter speaks first, as MySQL and SMTP servers do.
func greeter(c net.Conn) {
	io.WriteString(c, "220 greetings\r\n")
	io.Copy(c, c)
}

// counter reads until EOF, then answers with the byte count: it needs the
// client's half-close to get through.
func counter(c net.Conn) {
	n, _ := io.Copy(io.Discard, c)
	io.WriteString(c, "got "+strconv.FormatInt(n, 10))
}

func tcpChain(cluster string) *model.FilterChain { return &model.FilterChain{TCPCluster: cluster} }

// httpChain answers every request with the listener, route config and
// original destination it saw.
func httpChain(t *testing.T, rc string) *model.FilterChain {
	fc := answering(t, "unused", "", "").FilterChains[0]
	fc.RouteConfig = rc
	fc.ApplicationProtocols = []string{ProtoHTTP11, ProtoH2C}
	fc.Chain = chain.HandlerFunc(func(x *chain.Exchange) {
		io.WriteString(x.W, x.Listener+" "+x.RouteConfig+" "+x.OriginalDst.String())
	})
	return fc
}

type fixture struct {
	m    *Manager
	addr string // virtualOutbound's bound address
	od   atomic.Pointer[netip.AddrPort]
}

// transparent starts a Manager with a bound use_original_dst listener
// (virtualOutbound) whose own chain is tcp_proxy to ownCluster, plus extra
// listeners, and clusters. The original destination of every connection is
// whatever f.setDst says.
func transparent(t *testing.T, ownCluster string, extra []*model.Listener, clusters []upstream.ClusterSpec) *fixture {
	t.Helper()
	f := &fixture{}
	f.m = New(Options{DrainTimeout: time.Second, OriginalDst: func(net.Conn) (netip.AddrPort, error) {
		return *f.od.Load(), nil
	}})
	t.Cleanup(func() { f.m.Shutdown(context.Background()) })
	f.addr = freeAddr(t)
	vo := &model.Listener{Name: "virtualOutbound", Address: f.addr, UseOriginalDst: true,
		// A long inspection timeout that must not apply: the listener
		// has no inspector.
		InspectTimeout: time.Minute, FilterChains: []*model.FilterChain{tcpChain(ownCluster)}}
	md := &model.Model{Listeners: append([]*model.Listener{vo}, extra...),
		Clusters: upstream.NewPools(upstream.PoolsOptions{}).Build(clusters)}
	f.m.Apply(md)
	return f
}

func (f *fixture) setDst(s string) {
	ap := netip.MustParseAddrPort(s)
	f.od.Store(&ap)
}

func (f *fixture) dial(t *testing.T) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", f.addr, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(5 * time.Second))
	return c.(*net.TCPConn)
}

func readLine(t *testing.T, c net.Conn) (string, time.Duration) {
	t.Helper()
	start := time.Now()
	buf := make([]byte, 64)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return string(buf[:n]), time.Since(start)
}

const vip = "240.240.0.5"

func TestServerFirstProtocolIsNotStalledWithoutInspector(t *testing.T) {
	g := tcpServer(t, greeter)
	db := &model.Listener{Name: vip + "_3306", Address: vip + ":3306", NoBind: true, FilterChains: []*model.FilterChain{tcpChain("outbound|3306||db")}}
	f := transparent(t, "PassthroughCluster", []*model.Listener{db}, []upstream.ClusterSpec{
		{Name: "outbound|3306||db", Endpoints: []upstream.EndpointSpec{{Address: g}}},
		{Name: "PassthroughCluster", OriginalDst: true},
	})
	f.setDst(vip + ":3306")
	c := f.dial(t)
	got, took := readLine(t, c)
	if got != "220 greetings\r\n" {
		t.Fatalf("greeting = %q", got)
	}
	if took > 500*time.Millisecond {
		t.Errorf("the greeting took %v: the connection was held back", took)
	}
	if s := f.m.Stats().Listeners[vip+"_3306"]; s.Connections != 1 || s.PreCxTimeouts != 0 {
		t.Errorf("stats of %s = %+v, want 1 connection handed off, no timeouts", vip+"_3306", s)
	}
}

// sniffing returns a VIP listener with the HTTP inspector, an HTTP chain and
// a default tcp_proxy chain to cluster "opaque".
func sniffing(t *testing.T, timeout time.Duration) *model.Listener {
	return &model.Listener{Name: vip + "_9000", Address: vip + ":9000", NoBind: true,
		HTTPInspector: true, InspectTimeout: timeout, ContinueOnTimeout: true,
		FilterChains: []*model.FilterChain{httpChain(t, "9000")},
		DefaultChain: tcpChain("opaque")}
}

func TestInspectorTimeoutHandsOverToDefaultChain(t *testing.T) {
	g := tcpServer(t, greeter)
	f := transparent(t, "PassthroughCluster", []*model.Listener{sniffing(t, 100*time.Millisecond)}, []upstream.ClusterSpec{
		{Name: "opaque", Endpoints: []upstream.EndpointSpec{{Address: g}}},
		{Name: "PassthroughCluster", OriginalDst: true},
	})
	f.setDst(vip + ":9000")
	c := f.dial(t)
	got, took := readLine(t, c)
	if got != "220 greetings\r\n" {
		t.Fatalf("greeting = %q", got)
	}
	if took < 90*time.Millisecond || took > time.Second {
		t.Errorf("greeting after %v, want after the 100ms sniff timeout", took)
	}
	// The connection is fully usable afterwards.
	io.WriteString(c, "ping\n")
	if got, _ := readLine(t, c); got != "ping\n" {
		t.Errorf("echo after greeting = %q", got)
	}
	if s := f.m.Stats().Listeners[vip+"_9000"]; s.PreCxTimeouts != 1 {
		t.Errorf("pre_cx_timeout = %d, want 1", s.PreCxTimeouts)
	}
}

func TestInspectorTimeoutClosesWithoutContinue(t *testing.T) {
	g := tcpServer(t, greeter)
	l := sniffing(t, 50*time.Millisecond)
	l.ContinueOnTimeout = false
	f := transparent(t, "PassthroughCluster", []*model.Listener{l}, []upstream.ClusterSpec{
		{Name: "opaque", Endpoints: []upstream.EndpointSpec{{Address: g}}},
		{Name: "PassthroughCluster", OriginalDst: true},
	})
	f.setDst(vip + ":9000")
	c := f.dial(t)
	if n, err := c.Read(make([]byte, 16)); err != io.EOF {
		t.Errorf("read = %d, %v; want the connection closed (Envoy's continue_on_listener_filters_timeout: false)", n, err)
	}
	if s := f.m.Stats().Listeners[vip+"_9000"]; s.PreCxTimeouts != 1 {
		t.Errorf("pre_cx_timeout = %d, want 1", s.PreCxTimeouts)
	}
}

func TestInspectorRoutesHTTPAndReplaysOpaqueBytes(t *testing.T) {
	echo := tcpServer(t, func(c net.Conn) { io.Copy(c, c) })
	f := transparent(t, "PassthroughCluster", []*model.Listener{sniffing(t, time.Second)}, []upstream.ClusterSpec{
		{Name: "opaque", Endpoints: []upstream.EndpointSpec{{Address: echo}}},
		{Name: "PassthroughCluster", OriginalDst: true},
	})
	f.setDst(vip + ":9000")

	// HTTP: the HTTP chain of the VIP listener serves it, with the
	// original destination.
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "tcp", f.addr)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("http://reviews:9000/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if want := vip + "_9000 9000 " + vip + ":9000"; string(b) != want {
		t.Errorf("HTTP answer = %q, want %q", b, want)
	}

	// Not HTTP: the sniffed bytes reach the tcp_proxy upstream first.
	c := f.dial(t)
	io.WriteString(c, "\x16\x03\x01hello")
	var got []byte
	buf := make([]byte, 64)
	for len(got) < 8 {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != "\x16\x03\x01hello" {
		t.Errorf("echo = %q", got)
	}
	s := f.m.Stats().Listeners[vip+"_9000"]
	if s.HTTPFound != 1 || s.HTTPNotFound != 1 || s.PreCxTimeouts != 0 {
		t.Errorf("inspector stats = %+v, want 1 found, 1 not found, no timeouts", s)
	}
}

func TestTCPProxyPassesHalfClose(t *testing.T) {
	cnt := tcpServer(t, counter)
	f := transparent(t, "PassthroughCluster", nil, []upstream.ClusterSpec{{Name: "PassthroughCluster", OriginalDst: true}})
	// ORIGINAL_DST: the destination is no listener's, so the passthrough
	// cluster dials it.
	f.setDst(cnt)
	c := f.dial(t)
	io.WriteString(c, "12345")
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(c)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != "got 5" {
		t.Errorf("answer after half-close = %q, want %q", b, "got 5")
	}
	waitFor(t, func() bool {
		st := f.m.Current().Clusters["PassthroughCluster"].Stats().Snapshot()
		return st.CxTotal == 1 && st.TxBytes == 5 && st.RxBytes == 5
	}, "PassthroughCluster counted 1 connection, 5 bytes each way")
}

func TestTCPProxyMaxConnections(t *testing.T) {
	// Istio's connectionPool.tcp.maxConnections: 1. The second connection
	// is closed at once, without reaching the server, while the first
	// is open; once the first has closed, a new one gets through.
	srv := tcpServer(t, greeter)
	f := transparent(t, "PassthroughCluster", nil, []upstream.ClusterSpec{{Name: "PassthroughCluster", OriginalDst: true,
		CircuitBreakers: &upstream.CircuitBreakers{MaxConnections: 1, MaxPendingRequests: 1, MaxRequests: 1, MaxRetries: 1}}})
	f.setDst(srv)
	first := f.dial(t)
	if got, _ := readLine(t, first); got != "220 greetings\r\n" {
		t.Fatalf("first connection got %q, want the greeting", got)
	}
	second := f.dial(t)
	if b, err := io.ReadAll(second); err != nil || len(b) != 0 {
		t.Fatalf("second connection read %q, %v; want it closed with nothing (max_connections reached)", b, err)
	}
	stats := func() upstream.StatsSnapshot { return f.m.Current().Clusters["PassthroughCluster"].Stats().Snapshot() }
	if st := stats(); st.CxOverflow != 1 || st.CxTotal != 1 {
		t.Errorf("after the refused connection: cx_overflow %d, connections %d; want 1 and 1", st.CxOverflow, st.CxTotal)
	}
	first.Close()
	waitFor(t, func() bool {
		third := f.dial(t)
		defer third.Close()
		third.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 64)
		n, _ := third.Read(buf)
		return string(buf[:n]) == "220 greetings\r\n"
	}, "a connection made after the first closed gets through")
}

func TestBlackHoleRefusesAndCounts(t *testing.T) {
	f := transparent(t, BlackHoleCluster, nil, []upstream.ClusterSpec{{Name: BlackHoleCluster}})
	f.setDst("192.0.2.7:443")
	c := f.dial(t)
	if n, err := c.Read(make([]byte, 8)); err != io.EOF {
		t.Errorf("read = %d, %v; want the connection closed", n, err)
	}
	waitFor(t, func() bool { return f.m.Stats().Blocked == 1 }, "1 blocked connection")
	if st := f.m.Current().Clusters[BlackHoleCluster].Stats().Snapshot(); st.CxNoneHealthy != 1 {
		t.Errorf("BlackHoleCluster cx_none_healthy = %d, want 1", st.CxNoneHealthy)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestHandoff(t *testing.T) {
	self := &model.Listener{Name: "virtualOutbound", Address: "0.0.0.0:15001", UseOriginalDst: true}
	exact := &model.Listener{Name: vip + "_80", Address: vip + ":80", NoBind: true}
	wild := &model.Listener{Name: "0.0.0.0_80", Address: "0.0.0.0:80", NoBind: true}
	wild6 := &model.Listener{Name: "[::]_8080", Address: "[::]:8080", NoBind: true}
	ix := newIndex(&model.Model{Listeners: []*model.Listener{self, exact, wild, wild6}})
	tests := []struct {
		dst  string
		want *model.Listener
	}{
		{vip + ":80", exact},
		{"10.1.2.3:80", wild},
		{"10.1.2.3:81", nil},
		{"[2001:db8::1]:8080", wild6},
		{"0.0.0.0:15001", nil}, // never to itself
	}
	for _, tc := range tests {
		if got := ix.handoff(self, netip.MustParseAddrPort(tc.dst)); got != tc.want {
			t.Errorf("handoff(%s) = %v, want %v", tc.dst, got, tc.want)
		}
	}
}

// A tcp_proxy with max_downstream_connection_duration closes the
// connection, both sides, at that age, whatever it is doing; and a chain
// with weighted clusters sends each connection to one of them.
func TestTCPProxyMaxAgeAndWeights(t *testing.T) {
	srv := tcpServer(t, greeter)
	f := transparent(t, "PassthroughCluster", nil, []upstream.ClusterSpec{{Name: "PassthroughCluster", OriginalDst: true}})
	md := f.m.Current()
	fc := md.Listeners[0].FilterChains[0]
	fc.TCPMaxAge = 200 * time.Millisecond
	fc.TCPCluster, fc.TCPWeighted = "", []model.WeightedCluster{{Name: "none", Weight: 0}, {Name: "PassthroughCluster", Weight: 1}}
	f.m.Apply(md)
	f.setDst(srv)
	c := f.dial(t)
	start := time.Now()
	if got, _ := readLine(t, c); got != "220 greetings\r\n" {
		t.Fatalf("got %q, want the greeting through the weighted chain", got)
	}
	if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
		t.Fatalf("after the greeting: %q, %v; want the connection closed at its age", b, err)
	}
	if d := time.Since(start); d < 150*time.Millisecond || d > 2*time.Second {
		t.Errorf("the connection closed after %v; its max age is 200ms", d)
	}
}
