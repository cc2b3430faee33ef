package translate

import (
	"slices"
	"testing"
)

func TestHostsOverlap(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"*", "reviews.default.svc.cluster.local", true},
		{"bookinfo.example.com", "*", true},
		{"bookinfo.example.com", "bookinfo.example.com", true},
		{"Bookinfo.Example.com", "bookinfo.example.com", true},
		{"bookinfo.example.com", "other.example.com", false},
		{"*.example.com", "bookinfo.example.com", true},
		{"*.example.com", "a.b.example.com", true},
		{"*.example.com", "example.com", false},
		{"bookinfo.example.com", "*.example.com", true},
		{"*.example.com", "*.b.example.com", true},
		{"*.b.example.com", "*.example.com", true},
		{"*.example.com", "*.example.org", false},
		{"notexample.com", "*.example.com", false},
	}
	for _, tc := range tests {
		if got := hostsOverlap(tc.a, tc.b); got != tc.want {
			t.Errorf("hostsOverlap(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestGatewayServerAdmits(t *testing.T) {
	tests := []struct {
		name        string
		hosts       []string
		vsNamespace string
		vsHost      string
		want        bool
	}{
		{"bare host, any namespace", []string{"bookinfo.example.com"}, "prod", "bookinfo.example.com", true},
		{"bare wildcard", []string{"*"}, "prod", "anything.example.com", true},
		{"star namespace", []string{"*/bookinfo.example.com"}, "prod", "bookinfo.example.com", true},
		{"named namespace matches", []string{"prod/*"}, "prod", "bookinfo.example.com", true},
		{"named namespace differs", []string{"prod/*"}, "dev", "bookinfo.example.com", false},
		{"dot is the gateway's namespace", []string{"./*"}, "istio-system", "x.example.com", true},
		{"dot excludes other namespaces", []string{"./*"}, "default", "x.example.com", false},
		{"wildcard server host", []string{"*.example.com"}, "default", "shop.example.com", true},
		{"host mismatch", []string{"shop.example.com"}, "default", "blog.example.com", false},
		{"VS wildcard host", []string{"shop.example.com"}, "default", "*", true},
		{"second host matches", []string{"dev/*", "default/shop.example.com"}, "default", "shop.example.com", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			g := gatewayServer{gateway: "istio-system/ingress", namespace: "istio-system", port: 80, hosts: tc.hosts}
			if got := g.admits(tc.vsNamespace, tc.vsHost); got != tc.want {
				t.Errorf("server hosts %v admit %q from %s = %v, want %v", tc.hosts, tc.vsHost, tc.vsNamespace, got, tc.want)
			}
		})
	}
}

func TestParseRetryOn(t *testing.T) {
	tests := []struct {
		in        string
		wantOn    string
		wantCodes []uint32
	}{
		{"5xx", "5xx", nil},
		{"gateway-error, connect-failure", "gateway-error,connect-failure", nil},
		{"503", "retriable-status-codes", []uint32{503}},
		{"reset,503,429", "reset,retriable-status-codes", []uint32{503, 429}},
		{"retriable-status-codes,503", "retriable-status-codes", []uint32{503}},
	}
	for _, tc := range tests {
		on, codes := parseRetryOn(tc.in)
		if on != tc.wantOn || !slices.Equal(codes, tc.wantCodes) {
			t.Errorf("parseRetryOn(%q) = %q, %v; want %q, %v", tc.in, on, codes, tc.wantOn, tc.wantCodes)
		}
	}
}
