package router

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"regexp"
	"regexp/syntax"
	"strings"
	"time"

	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	corev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/core/v3"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	matcherv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/matcher/v3"
)

// defaultRouteTimeout is Envoy's route timeout when route.timeout is unset.
const defaultRouteTimeout = 15 * time.Second

// defaultMaxDirectBody is Envoy's default max_direct_response_body_size_bytes.
const defaultMaxDirectBody = 4096

// Compile builds a Table from a RouteConfiguration. It returns an error that
// says what is wrong and where (route configuration, virtual host, route
// index and name, field) for anything it cannot honour, for example:
//
//	route config http_proxy: virtual host "reviews.default.svc.cluster.local:9080": route 0 ("jason"): safe_regex "([a-z": error parsing regexp: missing closing ): `([a-z`
func Compile(rc *routev3.RouteConfiguration) (*Table, error) {
	if rc == nil {
		return nil, errors.New("route config: missing")
	}
	t, err := compileTable(rc)
	if err != nil {
		return nil, fmt.Errorf("route config %s: %w", rc.GetName(), err)
	}
	return t, nil
}

func compileTable(rc *routev3.RouteConfiguration) (*Table, error) {
	domains := 0
	for _, vh := range rc.GetVirtualHosts() {
		domains += len(vh.GetDomains())
	}
	b, err := newTableBuilder(rc, domains)
	if err != nil {
		return nil, err
	}
	for i, pb := range rc.GetVirtualHosts() {
		if _, err := b.compile(i, pb); err != nil {
			return nil, err
		}
	}
	return b.table(rc), nil
}

// tableBuilder builds a Table one virtual host at a time.
type tableBuilder struct {
	sc           *scope
	maxBody      uint32
	idx          *domainIndex
	faults, cors bool
}

// newTableBuilder checks and compiles what rc sets outside its virtual
// hosts, for a table of about domains domains.
func newTableBuilder(rc *routev3.RouteConfiguration, domains int) (*tableBuilder, error) {
	if rc.GetVhds() != nil {
		return nil, errors.New("vhds (on-demand virtual hosts) is not supported")
	}
	if rc.GetVhostHeader() != "" {
		return nil, fmt.Errorf("vhost_header %q is not supported: virtual hosts are selected by :authority", rc.GetVhostHeader())
	}
	maxBody := uint32(defaultMaxDirectBody)
	if w := rc.GetMaxDirectResponseBodySizeBytes(); w != nil {
		maxBody = w.GetValue()
	}
	sc, err := compileScope(rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove(), rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove(),
		rc.GetTypedPerFilterConfig(), rc.GetRequestMirrorPolicies(), nil)
	if err != nil {
		return nil, err
	}
	sc.mostSpecificWins = rc.GetMostSpecificHeaderMutationsWins()
	return &tableBuilder{sc: sc, maxBody: maxBody, idx: newDomainIndex(domains)}, nil
}

// compile compiles virtual host i, pb, and adds it.
func (b *tableBuilder) compile(i int, pb *routev3.VirtualHost) (*virtualHost, error) {
	vh, err := compileVirtualHost(pb, b.maxBody, b.sc)
	if err == nil {
		err = b.add(vh)
	}
	if err != nil {
		if pb.GetName() == "" {
			return nil, fmt.Errorf("virtual host %d: %w", i, err)
		}
		return nil, fmt.Errorf("virtual host %q: %w", pb.GetName(), err)
	}
	return vh, nil
}

// add adds a compiled virtual host: its domains must be free.
func (b *tableBuilder) add(vh *virtualHost) error {
	for _, d := range vh.domains {
		if err := b.idx.add(vh, d); err != nil {
			return fmt.Errorf("domains: %w", err)
		}
	}
	for _, r := range vh.routes {
		b.faults = b.faults || r.Fault != nil
		b.cors = b.cors || r.Cors != nil
	}
	return nil
}

func (b *tableBuilder) table(rc *routev3.RouteConfiguration) *Table {
	return &Table{
		faults:           b.faults,
		cors:             b.cors,
		name:             rc.GetName(),
		exact:            b.idx.exact,
		suffixes:         sortedGroups(b.idx.suffixes),
		prefixes:         sortedGroups(b.idx.prefixes),
		fallback:         b.idx.fallback,
		ignorePort:       rc.GetIgnorePortInHostMatching(),
		ignorePathParams: rc.GetIgnorePathParametersInPathMatching(),
	}
}

