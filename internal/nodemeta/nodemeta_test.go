package nodemeta

import (
	"reflect"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func TestRoundTrip(t *testing.T) {
	in := Metadata{
		Type: TypeSidecar, Namespace: "default", Service: "reviews", WorkloadName: "reviews-v2-abcde",
		ServiceAccount: "bookinfo-reviews", IP: "127.0.0.1",
		Labels:           map[string]string{"app": "reviews", "version": "v2"},
		Ports:            []Port{{Name: "http", Port: 9080, TargetPort: 20001, ListenPort: 20002}},
		OutboundPort:     20003,
		PortMap:          map[uint32]uint32{80: 8080},
		InterceptionMode: InterceptionRedirect,
	}
	n := &corev3.Node{Id: in.ID(), Metadata: in.Struct()}
	if got, want := n.Id, "sidecar~127.0.0.1~reviews-v2-abcde.default~default.svc.cluster.local"; got != want {
		t.Errorf("id = %q, want %q", got, want)
	}
	out, err := FromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %+v\nwant %+v", out, in)
	}
}

func TestFromNodeErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		node *corev3.Node
	}{
		{"nil", nil},
		{"bad id", &corev3.Node{Id: "proxy-1"}},
		{"bad type", &corev3.Node{Id: "waypoint~1.2.3.4~a.b~b.svc.cluster.local"}},
	} {
		if _, err := FromNode(tc.node); err == nil {
			t.Errorf("%s: want error", tc.name)
		}
	}
}
