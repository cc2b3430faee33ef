// Package forward is the last handler of weft-proxy's HTTP chain: it sends
// the request to the route's cluster, picking an endpoint with the cluster's
// load balancer, honouring the route's timeout and retry policy, and streams
// the response back. It also answers redirect and direct_response routes
// itself, applies the route's header mutations (request ones before the
// request goes upstream; response ones to the upstream's response, to
// direct responses, redirects and the errors it answers for a route), its
// prefix or regex path rewrite, and copies requests to the route's mirror
// clusters. For a RING_HASH or MAGLEV cluster it hashes the request with
// the route's hash policies (router.Route.Hash) and picks with that hash
// (upstream.Cluster.PickHash); a request without a hash value is balanced
// at random, as in Envoy.
//
// Mirroring: a request whose body is empty or was buffered (a known length
// up to MaxRetryBody) is copied, headers deep-copied, to each mirror
// cluster it falls in the share of, with "-shadow" appended to its host.
// Each shadow runs on its own goroutine with a context of its own (the
// route timeout, else DefaultMirrorTimeout); its response is discarded and
// it never delays or fails the request. At most MaxMirrors shadows are in
// flight per MirrorCounters (one set per proxy); more are dropped and
// counted (MirrorStats).
package forward

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/weftmesh/weft/internal/proxy/chain"
	"github.com/weftmesh/weft/internal/proxy/grpcreply"
	"github.com/weftmesh/weft/internal/proxy/h1"
	"github.com/weftmesh/weft/internal/proxy/router"
	"github.com/weftmesh/weft/internal/proxy/upstream"
)

// DefaultMaxRetryBody is the largest request body buffered so that the
// request can be retried; larger or streamed bodies are sent once.
const DefaultMaxRetryBody = 64 << 10

// Options configures a Forwarder.
type Options struct {
	// Clusters are the clusters of the configuration version the chain
	// belongs to.
	Clusters map[string]*upstream.Cluster
	Logger   *slog.Logger
	// MaxRetryBody overrides DefaultMaxRetryBody. It also bounds the
	// bodies buffered for mirroring.
	MaxRetryBody int64
	// MaxMirrors overrides DefaultMaxMirrors.
	MaxMirrors int
	// MirrorTimeout overrides DefaultMirrorTimeout.
	MirrorTimeout time.Duration
	// Mirrors receive the shadow request counts; defaults to counters of
	// the Forwarder's own.
	Mirrors *MirrorCounters
}

// Forwarder forwards requests upstream. It is immutable but for its
// counters, and safe for concurrent use.
type Forwarder struct {
	clusters     map[string]*upstream.Cluster
	log          *slog.Logger
	maxRetryBody int64

	mirrors       *MirrorCounters
	maxMirrors    int64
	mirrorTimeout time.Duration
}

var _ chain.Handler = (*Forwarder)(nil)

// New returns a Forwarder over o.Clusters.
func New(o Options) *Forwarder {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.MaxRetryBody == 0 {
		o.MaxRetryBody = DefaultMaxRetryBody
	}
	if o.MaxMirrors == 0 {
		o.MaxMirrors = DefaultMaxMirrors
	}
	if o.MirrorTimeout == 0 {
		o.MirrorTimeout = DefaultMirrorTimeout
	}
	if o.Mirrors == nil {
		o.Mirrors = new(MirrorCounters)
	}
	return &Forwarder{clusters: o.Clusters, log: o.Logger, maxRetryBody: o.MaxRetryBody,
		mirrors: o.Mirrors, maxMirrors: int64(o.MaxMirrors), mirrorTimeout: o.MirrorTimeout}
}

// hopHeaders are removed before forwarding in either direction (RFC 9110
// section 7.6.1, plus the legacy proxy ones).
var hopHeaders = []string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// Header values the Forwarder sets, shared by every request so that setting
// them does not allocate. Code that changes a header replaces its value
// slice (Header.Set, or Header.Add, which appends to a full slice) and never
// writes into it, so sharing is safe.
var (
	valHTTP      = []string{"http"}
	valHTTPS     = []string{"https"}
	valEmpty     = []string{""}
	valTextPlain = []string{"text/plain; charset=utf-8"}
	valNosniff   = []string{"nosniff"}
	valTrue      = []string{"true"}
	valTrailers  = []string{"trailers"}
)

