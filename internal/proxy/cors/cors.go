// Package cors is weft-proxy's Cross-Origin Resource Sharing filter,
// Envoy's envoy.filters.http.cors: it enforces the route's
// router.CorsPolicy (its typed_per_filter_config, merged with its virtual
// host's and route configuration's). The filter has no configuration of
// its own; a route without a policy, a direct response or a redirect passes
// untouched, as do requests without an Origin header.
//
// Semantics follow Envoy. For a request with an Origin, the policy is
// enforced for filter_enabled's share of requests, else only checked for
// shadow_enabled's share (counted, nothing changed), else ignored. The
// origin is valid when one of allow_origin_string_match accepts it (or
// accepts "*"); every checked request counts as origin_valid or
// origin_invalid. A preflight (OPTIONS with Origin and
// Access-Control-Request-Method) is answered by the filter with 200 and
// the Access-Control-Allow-{Origin,Credentials,Methods,Headers,Max-Age}
// headers the policy sets, unless its origin is invalid and
// forward_not_matching_preflights (default true) passes it upstream; a
// preflight with an invalid origin that is answered gets no
// Access-Control-Allow-Origin. Any other request with a valid origin goes
// on, and its response gets Access-Control-Allow-Origin (the request's
// origin), Access-Control-Allow-Credentials and Access-Control-Expose-Headers
// as configured, replacing the upstream's.
//
// A Filter is immutable but for its counters (atomics), safe for
// concurrent use, and built once per configuration version. A request
// without an Origin header or whose route has no policy costs a few checks
// and no allocation; the response writer wrapper of a valid CORS request
// comes from a pool.
package cors

import (
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/router"
)

// Options configures a Filter.
type Options struct {
	// Next is the handler requests go on to. Required.
	Next chain.Handler
	// Counters receive the filter's counts. They outlive a configuration
	// version: the filter of every version of one connection manager
	// counts into the same Counters. Defaults to counters of its own.
	Counters *Counters
	// Rand returns uniformly distributed numbers, for filter_enabled and
	// shadow_enabled shares below 100%; it must be safe for concurrent use.
	// Defaults to math/rand/v2's Uint64.
	Rand func() uint64
	// Logger defaults to discarding.
	Logger *slog.Logger
}

// Filter is the CORS chain.Handler.
type Filter struct {
	next chain.Handler
	rand func() uint64
	log  *slog.Logger
	c    *Counters
}

var _ chain.Handler = (*Filter)(nil)

// Counters are the counts of CORS filters, safe for concurrent use.
type Counters struct {
	valid, invalid atomic.Uint64
}

// Stats are a Filter's counters, with Envoy's stat names (under
// <stat_prefix>.cors.). Requests without an Origin header, and requests
// for which the policy is neither enabled nor shadowed, are not counted.
type Stats struct {
	// OriginValid is cors.origin_valid, OriginInvalid cors.origin_invalid.
	OriginValid, OriginInvalid uint64
}

// Stats returns the counts.
func (c *Counters) Stats() Stats {
	return Stats{OriginValid: c.valid.Load(), OriginInvalid: c.invalid.Load()}
}

