package xdsserver

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/weftmesh/weft/internal/nodemeta"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/snapshot"
)

// deltaClient is a bare incremental ADS client that ACKs or NACKs exactly
// as told.
type deltaClient struct {
	t      *testing.T
	stream discoverygrpc.AggregatedDiscoveryService_DeltaAggregatedResourcesClient
	meta   nodemeta.Metadata
	first  bool
	in     chan *discoverygrpc.DeltaDiscoveryResponse // closed when the stream ends
}

func dialDelta(t *testing.T, addr string, meta nodemeta.Metadata) *deltaClient {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	stream, err := discoverygrpc.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &deltaClient{t: t, stream: stream, meta: meta, first: true, in: make(chan *discoverygrpc.DeltaDiscoveryResponse, 16)}
	go func() {
		defer close(c.in)
		for {
			resp, err := stream.Recv()
			if err != nil {
				return
			}
			c.in <- resp
		}
	}()
	return c
}

// send sends req; the first request of the stream carries the node.
func (c *deltaClient) send(req *discoverygrpc.DeltaDiscoveryRequest) {
	c.t.Helper()
	if c.first {
		req.Node = &corev3.Node{Id: c.meta.ID(), Cluster: c.meta.Service, Metadata: c.meta.Struct(), UserAgentName: nodemeta.UserAgent}
		c.first = false
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *deltaClient) ack(resp *discoverygrpc.DeltaDiscoveryResponse) {
	c.t.Helper()
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resp.TypeUrl, ResponseNonce: resp.Nonce})
}

// recv returns the next response, failing the test after 5 seconds.
func (c *deltaClient) recv() *discoverygrpc.DeltaDiscoveryResponse {
	c.t.Helper()
	resp := c.recvWithin(5 * time.Second)
	if resp == nil {
		c.t.Fatal("no delta response in 5s")
	}
	return resp
}

// recvWithin returns the next response, or nil if none comes within d.
func (c *deltaClient) recvWithin(d time.Duration) *discoverygrpc.DeltaDiscoveryResponse {
	c.t.Helper()
	select {
	case resp, ok := <-c.in:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		return resp
	case <-time.After(d):
		return nil
	}
}

// quiet checks that nothing arrives for a while.
func (c *deltaClient) quiet(what string) {
	c.t.Helper()
	if resp := c.recvWithin(300 * time.Millisecond); resp != nil {
		c.t.Errorf("%s: got %s with %v, removed %v", what, shortType(resp.TypeUrl), names(resp), resp.RemovedResources)
	}
}

func names(resp *discoverygrpc.DeltaDiscoveryResponse) []string {
	var out []string
	for _, r := range resp.Resources {
		out = append(out, r.Name)
	}
	return out
}

var detailsService = &registry.Service{
	Hostname: "details.default.svc.cluster.local", Name: "details", Namespace: "default",
	Ports:     []registry.Port{{Name: "http", Number: 9080, Protocol: "HTTP"}},
	Endpoints: []registry.Endpoint{{Address: "10.0.0.8", Ports: map[uint32]uint32{9080: 9080}}},
}

const (
	ratingsCluster = "outbound|9080||ratings.default.svc.cluster.local"
	detailsCluster = "outbound|9080||details.default.svc.cluster.local"
)

// subscribeAll opens the four types as a sidecar does and ACKs what it is
// sent; it returns the first response of each type.
func (c *deltaClient) subscribeAll(eds []string) map[string]*discoverygrpc.DeltaDiscoveryResponse {
	c.t.Helper()
	out := map[string]*discoverygrpc.DeltaDiscoveryResponse{}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType} {
		req := &discoverygrpc.DeltaDiscoveryRequest{TypeUrl: typ}
		switch typ {
		case resourcev3.EndpointType:
			req.ResourceNamesSubscribe = eds
		case resourcev3.RouteType:
			req.ResourceNamesSubscribe = []string{"http_proxy"}
		}
		c.send(req)
		resp := c.recv()
		if resp.TypeUrl != typ {
			c.t.Fatalf("got %s, want %s", resp.TypeUrl, typ)
		}
		c.ack(resp)
		out[typ] = resp
	}
	return out
}