// acceptsTrailers reports whether TE field values name the "trailers"
// option.
func acceptsTrailers(te []string) bool {
	for _, v := range te {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			f, _, _ = strings.Cut(f, ";")
			if asciiEqualFold(strings.TrimSpace(f), "trailers") {
				return true
			}
		}
	}
	return false
}

func removeHopHeaders(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var f string
			f, v, _ = strings.Cut(v, ",")
			if f = strings.TrimSpace(f); f != "" {
				delConnectionOption(h, f)
			}
		}
	}
	if len(h) > len(hopHeaders) {
		for _, k := range hopHeaders {
			delete(h, k)
		}
		return
	}
	// A head as small as most: one pass over its keys costs less than a
	// hashed delete per hop-by-hop name.
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
}

// isHopHeader reports whether k is one of hopHeaders.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// headerAdopter is a ResponseWriter (the lean HTTP/1.1 server's) that can
// take a header map as its response's.
type headerAdopter interface{ AdoptHeader(h http.Header) }

// headerTaker is a response body (the lean upstream client's) that can give
// its response's header map up for good, taking another in exchange.
type headerTaker interface {
	TakeHeader(h http.Header) (http.Header, bool)
}

// adoptHeader hands resp's header map, less its hop-by-hop fields, to w as
// its response header, and w's own empty map to resp's connection in
// exchange, when both sides allow it and nothing has set a header on w
// yet: one map changes hands instead of every field being copied. It
// reports whether it did; if not, the caller copies.
func adoptHeader(w http.ResponseWriter, resp *http.Response) bool {
	a, ok := w.(headerAdopter)
	if !ok {
		return false
	}
	t, ok := resp.Body.(headerTaker)
	if !ok {
		return false
	}
	own := w.Header()
	if len(own) > 0 {
		return false
	}
	h, ok := t.TakeHeader(own)
	if !ok {
		return false
	}
	removeHopHeaders(h)
	a.AdoptHeader(h)
	return true
}

// fieldsAdopter is a ResponseWriter (the lean HTTP/1.1 server's) that can
// take header fields as they are, without a map.
type fieldsAdopter interface{ AdoptFields(fields []h1.Field) }

// passFields hands the header fields of resp to w as they are, when resp's
// Header does not hold them (see upstream.RoundTripLazy), w takes fields,
// and nothing would change them: no hop-by-hop field, no header set on w
// yet, no response header mutation and no cookie to add. It reports
// whether it did; if not, resp's Header is to be loaded and used.
func passFields(w http.ResponseWriter, resp *http.Response, route *router.Route, wc *router.WeightedCluster, setCookie string) bool {
	fields, ok := upstream.ResponseFields(resp)
	if !ok || setCookie != "" || route != nil && !route.ResponseHeaders.Empty() || wc != nil && !wc.ResponseHeaders.Empty() {
		return false
	}
	a, ok := w.(fieldsAdopter)
	if !ok || len(w.Header()) > 0 {
		return false
	}
	for i := range fields {
		if isHopHeader(fields[i].Name) {
			return false
		}
	}
	a.AdoptFields(fields)
	return true
}

