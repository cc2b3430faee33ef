package harness

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
	"github.com/weftmesh/weft/internal/xdsserver"
)

func benchServices(prefix string, n int) []*registry.Service {
	var out []*registry.Service
	for i := range n {
		name := fmt.Sprintf("%s-%04d", prefix, i)
		out = append(out, &registry.Service{
			Hostname: name + ".bench.svc.cluster.local", Name: name, Namespace: "bench",
			Ports:     []registry.Port{{Name: "http", Number: 8080, Protocol: "HTTP"}},
			Endpoints: []registry.Endpoint{{Address: fmt.Sprintf("10.0.0.%d", i+1), Ports: map[uint32]uint32{8080: 8080}}},
		})
	}
	return out
}

// TestADSClients checks the bench's ADS clients against the real xDS
// server, in both protocols: each reports a complete config, then the
// arrival of a new service, and only then.
func TestADSClients(t *testing.T) {
	for _, delta := range []bool{true, false} {
		t.Run(map[bool]string{true: "delta", false: "sotw"}[delta], func(t *testing.T) {
			s := xdsserver.New(xdsserver.Options{})
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			go s.Serve(ctx, l)
			services := benchServices("svc", 5)
			s.Push(snapshot.New(1, 0, nil, services))

			conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			meta := nodemeta.Metadata{Type: nodemeta.TypeSidecar, Namespace: "bench", Service: "adsclient",
				WorkloadName: "adsclient-0", ServiceAccount: "adsclient", IP: "127.0.0.1", OutboundPort: 15001}
			full, changed := make(chan time.Duration, 1), make(chan time.Time, 1)
			c := &adsClient{node: &corev3.Node{Id: meta.ID(), Cluster: meta.Service, Metadata: meta.Struct()}, delta: delta,
				want: change{cluster: "outbound|8080||change-0000.bench.svc.cluster.local", vhost: "change-0000.bench.svc.cluster.local:8080"},
				full: full, changed: changed, start: time.Now()}
			errs := make(chan error, 1)
			go func() { errs <- c.run(ctx, conn) }()
			select {
			case <-full:
			case err := <-errs:
				t.Fatalf("client: %v", err)
			case <-ctx.Done():
				t.Fatal("no complete config")
			}
			select {
			case <-changed:
				t.Fatal("the change was reported before it was pushed")
			case <-time.After(200 * time.Millisecond):
			}
			s.Push(snapshot.New(2, 0, nil, append(services, benchServices("change", 1)...)))
			select {
			case <-changed:
			case err := <-errs:
				t.Fatalf("client: %v", err)
			case <-ctx.Done():
				t.Fatal("the change never arrived")
			}
			// Every load assignment and route configuration referenced is
			// subscribed and held.
			for _, typ := range []string{typeEndpoint, typeRoute} {
				if len(c.subscribed[typ]) != len(c.refs[typ]) {
					t.Errorf("%s: subscribed to %d names, %d referenced", typ, len(c.subscribed[typ]), len(c.refs[typ]))
				}
				for _, n := range c.names(typ) {
					if _, ok := c.held[typ][n]; !ok {
						t.Errorf("%s: %s referenced but not held", typ, n)
					}
				}
			}
			if n := len(c.held[typeEndpoint]); n != 6 {
				t.Errorf("holds %d load assignments, want 6", n)
			}
		})
	}
}
