package listener

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/proxy/model"
)

// freeDNSAddr returns a loopback address whose port is free for UDP and
// TCP alike, as a DNS listener needs; a free UDP port may be taken for TCP
// (another test process's connection, say).
func freeDNSAddr(t *testing.T) string {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		pc.Close()
		if err == nil {
			ln.Close()
			return addr
		}
	}
	t.Fatal("no port free for both UDP and TCP")
	return ""
}

func TestDNSListenerAnswersAndSwapsTable(t *testing.T) {
	m := New(Options{Namespace: "shop"})
	defer m.Shutdown(context.Background())
	var addr string
	dnsModel := func(ip string) *model.Model {
		return &model.Model{Listeners: []*model.Listener{{Name: "dns", Address: addr, DNS: &model.DNSConfig{
			Domains:   map[string][]netip.Addr{"reviews.shop.svc.cluster.local": {netip.MustParseAddr(ip)}},
			Upstreams: []string{"127.0.0.1:1"}, // nothing else is resolvable
		}}}}
	}
	// The port may still be taken between the check and the bind: then
	// another one.
	for try := 0; ; try++ {
		addr = freeDNSAddr(t)
		m.Apply(dnsModel("240.240.0.5"))
		if p := m.Pending(); len(p) == 0 {
			break
		} else if try == 4 {
			t.Fatalf("pending: %v", p)
		}
	}
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		}}
		lookup := func() []string {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			got, err := r.LookupHost(ctx, "reviews")
			if err != nil {
				t.Fatalf("%s: lookup reviews: %v", network, err)
			}
			return got
		}
		m.Apply(dnsModel("240.240.0.5"))
		if got := lookup(); !slices.Equal(got, []string{"240.240.0.5"}) {
			t.Errorf("%s: reviews = %v, want 240.240.0.5", network, got)
		}
		// A new version swaps the table on the same socket.
		m.Apply(dnsModel("240.240.0.9"))
		if got := lookup(); !slices.Equal(got, []string{"240.240.0.9"}) {
			t.Errorf("%s: after update reviews = %v, want 240.240.0.9", network, got)
		}
	}
}
