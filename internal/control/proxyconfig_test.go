package control

import (
	"context"
	"encoding/json"
	"net"
	"net/http/httptest"
	"strings"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/controlapi"
	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
	"github.com/weftmesh/weft/internal/store"
	"github.com/weftmesh/weft/internal/xdsserver"
)

// TestAPIProxyConfig connects a proxy over ADS and reads back, through the
// API, the resources the control plane sent it.
func TestAPIProxyConfig(t *testing.T) {
	st, err := store.Open(store.Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	xds := xdsserver.New(xdsserver.Options{})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go xds.Serve(ctx, l)
	xds.Push(snapshot.New(1, 0, nil, []*registry.Service{{
		Hostname: "ratings.default.svc.cluster.local", Name: "ratings", Namespace: "default",
		Ports:     []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
		Endpoints: []registry.Endpoint{{Address: "10.0.0.7", Ports: map[uint32]uint32{9080: 9080}}},
	}}))

	// A proxy connects and asks for its clusters, which registers it.
	meta := nodemeta.Metadata{
		Type: nodemeta.TypeSidecar, Namespace: "default", Service: "reviews", WorkloadName: "reviews-v1-abcde",
		IP: "127.0.0.1", Ports: []nodemeta.Port{{Name: "http", Port: 9080, TargetPort: 20001, ListenPort: 20002}}, OutboundPort: 20003,
	}
	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.Send(&discoverygrpc.DiscoveryRequest{Node: &corev3.Node{Id: meta.ID(), Metadata: meta.Struct()}, TypeUrl: resourcev3.ClusterType}); err != nil {
		t.Fatal(err)
	}
	cds, err := stream.Recv()
	if err != nil {
		t.Fatal(err)
	}

	srv := httptest.NewServer(newAPI(apiOptions{log: discard(), store: st, xds: xds}))
	t.Cleanup(srv.Close)
	c := controlapi.NewClient(strings.TrimPrefix(srv.URL, "http://"))

	got, err := c.ProxyConfig(ctx, meta.ID(), "clusters")
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != cds.VersionInfo || len(got.Resources) != len(cds.Resources) {
		t.Fatalf("proxy-config clusters = version %q, %d resources; the proxy was sent %q, %d", got.Version, len(got.Resources), cds.VersionInfo, len(cds.Resources))
	}
	var names []string
	for _, raw := range got.Resources {
		var r struct {
			Type string `json:"@type"`
			Name string `json:"name"`
		}
		if err := json.Unmarshal(raw, &r); err != nil {
			t.Fatalf("resource is not JSON: %v\n%s", err, raw)
		}
		if r.Type != resourcev3.ClusterType {
			t.Errorf("resource @type = %q, want %s", r.Type, resourcev3.ClusterType)
		}
		names = append(names, r.Name)
	}
	if !strings.Contains(strings.Join(names, " "), "outbound|9080||ratings.default.svc.cluster.local") {
		t.Errorf("clusters = %v, want the ratings cluster", names)
	}
	eds, err := c.ProxyConfig(ctx, meta.ID(), "endpoints")
	if err != nil || len(eds.Resources) == 0 || !strings.Contains(string(eds.Resources[0]), "10.0.0.7") {
		t.Errorf("proxy-config endpoints = %+v, %v; want the ratings endpoint", eds, err)
	}

	for _, tc := range []struct{ name, proxy, typ, want string }{
		{"unknown proxy", "sidecar~10.0.0.9~nope.default~default.svc.cluster.local", "clusters",
			`proxy "sidecar~10.0.0.9~nope.default~default.svc.cluster.local" is not connected; connected proxies: ` + meta.ID()},
		{"unknown type", meta.ID(), "secrets", `type "secrets": want listeners, routes, clusters or endpoints`},
		{"no proxy", "", "routes", "proxy: want the node ID of a connected proxy"},
	} {
		_, err := c.ProxyConfig(ctx, tc.proxy, tc.typ)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.want)
		}
	}
}
