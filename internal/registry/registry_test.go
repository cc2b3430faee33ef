package registry

import (
	"testing"
	"time"

	networking "istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/nodemeta"
)

func sidecar(workload, service, version string, listen uint32) nodemeta.Metadata {
	return nodemeta.Metadata{
		Type: nodemeta.TypeSidecar, Namespace: "default", Service: service, WorkloadName: workload,
		ServiceAccount: "bookinfo-" + service, IP: "127.0.0.1",
		Labels: map[string]string{"app": service, "version": version},
		Ports:  []nodemeta.Port{{Name: "http", Port: 9080, TargetPort: listen + 1, ListenPort: listen}},
	}
}

func TestServicesFromWorkloads(t *testing.T) {
	ws := []Workload{
		{ID: "a", Meta: sidecar("reviews-v2-x", "reviews", "v2", 20010)},
		{ID: "b", Meta: sidecar("reviews-v1-y", "reviews", "v1", 20000)},
		{ID: "c", Meta: sidecar("ratings-v1-z", "ratings", "v1", 20020)},
		{ID: "gw", Meta: nodemeta.Metadata{Type: nodemeta.TypeRouter, Namespace: "istio-system", WorkloadName: "gw"}},
	}
	svcs := Services(ws, nil, nil)
	if len(svcs) != 2 {
		t.Fatalf("got %d services, want ratings and reviews (gateways are not services)", len(svcs))
	}
	rev := svcs[1]
	if rev.Hostname != "reviews.default.svc.cluster.local" || rev.Port(9080) == nil || rev.Port(9080).Protocol != "HTTP" {
		t.Fatalf("reviews service = %+v", rev)
	}
	if len(rev.Endpoints) != 2 {
		t.Fatalf("reviews endpoints = %+v, want 2", rev.Endpoints)
	}
	// Endpoints are sorted and dial the sidecar's inbound listener, not the app.
	if got := rev.Endpoints[0]; got.Workload != "reviews-v1-y" || got.Ports[9080] != 20000 || got.Labels["version"] != "v1" {
		t.Errorf("first endpoint = %+v", got)
	}
}

func TestServiceEntriesAndWorkloadEntries(t *testing.T) {
	se := &config.Resource{Kind: config.KindServiceEntry, Meta: config.Meta{Namespace: "default", Name: "ext"}, Spec: &networking.ServiceEntry{
		Hosts:            []string{"api.example.com"},
		Ports:            []*networking.ServicePort{{Number: 80, Name: "http", Protocol: "HTTP"}},
		Resolution:       networking.ServiceEntry_STATIC,
		Location:         networking.ServiceEntry_MESH_EXTERNAL,
		Endpoints:        []*networking.WorkloadEntry{{Address: "10.0.0.1"}},
		WorkloadSelector: &networking.WorkloadSelector{Labels: map[string]string{"app": "ext"}},
	}}
	weExt := &config.Resource{Kind: config.KindWorkloadEntry, Meta: config.Meta{Namespace: "default", Name: "vm1"}, Spec: &networking.WorkloadEntry{
		Address: "10.0.0.2", Labels: map[string]string{"app": "ext"}, Ports: map[string]uint32{"http": 8080},
	}}
	weReviews := &config.Resource{Kind: config.KindWorkloadEntry, Meta: config.Meta{Namespace: "default", Name: "vm2"}, Spec: &networking.WorkloadEntry{
		Address: "10.0.0.3", Labels: map[string]string{"app": "reviews", "version": "v9"},
	}}
	weOrphan := &config.Resource{Kind: config.KindWorkloadEntry, Meta: config.Meta{Namespace: "other", Name: "vm3"}, Spec: &networking.WorkloadEntry{
		Address: "10.0.0.4", Labels: map[string]string{"app": "reviews"},
	}}
	svcs := Services([]Workload{{ID: "a", Meta: sidecar("reviews-v1-y", "reviews", "v1", 20000)}},
		[]*config.Resource{se}, []*config.Resource{weExt, weReviews, weOrphan})
	if len(svcs) != 2 {
		t.Fatalf("got %d services", len(svcs))
	}
	ext := svcs[0]
	if ext.Hostname != "api.example.com" || !ext.MeshExternal || len(ext.Endpoints) != 2 {
		t.Fatalf("ServiceEntry service = %+v", ext)
	}
	if ep := ext.Endpoints[1]; ep.Address != "10.0.0.2" || ep.Ports[80] != 8080 {
		t.Errorf("selected WorkloadEntry endpoint = %+v, want 10.0.0.2 dialled on 8080", ep)
	}
	reviews := svcs[1]
	// Sorted by address: the WorkloadEntry's 10.0.0.3 sorts before 127.0.0.1.
	if len(reviews.Endpoints) != 2 || reviews.Endpoints[0].Workload != "default/vm2" || reviews.Endpoints[0].Ports[9080] != 9080 {
		t.Errorf("reviews endpoints = %+v, want the sidecar and WorkloadEntry vm2 (not vm3 in another namespace)", reviews.Endpoints)
	}
}

