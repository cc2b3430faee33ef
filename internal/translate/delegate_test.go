package translate

import (
	"testing"

	"istio.io/api/networking/v1alpha3"

	"github.com/weftmesh/weft/internal/config"
)

func TestStringWithin(t *testing.T) {
	exact := func(s string) *v1alpha3.StringMatch {
		return &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Exact{Exact: s}}
	}
	prefix := func(s string) *v1alpha3.StringMatch {
		return &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Prefix{Prefix: s}}
	}
	regex := func(s string) *v1alpha3.StringMatch {
		return &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Regex{Regex: s}}
	}
	tests := []struct {
		name      string
		root, sub *v1alpha3.StringMatch
		want      bool
	}{
		{"root unset", nil, prefix("/a"), true},
		{"delegate unset", prefix("/a"), nil, true},
		{"longer prefix", prefix("/api"), prefix("/api/v1"), true},
		{"shorter prefix", prefix("/api/v1"), prefix("/api"), false},
		{"exact under prefix", prefix("/api"), exact("/api/x"), true},
		{"exact outside prefix", prefix("/api"), exact("/other"), false},
		{"same exact", exact("/a"), exact("/a"), true},
		{"other exact", exact("/a"), exact("/b"), false},
		{"prefix under exact", exact("/a"), prefix("/a"), false},
		{"regex in root", regex("/a.*"), prefix("/a"), false},
		{"regex in delegate", prefix("/a"), regex("/a.*"), false},
	}
	for _, tt := range tests {
		if got := stringWithin(tt.root, tt.sub); got != tt.want {
			t.Errorf("%s: stringWithin = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMatchWithin(t *testing.T) {
	hdr := func(v string) map[string]*v1alpha3.StringMatch {
		return map[string]*v1alpha3.StringMatch{"end-user": {MatchType: &v1alpha3.StringMatch_Exact{Exact: v}}}
	}
	tests := []struct {
		name      string
		root, sub *v1alpha3.HTTPMatchRequest
		want      bool
	}{
		{"same header", &v1alpha3.HTTPMatchRequest{Headers: hdr("jason")}, &v1alpha3.HTTPMatchRequest{Headers: hdr("jason")}, true},
		{"other header value", &v1alpha3.HTTPMatchRequest{Headers: hdr("jason")}, &v1alpha3.HTTPMatchRequest{Headers: hdr("alice")}, false},
		{"header only in the delegate", &v1alpha3.HTTPMatchRequest{}, &v1alpha3.HTTPMatchRequest{Headers: hdr("alice")}, true},
		{"other port", &v1alpha3.HTTPMatchRequest{Port: 80}, &v1alpha3.HTTPMatchRequest{Port: 81}, false},
		{"ignoreUriCase differs", &v1alpha3.HTTPMatchRequest{IgnoreUriCase: true}, &v1alpha3.HTTPMatchRequest{}, false},
		{"gateway the root lacks", &v1alpha3.HTTPMatchRequest{Gateways: []string{"a"}}, &v1alpha3.HTTPMatchRequest{Gateways: []string{"a", "b"}}, false},
		{"fewer gateways", &v1alpha3.HTTPMatchRequest{Gateways: []string{"a", "b"}}, &v1alpha3.HTTPMatchRequest{Gateways: []string{"a"}}, true},
		{"other source namespace", &v1alpha3.HTTPMatchRequest{SourceNamespace: "a"}, &v1alpha3.HTTPMatchRequest{SourceNamespace: "b"}, false},
		{"other source label", &v1alpha3.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a"}}, &v1alpha3.HTTPMatchRequest{SourceLabels: map[string]string{"app": "b"}}, false},
	}
	for _, tt := range tests {
		if got := matchWithin(tt.root, tt.sub); got != tt.want {
			t.Errorf("%s: matchWithin = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMergeMatchesKeepsTheRootsConditions(t *testing.T) {
	root := []*v1alpha3.HTTPMatchRequest{
		{Name: "a", Uri: &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Prefix{Prefix: "/a"}}, Gateways: []string{"gw"}},
		{Name: "b", Uri: &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Prefix{Prefix: "/b"}}},
	}
	sub := []*v1alpha3.HTTPMatchRequest{{Name: "x", Method: &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Exact{Exact: "GET"}}}}
	got, ok := mergeMatches(root, sub)
	if !ok || len(got) != 2 {
		t.Fatalf("mergeMatches = %v, %v; want one merged match per root match", got, ok)
	}
	if got[0].GetName() != "a-x" || got[0].GetUri().GetPrefix() != "/a" || got[0].GetMethod().GetExact() != "GET" || len(got[0].GetGateways()) != 1 {
		t.Errorf("first merged match = %v", got[0])
	}
	if got[1].GetName() != "b-x" || got[1].GetUri().GetPrefix() != "/b" {
		t.Errorf("second merged match = %v", got[1])
	}
	outside := []*v1alpha3.HTTPMatchRequest{{Uri: &v1alpha3.StringMatch{MatchType: &v1alpha3.StringMatch_Prefix{Prefix: "/c"}}}}
	if _, ok := mergeMatches(root, outside); ok {
		t.Error("a delegate match outside every root match was merged")
	}
}

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
