package translate

import (
	"testing"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

// Proxies of one snapshot share its outbound clusters, and share route
// configurations within a namespace, so memory grows with services plus
// proxies, not their product.
func TestSharedAcrossProxies(t *testing.T) {
	svc := func(name, ns string) *registry.Service {
		return &registry.Service{Hostname: registry.Hostname(name, ns), Name: name, Namespace: ns,
			Ports:     []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
			Endpoints: []registry.Endpoint{{Address: "10.0.0.1", Ports: map[uint32]uint32{9080: 9080}}}}
	}
	snap := snapshot.New(1, 1, nil, []*registry.Service{svc("reviews", "default"), svc("ratings", "prod")})
	sh := NewShared(snap)
	proxy := func(name, ns string) nodemeta.Metadata {
		return nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: ns, WorkloadName: name, IP: "10.0.0.9"}
	}
	a := sh.ForProxy(proxy("a", "default"))
	b := sh.ForProxy(proxy("b", "default"))
	c := sh.ForProxy(proxy("c", "prod"))

	if len(a.Endpoints) == 0 || &a.Endpoints[0] != &b.Endpoints[0] || a.Endpoints[0] != c.Endpoints[0] {
		t.Error("proxies do not share the load assignments")
	}
	if a.Clusters[len(a.Clusters)-1] != b.Clusters[len(b.Clusters)-1] {
		t.Error("proxies do not share the outbound clusters")
	}
	if a.Routes[0] != b.Routes[0] {
		t.Error("proxies of one namespace do not share http_proxy")
	}
	if a.Routes[0] == c.Routes[0] {
		t.Fatal("proxies of different namespaces share http_proxy, but short names differ")
	}
	hasDomain := func(r *Resources, d string) bool {
		for _, vh := range r.Routes[0].VirtualHosts {
			for _, x := range vh.Domains {
				if x == d {
					return true
				}
			}
		}
		return false
	}
	if !hasDomain(a, "reviews:9080") || hasDomain(c, "reviews:9080") || !hasDomain(c, "ratings:9080") {
		t.Error("short names are not those of each proxy's namespace")
	}
}

// A VirtualService that matches on sourceLabels makes route
// configurations differ between proxies of one namespace with different
// labels: each proxy gets its own, and proxies with the same labels still
// share one.
func TestSharedRoutesFollowSourceLabels(t *testing.T) {
	svc := &registry.Service{Hostname: registry.Hostname("reviews", "default"), Name: "reviews", Namespace: "default",
		Ports:     []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
		Endpoints: []registry.Endpoint{{Address: "10.0.0.1", Ports: map[uint32]uint32{9080: 9080}}}}
	rs, err := config.Decode("vs.yaml", []byte(`apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - match: [{sourceLabels: {app: productpage}}]
    timeout: 7s
    route: [{destination: {host: reviews}}]
  - route: [{destination: {host: reviews}}]
`))
	if err != nil {
		t.Fatal(err)
	}
	sh := NewShared(snapshot.New(1, 1, rs, []*registry.Service{svc}))
	proxy := func(app string) *Resources {
		return sh.ForProxy(nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: "default", WorkloadName: app + "-1", IP: "10.0.0.9",
			Labels: map[string]string{"app": app}})
	}
	routes := func(r *Resources) int {
		for _, vh := range r.Routes[0].VirtualHosts {
			if vh.Name == "reviews.default.svc.cluster.local:9080" {
				return len(vh.Routes)
			}
		}
		return -1
	}
	// ratings first, so that a cache keyed by namespace alone would hand
	// its routes to productpage.
	ratings, productpage, productpage2 := proxy("ratings"), proxy("productpage"), proxy("productpage")
	if n := routes(ratings); n != 1 {
		t.Errorf("ratings' sidecar has %d routes for reviews, want 1 (the sourceLabels match is not for it)", n)
	}
	if n := routes(productpage); n != 2 {
		t.Errorf("productpage's sidecar has %d routes for reviews, want 2", n)
	}
	if productpage.Routes[0] != productpage2.Routes[0] {
		t.Error("two proxies with the same labels do not share their route configuration")
	}
}
