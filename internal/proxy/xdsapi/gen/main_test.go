package main

import (
	"path/filepath"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	fullroute "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// TestGeneratedCodeIsCurrent fails when weft-proxy's sources name a field
// or message the committed types lack, or no longer name one they have.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if err := run(filepath.Join("..", "..", "..", ".."), true); err != nil {
		t.Fatal(err)
	}
}

// TestWireCompatible decodes a message written with go-control-plane's full
// types into the trimmed ones and back: kept fields read the same, and the
// fields weft-proxy does not know survive as unknown fields.
func TestWireCompatible(t *testing.T) {
	full := &fullroute.Route{
		Name:  "r",
		Match: &fullroute.RouteMatch{PathSpecifier: &fullroute.RouteMatch_Prefix{Prefix: "/api"}},
		Action: &fullroute.Route_Route{Route: &fullroute.RouteAction{
			ClusterSpecifier: &fullroute.RouteAction_Cluster{Cluster: "reviews"},
			// Not read by weft-proxy.
			InternalRedirectAction: fullroute.RouteAction_HANDLE_INTERNAL_REDIRECT,
		}},
		// Not read by weft-proxy either.
		StatPrefix:                 "api",
		PerRequestBufferLimitBytes: wrapperspb.UInt32(1024),
	}
	b, err := proto.Marshal(full)
	if err != nil {
		t.Fatal(err)
	}
	var trimmed routev3.Route
	if err := proto.Unmarshal(b, &trimmed); err != nil {
		t.Fatal(err)
	}
	if got := trimmed.GetMatch().GetPrefix(); got != "/api" {
		t.Errorf("prefix = %q, want /api", got)
	}
	if got := trimmed.GetRoute().GetCluster(); got != "reviews" {
		t.Errorf("cluster = %q, want reviews", got)
	}
	if len(trimmed.ProtoReflect().GetUnknown()) == 0 {
		t.Error("fields weft-proxy does not read were dropped, not kept as unknown")
	}
	b2, err := proto.MarshalOptions{Deterministic: true}.Marshal(&trimmed)
	if err != nil {
		t.Fatal(err)
	}
	back := &fullroute.Route{}
	if err := proto.Unmarshal(b2, back); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(back, full) {
		t.Errorf("round trip through the trimmed type changed the route:\n got %v\nwant %v", back, full)
	}
	if got, want := trimmed.ProtoReflect().Descriptor().FullName(), protoreflect.FullName("envoy.config.route.v3.Route"); got != want {
		t.Errorf("full name = %s, want %s", got, want)
	}
}