// TestDeltaSendsOnlyChanges checks the point of incremental xDS: after the
// first config, a change sends the resources it changes and the names of
// those it removes, nothing else, and the proxy's status follows it.
func TestDeltaSendsOnlyChanges(t *testing.T) {
	s, reg, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, []*registry.Service{ratingsService}))
	c := dialDelta(t, addr, reviewsV1)
	first := c.subscribeAll([]string{ratingsCluster})
	if _, ws := reg.Workloads(); len(ws) != 1 || ws[0].Meta.Service != "reviews" {
		t.Fatalf("registry = %+v, want the reviews proxy", ws)
	}
	cds := first[resourcev3.ClusterType]
	if !slices.Contains(names(cds), ratingsCluster) {
		t.Fatalf("first CDS has %v, want %s among them", names(cds), ratingsCluster)
	}
	for _, r := range cds.Resources {
		if r.Version == "" || r.Resource.GetTypeUrl() != resourcev3.ClusterType {
			t.Errorf("cluster %s: version %q, type %q", r.Name, r.Version, r.Resource.GetTypeUrl())
		}
	}
	if got := names(first[resourcev3.EndpointType]); !slices.Equal(got, []string{ratingsCluster}) {
		t.Errorf("first EDS = %v, want the one load assignment subscribed to", got)
	}
	waitFor(t, func() bool { return s.Sync(1, 0).Done })
	if got := statusOf(t, s, "CDS"); got.Status != Synced || got.Acked != cds.SystemVersionInfo {
		t.Errorf("CDS after ACK = %+v, want SYNCED at %s", got, cds.SystemVersionInfo)
	}

	// A service is added: only its cluster goes out, at a new version.
	s.Push(snapshot.New(2, 0, nil, []*registry.Service{ratingsService, detailsService}))
	resp := c.recv()
	if resp.TypeUrl != resourcev3.ClusterType || !slices.Equal(names(resp), []string{detailsCluster}) || len(resp.RemovedResources) != 0 {
		t.Fatalf("after adding details got %s %v removed %v, want CDS with only %s", shortType(resp.TypeUrl), names(resp), resp.RemovedResources, detailsCluster)
	}
	if resp.SystemVersionInfo == cds.SystemVersionInfo {
		t.Error("the change kept the cluster version")
	}
	if rep := s.Sync(2, 0); rep.Done {
		t.Errorf("Sync(2) done before the ACK: %+v", rep)
	}
	c.ack(resp)
	// The listeners and routes change too (a new outbound host), and the
	// load assignments (one more, which the proxy has not subscribed to
	// yet); each response carries only what changed, and the proxy ACKs
	// each.
	for deadline := time.Now().Add(time.Second); time.Now().Before(deadline); {
		if r := c.recvWithin(20 * time.Millisecond); r != nil {
			if r.TypeUrl == resourcev3.ClusterType {
				t.Fatalf("CDS sent again: %v", names(r))
			}
			c.ack(r)
		}
	}
	// Until the proxy has the new cluster's load assignment it serves the
	// old config (a cluster without its endpoints is not used): revision
	// 2 is not synced, whatever it ACKed.
	if rep := s.Sync(2, 0); rep.Done {
		t.Errorf("Sync(2) done before the proxy subscribed to the new load assignment: %+v", s.Status())
	}
	if got := statusOf(t, s, "EDS"); got.Status != Stale {
		t.Errorf("EDS before the new load assignment = %+v, want STALE", got)
	}
	// The proxy subscribes to the new load assignment and gets only it.
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{detailsCluster}})
	eds := c.recv()
	if eds.TypeUrl != resourcev3.EndpointType || !slices.Equal(names(eds), []string{detailsCluster}) {
		t.Fatalf("after subscribing got %s %v, want EDS with only %s", shortType(eds.TypeUrl), names(eds), detailsCluster)
	}
	c.ack(eds)
	waitFor(t, func() bool { return s.Sync(2, 0).Done })

	// ratings goes: its cluster and load assignment are removed by name.
	s.Push(snapshot.New(3, 0, nil, []*registry.Service{detailsService}))
	removed := map[string][]string{}
	for len(removed) < 2 {
		r := c.recv()
		if len(r.RemovedResources) > 0 {
			removed[r.TypeUrl] = r.RemovedResources
		}
		if slices.Contains(names(r), ratingsCluster) || slices.Contains(names(r), detailsCluster) {
			t.Errorf("%s resent %v though they did not change", shortType(r.TypeUrl), names(r))
		}
		c.ack(r)
	}
	for _, typ := range []string{resourcev3.ClusterType, resourcev3.EndpointType} {
		if !slices.Equal(removed[typ], []string{ratingsCluster}) {
			t.Errorf("%s removed %v, want [%s]", shortType(typ), removed[typ], ratingsCluster)
		}
	}
	for deadline := time.Now().Add(5 * time.Second); !s.Sync(3, 0).Done; {
		if time.Now().After(deadline) {
			t.Fatalf("not synced at revision 3 in 5s: %+v", s.Status())
		}
		if r := c.recvWithin(20 * time.Millisecond); r != nil {
			t.Logf("then %s %v removed %v", shortType(r.TypeUrl), names(r), r.RemovedResources)
			c.ack(r)
		}
	}
	if st := s.Status(); len(st) != 1 || !st[0].Synced {
		t.Errorf("status after the removal = %+v, want synced", st)
	}
}

