package router

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
	matcherv3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/type/matcher/v3"
)

// Redirect is a compiled redirect action: the proxy answers with Code and a
// Location built from the request as Envoy builds it.
type Redirect struct {
	// Scheme replaces the request's scheme (scheme_redirect, or "https" for
	// https_redirect); empty keeps it.
	Scheme string
	// Host replaces the request's host (host_redirect); empty keeps it.
	Host string
	// Port, when not 0, replaces the request's port (port_redirect).
	Port uint32
	// Path replaces the whole path (path_redirect). When it has a query,
	// that query replaces the request's and StripQuery does not apply.
	Path string
	// PrefixRewrite replaces the matched prefix, as the route action's does.
	PrefixRewrite string
	// RegexRewrite rewrites the path (regex_rewrite).
	RegexRewrite *RegexRewrite
	// Code is 301, 302, 303, 307 or 308.
	Code int
	// StripQuery drops the request's query.
	StripQuery bool

	pathHasQuery bool
}

var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  http.StatusMovedPermanently,
	routev3.RedirectAction_FOUND:              http.StatusFound,
	routev3.RedirectAction_SEE_OTHER:          http.StatusSeeOther,
	routev3.RedirectAction_TEMPORARY_REDIRECT: http.StatusTemporaryRedirect,
	routev3.RedirectAction_PERMANENT_REDIRECT: http.StatusPermanentRedirect,
}

func compileRedirect(pb *routev3.RedirectAction) (*Redirect, error) {
	rd := &Redirect{Host: pb.GetHostRedirect(), Port: pb.GetPortRedirect(), StripQuery: pb.GetStripQuery()}
	code, ok := redirectCodes[pb.GetResponseCode()]
	if !ok {
		return nil, fmt.Errorf("response_code %s is not supported", pb.GetResponseCode())
	}
	rd.Code = code
	if rd.Port > 65535 {
		return nil, fmt.Errorf("port_redirect %d is not a port number", rd.Port)
	}
	if strings.ContainsAny(rd.Host, "/?#@ \r\n") {
		return nil, fmt.Errorf("host_redirect %q is not a host", rd.Host)
	}
	switch s := pb.GetSchemeRewriteSpecifier().(type) {
	case *routev3.RedirectAction_HttpsRedirect:
		if s.HttpsRedirect {
			rd.Scheme = "https"
		}
	case *routev3.RedirectAction_SchemeRedirect:
		rd.Scheme = strings.ToLower(s.SchemeRedirect)
		if !validScheme(rd.Scheme) {
			return nil, fmt.Errorf("scheme_redirect %q is not a URI scheme", s.SchemeRedirect)
		}
	case nil:
	default:
		return nil, fmt.Errorf("unsupported scheme rewrite %T", s)
	}
	switch s := pb.GetPathRewriteSpecifier().(type) {
	case *routev3.RedirectAction_PathRedirect:
		if strings.ContainsAny(s.PathRedirect, " \r\n#") {
			return nil, fmt.Errorf("path_redirect %q: spaces, CR, LF and '#' are not allowed", s.PathRedirect)
		}
		rd.Path, rd.pathHasQuery = s.PathRedirect, strings.Contains(s.PathRedirect, "?")
	case *routev3.RedirectAction_PrefixRewrite:
		rd.PrefixRewrite = s.PrefixRewrite
	case *routev3.RedirectAction_RegexRewrite:
		rr, err := compileRegexRewrite(s.RegexRewrite)
		if err != nil {
			return nil, fmt.Errorf("regex_rewrite: %w", err)
		}
		rd.RegexRewrite = rr
	case *routev3.RedirectAction_PathRewrite:
		return nil, errors.New("path_rewrite is not supported")
	case nil:
	default:
		return nil, fmt.Errorf("unsupported path rewrite %T", s)
	}
	return rd, nil
}

