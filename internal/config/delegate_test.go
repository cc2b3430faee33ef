package config

import (
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

func TestStringWithin(t *testing.T) {
	exact := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: s}}
	}
	prefix := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: s}}
	}
	regex := func(s string) *networking.StringMatch {
		return &networking.StringMatch{MatchType: &networking.StringMatch_Regex{Regex: s}}
	}
	tests := []struct {
		name      string
		root, sub *networking.StringMatch
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
	hdr := func(v string) map[string]*networking.StringMatch {
		return map[string]*networking.StringMatch{"end-user": {MatchType: &networking.StringMatch_Exact{Exact: v}}}
	}
	tests := []struct {
		name      string
		root, sub *networking.HTTPMatchRequest
		want      bool
	}{
		{"same header", &networking.HTTPMatchRequest{Headers: hdr("jason")}, &networking.HTTPMatchRequest{Headers: hdr("jason")}, true},
		{"other header value", &networking.HTTPMatchRequest{Headers: hdr("jason")}, &networking.HTTPMatchRequest{Headers: hdr("alice")}, false},
		{"header only in the delegate", &networking.HTTPMatchRequest{}, &networking.HTTPMatchRequest{Headers: hdr("alice")}, true},
		{"other port", &networking.HTTPMatchRequest{Port: 80}, &networking.HTTPMatchRequest{Port: 81}, false},
		{"ignoreUriCase differs", &networking.HTTPMatchRequest{IgnoreUriCase: true}, &networking.HTTPMatchRequest{}, false},
		{"gateway the root lacks", &networking.HTTPMatchRequest{Gateways: []string{"a"}}, &networking.HTTPMatchRequest{Gateways: []string{"a", "b"}}, false},
		{"fewer gateways", &networking.HTTPMatchRequest{Gateways: []string{"a", "b"}}, &networking.HTTPMatchRequest{Gateways: []string{"a"}}, true},
		{"other source namespace", &networking.HTTPMatchRequest{SourceNamespace: "a"}, &networking.HTTPMatchRequest{SourceNamespace: "b"}, false},
		{"other source label", &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "a"}}, &networking.HTTPMatchRequest{SourceLabels: map[string]string{"app": "b"}}, false},
	}
	for _, tt := range tests {
		if got := matchWithin(tt.root, tt.sub); got != tt.want {
			t.Errorf("%s: matchWithin = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestMergeMatchesKeepsTheRootsConditions(t *testing.T) {
	root := []*networking.HTTPMatchRequest{
		{Name: "a", Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/a"}}, Gateways: []string{"gw"}},
		{Name: "b", Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/b"}}},
	}
	sub := []*networking.HTTPMatchRequest{{Name: "x", Method: &networking.StringMatch{MatchType: &networking.StringMatch_Exact{Exact: "GET"}}}}
	got, ok := MergeDelegateMatches(root, sub)
	if !ok || len(got) != 2 {
		t.Fatalf("mergeMatches = %v, %v; want one merged match per root match", got, ok)
	}
	if got[0].GetName() != "a-x" || got[0].GetUri().GetPrefix() != "/a" || got[0].GetMethod().GetExact() != "GET" || len(got[0].GetGateways()) != 1 {
		t.Errorf("first merged match = %v", got[0])
	}
	if got[1].GetName() != "b-x" || got[1].GetUri().GetPrefix() != "/b" {
		t.Errorf("second merged match = %v", got[1])
	}
	outside := []*networking.HTTPMatchRequest{{Uri: &networking.StringMatch{MatchType: &networking.StringMatch_Prefix{Prefix: "/c"}}}}
	if _, ok := MergeDelegateMatches(root, outside); ok {
		t.Error("a delegate match outside every root match was merged")
	}
}