// responseValue returns the first value of resp's header field key (in
// canonical form), also when resp's Header does not hold its fields.
func responseValue(resp *http.Response, key string) string {
	if fields, ok := upstream.ResponseFields(resp); ok {
		for i := range fields {
			if fields[i].Name == key {
				return fields[i].Value
			}
		}
		return ""
	}
	if v := resp.Header[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// copyEndToEnd copies the headers of src, an upstream response's, to dst
// but for the hop-by-hop ones, which it may remove from src.
func copyEndToEnd(dst, src http.Header) {
	if _, ok := src["Connection"]; ok {
		removeHopHeaders(src) // and the headers it names
	}
	for k, v := range src {
		if !isHopHeader(k) {
			dst[k] = v
		}
	}
}

// delConnectionOption is h.Del(name) for a header named by a Connection
// option. The usual options ("keep-alive", "close", "upgrade") are matched
// without canonicalizing the name, which allocates when it is lower case.
func delConnectionOption(h http.Header, name string) {
	for _, k := range hopHeaders {
		if asciiEqualFold(name, k) {
			return // removed by removeHopHeaders anyway
		}
	}
	if asciiEqualFold(name, "close") {
		delete(h, "Close")
		return
	}
	h.Del(name)
}

// asciiEqualFold reports whether s and t are equal under ASCII case
// folding (http.CanonicalHeaderKey folds nothing else).
func asciiEqualFold(s, t string) bool {
	if len(s) != len(t) {
		return false
	}
	for i := 0; i < len(s); i++ {
		a, b := s[i], t[i]
		if 'A' <= a && a <= 'Z' {
			a += 'a' - 'A'
		}
		if 'A' <= b && b <= 'Z' {
			b += 'a' - 'A'
		}
		if a != b {
			return false
		}
	}
	return true
}

// plain answers with a short text/plain message; msg is the message without
// its final newline.
func plain(w http.ResponseWriter, grpc bool, code int, msg string) {
	plainFor(w, grpc, code, msg, nil, nil)
}

// plainFor is plain for an answer on behalf of route (and the weighted
// cluster picked, when not nil), whose response header mutations apply, as
// they do in Envoy to the router's local replies.
//
// A gRPC request (grpc: grpcreply.IsRequest, asked before any header
// mutation) is answered as gRPC clients expect, as Envoy does: status 200
// with no body, the HTTP status mapped to a grpc-status and msg as the
// grpc-message. A gRPC client shows those (UNAVAILABLE: no healthy
// upstream for cluster ...), where a text/plain answer would only make it
// complain about the content type.
func plainFor(w http.ResponseWriter, grpc bool, code int, msg string, route *router.Route, wc *router.WeightedCluster) {
	h := w.Header()
	if grpc {
		grpcreply.SetHeader(h, grpcreply.FromHTTP(code), msg)
		responseHeaders(h, route, wc)
		w.WriteHeader(http.StatusOK)
		return
	}
	h["Content-Type"] = valTextPlain
	h["X-Content-Type-Options"] = valNosniff
	responseHeaders(h, route, wc)
	w.WriteHeader(code)
	io.WriteString(w, msg)
	io.WriteString(w, "\n")
}

// responseHeaders applies the response header mutations of the weighted
// cluster picked (when not nil), then the route's (when not nil).
func responseHeaders(h http.Header, route *router.Route, wc *router.WeightedCluster) {
	if wc != nil {
		wc.ResponseHeaders.Apply(h, nil)
	}
	if route != nil {
		route.ResponseHeaders.Apply(h, nil)
	}
}

// Serve forwards x upstream, or answers it when no route or no upstream can
// take it.
func (f *Forwarder) Serve(x *chain.Exchange) {
	a := f.plan(x)
	if a == nil {
		return
	}
	defer a.end()
	ctx := x.R.Context()
	if a.route.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, a.route.Timeout)
		defer cancel()
	}
	if !a.begin() {
		return
	}
	for {
		if a.attempt > 0 && !sleepBackoff(ctx, a.attempt, a.pol) {
			break
		}
		actx, acancel := ctx, context.CancelFunc(nil)
		if a.pol.perTry > 0 {
			actx, acancel = context.WithTimeout(ctx, a.pol.perTry)
		}
		ep, out, ok := a.next(actx)
		if !ok {
			if acancel != nil {
				acancel()
			}
			return
		}
		// The response's fields stay out of its Header until respond
		// knows whether it passes them on as they are.
		resp, err := ep.RoundTripLazy(out)
		if err != nil {
			ep.EndRequest()
			perTryExpired := acancel != nil && actx.Err() != nil && ctx.Err() == nil
			if acancel != nil {
				acancel()
			}
			if x.R.Context().Err() != nil {
				return // the client went away
			}
			if a.failed(ep, err, perTryExpired, ctx.Err() != nil) {
				continue
			}
			return
		}
		if a.retryResponse(ep, resp) {
			ep.EndRequest()
			if acancel != nil {
				acancel()
			}
			continue
		}
		a.cl.Stats().Observe(resp.StatusCode)
		f.respond(ctx, a.w, resp, a.route, a.wc, a.setCookie)
		ep.EndRequest()
		if acancel != nil {
			acancel()
		}
		return
	}
	// The backoff sleep ended because the deadline or the client did.
	if x.R.Context().Err() == nil {
		f.timedOut(a.w, a.grpc, a.cl, a.route, a.wc)
	}
}

