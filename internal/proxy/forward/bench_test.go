package forward

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// BenchmarkServe measures the forwarding path alone: a request handed to the
// Forwarder, sent over a kept-alive upstream connection, response copied.
func BenchmarkServe(b *testing.B) {
	be := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer be.Close()
	pools := upstream.NewPools(upstream.PoolsOptions{})
	f := New(Options{Clusters: pools.Build([]upstream.ClusterSpec{{Name: "c", Endpoints: []upstream.EndpointSpec{{Address: addrOf(be)}}}})})
	route := &router.Route{Cluster: "c"}
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest("GET", "http://reviews:9080/x", nil)
		f.Serve(&chain.Exchange{W: rec, R: req, Route: route})
		if rec.Code != 200 {
			b.Fatal(rec.Code)
		}
	}
}