func validScheme(s string) bool {
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// RedirectLocation returns the Location of the route's redirect for req, as
// Envoy builds it: scheme://host[:port]/path[?query], each part from the
// redirect when it sets it, else from the request. When the port or the
// scheme changes, the request's port is dropped (the redirect's port, or
// none when the request's was the default of its scheme). It returns ""
// for a route that is not a redirect.
func (r *Route) RedirectLocation(req *http.Request) string {
	rd := r.Redirect
	if rd == nil {
		return ""
	}
	v := newRequestView(req)
	// The request's scheme is http or https (Envoy rejects others).
	scheme := "http"
	if v.scheme == "https" {
		scheme = "https"
	}
	if rd.Scheme != "" {
		scheme = rd.Scheme
	}
	port := ""
	if rd.Port != 0 {
		port = ":" + strconv.FormatUint(uint64(rd.Port), 10)
	}
	host := rd.Host
	if host == "" {
		proto := req.Header.Get("X-Forwarded-Proto")
		if proto == "" {
			proto = "http"
			if req.TLS != nil {
				proto = "https"
			}
		}
		host = redirectHost(v.host, scheme, port, proto)
	}
	query := ""
	if v.hasQ {
		query = "?" + v.query
	}
	var path string
	switch {
	case rd.Path != "" && rd.pathHasQuery:
		path, query = rd.Path, ""
	case rd.Path != "":
		path = rd.Path
	case rd.PrefixRewrite != "" || rd.RegexRewrite != nil:
		path = r.match.rewrite(v.path, rd.PrefixRewrite, rd.RegexRewrite)
	default:
		path = v.path
	}
	if !strings.HasPrefix(path, "/") {
		path = "/" + path
	}
	if rd.StripQuery && !rd.pathHasQuery {
		query = ""
	}
	return scheme + "://" + host + port + path + query
}

// redirectHost is the request's host as a redirect keeps it: without its
// port when the redirect sets one, or when the scheme changes and the port
// is the default of the request's protocol (Envoy's processRequestHost).
func redirectHost(host, scheme, newPort, proto string) string {
	var end int
	if strings.HasPrefix(host, "[") {
		end = strings.LastIndex(host, "]:")
		if end >= 0 {
			end++
		}
	} else {
		end = strings.LastIndexByte(host, ':')
	}
	if end < 0 {
		return host
	}
	port := host[end:]
	remove := newPort != ""
	if scheme != proto {
		remove = remove || (proto == "https" && port == ":443") || (proto == "http" && port == ":80")
	}
	if remove {
		return host[:end]
	}
	return host
}

// RegexRewrite is a compiled regex_rewrite: every match of the pattern in
// the path (not anchored, unlike route matching) is replaced by the
// substitution, in which \N stands for capture group N and \\ for a
// backslash, as in RE2's GlobalReplace.
type RegexRewrite struct {
	re *regexp.Regexp
	// template is the substitution in regexp.Expand's syntax.
	template string
}

// Rewrite returns path with every match replaced.
func (rr *RegexRewrite) Rewrite(path string) string {
	return rr.re.ReplaceAllString(path, rr.template)
}

func compileRegexRewrite(pb *matcherv3.RegexMatchAndSubstitute) (*RegexRewrite, error) {
	pattern := pb.GetPattern().GetRegex()
	if pattern == "" {
		return nil, errors.New("pattern.regex is empty")
	}
	re, err := regexp.Compile(pattern)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	if size, err := programSize(pattern); err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	} else if size > MaxProgramSize {
		return nil, fmt.Errorf("pattern %q: RE2 program size of %d > max program size of %d", pattern, size, MaxProgramSize)
	}
	sub := pb.GetSubstitution()
	var b strings.Builder
	for i := 0; i < len(sub); i++ {
		c := sub[i]
		switch {
		case c == '$':
			b.WriteString("$$")
		case c != '\\':
			b.WriteByte(c)
		case i+1 < len(sub) && sub[i+1] == '\\':
			b.WriteByte('\\')
			i++
		case i+1 < len(sub) && '0' <= sub[i+1] && sub[i+1] <= '9':
			n := int(sub[i+1] - '0')
			if n > re.NumSubexp() {
				return nil, fmt.Errorf("substitution %q: \\%d refers to a group the pattern does not have (it has %d)", sub, n, re.NumSubexp())
			}
			fmt.Fprintf(&b, "${%d}", n)
			i++
		default:
			return nil, fmt.Errorf("substitution %q: a backslash must be followed by a digit or a backslash", sub)
		}
	}
	return &RegexRewrite{re: re, template: b.String()}, nil
}

// rewrite applies a prefix_rewrite or regex_rewrite to path (without its
// query) as Envoy does: the matched prefix of a prefix or
// path_separated_prefix route, the whole path of an exact or regex route,
// is replaced by prefix; every match of the regex is substituted. A path a
// prefix route did not match is returned as it is.
func (m *routeMatch) rewrite(path, prefix string, rr *RegexRewrite) string {
	if rr != nil {
		return rr.Rewrite(path)
	}
	if prefix == "" {
		return path
	}
	switch m.kind {
	case pathPrefix, pathSeparatedPrefix:
		if !hasPrefix(path, m.path, m.caseSensitive) {
			return path
		}
		return prefix + path[len(m.path):]
	default:
		return prefix
	}
}

// Mirror is a compiled request mirror policy: a share of the route's
// requests is copied to Cluster, fire and forget.
type Mirror struct {
	Cluster string
	// Percent is the share of requests mirrored, in millionths.
	Percent uint32
	// KeepHost is disable_shadow_host_suffix_append: the copy keeps the
	// request's host instead of getting "-shadow" appended to it.
	KeepHost bool
}

func compileMirrors(pbs []*routev3.RouteAction_RequestMirrorPolicy) ([]Mirror, error) {
	var out []Mirror
	for i, pb := range pbs {
		field := fmt.Sprintf("request_mirror_policies[%d]", i)
		switch {
		case pb.GetClusterHeader() != "":
			return nil, fmt.Errorf("%s.cluster_header is not supported", field)
		case pb.GetCluster() == "":
			return nil, fmt.Errorf("%s.cluster is empty", field)
		case len(pb.GetRequestHeadersMutations()) > 0:
			return nil, fmt.Errorf("%s.request_headers_mutations is not supported", field)
		case pb.GetHostRewriteLiteral() != "":
			return nil, fmt.Errorf("%s.host_rewrite_literal is not supported", field)
		}
		m := Mirror{Cluster: pb.GetCluster(), Percent: Million, KeepHost: pb.GetDisableShadowHostSuffixAppend()}
		if rf := pb.GetRuntimeFraction(); rf != nil {
			p, err := fraction(rf.GetDefaultValue())
			if err != nil {
				return nil, fmt.Errorf("%s.runtime_fraction.default_value: %w", field, err)
			}
			m.Percent = p
		}
		out = append(out, m)
	}
	return out, nil
}

// ShadowHost is the host of a mirrored request, as Envoy makes it: "-shadow"
// appended to the host name, before any port ("reviews:9080" becomes
// "reviews-shadow:9080").
func ShadowHost(host string) string {
	end := -1
	if strings.HasPrefix(host, "[") {
		if i := strings.LastIndex(host, "]:"); i >= 0 {
			end = i + 1
		}
	} else {
		end = strings.LastIndexByte(host, ':')
	}
	if end < 0 {
		return host + "-shadow"
	}
	return host[:end] + "-shadow" + host[end:]
}
