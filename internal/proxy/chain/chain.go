// Package chain defines weft-proxy's HTTP filter chain: a request passes
// through a list of Handlers, each of which calls the next one (or answers
// the request itself), and the last of which is the router that forwards it
// upstream. A chain is built once per configuration version and shared by
// every request on a listener; handlers must be safe for concurrent use and
// keep per-request state in the Exchange.
//
// To keep the per-request path free of allocations, handlers may set a
// header to a value slice shared by many requests. A handler that changes a
// header must therefore replace its value slice (http.Header.Set, Add or
// Del do), never write into the one it finds.
package chain

import (
	"net/http"
	"net/netip"

	"github.com/weftmesh/weft/internal/proxy/router"
)

// Exchange is one request on its way through the chain. The listener
// recycles it once the chain's Serve returns, so a handler must not keep it,
// or hand it to a goroutine that outlives the call; what outlives the
// request must be copied out of it.
type Exchange struct {
	W http.ResponseWriter
	R *http.Request
	// Listener is the name of the listener that accepted the request.
	Listener string
	// RouteConfig is the name of the route configuration that was consulted.
	RouteConfig string
	// Route is the selected route, or nil when RouteErr says why none was.
	Route    *router.Route
	RouteErr error
	// OriginalDst is the original destination of the downstream connection
	// when it was accepted by a use_original_dst listener (captured by
	// iptables); an ORIGINAL_DST cluster sends the request there. Invalid
	// otherwise.
	OriginalDst netip.AddrPort
}

// Handler handles a request. A filter holds its next Handler and calls
// next.Serve to pass the request on.
type Handler interface {
	Serve(x *Exchange)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(x *Exchange)

// Serve calls f(x).
func (f HandlerFunc) Serve(x *Exchange) { f(x) }

var _ Handler = HandlerFunc(nil)