// A DNS ServiceEntry without endpoints reaches each of its hosts, at the
// port's targetPort when it has one (Istio's egress TLS origination entry).
func TestDNSServiceEntryWithoutEndpoints(t *testing.T) {
	se := &config.Resource{Kind: config.KindServiceEntry, Meta: config.Meta{Namespace: "default", Name: "cnn"}, Spec: &networking.ServiceEntry{
		Hosts: []string{"edition.cnn.com", "*.cnn.com"},
		Ports: []*networking.ServicePort{
			{Number: 80, Name: "http-port", Protocol: "HTTP", TargetPort: 443},
			{Number: 443, Name: "https-port", Protocol: "HTTPS"},
		},
		Resolution: networking.ServiceEntry_DNS,
	}}
	svcs := Services(nil, []*config.Resource{se}, nil)
	if len(svcs) != 2 {
		t.Fatalf("got %d services, want one per host", len(svcs))
	}
	wild, cnn := svcs[0], svcs[1]
	if wild.Hostname != "*.cnn.com" || len(wild.Endpoints) != 0 {
		t.Errorf("wildcard host: %+v, want no endpoint", wild)
	}
	if cnn.Hostname != "edition.cnn.com" || len(cnn.Endpoints) != 1 {
		t.Fatalf("edition.cnn.com: %+v, want the host as its endpoint", cnn)
	}
	if ep := cnn.Endpoints[0]; ep.Address != "edition.cnn.com" || ep.Ports[80] != 443 || ep.Ports[443] != 443 {
		t.Errorf("endpoint = %+v, want edition.cnn.com with 80 dialled at 443 (targetPort) and 443 at 443", ep)
	}
}

func TestGracePeriod(t *testing.T) {
	r := New(Options{Grace: 50 * time.Millisecond})
	m := sidecar("reviews-v1-y", "reviews", "v1", 20000)
	r.Connect("a", m)
	<-r.Changes()

	// A reconnect within the grace period changes nothing.
	r.Disconnect("a")
	r.Connect("a", m)
	select {
	case <-r.Changes():
		t.Fatal("reconnect within the grace period signalled a change")
	case <-time.After(100 * time.Millisecond):
	}
	if _, ws := r.Workloads(); len(ws) != 1 {
		t.Fatalf("workloads = %d, want 1", len(ws))
	}

	// A proxy gone past the grace period is removed.
	r.Disconnect("a")
	select {
	case <-r.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled after the grace period")
	}
	if _, ws := r.Workloads(); len(ws) != 0 {
		t.Fatalf("workloads = %d after expiry, want 0", len(ws))
	}
}

func TestProtocolFromName(t *testing.T) {
	for name, want := range map[string]string{"http": "HTTP", "http-web": "HTTP", "http2": "HTTP2", "grpc": "GRPC", "tcp-db": "TCP", "mysql": "MYSQL", "grpc-web": "GRPC-WEB", "web": "", "": ""} {
		if got := ProtocolFromName(name); got != want {
			t.Errorf("ProtocolFromName(%q) = %q, want %q", name, got, want)
		}
	}
}

func TestRestoredWorkloadsExpireUnlessTheyReconnect(t *testing.T) {
	back := sidecar("reviews-v1-y", "reviews", "v1", 20000)
	gone := sidecar("reviews-v2-x", "reviews", "v2", 20010)
	r := New(Options{Grace: time.Millisecond, RestoreGrace: 50 * time.Millisecond,
		Restored: []Workload{{ID: "back", Meta: back}, {ID: "gone", Meta: gone}}})
	if _, ws := r.Workloads(); len(ws) != 2 {
		t.Fatalf("restored workloads = %d, want 2 at start", len(ws))
	}
	r.Connect("back", back)
	select {
	case <-r.Changes():
	case <-time.After(5 * time.Second):
		t.Fatal("no change signalled when the restore grace ran out")
	}
	_, ws := r.Workloads()
	if len(ws) != 1 || ws[0].ID != "back" {
		t.Fatalf("workloads = %+v, want only the one that reconnected", ws)
	}
}

// TestEndpointSidecar: an endpoint is a mesh proxy's when its sidecar
// registered it, or when its WorkloadEntry carries Istio's label for it.
func TestEndpointSidecar(t *testing.T) {
	we := func(name, addr string, labels map[string]string) *config.Resource {
		return &config.Resource{Kind: config.KindWorkloadEntry, Meta: config.Meta{Namespace: "default", Name: name}, Spec: &networking.WorkloadEntry{
			Address: addr, Labels: labels,
		}}
	}
	svcs := Services([]Workload{{ID: "a", Meta: sidecar("reviews-v1-y", "reviews", "v1", 20000)}}, nil, []*config.Resource{
		we("vm-mesh", "10.0.0.3", map[string]string{"app": "reviews", TLSModeLabel: "istio"}),
		we("vm-plain", "10.0.0.4", map[string]string{"app": "reviews"}),
	})
	want := map[string]bool{"reviews-v1-y": true, "default/vm-mesh": true, "default/vm-plain": false}
	if len(svcs) != 1 || len(svcs[0].Endpoints) != 3 {
		t.Fatalf("services = %+v, want reviews with 3 endpoints", svcs)
	}
	for _, ep := range svcs[0].Endpoints {
		if ep.Sidecar != want[ep.Workload] {
			t.Errorf("endpoint %s: Sidecar %v, want %v", ep.Workload, ep.Sidecar, want[ep.Workload])
		}
	}
}
