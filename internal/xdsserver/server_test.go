package xdsserver

import (
	"context"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
	"github.com/weftmesh/weft/internal/translate"
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
	req.Node = &corev3.Node{Id: c.meta.ID(), Cluster: c.meta.Service, Metadata: c.meta.Struct(), UserAgentName: nodemeta.UserAgent}
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

// namesOf returns the names of the resources of a response whose type is
// requested by name (RDS, EDS), nil for the others.
func namesOf(resp *discoverygrpc.DiscoveryResponse) []string {
	if resp.TypeUrl != resourcev3.RouteType && resp.TypeUrl != resourcev3.EndpointType {
		return nil
	}
	var out []string
	for _, r := range resp.Resources {
		m, err := r.UnmarshalNew()
		if err == nil {
			out = append(out, cachev3.GetResourceName(m))
		}
	}
	return out
}

// ackType requests typ (the named resources; none for a wildcard type)
// and ACKs the response, which it returns.
func (c *adsClient) ackType(typ string, names ...string) *discoverygrpc.DiscoveryResponse {
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, ResourceNames: names})
	resp := c.recv()
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, ResourceNames: names, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce})
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
	rep := s.Sync(2, 0)
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

// TestSyncWaitsForEverySubscribedType: a proxy is synced once it has
// ACKed every type it has resources of, a type it has not asked for yet
// included (the sidecar's route configuration, which it asks for once it
// has the listener that names it); a type with none (no services, so no
// load assignments) does not hold it back.
func TestSyncWaitsForEverySubscribedType(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(5, 0, nil, nil))
	c := dial(t, addr, reviewsV1)
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.ListenerType} {
		c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ})
		resp := c.recv()
		if rep := s.Sync(5, 0); rep.Done {
			t.Fatalf("Sync done before the %s ACK: %+v", typ, rep)
		}
		c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce})
	}
	waitFor(t, func() bool { return statusOf(t, s, "LDS").Status == Synced })
	if rep := s.Sync(5, 0); rep.Done {
		t.Fatalf("Sync done before the proxy asked for its route configuration: %+v", rep)
	}
	c.ackType(resourcev3.RouteType, "http_proxy")
	waitFor(t, func() bool { return s.Sync(5, 0).Done })
	if rep := s.Sync(6, 0); rep.Done {
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

var ratingsService = &registry.Service{
	Hostname: "ratings.default.svc.cluster.local", Name: "ratings", Namespace: "default",
	Ports:     []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
	Endpoints: []registry.Endpoint{{Address: "10.0.0.7", Ports: map[uint32]uint32{9080: 9080}}},
}

// TestPushSendsTranslation checks that what a proxy receives, decoded, is
// exactly what translate computed for it: resources serialized once per
// push must not differ from the ones the cache would have serialized.
func TestPushSendsTranslation(t *testing.T) {
	s, _, addr := startServer(t)
	snap := snapshot.New(1, 0, nil, []*registry.Service{ratingsService})
	s.Push(snap)
	want := translate.ForProxy(snap, reviewsV1)
	wantByType := map[string][]proto.Message{}
	for _, r := range want.Clusters {
		wantByType[resourcev3.ClusterType] = append(wantByType[resourcev3.ClusterType], r)
	}
	for _, r := range want.Endpoints {
		wantByType[resourcev3.EndpointType] = append(wantByType[resourcev3.EndpointType], r)
	}
	for _, r := range want.Listeners {
		wantByType[resourcev3.ListenerType] = append(wantByType[resourcev3.ListenerType], r)
	}
	for _, r := range want.Routes {
		wantByType[resourcev3.RouteType] = append(wantByType[resourcev3.RouteType], r)
	}
	names := map[string][]string{
		resourcev3.EndpointType: {"outbound|9080||ratings.default.svc.cluster.local"},
		resourcev3.RouteType:    {"http_proxy"},
	}
	c := dial(t, addr, reviewsV1)
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: typ, ResourceNames: names[typ]})
		resp := c.recv()
		if resp.TypeUrl != typ {
			t.Fatalf("got %s, want %s", resp.TypeUrl, typ)
		}
		got := map[string]proto.Message{}
		for _, a := range resp.Resources {
			if a.TypeUrl != typ {
				t.Errorf("resource of type %s in a %s response", a.TypeUrl, typ)
			}
			m, err := a.UnmarshalNew()
			if err != nil {
				t.Fatalf("decode %s: %v", typ, err)
			}
			got[cachev3.GetResourceName(m)] = m
		}
		if len(got) != len(wantByType[typ]) {
			t.Errorf("%s: got %d resources, want %d", typ, len(got), len(wantByType[typ]))
		}
		for _, w := range wantByType[typ] {
			name := cachev3.GetResourceName(w)
			if !proto.Equal(got[name], w) {
				t.Errorf("%s %s:\n got %v\nwant %v", typ, name, got[name], w)
			}
		}
	}
}

