package listener

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/model"
	"github.com/weftmesh/weft/internal/proxy/router"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// answering is a listener whose chain answers with text.
func answering(t *testing.T, name, addr, text string) *model.Listener {
	t.Helper()
	table, err := router.Compile(&routev3.RouteConfiguration{Name: "rc", VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: "c"}}},
		}},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	return &model.Listener{Name: name, Address: addr, FilterChains: []*model.FilterChain{{RouteConfig: "rc", Routes: table, Chain: chain.HandlerFunc(func(x *chain.Exchange) {
		if x.Route == nil {
			t.Errorf("no route selected: %v", x.RouteErr)
		}
		if d := x.R.URL.Query().Get("sleep"); d != "" {
			dur, _ := time.ParseDuration(d)
			time.Sleep(dur)
		}
		io.WriteString(x.W, text)
	})}}}
}

func body(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

func TestSocketKeptAcrossVersions(t *testing.T) {
	m := New(Options{DrainTimeout: time.Second})
	defer m.Shutdown(context.Background())
	addr := freeAddr(t)
	m.Apply(&model.Model{Listeners: []*model.Listener{answering(t, "l", addr, "v1")}})
	c := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{}}
	var conns int
	trace := c.Transport.(*http.Transport)
	trace.DialContext = func(ctx context.Context, n, a string) (net.Conn, error) {
		conns++
		return (&net.Dialer{}).DialContext(ctx, n, a)
	}
	if got := body(t, c, "http://"+addr+"/"); got != "v1" {
		t.Fatalf("v1: %q", got)
	}
	m.Apply(&model.Model{Listeners: []*model.Listener{answering(t, "l", addr, "v2")}})
	if got := body(t, c, "http://"+addr+"/"); got != "v2" {
		t.Fatalf("v2: %q", got)
	}
	if conns != 1 {
		t.Errorf("%d connections; the keep-alive connection should survive a config change", conns)
	}
	if a := m.Addr("l"); a != addr {
		t.Errorf("Addr = %q", a)
	}
}

func TestRemovedListenerIsClosed(t *testing.T) {
	m := New(Options{DrainTimeout: time.Second})
	defer m.Shutdown(context.Background())
	a, b := freeAddr(t), freeAddr(t)
	m.Apply(&model.Model{Listeners: []*model.Listener{answering(t, "a", a, "a"), answering(t, "b", b, "b")}})
	m.Apply(&model.Model{Listeners: []*model.Listener{answering(t, "b", b, "b")}})
	deadline := time.Now().Add(3 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("removed listener still accepts connections")
		}
		time.Sleep(10 * time.Millisecond)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if got := body(t, c, "http://"+b+"/"); got != "b" {
		t.Errorf("remaining listener: %q", got)
	}
}

func TestBindFailureIsReportedAndRetried(t *testing.T) {
	blocker, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := blocker.Addr().String()
	m := New(Options{RetryInterval: 20 * time.Millisecond})
	defer m.Shutdown(context.Background())
	m.Apply(&model.Model{Listeners: []*model.Listener{answering(t, "busy", addr, "ok")}})
	p := m.Pending()
	if len(p) != 1 || !strings.Contains(p[0], "listener busy on "+addr) || !strings.Contains(p[0], "address already in use") {
		t.Fatalf("Pending = %q, want the listener, address and reason", p)
	}
	blocker.Close()
	deadline := time.Now().Add(3 * time.Second)
	for len(m.Pending()) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("bind never retried: %v", m.Pending())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := body(t, &http.Client{Timeout: 2 * time.Second}, "http://"+addr+"/"); got != "ok" {
		t.Errorf("after retry: %q", got)
	}
}

func TestShutdownDrainsInFlight(t *testing.T) {
	m := New(Options{})
	addr := freeAddr(t)
	m.Apply(&model.Model{Listeners: []*model.Listener{answering(t, "l", addr, "done")}})
	res := make(chan string, 1)
	go func() { res <- body(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/?sleep=300ms") }()
	time.Sleep(100 * time.Millisecond) // let the request start
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := m.Shutdown(ctx); err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if got := <-res; got != "done" {
		t.Errorf("in-flight request during shutdown got %q, want it completed", got)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Errorf("still accepting after shutdown")
	}
}
