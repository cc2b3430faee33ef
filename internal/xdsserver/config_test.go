package xdsserver

import (
	"errors"
	"testing"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

// TestResources checks that Resources returns what the proxy was sent.
func TestResources(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, []*registry.Service{ratingsService}))
	c := dial(t, addr, reviewsV1)
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cds := c.recv()

	got, err := s.Resources(reviewsV1.ID(), resourcev3.ClusterType)
	if err != nil {
		t.Fatal(err)
	}
	if got.Version != cds.VersionInfo || len(got.Resources) != len(cds.Resources) {
		t.Fatalf("Resources = version %q, %d clusters; the proxy was sent version %q, %d clusters",
			got.Version, len(got.Resources), cds.VersionInfo, len(cds.Resources))
	}
	for i := range got.Resources {
		if !proto.Equal(got.Resources[i], cds.Resources[i]) {
			t.Errorf("cluster %d differs from the one sent", i)
		}
	}

	for _, tc := range []struct {
		name, id, typ string
		unknown       bool
	}{
		{"unknown proxy", "sidecar~10.9.9.9~nope.default~default.svc.cluster.local", resourcev3.ClusterType, true},
		{"unserved type", reviewsV1.ID(), resourcev3.SecretType, false},
	} {
		_, err := s.Resources(tc.id, tc.typ)
		if err == nil || errors.Is(err, ErrUnknownProxy) != tc.unknown {
			t.Errorf("%s: err = %v, want an error (ErrUnknownProxy: %v)", tc.name, err, tc.unknown)
		}
	}
}
