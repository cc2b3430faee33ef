package model

import (
	"fmt"
	"testing"

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
		addrs := make([]string, 10)
		for j := range addrs {
			addrs[j] = fmt.Sprintf("10.%d.%d.%d:9080", i/250, i%250, j+1)
		}
		clusters = append(clusters, anys(b, xdstest.EDSCluster(cluster(i)))...)
		clas = append(clas, anys(b, xdstest.CLA(cluster(i), addrs...))...)
		host := fmt.Sprintf("svc-%d.bench.svc.cluster.local", i)
		vhs = append(vhs, xdstest.VirtualHost(host+":9080", []string{host, host + ":9080", fmt.Sprintf("svc-%d", i)}, xdstest.PrefixRoute("/", cluster(i))))
	}
	type step struct {
		typeURL string
		res     []*anypb.Any
	}
	c := New(Options{})
	apply := func(version string, steps ...step) {
		for _, s := range steps {
			if err := c.Apply(s.typeURL, version, s.res); err != nil {
				b.Fatal(err)
			}
		}
	}
	for i := range services {
		add(i)
	}
	apply("0", step{xdsclient.TypeCluster, clusters}, step{xdsclient.TypeEndpoint, clas},
		step{xdsclient.TypeListener, anys(b, xdstest.RDSListener("0.0.0.0_9080", "127.0.0.1:0", "9080"))},
		step{xdsclient.TypeRoute, anys(b, xdstest.RouteConfig("9080", vhs...))})
	if c.Pending() != "" {
		b.Fatal(c.Pending())
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		add(services + i)
		routes := anys(b, xdstest.RouteConfig("9080", vhs...))
		b.StartTimer()
		apply(fmt.Sprint(i+1), step{xdsclient.TypeCluster, clusters}, step{xdsclient.TypeEndpoint, clas}, step{xdsclient.TypeRoute, routes})
	}
}