// scope is what a route inherits from its virtual host and route
// configuration.
type scope struct {
	// rc and vh are the header mutations of the route configuration and
	// of the virtual host.
	rc, vh           compiledLevels
	mostSpecificWins bool
	fault            *Fault
	cors             *CorsPolicy
	mirrors          []Mirror
}

// compileScope compiles the header mutations, fault filter configuration
// and mirror policies of a route configuration (parent nil) or of a virtual
// host (parent its route configuration's scope), inheriting the fault and
// mirror policies the level does not set.
func compileScope(reqAdd []*corev3.HeaderValueOption, reqRemove []string, respAdd []*corev3.HeaderValueOption, respRemove []string,
	perFilter map[string]*anypb.Any, mirrors []*routev3.RouteAction_RequestMirrorPolicy, parent *scope) (*scope, error) {
	lv, err := compileLevels(headerSources{reqAdd: reqAdd, reqRemove: reqRemove, respAdd: respAdd, respRemove: respRemove})
	if err != nil {
		return nil, err
	}
	sc := &scope{}
	if parent != nil {
		*sc = *parent
		sc.vh = lv
	} else {
		sc.rc = lv
	}
	f, err := perFilterFault(perFilter)
	if err != nil {
		return nil, err
	}
	if f != nil {
		sc.fault = f
	}
	cp, err := perFilterCors(perFilter)
	if err != nil {
		return nil, err
	}
	sc.cors = mergeCors(cp, sc.cors)
	ms, err := compileMirrors(mirrors)
	if err != nil {
		return nil, err
	}
	if len(ms) > 0 {
		sc.mirrors = ms
	}
	return sc, nil
}

func compileVirtualHost(pb *routev3.VirtualHost, maxBody uint32, rcScope *scope) (*virtualHost, error) {
	if pb.GetMatcher() != nil {
		return nil, errors.New("matcher (a match tree instead of routes) is not supported")
	}
	if pb.GetRequireTls() != routev3.VirtualHost_NONE {
		return nil, fmt.Errorf("require_tls %s is not supported", pb.GetRequireTls())
	}
	if pb.GetName() == "" {
		return nil, errors.New("name is empty")
	}
	if len(pb.GetDomains()) == 0 {
		return nil, errors.New("domains: at least one domain is required")
	}
	var vhRetry *RetryPolicy
	if p := pb.GetRetryPolicy(); p != nil {
		rp, err := compileRetry(p)
		if err != nil {
			return nil, fmt.Errorf("retry_policy: %w", err)
		}
		vhRetry = &rp
	}
	if pb.GetRetryPolicyTypedConfig() != nil {
		return nil, errors.New("retry_policy_typed_config is not supported")
	}
	sc, err := compileScope(pb.GetRequestHeadersToAdd(), pb.GetRequestHeadersToRemove(), pb.GetResponseHeadersToAdd(), pb.GetResponseHeadersToRemove(),
		pb.GetTypedPerFilterConfig(), pb.GetRequestMirrorPolicies(), rcScope)
	if err != nil {
		return nil, err
	}
	vh := &virtualHost{name: pb.GetName(), domains: pb.GetDomains(), routes: make([]*Route, 0, len(pb.GetRoutes()))}
	for i, rpb := range pb.GetRoutes() {
		r, err := compileRoute(rpb, vh.name, vhRetry, maxBody, sc)
		if err != nil {
			if rpb.GetName() == "" {
				return nil, fmt.Errorf("route %d: %w", i, err)
			}
			return nil, fmt.Errorf("route %d (%q): %w", i, rpb.GetName(), err)
		}
		vh.routes = append(vh.routes, r)
	}
	return vh, nil
}

