// Package router is weft-proxy's HTTP route matcher. Compile turns an Envoy
// RDS RouteConfiguration into an immutable Table, and Table.Select picks the
// route for a request with Envoy's semantics: virtual host by domain (exact,
// then suffix wildcard, then prefix wildcard, then "*"), then the first route
// in order whose path, header and query parameter matchers all accept the
// request.
//
// A Table never changes after Compile, so any number of goroutines may call
// Select concurrently without locks; a new configuration is a new Table that
// the caller swaps in. Select does not allocate on the paths requests
// normally take: any path, header or query matcher, a host in any case, no
// matching route (see BenchmarkSelect and BenchmarkSelectUncommon). It does
// for a header sent several times that a matcher reads (the values are
// joined), a mixed-case host longer than 256 bytes, and ErrNoVirtualHost.
//
// Anything in the configuration that changes which route is chosen or where
// the request goes, and that this package cannot honour, is a Compile error
// whose text names the route configuration, virtual host, route and field,
// because it is sent back to the control plane as the NACK message.
//
// Besides choosing the route, Compile prepares what the handlers do with it:
// redirects (Route.Redirect, Route.RedirectLocation), path rewrites
// (prefix_rewrite, regex_rewrite), header mutations of every level
// (HeaderMutations), request mirror policies (Mirror) and the fault and
// CORS filters' per-route configuration (typed_per_filter_config under
// FaultFilterName and CorsFilterName, inherited from the virtual host and
// route configuration) and hash policies (route.hash_policy, see
// Route.Hash). Other decorations (the deprecated cors fields of virtual
// hosts and routes, other filters' per-filter config, metadata,
// decorators, stats) are ignored.
package router

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// ErrNoVirtualHost is returned (wrapped with the host) by Select when no
// virtual host's domains match the request's host.
var ErrNoVirtualHost = errors.New("no virtual host")

// ErrNoRoute is returned (wrapped with the virtual host name) by Select when
// a virtual host matched but none of its routes accept the request.
var ErrNoRoute = errors.New("no matching route")

// Table is a compiled, immutable route configuration.
type Table struct {
	name string

	// exact maps a lower-case domain to its virtual host.
	exact map[string]*virtualHost
	// suffixes holds "*.foo.com"-style wildcards keyed by the part after the
	// "*", grouped by that part's length, longest first.
	suffixes []wildcardGroup
	// prefixes holds "foo.*"-style wildcards keyed by the part before the
	// "*", grouped by length, longest first.
	prefixes []wildcardGroup
	// fallback is the virtual host with domain "*", or nil.
	fallback *virtualHost

	ignorePort       bool
	ignorePathParams bool

	// faults and cors say whether any route has a fault injection or CORS
	// policy: a chain may leave out a filter that has nothing to do.
	faults, cors bool

	// enc is what the next version of the configuration may reuse, for a
	// table compiled from an Encoded; nil otherwise.
	enc *encoding
}

// HasFaults reports whether any route of the table injects faults.
func (t *Table) HasFaults() bool { return t.faults }

// HasCors reports whether any route of the table has a CORS policy.
func (t *Table) HasCors() bool { return t.cors }

type wildcardGroup struct {
	n     int
	hosts map[string]*virtualHost
}

type virtualHost struct {
	name    string
	domains []string
	routes  []*Route
}

// Route is one compiled route: what Select returns. It is shared by every
// request that selects it and must not be modified.
type Route struct {
	// Name is the Envoy route name (the Istio HTTP route name); may be empty.
	Name string
	// VirtualHost is the name of the virtual host the route belongs to.
	VirtualHost string

	// Exactly one of Cluster, Weighted, Direct and Redirect is set.

	// Cluster is the upstream cluster of a route.cluster action.
	Cluster string
	// Weighted holds route.weighted_clusters, in configuration order,
	// including entries of weight zero (which PickCluster never returns).
	Weighted []WeightedCluster
	// Direct is the response of a direct_response action.
	Direct *DirectResponse
	// Redirect is a redirect action.
	Redirect *Redirect

	// Timeout is the whole-request upstream timeout; 0 means none. As in
	// Envoy, a route action without a timeout field gets 15s; Weft's
	// control plane sets 0s explicitly when the user set none.
	Timeout time.Duration
	// Retry is the route's retry policy, or the virtual host's when the route
	// has none. The zero value means no retries.
	Retry RetryPolicy
	// PrefixRewrite replaces the matched path prefix (route.prefix_rewrite).
	PrefixRewrite string
	// RegexRewrite rewrites the path (route.regex_rewrite); never set
	// together with PrefixRewrite.
	RegexRewrite *RegexRewrite
	// HostRewrite replaces the Host / :authority (route.host_rewrite_literal).
	HostRewrite string

	// RequestHeaders and ResponseHeaders are the header mutations of the
	// route, its virtual host and its route configuration, in Envoy's
	// order; a picked weighted cluster's own are applied before them.
	RequestHeaders, ResponseHeaders HeaderMutations
	// Mirrors are the request mirror policies (the route's, else the
	// virtual host's, else the route configuration's).
	Mirrors []Mirror
	// Fault is the fault filter's configuration for the route (its own
	// typed_per_filter_config, else its virtual host's, else its route
	// configuration's); nil when none of them has one, in which case the
	// filter's own configuration applies.
	Fault *Fault
	// Cors is the CORS filter's policy for the route: its own
	// typed_per_filter_config merged over its virtual host's and route
	// configuration's; nil when none of them has one. Either way, as when
	// a FilterConfig disables the filter (Enabled and Shadow 0), the
	// filter does nothing.
	Cors *CorsPolicy
	// HashPolicies are route.hash_policy, in order: what a RING_HASH or
	// MAGLEV cluster balances by (see Route.Hash).
	HashPolicies []HashPolicy

	match routeMatch
	// cumulative[i] is the sum of Weighted[0..i].Weight; total is the last.
	cumulative []uint64
	total      uint64
}