// plan answers x itself when no upstream is to be tried (no route, a
// direct response or redirect, no cluster or endpoint), or returns the
// request's attempts, to be started with begin and ended with end.
func (f *Forwarder) plan(x *chain.Exchange) *attempts {
	w, r := x.W, x.R
	route := x.Route
	if route == nil {
		switch {
		case errors.Is(x.RouteErr, router.ErrNoVirtualHost):
			plain(w, grpcreply.IsRequest(r), http.StatusNotFound, "no virtual host for "+strconv.Quote(r.Host)+" in route config "+x.RouteConfig)
		case x.RouteErr != nil:
			plain(w, grpcreply.IsRequest(r), http.StatusNotFound, x.RouteErr.Error()+" in route config "+x.RouteConfig)
		default:
			plain(w, grpcreply.IsRequest(r), http.StatusNotFound, "no route")
		}
		return nil
	}
	if d := route.Direct; d != nil {
		if d.Body != "" {
			w.Header()["Content-Type"] = valTextPlain
		}
		route.ResponseHeaders.Apply(w.Header(), nil)
		w.WriteHeader(d.Status)
		io.WriteString(w, d.Body)
		return nil
	}
	if rd := route.Redirect; rd != nil {
		h := w.Header()
		h["Location"] = []string{route.RedirectLocation(r)}
		route.ResponseHeaders.Apply(h, nil)
		w.WriteHeader(rd.Code)
		return nil
	}
	var wc *router.WeightedCluster
	name := route.Cluster
	if len(route.Weighted) > 0 {
		wc = route.PickWeighted(rand.Uint64())
		name = wc.Name
	}
	cl := f.clusters[name]
	var a *attempts
	switch {
	case cl != nil && cl.OriginalDst():
		// ORIGINAL_DST: the one endpoint is where the downstream connection
		// was going before iptables redirected it.
		if !x.OriginalDst.IsValid() {
			cl.Stats().Observe(http.StatusServiceUnavailable)
			plainFor(w, grpcreply.IsRequest(r), http.StatusServiceUnavailable, "no healthy upstream for cluster "+name+": the connection has no original destination", route, wc)
			return nil
		}
		a = f.attempts(w, r, route, wc, cl)
		a.only = cl.EndpointFor(x.OriginalDst.String())
	case cl == nil || len(cl.Endpoints()) == 0:
		if cl != nil {
			cl.Stats().Observe(http.StatusServiceUnavailable)
		}
		plainFor(w, grpcreply.IsRequest(r), http.StatusServiceUnavailable, "no healthy upstream for cluster "+name, route, wc)
		return nil
	default:
		a = f.attempts(w, r, route, wc, cl)
		if cl.HashBased() && len(route.HashPolicies) > 0 {
			// RING_HASH / MAGLEV: the route's hash policies choose the
			// endpoint; without a hash value the cluster picks at random.
			a.hash, a.hashed, a.setCookie = route.Hash(r)
		}
	}
	return a
}

// attemptErr classifies a failed attempt.
type attemptErr struct {
	connect bool // the connection could not be established
	reason  string
}

// outbound is the state of a forwarded request that must live on the heap
// (the upstream request points into it), gathered into one allocation.
type outbound struct {
	// req and url are the first attempt's request and its URL.
	req http.Request
	url url.URL
	// id is the X-Request-Id header value, when the Forwarder made one,
	// and ids makes them; ids outlives the request, with o in the pool.
	id  [1]string
	ids requestIDs
	// body is the buffered request body of a retriable request, and br the
	// first attempt's reader over it.
	body []byte
	br   bytes.Reader
	// a is the request's way through its attempts, and async its driver
	// on an event loop.
	a     attempts
	async Async
}

// outboundPool recycles the outbound state of requests without a body.
var outboundPool = sync.Pool{New: func() any { return new(outbound) }}

// getBody is the upstream request's GetBody: a new reader over the buffered
// body.
func (o *outbound) getBody() (io.ReadCloser, error) {
	return io.NopCloser(bytes.NewReader(o.body)), nil
}