// TestDeltaNack checks that a rejected change shows in the status with the
// proxy's message, is not sent again, and that the next change is.
func TestDeltaNack(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, nil))
	c := dialDelta(t, addr, reviewsV1)
	c.subscribeAll(nil)
	waitFor(t, func() bool { return s.Sync(1, 0).Done })

	s.Push(snapshot.New(2, 0, nil, []*registry.Service{ratingsService}))
	cds := c.recv()
	if cds.TypeUrl != resourcev3.ClusterType {
		t.Fatalf("got %s first, want CDS", shortType(cds.TypeUrl))
	}
	const msg = "cluster outbound|9080||ratings.default.svc.cluster.local: bad lb policy"
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResponseNonce: cds.Nonce,
		ErrorDetail: &status.Status{Code: 3, Message: msg}})
	waitFor(t, func() bool { return statusOf(t, s, "CDS").Nack != "" })
	if got := statusOf(t, s, "CDS"); got.Status != Stale || got.Nack != msg || got.NackVersion != cds.SystemVersionInfo {
		t.Errorf("CDS after NACK = %+v", got)
	}
	if rep := s.Sync(2, 0); !rep.Done || rep.Proxies[0].Synced || rep.Proxies[0].Nack != "CDS: "+msg {
		t.Errorf("Sync(2) after NACK = %+v, want done with the NACK", rep)
	}
	// Drain the other types' changes, then nothing more comes.
	for {
		r := c.recvWithin(300 * time.Millisecond)
		if r == nil {
			break
		}
		if r.TypeUrl == resourcev3.ClusterType {
			t.Fatalf("the rejected clusters were sent again: %v", names(r))
		}
		c.ack(r)
	}
	// The next change resends every cluster: the server's record says the
	// proxy holds ratings, but the proxy rejected it, and a response with
	// only details would leave it without ratings yet ACKed.
	s.Push(snapshot.New(3, 0, nil, []*registry.Service{ratingsService, detailsService}))
	r := c.recv()
	if r.TypeUrl != resourcev3.ClusterType || !slices.Contains(names(r), detailsCluster) || !slices.Contains(names(r), ratingsCluster) {
		t.Fatalf("after the next change got %s %v, want CDS with %s and the rejected %s", shortType(r.TypeUrl), names(r), detailsCluster, ratingsCluster)
	}
	c.ack(r)
	waitFor(t, func() bool { got := statusOf(t, s, "CDS"); return got.Status == Synced && got.Nack == "" })
}