// WeightedCluster is one entry of a weighted_clusters action.
type WeightedCluster struct {
	Name   string
	Weight uint32
	// HostRewrite is the entry's host_rewrite_literal; the route's, when
	// set, wins over it.
	HostRewrite string
	// RequestHeaders and ResponseHeaders are the entry's own header
	// mutations, applied before the route's when the entry is picked.
	RequestHeaders, ResponseHeaders HeaderMutations
}

// DirectResponse is a response the proxy sends itself (direct_response).
type DirectResponse struct {
	// Status is the HTTP status code, 200 to 599.
	Status int
	// Body is the inline body; may be empty.
	Body string
}

// Name returns the route configuration name.
func (t *Table) Name() string { return t.name }

// PickCluster returns the cluster for a request given a uniformly random
// number rnd: for a single cluster that cluster; for weighted clusters the
// one whose cumulative-weight band contains rnd % total weight; for a direct
// response "".
func (r *Route) PickCluster(rnd uint64) string {
	if r.total == 0 {
		return r.Cluster
	}
	return r.PickWeighted(rnd).Name
}

// PickWeighted returns the weighted_clusters entry for a request given a
// uniformly random number rnd, or nil when the route has none.
func (r *Route) PickWeighted(rnd uint64) *WeightedCluster {
	if r.total == 0 {
		return nil
	}
	x := rnd % r.total
	for i, upper := range r.cumulative {
		if x < upper {
			return &r.Weighted[i]
		}
	}
	return &r.Weighted[len(r.Weighted)-1] // unreachable: x < total
}

// Select finds the virtual host for the request's host and the first route
// whose match accepts the request. The host is req.Host (for an
// absolute-form request such as `GET http://reviews:9080/x`, Go's server sets
// it from the URL), else req.URL.Host; it is compared case-insensitively. The
// path matched is the request's escaped path (req.URL.EscapedPath()) without
// the query string.
//
// The errors wrap ErrNoVirtualHost (naming the host) or ErrNoRoute (naming
// the virtual host); their text is meant for a 404 body.
func (t *Table) Select(req *http.Request) (*Route, error) {
	v := newRequestView(req)
	vh := t.findVirtualHost(v.host, v.scheme)
	if vh == nil {
		return nil, &noVirtualHostError{host: v.host}
	}
	if t.ignorePathParams {
		if i := strings.IndexByte(v.path, ';'); i >= 0 {
			v.path = v.path[:i]
		}
	}
	for _, r := range vh.routes {
		if r.match.matches(&v) {
			return r, nil
		}
	}
	return nil, noRouteError{vh}
}

// noVirtualHostError is Select's error when no virtual host matches: it
// wraps ErrNoVirtualHost and names the host.
type noVirtualHostError struct{ host string }

func (e *noVirtualHostError) Error() string {
	return ErrNoVirtualHost.Error() + " for host " + strconv.Quote(e.host)
}

func (e *noVirtualHostError) Unwrap() error { return ErrNoVirtualHost }

// noRouteError is Select's error when a virtual host matched but none of its
// routes did: it wraps ErrNoRoute and names the virtual host. It is a
// single pointer, so making an error of it does not allocate.
type noRouteError struct{ vh *virtualHost }

func (e noRouteError) Error() string {
	return ErrNoRoute.Error() + " in virtual host " + strconv.Quote(e.vh.name)
}

func (e noRouteError) Unwrap() error { return ErrNoRoute }

// requestView is what the matchers read from a request, computed once per
// Select. It lives on Select's stack.
type requestView struct {
	req    *http.Request
	host   string // as sent, with port, original case
	scheme string
	path   string // escaped, without query
	query  string // raw query, without '?'
	hasQ   bool   // the request target had a '?'
}

func newRequestView(req *http.Request) requestView {
	v := requestView{req: req, host: req.Host, scheme: "http", path: "/"}
	if req.TLS != nil {
		v.scheme = "https"
	}
	if u := req.URL; u != nil {
		if v.host == "" {
			v.host = u.Host
		}
		if u.Scheme != "" {
			v.scheme = strings.ToLower(u.Scheme)
		}
		if p := u.EscapedPath(); p != "" {
			v.path = p
		}
		v.query = u.RawQuery
		v.hasQ = u.RawQuery != "" || u.ForceQuery
	}
	return v
}

// pathWithQuery is the :path pseudo-header; only routes that match on :path
// call it. With a query it is usually the end of the request target as
// received (origin-form "/p?q", absolute-form "http://h/p?q"), which is then
// used as is; otherwise it is built, which allocates.
func (v *requestView) pathWithQuery() string {
	if !v.hasQ {
		return v.path
	}
	ru := v.req.RequestURI
	if n := len(v.path) + 1 + len(v.query); len(ru) >= n {
		tail := ru[len(ru)-n:]
		if tail[:len(v.path)] == v.path && tail[len(v.path)] == '?' && tail[len(v.path)+1:] == v.query {
			return tail
		}
	}
	return v.path + "?" + v.query
}

// RewritePath applies the route's prefix_rewrite or regex_rewrite to path
// (without its query), as Envoy does: the matched prefix of a prefix or
// path_separated_prefix route, the whole path of an exact or regex route, is
// replaced by prefix_rewrite; every match of regex_rewrite's pattern is
// substituted. A path a prefix route did not match is returned as it is.
func (r *Route) RewritePath(path string) string {
	return r.match.rewrite(path, r.PrefixRewrite, r.RegexRewrite)
}