// request builds attempt's upstream request for r, to address: with the
// (rewritten) host, path and header forward made, and ctx.
//
// It is not inlined, on purpose: the request and the copy WithContext
// makes are about a kilobyte of stack, which in Serve's frame would stay
// below the round trip, and with it below a dial, whose call chain is
// deep: the two together took the request's goroutine past 8 KB, and its
// stack was copied to 16 KB for the first request of every upstream
// connection (a perf probe on runtime.morestack found 79 of 83 such
// growths there; none since).
//
//go:noinline
func (o *outbound) request(ctx context.Context, attempt int, r *http.Request, address, host, path, rawPath string) *http.Request {
	// A retry gets a URL and body reader of its own: the transport may
	// still hold the previous attempt's request.
	u := &o.url
	if attempt > 0 {
		u = new(url.URL)
	}
	*u = url.URL{Scheme: "http", Host: address, Path: path, RawPath: rawPath, RawQuery: r.URL.RawQuery}
	req := http.Request{
		Method: r.Method,
		URL:    u,
		// The downstream's version: a cluster that uses the downstream's
		// protocol reads it (the HTTP/1.1 writers send HTTP/1.1 lines
		// whatever it says).
		Proto:      r.Proto,
		ProtoMajor: r.ProtoMajor,
		ProtoMinor: r.ProtoMinor,
		Header:     r.Header,
		Host:       host,
	}
	switch {
	case o.body != nil:
		if attempt == 0 {
			// net/http sends the head and a body it knows to be in
			// memory (a NopCloser over a *bytes.Reader) in one write.
			o.br.Reset(o.body)
			req.Body = io.NopCloser(&o.br)
		} else {
			req.Body, _ = o.getBody()
		}
		req.ContentLength = int64(len(o.body))
		req.GetBody = o.getBody
	case r.ContentLength == 0 || r.Body == http.NoBody:
		req.Body = nil
	default:
		req.Body = r.Body
		req.ContentLength = r.ContentLength
	}
	// WithContext is the only way to give a request a context. Its copy
	// is inlined and does not escape here, so the first attempt's request
	// costs no allocation of its own; a retry's gets a new one, as the
	// transport may still hold the previous.
	if attempt == 0 {
		o.req = *req.WithContext(ctx)
		return &o.req
	}
	return req.WithContext(ctx)
}

// attempts is one request's way to its cluster: the request as it goes
// upstream and what its attempts so far have left. Serve drives it with
// blocking round trips; ServeAsync with an event loop's. It lives in the
// request's outbound state.
type attempts struct {
	f         *Forwarder
	o         *outbound
	w         http.ResponseWriter
	r         *http.Request
	route     *router.Route
	wc        *router.WeightedCluster // the weighted cluster picked, or nil
	cl        *upstream.Cluster
	only      *upstream.Endpoint // ORIGINAL_DST: the one endpoint
	hash      uint64             // a hash policy's value, when hashed
	hashed    bool
	setCookie string // a Set-Cookie value a hash policy generated
	grpc      bool   // answer as gRPC (asked before any header mutation)

	host, path, rawPath string
	pol                 policy
	retries             int
	pooled              bool // o goes back to outboundPool at end

	attempt int
	tried   *upstream.Endpoint
	// retrying holds one of the cluster's max_retries from the first
	// retry until the request ends.
	retrying bool
}

// attempts returns the attempts of r on cl, in an outbound state of their
// own.
func (f *Forwarder) attempts(w http.ResponseWriter, r *http.Request, route *router.Route, wc *router.WeightedCluster, cl *upstream.Cluster) *attempts {
	o := outboundPool.Get().(*outbound)
	o.a = attempts{f: f, o: o, w: w, r: r, route: route, wc: wc, cl: cl,
		// Without a body every attempt takes upstream's lean HTTP/1.1
		// path, which lets go of the request once the response is read,
		// and o is free again when the request ends. (net/http's
		// Transport, used for bodies, may hold a request after RoundTrip:
		// o is not reused then.)
		pooled: r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0}
	return &o.a
}

// end releases what the attempts hold, once the request is answered.
func (a *attempts) end() {
	endRetry(a.cl, &a.retrying)
	if !a.pooled {
		return
	}
	o := a.o
	// The request id slot is about to serve another request: the
	// downstream header must not keep pointing at it.
	if v := a.r.Header["X-Request-Id"]; len(v) > 0 && &v[0] == &o.id[0] {
		delete(a.r.Header, "X-Request-Id")
	}
	*o = outbound{ids: o.ids}
	outboundPool.Put(o)
}