// TestUnchangedPushKeepsSync checks that a push that changes nothing for a
// proxy sends it nothing, yet counts as delivered: `weft apply --wait` on a
// change that does not touch a proxy must not wait for it forever.
func TestUnchangedPushKeepsSync(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, []*registry.Service{ratingsService}))
	c := dial(t, addr, reviewsV1)
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	lds := c.recv()
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: lds.VersionInfo, ResponseNonce: lds.Nonce})
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cds := c.recv()
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.VersionInfo, ResponseNonce: cds.Nonce})
	c.ackType(resourcev3.EndpointType, ratingsCluster)
	c.ackType(resourcev3.RouteType, "http_proxy")
	waitFor(t, func() bool { return s.Sync(1, 0).Done })

	next := make(chan *discoverygrpc.DiscoveryResponse, 1)
	go func() {
		if resp, err := c.stream.Recv(); err == nil {
			next <- resp
		}
	}()
	// A later store revision with the same content for this proxy.
	s.Push(snapshot.New(2, 0, nil, []*registry.Service{ratingsService}))
	if rep := s.Sync(2, 0); !rep.Done || !rep.Proxies[0].Synced {
		t.Errorf("Sync(2) after a push that changes nothing = %+v, want done and synced", rep)
	}
	if st := s.Status(); st[0].ConfigRevision != 2 {
		t.Errorf("config revision = %d, want 2", st[0].ConfigRevision)
	}
	select {
	case resp := <-next:
		t.Errorf("an unchanged push sent %s version %s", resp.TypeUrl, resp.VersionInfo)
	case <-time.After(200 * time.Millisecond):
	}
	// A real change still goes out.
	details := &registry.Service{Hostname: "details.default.svc.cluster.local", Name: "details", Namespace: "default",
		Ports: []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}}}
	s.Push(snapshot.New(3, 0, nil, []*registry.Service{ratingsService, details}))
	if rep := s.Sync(3, 0); rep.Done {
		t.Errorf("Sync(3) done before the proxy got the new cluster: %+v", rep)
	}
	select {
	case resp := <-next:
		if resp.TypeUrl != resourcev3.ClusterType || resp.VersionInfo == cds.VersionInfo {
			t.Errorf("after a change got %s version %s, want new clusters", resp.TypeUrl, resp.VersionInfo)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change was not sent")
	}
}

// TestPushWindow checks that a push has at most MaxInflight proxies with
// an unanswered change, and moves on as they answer.
func TestPushWindow(t *testing.T) {
	reg := registry.New(registry.Options{Grace: time.Millisecond})
	s := New(Options{Registry: reg, MaxInflight: 1, InflightTimeout: time.Minute})
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go s.Serve(ctx, l)
	s.Push(snapshot.New(1, 0, nil, nil))

	// Proxy IDs sort a before b, so a is pushed to first.
	metaA, metaB := reviewsV1, reviewsV1
	metaA.WorkloadName, metaB.WorkloadName = "a", "b"
	var clients []*adsClient
	for _, m := range []nodemeta.Metadata{metaA, metaB} {
		// With one slot, b's first config waits for a to answer its own.
		c := dial(t, l.Addr().String(), m)
		c.ackType(resourcev3.ClusterType)
		c.ackType(resourcev3.ListenerType)
		c.ackType(resourcev3.RouteType, "http_proxy")
		clients = append(clients, c)
	}
	waitFor(t, func() bool { return s.Sync(1, 0).Done })

	pushed := make(chan struct{})
	go func() {
		s.Push(snapshot.New(2, 0, nil, []*registry.Service{ratingsService}))
		close(pushed)
	}()
	a, b := clients[0], clients[1]
	cdsA := a.recv()
	fromB := make(chan *discoverygrpc.DiscoveryResponse, 1)
	go func() {
		if resp, err := b.stream.Recv(); err == nil {
			fromB <- resp
		}
	}()
	select {
	case resp := <-fromB:
		t.Fatalf("b got version %s while a had not answered its change", resp.VersionInfo)
	case <-pushed:
		t.Fatal("Push returned while a change was waiting for a slot")
	case <-time.After(200 * time.Millisecond):
	}
	// a answers its change as a proxy does: it ACKs the clusters, asks
	// for the new cluster's load assignment, and ACKs whatever else it is
	// sent (its route configuration changes too).
	a.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cdsA.VersionInfo, ResponseNonce: cdsA.Nonce})
	a.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNames: []string{ratingsCluster}})
	go func() {
		for {
			resp, err := a.stream.Recv()
			if err != nil {
				return
			}
			a.stream.Send(&discoverygrpc.DiscoveryRequest{TypeUrl: resp.TypeUrl, ResourceNames: namesOf(resp), VersionInfo: resp.VersionInfo, ResponseNonce: resp.Nonce})
		}
	}()
	select {
	case resp := <-fromB:
		if resp.VersionInfo != cdsA.VersionInfo {
			t.Errorf("b got version %s, want %s", resp.VersionInfo, cdsA.VersionInfo)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("b never got the change after a answered")
	}
	select {
	case <-pushed:
	case <-time.After(5 * time.Second):
		t.Fatal("Push did not return")
	}
}