func compileRoute(pb *routev3.Route, vhName string, vhRetry *RetryPolicy, maxBody uint32, sc *scope) (*Route, error) {
	r := &Route{Name: pb.GetName(), VirtualHost: vhName}
	m, err := compileMatch(pb.GetMatch())
	if err != nil {
		return nil, err
	}
	r.match = m
	lv, err := compileLevels(headerSources{reqAdd: pb.GetRequestHeadersToAdd(), reqRemove: pb.GetRequestHeadersToRemove(),
		respAdd: pb.GetResponseHeadersToAdd(), respRemove: pb.GetResponseHeadersToRemove()})
	if err != nil {
		return nil, err
	}
	if sc.mostSpecificWins {
		r.RequestHeaders = mutations(sc.rc.req, sc.vh.req, lv.req)
		r.ResponseHeaders = mutations(sc.rc.resp, sc.vh.resp, lv.resp)
	} else {
		r.RequestHeaders = mutations(lv.req, sc.vh.req, sc.rc.req)
		r.ResponseHeaders = mutations(lv.resp, sc.vh.resp, sc.rc.resp)
	}
	if r.Fault, err = perFilterFault(pb.GetTypedPerFilterConfig()); err != nil {
		return nil, err
	}
	if r.Fault == nil {
		r.Fault = sc.fault
	}
	cp, err := perFilterCors(pb.GetTypedPerFilterConfig())
	if err != nil {
		return nil, err
	}
	r.Cors = mergeCors(cp, sc.cors)
	switch a := pb.GetAction().(type) {
	case *routev3.Route_Route:
		if err := compileAction(a.Route, r, vhRetry); err != nil {
			return nil, fmt.Errorf("route: %w", err)
		}
		if len(r.Mirrors) == 0 {
			r.Mirrors = sc.mirrors
		}
	case *routev3.Route_DirectResponse:
		d, err := compileDirect(a.DirectResponse, maxBody)
		if err != nil {
			return nil, fmt.Errorf("direct_response: %w", err)
		}
		r.Direct = d
	case *routev3.Route_Redirect:
		rd, err := compileRedirect(a.Redirect)
		if err != nil {
			return nil, fmt.Errorf("redirect: %w", err)
		}
		r.Redirect = rd
	case *routev3.Route_FilterAction:
		return nil, errors.New("filter_action is not supported")
	case *routev3.Route_NonForwardingAction:
		return nil, errors.New("non_forwarding_action is not supported")
	case nil:
		return nil, errors.New("no action: one of route, redirect or direct_response is required")
	default:
		return nil, fmt.Errorf("unsupported action %T", a)
	}
	return r, nil
}

func compileMatch(pb *routev3.RouteMatch) (routeMatch, error) {
	var m routeMatch
	if pb == nil {
		return m, errors.New("match is missing")
	}
	switch {
	case pb.GetRuntimeFraction() != nil:
		return m, errors.New("match.runtime_fraction is not supported")
	case pb.GetGrpc() != nil:
		return m, errors.New("match.grpc is not supported")
	case pb.GetTlsContext() != nil:
		return m, errors.New("match.tls_context is not supported")
	case len(pb.GetDynamicMetadata()) > 0:
		return m, errors.New("match.dynamic_metadata is not supported")
	case len(pb.GetCookies()) > 0:
		return m, errors.New("match.cookies is not supported")
	case pb.GetFilterState() != nil:
		return m, errors.New("match.filter_state is not supported")
	}
	m.caseSensitive = pb.GetCaseSensitive() == nil || pb.GetCaseSensitive().GetValue()
	pathValue := func(p string) string {
		if m.caseSensitive {
			return p
		}
		return asciiLower(p)
	}
	switch ps := pb.GetPathSpecifier().(type) {
	case *routev3.RouteMatch_Prefix:
		m.kind, m.path = pathPrefix, pathValue(ps.Prefix)
	case *routev3.RouteMatch_Path:
		m.kind, m.path = pathExact, pathValue(ps.Path)
	case *routev3.RouteMatch_PathSeparatedPrefix:
		p := ps.PathSeparatedPrefix
		if p == "" || strings.ContainsAny(p, "?#") || strings.HasSuffix(p, "/") {
			return m, fmt.Errorf("path_separated_prefix %q: must be non-empty, without '?' or '#', and not end in '/'", p)
		}
		m.kind, m.path = pathSeparatedPrefix, pathValue(p)
	case *routev3.RouteMatch_SafeRegex:
		re, err := compileFullRegex(ps.SafeRegex.GetRegex())
		if err != nil {
			return m, fmt.Errorf("safe_regex %q: %w", ps.SafeRegex.GetRegex(), err)
		}
		m.kind, m.re = pathRegex, re
	case *routev3.RouteMatch_ConnectMatcher_:
		return m, errors.New("connect_matcher is not supported")
	case *routev3.RouteMatch_PathMatchPolicy:
		return m, errors.New("path_match_policy is not supported")
	case nil:
		return m, errors.New("match has no path specifier: one of prefix, path, safe_regex or path_separated_prefix is required")
	default:
		return m, fmt.Errorf("unsupported path specifier %T", ps)
	}
	for i, h := range pb.GetHeaders() {
		hm, err := compileHeader(h)
		if err != nil {
			return m, fmt.Errorf("headers[%d] (%q): %w", i, h.GetName(), err)
		}
		m.headers = append(m.headers, hm)
	}
	for i, q := range pb.GetQueryParameters() {
		qm, err := compileQuery(q)
		if err != nil {
			return m, fmt.Errorf("query_parameters[%d] (%q): %w", i, q.GetName(), err)
		}
		m.queries = append(m.queries, qm)
	}
	return m, nil
}