// begin makes the request to go upstream: hop-by-hop fields, forwarding
// headers, header mutations and rewrites, the body buffered when it may be
// retried or mirrored, and the mirrors sent. It returns false when it
// answered the request instead.
func (a *attempts) begin() bool {
	r, route, wc, o := a.r, a.route, a.wc, a.o
	h := r.Header
	// TE is hop-by-hop, but "TE: trailers" says the client takes trailers
	// (gRPC sends it, and servers may refuse a request without it): it
	// is passed on, as Envoy does, and any other TE value dropped.
	teTrailers := len(h["Te"]) > 0 && acceptsTrailers(h["Te"])
	// Whether to answer as gRPC is decided before the route's header
	// mutations can change the Content-Type.
	a.grpc = grpcreply.IsRequest(r)
	removeHopHeaders(h)
	if teTrailers {
		h["Te"] = valTrailers
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		if r.TLS != nil {
			h["X-Forwarded-Proto"] = valHTTPS
		} else {
			h["X-Forwarded-Proto"] = valHTTP
		}
	}
	if _, ok := h["X-Request-Id"]; !ok {
		o.id[0] = o.ids.next()
		h["X-Request-Id"] = o.id[:]
	}
	if _, ok := h["User-Agent"]; !ok {
		// Keep Go's client from adding its own User-Agent.
		h["User-Agent"] = valEmpty
	}
	// Envoy's order: the weighted cluster's mutations and host rewrite,
	// then the route's (and its virtual host's and route configuration's)
	// mutations and host rewrite.
	host := r.Host
	if wc != nil {
		wc.RequestHeaders.Apply(h, &host)
		if wc.HostRewrite != "" {
			host = wc.HostRewrite
		}
	}
	route.RequestHeaders.Apply(h, &host)
	if route.HostRewrite != "" {
		host = route.HostRewrite
	}
	path, rawPath := r.URL.Path, r.URL.RawPath
	if route.PrefixRewrite != "" || route.RegexRewrite != nil {
		path, rawPath = rewritePrefix(route, path, rawPath)
	}
	a.host, a.path, a.rawPath = host, path, rawPath

	a.pol = policyOf(route)
	// A body can be replayed (and mirrored) when it is empty or small
	// enough to buffer.
	replayable := r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0
	if !replayable && (a.pol.retries > 0 || len(route.Mirrors) > 0) && r.ContentLength > 0 && r.ContentLength <= a.f.maxRetryBody {
		b := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, b); err != nil {
			plain(a.w, a.grpc, http.StatusBadRequest, "reading request body: "+err.Error())
			return false
		}
		o.body, replayable = b, true
	}
	if len(route.Mirrors) > 0 {
		a.f.mirror(r, route, h, host, path, rawPath, o.body, replayable)
	}
	a.retries = a.pol.retries
	if !replayable {
		a.retries = 0
	}
	return true
}

// pick chooses the endpoint of the next attempt, avoiding the last one's.
func (a *attempts) pick() *upstream.Endpoint {
	switch {
	case a.only != nil:
		return a.only
	case a.hashed:
		return a.cl.PickHash(a.hash, a.tried)
	}
	return a.cl.Pick(a.tried)
}

// next picks the endpoint of the next attempt and claims a request on it
// (its max_requests circuit breaker): it returns the endpoint and the
// request to send it, with ctx. ok is false when no endpoint can take the
// attempt, which next then answered. The caller calls ep.EndRequest when
// the attempt is over.
func (a *attempts) next(ctx context.Context) (ep *upstream.Endpoint, out *http.Request, ok bool) {
	ep = a.pick()
	if ep == nil {
		// Every endpoint is ejected and panic mode is off.
		a.cl.Stats().Observe(http.StatusServiceUnavailable)
		plainFor(a.w, a.grpc, http.StatusServiceUnavailable, "no healthy upstream for cluster "+a.cl.Name(), a.route, a.wc)
		return nil, nil, false
	}
	a.tried = ep
	out = a.o.request(ctx, a.attempt, a.r, ep.Address(), a.host, a.path, a.rawPath)
	if err := ep.BeginRequest(); err != nil {
		a.f.overflow(a.w, a.grpc, a.cl, err, a.route, a.wc)
		return nil, nil, false
	}
	a.attempt++
	return ep, out, true
}

