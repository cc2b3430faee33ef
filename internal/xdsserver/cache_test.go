package xdsserver

import (
	"log/slog"
	"slices"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoverygrpc "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	streamv3 "github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"google.golang.org/protobuf/proto"
)

// edsGroup is a group of load assignments with the given cluster names.
func edsGroup(t *testing.T, names ...string) *wireGroup {
	t.Helper()
	var ws []*wireResource
	for _, n := range names {
		w, err := newWireResource(resourcev3.EndpointType, &endpointv3.ClusterLoadAssignment{ClusterName: n})
		if err != nil {
			t.Fatal(err)
		}
		ws = append(ws, w)
	}
	return newWireGroup(wireVersion(ws), ws)
}

func TestWireCache(t *testing.T) {
	node := &corev3.Node{Id: "sidecar~10.0.0.1~a.default~default.svc.cluster.local"}
	ab, abc, empty := edsGroup(t, "a", "b"), edsGroup(t, "a", "b", "c"), edsGroup(t)
	for _, tc := range []struct {
		name string
		// before is the snapshot when the request arrives (nil: none);
		// after, when set, is pushed next.
		before, after *wireGroup
		names         []string // EDS names asked for
		version       string   // the version the proxy reports
		answered      bool     // on this stream, earlier, at version
		// want is the version answered (first at once, else after the
		// push), "" for no answer.
		want string
	}{
		{name: "no snapshot yet, then one", after: ab, names: []string{"a", "b"}, want: ab.version},
		{name: "new version answered at once", before: ab, names: []string{"a", "b"}, version: "old", want: ab.version},
		{name: "up to date waits", before: ab, names: []string{"a", "b"}, version: ab.version, answered: true, want: ""},
		{name: "up to date, then a change", before: ab, after: abc, names: []string{"c", "a", "b"}, version: ab.version, answered: true, want: abc.version},
		{name: "waits for the proxy to ask for a new resource", before: ab, after: abc, names: []string{"a", "b"}, version: ab.version, answered: true, want: ""},
		{name: "names that no longer exist are left out", before: ab, names: []string{"a", "b", "gone"}, version: "old", want: ab.version},
		{name: "version from an earlier stream is sent again", before: ab, names: []string{"a", "b"}, version: ab.version, want: ab.version},
		{name: "nothing to send does not loop", before: empty, version: empty.version, want: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newWireCache(slog.New(slog.DiscardHandler))
			if tc.before != nil {
				c.SetSnapshot(node.Id, &wireSnapshot{1: tc.before})
			}
			sub := streamv3.NewSotwSubscription(tc.names, true)
			if tc.answered {
				sub.SetReturnedResources(map[string]string{"a": tc.version})
			}
			out := make(chan cachev3.Response, 1)
			req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: resourcev3.EndpointType, VersionInfo: tc.version, ResourceNames: tc.names}
			if _, err := c.CreateWatch(req, sub, out); err != nil {
				t.Fatal(err)
			}
			if tc.after != nil {
				c.SetSnapshot(node.Id, &wireSnapshot{1: tc.after})
			}
			select {
			case resp := <-out:
				dr, _ := resp.GetDiscoveryResponse()
				if dr.VersionInfo != tc.want {
					t.Fatalf("answered version %q, want %q", dr.VersionInfo, tc.want)
				}
				var got []string
				for _, a := range dr.Resources {
					var cla endpointv3.ClusterLoadAssignment
					if err := a.UnmarshalTo(&cla); err != nil {
						t.Fatal(err)
					}
					got = append(got, cla.ClusterName)
				}
				g := tc.before
				if tc.after != nil {
					g = tc.after
				}
				if !slices.Equal(got, g.names) {
					t.Errorf("answered %v, want %v", got, g.names)
				}
			default:
				if tc.want != "" {
					t.Fatalf("no answer, want version %q", tc.want)
				}
			}
		})
	}
}

// TestWireCacheADSOrder checks that a push answers a proxy's open watches
// in ADS order: clusters before their endpoints, listeners before their
// routes.
func TestWireCacheADSOrder(t *testing.T) {
	node := &corev3.Node{Id: "n"}
	c := newWireCache(slog.New(slog.DiscardHandler))
	out := make(chan cachev3.Response, len(pushTypes))
	for _, typ := range []string{resourcev3.RouteType, resourcev3.ListenerType, resourcev3.EndpointType, resourcev3.ClusterType} {
		req := &discoverygrpc.DiscoveryRequest{Node: node, TypeUrl: typ}
		if _, err := c.CreateWatch(req, streamv3.NewSotwSubscription(nil, true), out); err != nil {
			t.Fatal(err)
		}
	}
	var snap wireSnapshot
	for i, typ := range pushTypes {
		w, err := newWireResource(typ, proto.Message(&endpointv3.ClusterLoadAssignment{ClusterName: "x"}))
		if err != nil {
			t.Fatal(err)
		}
		snap[i] = newWireGroup("v1", []*wireResource{w})
	}
	c.SetSnapshot("n", &snap)
	var got []string
	for range pushTypes {
		resp := <-out
		got = append(got, resp.GetRequest().GetTypeUrl())
	}
	if !slices.Equal(got, pushTypes[:]) {
		t.Errorf("answered in order %v, want %v", got, pushTypes)
	}
}
