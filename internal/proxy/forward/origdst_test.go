package forward

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

func TestOriginalDstClusterSendsToTheConnectionsDestination(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "a") }))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "b") }))
	defer b.Close()
	pools := upstream.NewPools(upstream.PoolsOptions{})
	defer pools.Close()
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "PassthroughCluster", OriginalDst: true}})})
	route := &router.Route{Cluster: "PassthroughCluster"}
	tests := []struct {
		name     string
		origDst  string
		wantCode int
		wantBody string
	}{
		{"first destination", addrOf(a), 200, "a"},
		{"second destination", addrOf(b), 200, "b"},
		{"no original destination", "", 503, "no healthy upstream for cluster PassthroughCluster: the connection has no original destination\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var od netip.AddrPort
			if tc.origDst != "" {
				od = netip.MustParseAddrPort(tc.origDst)
			}
			w := httptest.NewRecorder()
			r := httptest.NewRequest("GET", "http://reviews:9080/", nil)
			f.Serve(&chain.Exchange{W: w, R: r, Route: route, OriginalDst: od})
			if w.Code != tc.wantCode || w.Body.String() != tc.wantBody {
				t.Errorf("got %d %q, want %d %q", w.Code, w.Body.String(), tc.wantCode, tc.wantBody)
			}
		})
	}
}