// failed takes an attempt on ep that ended in err without a response
// (after ep.EndRequest): it is held against the endpoint, and retried when
// the policy says so and the route's deadline has not passed (timedOut:
// it has; perTryExpired: the attempt's own timeout ended it). It returns
// true for a retry; false when it answered the request.
func (a *attempts) failed(ep *upstream.Endpoint, err error, perTryExpired, timedOut bool) (retry bool) {
	cl := a.cl
	if oe := (*upstream.OverflowError)(nil); errors.As(err, &oe) {
		// Never retried, never held against the endpoint.
		a.f.overflow(a.w, a.grpc, cl, oe, a.route, a.wc)
		return false
	}
	// A request that timed out still waiting for a connection never
	// reached the endpoint: not its failure.
	reached := !errors.Is(err, upstream.ErrPending)
	if timedOut {
		if reached {
			ep.ReportLocal(upstream.TimedOut)
		}
		a.f.timedOut(a.w, a.grpc, cl, a.route, a.wc)
		return false
	}
	lastErr := classify(err)
	switch {
	case perTryExpired:
		lastErr = attemptErr{reason: "per-try timeout"}
		if reached {
			ep.ReportLocal(upstream.TimedOut)
		}
	case lastErr.connect:
		ep.ReportLocal(upstream.ConnectFailed)
	default:
		ep.ReportLocal(upstream.Reset)
	}
	if lastErr.connect {
		cl.Stats().ConnectFail()
	}
	if a.attempt <= a.retries && a.pol.retryOnError(lastErr, perTryExpired) && mayRetry(cl, &a.retrying) {
		cl.Stats().Retry()
		if a.f.log.Enabled(a.r.Context(), slog.LevelDebug) {
			a.f.log.Debug("retrying", "cluster", cl.Name(), "endpoint", ep.Address(), "err", lastErr.reason)
		}
		return true
	}
	a.f.fail(a.w, a.grpc, cl, ep, lastErr, a.route, a.wc)
	return false
}

// retryResponse reports ep's response to outlier detection and says
// whether the policy retries it; if so, the response is discarded (the
// caller still calls ep.EndRequest). When not, the caller observes and
// sends it.
func (a *attempts) retryResponse(ep *upstream.Endpoint, resp *http.Response) bool {
	if !a.retryHead(ep, resp) {
		return false
	}
	// Discard a small error body so the connection can be reused. (The
	// response is not to be touched once its body is closed: the upstream
	// reuses it.)
	io.CopyN(io.Discard, resp.Body, 4<<10)
	resp.Body.Close()
	return true
}

// retryHead is retryResponse on the response's head alone: the caller
// disposes of the body (and its connection) when it reports true.
func (a *attempts) retryHead(ep *upstream.Endpoint, resp *http.Response) bool {
	ep.Report(resp.StatusCode)
	if a.attempt > a.retries || !a.pol.retryOnResponse(resp) || !mayRetry(a.cl, &a.retrying) {
		return false
	}
	if a.f.log.Enabled(a.r.Context(), slog.LevelDebug) {
		a.f.log.Debug("retrying", "cluster", a.cl.Name(), "endpoint", ep.Address(), "status", resp.StatusCode)
	}
	a.cl.Stats().Retry()
	return true
}

// mayRetry claims one of the cluster's max_retries for the request's first
// retry; later retries of the same request reuse it. It returns false (and
// the request gives up with what it has) when max_retries requests are
// retrying already.
func mayRetry(cl *upstream.Cluster, retrying *bool) bool {
	if !*retrying {
		*retrying = cl.BeginRetry()
	}
	return *retrying
}

// endRetry releases what mayRetry claimed.
func endRetry(cl *upstream.Cluster, retrying *bool) {
	if *retrying {
		cl.EndRetry()
	}
}

// overflow answers a request a circuit breaker refused, as Envoy does: 503
// with x-envoy-overloaded, never retried.
func (f *Forwarder) overflow(w http.ResponseWriter, grpc bool, cl *upstream.Cluster, err error, route *router.Route, wc *router.WeightedCluster) {
	cl.Stats().Observe(http.StatusServiceUnavailable)
	w.Header()["X-Envoy-Overloaded"] = valTrue
	plainFor(w, grpc, http.StatusServiceUnavailable, "upstream connect error or disconnect/reset before headers. reset reason: overflow: "+err.Error(), route, wc)
}

func (f *Forwarder) timedOut(w http.ResponseWriter, grpc bool, cl *upstream.Cluster, route *router.Route, wc *router.WeightedCluster) {
	cl.Stats().Timeout()
	cl.Stats().Observe(http.StatusGatewayTimeout)
	plainFor(w, grpc, http.StatusGatewayTimeout, "upstream request timeout", route, wc)
}

func (f *Forwarder) fail(w http.ResponseWriter, grpc bool, cl *upstream.Cluster, ep *upstream.Endpoint, e attemptErr, route *router.Route, wc *router.WeightedCluster) {
	cl.Stats().Observe(http.StatusServiceUnavailable)
	what := "upstream reset before response"
	if e.connect {
		what = "upstream connect error"
	}
	plainFor(w, grpc, http.StatusServiceUnavailable, what+": cluster "+cl.Name()+" endpoint "+ep.Address()+": "+e.reason, route, wc)
}

