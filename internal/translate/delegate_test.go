package translate

import (
	"testing"

	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
)

// A delegate's short names are its own namespace's, not its root's.
func TestDelegateNamesResolveInTheDelegatesNamespace(t *testing.T) {
	root := &v1alpha3.VirtualService{Hosts: []string{"reviews"}, Http: []*v1alpha3.HTTPRoute{{
		Match:    []*v1alpha3.HTTPMatchRequest{{Gateways: []string{"gw"}}},
		Delegate: &v1alpha3.Delegate{Name: "d", Namespace: "team"},
	}}}
	delegate := &config.Resource{Kind: config.KindVirtualService, Meta: config.Meta{Namespace: "team", Name: "d"}, Spec: &v1alpha3.VirtualService{
		Http: []*v1alpha3.HTTPRoute{{
			Match:  []*v1alpha3.HTTPMatchRequest{{Gateways: []string{"front/gw"}}},
			Route:  []*v1alpha3.HTTPRouteDestination{{Destination: &v1alpha3.Destination{Host: "ratings"}}},
			Mirror: &v1alpha3.Destination{Host: "shadow"},
		}},
	}}
	out := expandDelegates(root, "front", map[delegateKey]*config.Resource{{namespace: "team", name: "d"}: delegate})
	if len(out.GetHttp()) != 1 {
		t.Fatalf("merged routes: %v, want the delegate's one (its gateway front/gw is the root's gw)", out.GetHttp())
	}
	r := out.GetHttp()[0]
	if got := r.GetRoute()[0].GetDestination().GetHost(); got != "ratings.team.svc.cluster.local" {
		t.Errorf("destination %q, want ratings.team.svc.cluster.local", got)
	}
	if got := r.GetMirror().GetHost(); got != "shadow.team.svc.cluster.local" {
		t.Errorf("mirror %q, want shadow.team.svc.cluster.local", got)
	}
	if d := delegate.Spec.(*v1alpha3.VirtualService).GetHttp()[0]; d.GetRoute()[0].GetDestination().GetHost() != "ratings" || d.GetMatch()[0].GetGateways()[0] != "front/gw" {
		t.Error("the delegate's own spec was changed")
	}
	if root.GetHttp()[0].GetDelegate() == nil || root.GetHttp()[0].GetMatch()[0].GetGateways()[0] != "gw" {
		t.Error("the root's own spec was changed")
	}
}