// compileFullRegex compiles an RE2 pattern that must match the whole input,
// as Envoy's safe_regex does. The pattern is checked on its own first so
// that the error names the user's pattern and so that the anchoring group
// cannot change its meaning.
func compileFullRegex(pattern string) (*regexp.Regexp, error) {
	if _, err := regexp.Compile(pattern); err != nil {
		return nil, err
	}
	if size, err := programSize(pattern); err != nil {
		return nil, err
	} else if size > MaxProgramSize {
		return nil, fmt.Errorf("regex %q: RE2 program size of %d > max program size of %d", pattern, size, MaxProgramSize)
	}
	return regexp.Compile(`^(?:` + pattern + `)$`)
}

// MaxProgramSize bounds the size of a compiled regex, as Envoy's RE2
// engine does by default (max_program_size 100): a pattern that large is
// expensive on every request, so the route configuration is rejected.
const MaxProgramSize = 100

// programSize counts the instructions of pattern's compiled program, the
// measure RE2's max_program_size limits.
func programSize(pattern string) (int, error) {
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return 0, err
	}
	prog, err := syntax.Compile(re.Simplify())
	if err != nil {
		return 0, err
	}
	return len(prog.Inst), nil
}

func compileString(pb *matcherv3.StringMatcher) (stringMatcher, error) {
	m := stringMatcher{ignoreCase: pb.GetIgnoreCase()}
	value := func(v string) string {
		if m.ignoreCase {
			return asciiLower(v)
		}
		return v
	}
	switch p := pb.GetMatchPattern().(type) {
	case *matcherv3.StringMatcher_Exact:
		m.kind, m.value = strExact, value(p.Exact)
	case *matcherv3.StringMatcher_Prefix:
		m.kind, m.value = strPrefix, value(p.Prefix)
	case *matcherv3.StringMatcher_Suffix:
		m.kind, m.value = strSuffix, value(p.Suffix)
	case *matcherv3.StringMatcher_Contains:
		m.kind, m.value = strContains, value(p.Contains)
	case *matcherv3.StringMatcher_SafeRegex:
		re, err := compileFullRegex(p.SafeRegex.GetRegex())
		if err != nil {
			return m, fmt.Errorf("safe_regex %q: %w", p.SafeRegex.GetRegex(), err)
		}
		m.kind, m.re = strRegex, re
	case *matcherv3.StringMatcher_Custom:
		return m, fmt.Errorf("custom matcher %q is not supported", p.Custom.GetName())
	case nil:
		return m, errors.New("no match pattern: one of exact, prefix, suffix, contains or safe_regex is required")
	default:
		return m, fmt.Errorf("unsupported match pattern %T", p)
	}
	return m, nil
}