// bufPool holds the buffers responses are copied through.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// respond streams resp to w. Once the status line is written nothing can be
// retried; a failure mid-body aborts the downstream connection so the client
// sees a truncated response rather than a complete-looking one.
func (f *Forwarder) respond(ctx context.Context, w http.ResponseWriter, resp *http.Response, route *router.Route, wc *router.WeightedCluster, setCookie string) {
	defer resp.Body.Close()
	if !passFields(w, resp, route, wc, setCookie) {
		upstream.LoadHeader(resp)
		if !adoptHeader(w, resp) {
			copyEndToEnd(w.Header(), resp.Header)
		}
		dst := w.Header()
		if setCookie != "" {
			// A new slice: the upstream's may be shared.
			dst["Set-Cookie"] = append(slices.Clip(dst["Set-Cookie"]), setCookie)
		}
		responseHeaders(dst, route, wc)
	}
	w.WriteHeader(resp.StatusCode)
	// A response of unknown length may be a stream (server-sent events, a
	// long poll): flush every chunk as it arrives.
	stream := resp.ContentLength < 0
	rc := http.NewResponseController(w)
	if stream {
		rc.Flush()
	}
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return // client went away
			}
			if stream {
				rc.Flush()
			}
		}
		if err == io.EOF {
			passTrailers(w, resp.Trailer)
			return
		}
		if err != nil {
			if ctx.Err() != nil {
				f.log.Debug("route timeout while streaming the response")
			} else {
				f.log.Debug("upstream failed while streaming the response", "err", err)
			}
			panic(http.ErrAbortHandler)
		}
	}
}

// passTrailers sets an upstream response's trailers (known once its body
// is read) on w as net/http's handlers declare trailers after the head:
// keys prefixed with http.TrailerPrefix. gRPC's status travels this way.
// A writer that cannot send trailers (the HTTP/1.1 server's) drops them.
func passTrailers(w http.ResponseWriter, tr http.Header) {
	if len(tr) == 0 {
		return
	}
	dst := w.Header()
	for k, vs := range tr {
		if !isHopHeader(k) {
			dst[http.TrailerPrefix+k] = vs
		}
	}
}

// classify turns a RoundTrip error into what a user should read.
func classify(err error) attemptErr {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return attemptErr{connect: true, reason: reason(op.Err)}
	}
	return attemptErr{reason: reason(err)}
}

func reason(err error) string {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset by peer"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed before a response"
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	}
	var dns *net.DNSError
	if errors.As(err, &dns) {
		return fmt.Sprintf("resolving %s: %s", dns.Name, dns.Err)
	}
	var sys *os.SyscallError
	if errors.As(err, &sys) {
		return sys.Err.Error()
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Err != nil {
		return reason(op.Err)
	}
	return err.Error()
}

// sleepBackoff waits before retry number attempt, like Envoy: a random time
// up to base·2^(attempt-1), at most max. It returns false if ctx ended.
func sleepBackoff(ctx context.Context, attempt int, p policy) bool {
	t := time.NewTimer(backoff(attempt, p))
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is the wait before retry number attempt, like Envoy's: a random
// time up to base·2^(attempt-1), at most max.
func backoff(attempt int, p policy) time.Duration {
	limit := min(p.base<<(attempt-1), p.max)
	return time.Duration(rand.Int64N(int64(limit)))
}

// requestIDs hands out X-Request-Id values cut from a buffer it fills
// front to back, so that a request's id costs no allocation of its own.
// No byte of a buffer is written twice: a string cut from it stays as it
// is for as long as anything holds it.
type requestIDs struct{ buf []byte }

// idsPerBuffer is how many ids a buffer holds.
const idsPerBuffer = 64

// next returns a new random UUID (version 4), as Envoy generates.
func (ids *requestIDs) next() string {
	const n = 36
	if len(ids.buf) < n {
		ids.buf = make([]byte, n*idsPerBuffer)
	}
	s := ids.buf[:n:n]
	ids.buf = ids.buf[n:]
	var b [16]byte
	a, c := rand.Uint64(), rand.Uint64()
	for i := range 8 {
		b[i] = byte(a >> (8 * i))
		b[8+i] = byte(c >> (8 * i))
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	const hex = "0123456789abcdef"
	j := 0
	for i, x := range b {
		if i == 4 || i == 6 || i == 8 || i == 10 {
			s[j] = '-'
			j++
		}
		s[j], s[j+1] = hex[x>>4], hex[x&0xf]
		j += 2
	}
	return unsafe.String(&s[0], n)
}
