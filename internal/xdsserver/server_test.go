package xdsserver

import (
	"context"
	"net"
	"testing"
	"time"

	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

// adsClient is a bare ADS client that ACKs or NACKs exactly as told.
type adsClient struct {
	t      *testing.T
	stream discoverygrpc.AggregatedDiscoveryService_StreamAggregatedResourcesClient
	meta   nodemeta.Metadata
}

func dial(t *testing.T, addr string, meta nodemeta.Metadata) *adsClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return &adsClient{t: t, stream: stream, meta: meta}
}

func (c *adsClient) send(req *discoverygrpc.DiscoveryRequest) {
	c.t.Helper()
	req.Node = c.meta.Node()
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *adsClient) recv() *discoverygrpc.DiscoveryResponse {
	c.t.Helper()
	resp, err := c.stream.Recv()
	if err != nil {
		c.t.Fatalf("recv: %v", err)
	}
	return resp
}

func startServer(t *testing.T) (*Server, *registry.Registry, string) {
	t.Helper()
	reg := registry.New(registry.Options{Grace: time.Millisecond})
	s := New(Options{Registry: reg})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Serve(ctx, l)
	return s, reg, l.Addr().String()
}

var reviewsV1 = nodemeta.Metadata{
	Type: nodemeta.TypeSidecar, Namespace: "default", Service: "reviews", WorkloadName: "reviews-v1-abcde",
	IP: "127.0.0.1", Labels: map[string]string{"app": "reviews", "version": "v1"},
	Ports: []nodemeta.Port{{Name: "http", Port: 9080, TargetPort: 20001, ListenPort: 20002}}, OutboundPort: 20003,
}

func statusOf(t *testing.T, s *Server, typ string) TypeStatus {
	t.Helper()
	st := s.Status()
	if len(st) != 1 {
		t.Fatalf("status lists %d proxies, want 1", len(st))
	}
	for _, ts := range st[0].Types {
		if ts.Type == typ {
			return ts
		}
	}
	t.Fatalf("no %s in %+v", typ, st[0])
	return TypeStatus{}
}

func TestAckNackTracking(t *testing.T) {
	s, reg, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, nil))

	c := dial(t, addr, reviewsV1)
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cds := c.recv()
	if len(cds.Resources) == 0 {
		t.Fatal("no clusters for a sidecar")
	}
	// The proxy registered itself.
	if _, ws := reg.Workloads(); len(ws) != 1 || ws[0].Meta.Service != "reviews" {
		t.Fatalf("registry = %+v, want the reviews proxy", ws)
	}
	if got := statusOf(t, s, "CDS"); got.Status != Stale || got.Sent != cds.VersionInfo {
		t.Errorf("LDS before ACK = %+v, want STALE with the sent version", got)
	}
	if got := statusOf(t, s, "RDS"); got.Status != NotSent {
		t.Errorf("RDS before any request = %+v, want NOT SENT", got)
	}

	// ACK.
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.VersionInfo, ResponseNonce: cds.Nonce})
	waitFor(t, func() bool { return statusOf(t, s, "CDS").Status == Synced })

	// A config change; the proxy NACKs it.
	s.Push(snapshot.New(2, 0, nil, []*registry.Service{{
		Hostname: "ratings.default.svc.cluster.local", Name: "ratings", Namespace: "default",
		Ports: []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
	}}))
	cds2 := c.recv()
	if cds2.VersionInfo == cds.VersionInfo {
		t.Fatal("a change that adds a service did not change the cluster version")
	}
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.VersionInfo,
		ResponseNonce: cds2.Nonce, ErrorDetail: &status.Status{Code: 3, Message: "cluster outbound|9080||ratings.default.svc.cluster.local: bad lb policy"}})
	waitFor(t, func() bool { return statusOf(t, s, "CDS").Nack != "" })
	got := statusOf(t, s, "CDS")
	if got.Status != Stale || got.Nack != "cluster outbound|9080||ratings.default.svc.cluster.local: bad lb policy" || got.NackVersion != cds2.VersionInfo {
		t.Errorf("LDS after NACK = %+v", got)
	}
	rep := s.Sync(2)
	if !rep.Done || len(rep.Proxies) != 1 || rep.Proxies[0].Synced || rep.Proxies[0].Nack != "CDS: cluster outbound|9080||ratings.default.svc.cluster.local: bad lb policy" {
		t.Errorf("Sync(2) after NACK = %+v, want done with the NACK", rep)
	}

	// The rejected config is not sent again; the next change is.
	next := make(chan *discoverygrpc.DiscoveryResponse, 1)
	go func() {
		if resp, err := c.stream.Recv(); err == nil {
			next <- resp
		}
	}()
	select {
	case resp := <-next:
		t.Fatalf("the rejected version was sent again: %s", resp.VersionInfo)
	case <-time.After(300 * time.Millisecond):
	}
	s.Push(snapshot.New(3, 0, nil, nil))
	select {
	case resp := <-next:
		if resp.VersionInfo == cds2.VersionInfo {
			t.Errorf("after a new push the proxy got the rejected version again")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change after a NACK was not sent")
	}
}

func TestSyncWaitsForEverySubscribedType(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(5, 0, nil, nil))
	c := dial(t, addr, reviewsV1)
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ})
		resp := c.recv()
		if rep := s.Sync(5); rep.Done {
			t.Fatalf("Sync done before the %s ACK: %+v", typ, rep)
		}
		c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce})
	}
	waitFor(t, func() bool { return s.Sync(5).Done })
	if rep := s.Sync(6); rep.Done {
		t.Errorf("Sync(6) is done though revision 6 was never pushed: %+v", rep)
	}
}

func TestDisconnectDropsProxy(t *testing.T) {
	s, reg, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, nil))
	c := dial(t, addr, reviewsV1)
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	c.recv()
	c.stream.CloseSend()
	waitFor(t, func() bool { return len(s.Status()) == 0 })
	waitFor(t, func() bool { _, ws := reg.Workloads(); return len(ws) == 0 })
}

// waitFor polls cond for up to 5 seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatal("condition not met in 5s")
}