func compileHeader(pb *routev3.HeaderMatcher) (headerMatcher, error) {
	m := headerMatcher{invert: pb.GetInvertMatch(), missingAsEmpty: pb.GetTreatMissingHeaderAsEmpty()}
	name := strings.ToLower(pb.GetName())
	switch name {
	case "":
		return m, errors.New("name is empty")
	case ":method":
		m.source = srcMethod
	case ":authority", "host":
		m.source = srcAuthority
	case ":path":
		m.source = srcPath
	case ":scheme":
		m.source = srcScheme
	default:
		if name[0] == ':' {
			return m, fmt.Errorf("pseudo-header %q is not supported (supported: :method, :authority, :path, :scheme)", name)
		}
		m.source, m.key = srcHeader, http.CanonicalHeaderKey(name)
	}
	switch s := pb.GetHeaderMatchSpecifier().(type) {
	case *routev3.HeaderMatcher_StringMatch:
		sm, err := compileString(s.StringMatch)
		if err != nil {
			return m, fmt.Errorf("string_match: %w", err)
		}
		m.kind, m.str = hdrString, sm
	case *routev3.HeaderMatcher_PresentMatch:
		m.kind, m.present = hdrPresent, s.PresentMatch
	case *routev3.HeaderMatcher_ExactMatch:
		if s.ExactMatch == "" {
			m.kind = hdrAnyValue
		} else {
			m.kind, m.str = hdrString, stringMatcher{kind: strExact, value: s.ExactMatch}
		}
	case *routev3.HeaderMatcher_PrefixMatch:
		m.kind, m.str = hdrString, stringMatcher{kind: strPrefix, value: s.PrefixMatch}
	case *routev3.HeaderMatcher_SuffixMatch:
		m.kind, m.str = hdrString, stringMatcher{kind: strSuffix, value: s.SuffixMatch}
	case *routev3.HeaderMatcher_ContainsMatch:
		m.kind, m.str = hdrString, stringMatcher{kind: strContains, value: s.ContainsMatch}
	case *routev3.HeaderMatcher_SafeRegexMatch:
		re, err := compileFullRegex(s.SafeRegexMatch.GetRegex())
		if err != nil {
			return m, fmt.Errorf("safe_regex_match %q: %w", s.SafeRegexMatch.GetRegex(), err)
		}
		m.kind, m.str = hdrString, stringMatcher{kind: strRegex, re: re}
	case *routev3.HeaderMatcher_RangeMatch:
		m.kind, m.rangeStart, m.rangeEnd = hdrRange, s.RangeMatch.GetStart(), s.RangeMatch.GetEnd()
		if m.rangeStart >= m.rangeEnd {
			return m, fmt.Errorf("range_match [%d, %d) is empty", m.rangeStart, m.rangeEnd)
		}
	case nil:
		// Envoy: no specifier means "the header is present".
		m.kind, m.present = hdrPresent, true
	default:
		return m, fmt.Errorf("unsupported header match %T", s)
	}
	return m, nil
}

func compileQuery(pb *routev3.QueryParameterMatcher) (queryMatcher, error) {
	m := queryMatcher{name: pb.GetName()}
	if m.name == "" {
		return m, errors.New("name is empty")
	}
	switch s := pb.GetQueryParameterMatchSpecifier().(type) {
	case *routev3.QueryParameterMatcher_StringMatch:
		sm, err := compileString(s.StringMatch)
		if err != nil {
			return m, fmt.Errorf("string_match: %w", err)
		}
		m.str = &sm
	case *routev3.QueryParameterMatcher_PresentMatch:
		m.hasPresent, m.present = true, s.PresentMatch
	case nil:
		// The parameter must be present.
	default:
		return m, fmt.Errorf("unsupported query parameter match %T", s)
	}
	return m, nil
}

func compileAction(a *routev3.RouteAction, r *Route, vhRetry *RetryPolicy) error {
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return errors.New("cluster is empty")
		}
		r.Cluster = cs.Cluster
	case *routev3.RouteAction_WeightedClusters:
		if err := compileWeighted(cs.WeightedClusters, r); err != nil {
			return fmt.Errorf("weighted_clusters: %w", err)
		}
	case *routev3.RouteAction_ClusterHeader:
		return fmt.Errorf("cluster_header %q is not supported", cs.ClusterHeader)
	case *routev3.RouteAction_ClusterSpecifierPlugin, *routev3.RouteAction_InlineClusterSpecifierPlugin:
		return errors.New("cluster specifier plugins are not supported")
	case nil:
		return errors.New("no cluster: one of cluster or weighted_clusters is required")
	default:
		return fmt.Errorf("unsupported cluster specifier %T", cs)
	}

	r.PrefixRewrite = a.GetPrefixRewrite()
	if rr := a.GetRegexRewrite(); rr != nil {
		if r.PrefixRewrite != "" {
			return errors.New("prefix_rewrite and regex_rewrite are both set; only one may be")
		}
		var err error
		if r.RegexRewrite, err = compileRegexRewrite(rr); err != nil {
			return fmt.Errorf("regex_rewrite: %w", err)
		}
	}
	ms, err := compileMirrors(a.GetRequestMirrorPolicies())
	if err != nil {
		return err
	}
	r.Mirrors = ms
	if r.HashPolicies, err = compileHashPolicies(a.GetHashPolicy()); err != nil {
		return err
	}
	switch {
	case a.GetPathRewritePolicy() != nil:
		return errors.New("path_rewrite_policy is not supported")
	case a.GetPathRewrite() != "":
		return errors.New("path_rewrite is not supported")
	}
	switch hr := a.GetHostRewriteSpecifier().(type) {
	case *routev3.RouteAction_HostRewriteLiteral:
		r.HostRewrite = hr.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		if hr.AutoHostRewrite.GetValue() {
			return errors.New("auto_host_rewrite is not supported")
		}
	case nil:
	default:
		return fmt.Errorf("host rewrite %T is not supported (only host_rewrite_literal)", hr)
	}

	r.Timeout = defaultRouteTimeout
	if d := a.GetTimeout(); d != nil {
		t, err := duration(d)
		if err != nil {
			return fmt.Errorf("timeout: %w", err)
		}
		r.Timeout = t
	}

	if a.GetRetryPolicyTypedConfig() != nil {
		return errors.New("retry_policy_typed_config is not supported")
	}
	if p := a.GetRetryPolicy(); p != nil {
		rp, err := compileRetry(p)
		if err != nil {
			return fmt.Errorf("retry_policy: %w", err)
		}
		r.Retry = rp
	} else if vhRetry != nil {
		r.Retry = *vhRetry
	}
	return nil
}