// New returns a Filter in front of o.Next.
func New(o Options) *Filter {
	if o.Rand == nil {
		o.Rand = rand.Uint64
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Counters == nil {
		o.Counters = new(Counters)
	}
	return &Filter{next: o.Next, rand: o.Rand, log: o.Logger, c: o.Counters}
}

// Stats returns the counters.
func (f *Filter) Stats() Stats { return f.c.Stats() }

// Canonical header keys the filter reads and writes.
const (
	hOrigin                = "Origin"
	hRequestMethod         = "Access-Control-Request-Method"
	hRequestHeaders        = "Access-Control-Request-Headers"
	hRequestPrivateNetwork = "Access-Control-Request-Private-Network"
	hAllowOrigin           = "Access-Control-Allow-Origin"
	hAllowCredentials      = "Access-Control-Allow-Credentials"
	hAllowMethods          = "Access-Control-Allow-Methods"
	hAllowHeaders          = "Access-Control-Allow-Headers"
	hMaxAge                = "Access-Control-Max-Age"
	hExposeHeaders         = "Access-Control-Expose-Headers"
	hAllowPrivateNetwork   = "Access-Control-Allow-Private-Network"
)

// valTrue is the header value "true", shared by every response: a handler
// changing a header replaces its value slice (see package chain).
var valTrue = []string{"true"}

// Serve applies the route's CORS policy, if any: it answers a preflight
// itself, or passes the request on, decorating the response of a request
// whose origin is allowed.
func (f *Filter) Serve(x *chain.Exchange) {
	r := x.Route
	if r == nil || r.Cors == nil || r.Direct != nil || r.Redirect != nil {
		f.next.Serve(x)
		return
	}
	origin := x.R.Header[hOrigin]
	if len(origin) == 0 || origin[0] == "" {
		f.next.Serve(x)
		return
	}
	f.apply(x, r.Cors, origin[:1])
}

func (f *Filter) apply(x *chain.Exchange, p *router.CorsPolicy, origin []string) {
	enabled := f.roll(p.Enabled)
	if !enabled && !f.roll(p.Shadow) {
		f.next.Serve(x)
		return
	}
	allowed := p.AllowsOrigin(origin[0])
	if allowed {
		f.c.valid.Add(1)
	} else {
		f.c.invalid.Add(1)
	}
	if !enabled { // shadow mode: count only
		f.next.Serve(x)
		return
	}
	if x.R.Method == http.MethodOptions {
		if m := x.R.Header[hRequestMethod]; len(m) > 0 && m[0] != "" {
			if !allowed && p.ForwardNotMatchingPreflights {
				f.next.Serve(x)
				return
			}
			if !allowed && f.log.Enabled(x.R.Context(), slog.LevelDebug) {
				f.log.Debug("answering a CORS preflight from an origin that is not allowed", "route", x.Route.Name, "origin", origin[0])
			}
			preflight(x.W, x.R.Header, p, origin, allowed, m[:1])
			return
		}
	}
	if !allowed {
		f.next.Serve(x)
		return
	}
	f.decorated(x, p, origin)
}

// roll reports whether a request falls in a share of p millionths.
func (f *Filter) roll(p uint32) bool { return router.InShare(p, f.rand) }

// preflight answers a preflight request. The header values are the
// policy's shared slices or the request's own, which outlive the response
// head.
func preflight(w http.ResponseWriter, req http.Header, p *router.CorsPolicy, origin []string, allowed bool, method []string) {
	h := w.Header()
	if allowed {
		h[hAllowOrigin] = origin
	}
	if p.AllowCredentials {
		h[hAllowCredentials] = valTrue
	}
	switch {
	case p.AllowAnyMethod:
		h[hAllowMethods] = method
	case p.AllowMethods != nil:
		h[hAllowMethods] = p.AllowMethods
	}
	switch {
	case p.AllowAnyHeaders:
		if v := req[hRequestHeaders]; len(v) > 0 {
			h[hAllowHeaders] = v
		}
	case p.AllowHeaders != nil:
		h[hAllowHeaders] = p.AllowHeaders
	}
	if p.MaxAge != nil {
		h[hMaxAge] = p.MaxAge
	}
	if p.AllowPrivateNetworkAccess {
		if v := req[hRequestPrivateNetwork]; len(v) > 0 && v[0] == "true" {
			h[hAllowPrivateNetwork] = valTrue
		}
	}
	w.WriteHeader(http.StatusOK)
}

// decorated passes the request on with x.W wrapped so that the response
// head gets the CORS headers, and restores x.W afterwards.
func (f *Filter) decorated(x *chain.Exchange, p *router.CorsPolicy, origin []string) {
	fw := writerPool.Get().(*flushWriter)
	orig := x.W
	fw.writer = writer{w: orig, p: p, origin: origin}
	if canFlush(orig) {
		x.W = fw
	} else {
		x.W = &fw.writer
	}
	defer func() {
		x.W = orig
		fw.writer = writer{}
		writerPool.Put(fw)
	}()
	f.next.Serve(x)
	// A handler that wrote nothing leaves the head to the server, which
	// sends the headers as they are now.
	fw.decorate()
}

// writerPool recycles the response writer wrappers.
var writerPool = sync.Pool{New: func() any { return new(flushWriter) }}

// writer is the http.ResponseWriter of a request whose origin is allowed:
// it adds the CORS response headers to the head when it is written. Its
// header values are the request's origin and the policy's shared slices,
// never its own memory, so that the head may be sent after the wrapper was
// recycled. It is used by one goroutine, the chain's.
type writer struct {
	w      http.ResponseWriter
	p      *router.CorsPolicy
	origin []string
	done   bool
}

var _ http.ResponseWriter = (*writer)(nil)

// Header returns the wrapped writer's header map.
func (w *writer) Header() http.Header { return w.w.Header() }

// WriteHeader adds the CORS headers to a final (or 101) response's head,
// then writes it.
func (w *writer) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.decorate()
	}
	w.w.WriteHeader(code)
}

// Write adds the CORS headers if the head is not written yet, then writes
// p.
func (w *writer) Write(p []byte) (int, error) {
	w.decorate()
	return w.w.Write(p)
}

// Unwrap returns the wrapped writer, for http.ResponseController.
func (w *writer) Unwrap() http.ResponseWriter { return w.w }

func (w *writer) decorate() {
	if w.done || w.w == nil {
		return
	}
	w.done = true
	h := w.w.Header()
	h[hAllowOrigin] = w.origin
	if w.p.AllowCredentials {
		h[hAllowCredentials] = valTrue
	}
	if w.p.ExposeHeaders != nil {
		h[hExposeHeaders] = w.p.ExposeHeaders
	}
}

// flushWriter is a writer over an http.ResponseWriter that can flush.
type flushWriter struct{ writer }

var (
	_ http.Flusher                    = (*flushWriter)(nil)
	_ interface{ FlushError() error } = (*flushWriter)(nil)
)

// Flush sends the head, with the CORS headers, and what was written.
func (w *flushWriter) Flush() { w.FlushError() }

// FlushError is Flush that reports the wrapped writer's error.
func (w *flushWriter) FlushError() error {
	w.decorate()
	switch fw := w.w.(type) {
	case interface{ FlushError() error }:
		return fw.FlushError()
	case http.Flusher:
		fw.Flush()
	}
	return nil
}

func canFlush(w http.ResponseWriter) bool {
	switch w.(type) {
	case http.Flusher, interface{ FlushError() error }:
		return true
	}
	return false
}
