package translate

import (
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/proxy/model"
)

// TestProxyAcceptsEveryCase hands each golden case's output to weft-proxy's
// compiler, in the order the proxy subscribes (CDS, EDS, LDS, RDS), and
// fails on any NACK: every field the control plane emits must be one the
// proxy acts on, or the user's config would stop at the proxy.
func TestProxyAcceptsEveryCase(t *testing.T) {
	for _, tc := range loadCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			res := ForProxy(tc.snap, tc.proxy)
			c := model.New(model.Options{})
			apply := func(typeURL string, msgs []proto.Message) {
				anys := make([]*anypb.Any, len(msgs))
				for i, m := range msgs {
					a, err := anypb.New(m)
					if err != nil {
						t.Fatal(err)
					}
					anys[i] = a
				}
				if err := c.Apply(typeURL, "1", anys); err != nil {
					t.Errorf("weft-proxy NACKs the %s of case %s: %v", typeURL, tc.name, err)
				}
			}
			apply(resource.ClusterType, messages(res.Clusters))
			apply(resource.EndpointType, messages(res.Endpoints))
			apply(resource.ListenerType, messages(res.Listeners))
			apply(resource.RouteType, messages(res.Routes))
			if c.Current() == nil {
				t.Errorf("weft-proxy has no complete config after case %s: %s", tc.name, c.Pending())
			}
		})
	}
}