// TestWaitSync: WaitSync answers when the last type is ACKed, when the
// proxy rejects the config, or when its context ends, and not before.
func TestWaitSync(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(5, 0, nil, nil))
	c := dial(t, addr, reviewsV1)

	wait := func(rev int64, d time.Duration) <-chan SyncReport {
		out := make(chan SyncReport, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), d)
			defer cancel()
			out <- s.WaitSync(ctx, rev, 0)
		}()
		return out
	}
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType})
	cds := c.recv()
	got := wait(5, 10*time.Second) // with no proxy connected it would be done at once
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: cds.VersionInfo, ResponseNonce: cds.Nonce})
	waitFor(t, func() bool { return statusOf(t, s, "CDS").Status == Synced })
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType})
	lds := c.recv()
	select {
	case rep := <-got:
		t.Fatalf("WaitSync answered before LDS was ACKed: %+v", rep)
	case <-time.After(50 * time.Millisecond):
	}
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ListenerType, VersionInfo: lds.VersionInfo, ResponseNonce: lds.Nonce})
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNames: []string{"http_proxy"}})
	rds := c.recv()
	select {
	case rep := <-got:
		t.Fatalf("WaitSync answered before RDS was ACKed: %+v", rep)
	case <-time.After(50 * time.Millisecond):
	}
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.RouteType, ResourceNames: []string{"http_proxy"}, VersionInfo: rds.VersionInfo, ResponseNonce: rds.Nonce})
	select {
	case rep := <-got:
		if !rep.Done || len(rep.Proxies) != 1 || !rep.Proxies[0].Synced {
			t.Errorf("WaitSync(5) after the three ACKs = %+v, want done and synced", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitSync did not answer after the last ACK")
	}

	// A change the proxy rejects ends the wait too, with the rejection.
	got = wait(6, 10*time.Second)
	s.Push(snapshot.New(6, 0, nil, []*registry.Service{{
		Hostname: "ratings.default.svc.cluster.local", Name: "ratings", Namespace: "default",
		Ports: []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
	}}))
	cds = c.recv()
	c.send(&discoverygrpc.DiscoveryRequest{TypeUrl: resourcev3.ClusterType, VersionInfo: lds.VersionInfo,
		ResponseNonce: cds.Nonce, ErrorDetail: &status.Status{Code: 3, Message: "bad cluster"}})
	select {
	case rep := <-got:
		if !rep.Done || rep.Proxies[0].Synced || rep.Proxies[0].Nack != "CDS: bad cluster" {
			t.Errorf("WaitSync(6) after a NACK = %+v, want done with the NACK", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitSync did not answer after the NACK")
	}

	// A fix applied as revision 7 is not answered by the rejection of 6,
	// before 7 reaches the proxy.
	if rep := <-wait(7, 100*time.Millisecond); rep.Done || rep.Proxies[0].Nack != "" {
		t.Errorf("WaitSync(7) before 7 was pushed = %+v, want not done and no NACK", rep)
	}

	// A change the proxy has not answered: the wait ends with the context.
	s.Push(snapshot.New(7, 0, nil, []*registry.Service{{
		Hostname: "details.default.svc.cluster.local", Name: "details", Namespace: "default",
		Ports: []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
	}}))
	c.recv()
	select {
	case rep := <-wait(7, 100*time.Millisecond):
		if rep.Done || rep.Proxies[0].Synced {
			t.Errorf("WaitSync(7) = %+v, want not done", rep)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WaitSync did not end with its context")
	}
}
