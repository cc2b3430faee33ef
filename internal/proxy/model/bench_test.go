package model

import (
	"fmt"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	"github.com/weftmesh/weft/internal/proxy/xdsclient"
	"github.com/weftmesh/weft/internal/proxy/xdstest"
)

// BenchmarkApplyOneNewService is a sidecar's work when one service is
// added to a mesh of 1000 (the bench's control plane run): a cluster, its
// endpoints and a virtual host more, each type sent whole, as over state
// of the world; what did not change is reused.
func BenchmarkApplyOneNewService(b *testing.B) {
	const services = 1000
	cluster := func(i int) string { return fmt.Sprintf("outbound|9080||svc-%d.bench.svc.cluster.local", i) }
	var clusters, clas []*anypb.Any
	var vhs []*routev3.VirtualHost
	add := func(i int) {
		c, err := anypb.New(xdstest.EDSCluster(cluster(i)))
		if err != nil {
			b.Fatal(err)
		}
		addrs := make([]string, 10)
		for j := range addrs {
			addrs[j] = fmt.Sprintf("10.%d.%d.%d:9080", i/250, i%250, j+1)
		}
		e, err := anypb.New(xdstest.CLA(cluster(i), addrs...))
		if err != nil {
			b.Fatal(err)
		}
		host := fmt.Sprintf("svc-%d.bench.svc.cluster.local", i)
		clusters, clas = append(clusters, c), append(clas, e)
		vhs = append(vhs, xdstest.VirtualHost(host+":9080", []string{host, host + ":9080", fmt.Sprintf("svc-%d", i)}, xdstest.PrefixRoute("/", cluster(i))))
	}
	routes := func() []*anypb.Any {
		a, err := anypb.New(xdstest.RouteConfig("9080", vhs...))
		if err != nil {
			b.Fatal(err)
		}
		return []*anypb.Any{a}
	}
	for i := range services {
		add(i)
	}
	c := New(Options{})
	apply := func(v string) {
		for _, r := range []struct {
			typeURL string
			res     []*anypb.Any
		}{
			{xdsclient.TypeCluster, clusters},
			{xdsclient.TypeEndpoint, clas},
			{xdsclient.TypeListener, []*anypb.Any{mustAny(b, xdstest.RDSListener("0.0.0.0_9080", "127.0.0.1:0", "9080"))}},
			{xdsclient.TypeRoute, routes()},
		} {
			if err := c.Apply(r.typeURL, v, r.res); err != nil {
				b.Fatal(err)
			}
		}
	}
	apply("0")
	if c.Pending() != "" {
		b.Fatal(c.Pending())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		add(services + i)
		rs := routes()
		b.StartTimer()
		v := fmt.Sprint(i + 1)
		for _, r := range []struct {
			typeURL string
			res     []*anypb.Any
		}{{xdsclient.TypeCluster, clusters}, {xdsclient.TypeEndpoint, clas}, {xdsclient.TypeRoute, rs}} {
			if err := c.Apply(r.typeURL, v, r.res); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func mustAny(tb testing.TB, m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		tb.Fatal(err)
	}
	return a
}