func compileWeighted(pb *routev3.WeightedCluster, r *Route) error {
	if pb.GetRandomValueSpecifier() != nil {
		return errors.New("header_name / use_hash_policy is not supported")
	}
	if len(pb.GetClusters()) == 0 {
		return errors.New("clusters is empty")
	}
	var total uint64
	for i, c := range pb.GetClusters() {
		if c.GetClusterHeader() != "" {
			return fmt.Errorf("clusters[%d]: cluster_header is not supported", i)
		}
		if c.GetName() == "" {
			return fmt.Errorf("clusters[%d]: name is empty", i)
		}
		if _, ok := c.GetTypedPerFilterConfig()[FaultFilterName]; ok {
			return fmt.Errorf("clusters[%d]: typed_per_filter_config[%s] is not supported on a weighted cluster", i, FaultFilterName)
		}
		if _, ok := c.GetTypedPerFilterConfig()[CorsFilterName]; ok {
			return fmt.Errorf("clusters[%d]: typed_per_filter_config[%s] is not supported on a weighted cluster", i, CorsFilterName)
		}
		w := c.GetWeight().GetValue()
		total += uint64(w)
		wc := WeightedCluster{Name: c.GetName(), Weight: w}
		switch hr := c.GetHostRewriteSpecifier().(type) {
		case *routev3.WeightedCluster_ClusterWeight_HostRewriteLiteral:
			wc.HostRewrite = hr.HostRewriteLiteral
		case nil:
		default:
			return fmt.Errorf("clusters[%d]: host rewrite %T is not supported (only host_rewrite_literal)", i, hr)
		}
		lv, err := compileLevels(headerSources{reqAdd: c.GetRequestHeadersToAdd(), reqRemove: c.GetRequestHeadersToRemove(),
			respAdd: c.GetResponseHeadersToAdd(), respRemove: c.GetResponseHeadersToRemove()})
		if err != nil {
			return fmt.Errorf("clusters[%d]: %w", i, err)
		}
		wc.RequestHeaders, wc.ResponseHeaders = mutations(lv.req), mutations(lv.resp)
		r.Weighted = append(r.Weighted, wc)
		r.cumulative = append(r.cumulative, total)
	}
	if total == 0 {
		return errors.New("all cluster weights are zero")
	}
	if total > math.MaxUint32 {
		return fmt.Errorf("sum of weights %d exceeds %d", total, uint64(math.MaxUint32))
	}
	r.total = total
	return nil
}

func compileDirect(pb *routev3.DirectResponseAction, maxBody uint32) (*DirectResponse, error) {
	st := pb.GetStatus()
	if st < 200 || st > 599 {
		return nil, fmt.Errorf("status %d: must be between 200 and 599", st)
	}
	if pb.GetBodyFormat() != nil {
		return nil, errors.New("body_format is not supported")
	}
	d := &DirectResponse{Status: int(st)}
	if b := pb.GetBody(); b != nil {
		switch s := b.GetSpecifier().(type) {
		case *corev3.DataSource_InlineString:
			d.Body = s.InlineString
		case *corev3.DataSource_InlineBytes:
			d.Body = string(s.InlineBytes)
		case nil:
		default:
			return nil, fmt.Errorf("body: %T is not supported (only inline_string and inline_bytes)", s)
		}
	}
	if uint64(len(d.Body)) > uint64(maxBody) {
		return nil, fmt.Errorf("body is %d bytes, more than the %d allowed (max_direct_response_body_size_bytes)", len(d.Body), maxBody)
	}
	return d, nil
}

func duration(d *durationpb.Duration) (time.Duration, error) {
	if err := d.CheckValid(); err != nil {
		return 0, err
	}
	t := d.AsDuration()
	if t < 0 {
		return 0, fmt.Errorf("%s is negative", t)
	}
	return t, nil
}
