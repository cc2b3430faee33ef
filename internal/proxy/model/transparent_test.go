package model

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	listenerv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/listener/v3"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

func TestSelectChain(t *testing.T) {
	http9080 := &FilterChain{Name: "http9080", DestinationPort: 9080, RouteConfig: "9080"}
	tcp3306 := &FilterChain{Name: "tcp3306", DestinationPort: 3306}
	sniffed := &FilterChain{Name: "sniffed", DestinationPort: 7000, ApplicationProtocols: []string{"http/1.1", "h2c"}}
	anyPort := &FilterChain{Name: "anyPort", ApplicationProtocols: []string{"http/1.1"}}
	dflt := &FilterChain{Name: "default"}
	l := &Listener{FilterChains: []*FilterChain{http9080, tcp3306, sniffed, anyPort}, DefaultChain: dflt}
	tests := []struct {
		port     uint32
		protocol string
		want     *FilterChain
	}{
		{9080, "", http9080},
		{9080, "http/1.1", http9080},
		{3306, "", tcp3306},
		{7000, "h2c", sniffed},
		{7000, "", dflt},         // the port matched: port-less chains are not tried
		{7000, "http/1.0", dflt}, // not in the list
		{5555, "http/1.1", anyPort},
		{5555, "", dflt},
	}
	for _, tc := range tests {
		if got := l.SelectChain(tc.port, tc.protocol); got != tc.want {
			t.Errorf("SelectChain(%d, %q) = %v, want %v", tc.port, tc.protocol, got.Name, tc.want.Name)
		}
	}
	if got := (&Listener{FilterChains: []*FilterChain{http9080}}).SelectChain(1, ""); got != nil {
		t.Errorf("no match and no default chain: got %v, want nil", got.Name)
	}
}

func TestCompileTransparentMode(t *testing.T) {
	var got []*Model
	c := newCompiler(&got)
	const rev = "outbound|9080||reviews.default.svc.cluster.local"
	steps := []struct {
		typeURL string
		res     []proto.Message
	}{
		{xdsclient.TypeCluster, []proto.Message{xdstest.EDSCluster(rev), xdstest.OriginalDstCluster("PassthroughCluster"),
			xdstest.BlackHoleCluster(), xdstest.StaticCluster(cIn, "127.0.0.1:9080")}},
		{xdsclient.TypeListener, []proto.Message{
			xdstest.OriginalDstListener("virtualOutbound", "0.0.0.0:15001", nil, xdstest.TCPProxyChain("PassthroughCluster")),
			xdstest.VirtualListener("240.240.0.5_9080", "240.240.0.5:9080", nil, xdstest.RDSChain("9080")),
			xdstest.WithHTTPInspector(xdstest.VirtualListener("240.240.0.6_7000", "240.240.0.6:7000", xdstest.TCPProxyChain(rev),
				xdstest.MatchHTTP(xdstest.RDSChain("7000"))), 100*time.Millisecond),
			xdstest.OriginalDstListener("virtualInbound", "0.0.0.0:15006", xdstest.TCPProxyChain("PassthroughCluster"),
				xdstest.MatchPort(xdstest.TCPProxyChain(cIn), 9080)),
			xdstest.DNSListener("127.0.0.1:15053", map[string][]string{"reviews.default.svc.cluster.local": {"240.240.0.5"}}),
		}},
		{xdsclient.TypeRoute, []proto.Message{xdstest.RouteConfig("9080"), xdstest.RouteConfig("7000")}},
		{xdsclient.TypeEndpoint, []proto.Message{xdstest.CLA(rev, "10.0.0.1:9080")}},
	}
	for i, s := range steps {
		if err := c.Apply(s.typeURL, "1", anys(t, s.res...)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	m := c.Current()
	if m == nil {
		t.Fatalf("no model: pending %q", c.Pending())
	}
	ls := map[string]*Listener{}
	for _, l := range m.Listeners {
		ls[l.Name] = l
	}
	vo, vip, sniff, vi, dns := ls["virtualOutbound"], ls["240.240.0.5_9080"], ls["240.240.0.6_7000"], ls["virtualInbound"], ls["dns"]
	if !vo.UseOriginalDst || vo.NoBind || vo.SelectChain(1234, "").TCPCluster != "PassthroughCluster" {
		t.Errorf("virtualOutbound = %+v", vo)
	}
	if !vip.NoBind || vip.HTTPInspector || !vip.SelectChain(9080, "").HTTP() {
		t.Errorf("VIP listener = %+v", vip)
	}
	if !sniff.HTTPInspector || sniff.InspectTimeout != 100*time.Millisecond || !sniff.ContinueOnTimeout ||
		sniff.SelectChain(7000, "http/1.1").RouteConfig != "7000" || sniff.SelectChain(7000, "").TCPCluster != rev {
		t.Errorf("sniffing listener = %+v", sniff)
	}
	if vi.SelectChain(9080, "").TCPCluster != cIn || vi.SelectChain(22, "").TCPCluster != "PassthroughCluster" {
		t.Errorf("virtualInbound chains wrong")
	}
	if a := dns.DNS.Domains["reviews.default.svc.cluster.local"]; len(a) != 1 || a[0] != netip.MustParseAddr("240.240.0.5") {
		t.Errorf("dns table = %v", dns.DNS.Domains)
	}
	if !m.Clusters["PassthroughCluster"].OriginalDst() || len(m.Clusters["BlackHoleCluster"].Endpoints()) != 0 {
		t.Errorf("passthrough/blackhole clusters wrong")
	}
	if n := c.Names(xdsclient.TypeRoute); strings.Join(n, ",") != "7000,9080" {
		t.Errorf("RDS names = %v, want every chain's route configuration", n)
	}
}

func TestCompileTransparentErrors(t *testing.T) {
	dup := xdstest.VirtualListener("v", "240.240.0.5:80", nil, xdstest.RDSChain("80"), xdstest.RDSChain("81"))
	sni := xdstest.VirtualListener("s", "240.240.0.5:80", nil, xdstest.RDSChain("80"))
	sni.FilterChains[0].FilterChainMatch = &listenerv3.FilterChainMatch{ServerNames: []string{"a"}}
	tls := xdstest.VirtualListener("t", "240.240.0.5:80", nil, xdstest.RDSChain("80"))
	tls.ListenerFilters = []*listenerv3.ListenerFilter{{Name: "envoy.filters.listener.tls_inspector"}}
	tests := []struct {
		name string
		l    *listenerv3.Listener
		want string
	}{
		{"ambiguous chains", dup, "same filter_chain_match as filter_chains[0]"},
		{"server names", sni, "filter_chains[0].filter_chain_match.server_names"},
		{"unknown listener filter", tls, `listener_filters[0] "envoy.filters.listener.tls_inspector"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var got []*Model
			err := newCompiler(&got).Apply(xdsclient.TypeListener, "1", anys(t, tc.l))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

// A tcp_proxy with weighted clusters sends each connection to one of them
// in proportion to its weight.
func TestPickTCPCluster(t *testing.T) {
	fc := &FilterChain{TCPWeighted: []WeightedCluster{{"a", 90}, {"b", 10}}}
	got := map[string]int{}
	for i := range 1000 {
		got[fc.PickTCPCluster(float64(i)/1000)]++
	}
	if got["a"] != 900 || got["b"] != 100 {
		t.Errorf("1000 evenly spread picks: %v, want a 900, b 100", got)
	}
	if one := (&FilterChain{TCPCluster: "only"}); one.PickTCPCluster(0.5) != "only" {
		t.Error("a single cluster was not picked")
	}
}