// TestDeltaReconnectSendsOnlyWhatChanged checks that a proxy reconnecting
// with the versions it holds is sent only what changed meanwhile.
func TestDeltaReconnectSendsOnlyWhatChanged(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, []*registry.Service{ratingsService}))
	c := dialDelta(t, addr, reviewsV1)
	held := map[string]string{}
	for _, r := range c.subscribeAll([]string{ratingsCluster})[resourcev3.ClusterType].Resources {
		held[r.Name] = r.Version
	}
	c.stream.CloseSend()
	waitFor(t, func() bool { return len(s.Status()) == 0 })

	s.Push(snapshot.New(2, 0, nil, []*registry.Service{ratingsService, detailsService}))
	c = dialDelta(t, addr, reviewsV1)
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, InitialResourceVersions: held})
	resp := c.recv()
	if !slices.Equal(names(resp), []string{detailsCluster}) {
		t.Errorf("on reconnecting got clusters %v, want only the new %s", names(resp), detailsCluster)
	}
	c.ack(resp)
	waitFor(t, func() bool { return statusOf(t, s, "CDS").Status == Synced })
	c.quiet("after the ACK")
}

// TestDeltaWildcardUnsubscribe checks that a wildcard stream that
// unsubscribes a name it also named explicitly is sent that resource
// again: the wildcard still wants it.
func TestDeltaWildcardUnsubscribe(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, []*registry.Service{ratingsService}))
	c := dialDelta(t, addr, reviewsV1)
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNamesSubscribe: []string{"*", ratingsCluster}})
	c.ack(c.recv())
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.ClusterType, ResourceNamesUnsubscribe: []string{ratingsCluster}})
	r := c.recv()
	if r.TypeUrl != resourcev3.ClusterType || !slices.Equal(names(r), []string{ratingsCluster}) {
		t.Errorf("after unsubscribing a name on a wildcard stream got %s %v, want CDS with %s", shortType(r.TypeUrl), names(r), ratingsCluster)
	}
}

// TestDeltaPartialThenWhole: an EDS stream that subscribes to only some of
// the load assignments it should have is told a partial version (its ACK
// does not make the proxy synced), and once it subscribes to the rest it
// is told the whole version, also when it already holds them (it
// reported them on connecting) and there is nothing to send.
func TestDeltaPartialThenWhole(t *testing.T) {
	s, _, addr := startServer(t)
	s.Push(snapshot.New(1, 0, nil, []*registry.Service{ratingsService, detailsService}))
	c := dialDelta(t, addr, reviewsV1)
	held := map[string]string{}
	for _, r := range c.subscribeAll([]string{ratingsCluster, detailsCluster})[resourcev3.EndpointType].Resources {
		held[r.Name] = r.Version
	}
	if len(held) != 2 {
		t.Fatalf("first EDS held %v, want both load assignments", held)
	}
	c.stream.CloseSend()
	waitFor(t, func() bool { return len(s.Status()) == 0 })

	// A reconnecting proxy that reports both but subscribes to one.
	c = dialDelta(t, addr, reviewsV1)
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType,
		ResourceNamesSubscribe: []string{detailsCluster}, InitialResourceVersions: held})
	first := c.recv()
	if !strings.HasSuffix(first.SystemVersionInfo, partialSuffix) || len(first.Resources) != 0 {
		t.Errorf("EDS subscribing to one of two held load assignments: version %q, %v; want a partial version and nothing to send",
			first.SystemVersionInfo, names(first))
	}
	c.ack(first)
	waitFor(t, func() bool { return statusOf(t, s, "EDS").Acked == first.SystemVersionInfo })
	if got := statusOf(t, s, "EDS"); got.Status == Synced {
		t.Errorf("EDS with one of two load assignments subscribed = %+v, want not SYNCED", got)
	}
	// It subscribes to the other, which it holds: nothing to send, but it
	// is told the whole version.
	c.send(&discoverygrpc.DeltaDiscoveryRequest{TypeUrl: resourcev3.EndpointType, ResourceNamesSubscribe: []string{ratingsCluster}})
	whole := c.recv()
	if strings.HasSuffix(whole.SystemVersionInfo, partialSuffix) || len(whole.Resources) != 0 {
		t.Errorf("after subscribing to both: version %q, %v; want the whole group's version and nothing to send", whole.SystemVersionInfo, names(whole))
	}
	c.ack(whole)
	waitFor(t, func() bool { return statusOf(t, s, "EDS").Status == Synced })
}
