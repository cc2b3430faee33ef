package router

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/internal/proxy/keyhash"
	routev3 "github.com/weftmesh/weft/internal/proxy/xdsapi/envoy/config/route/v3"
)

// HashKind says what a hash policy hashes.
type HashKind int

// Hash policy kinds, after route.hash_policy's policy_specifier.
const (
	HashHeader HashKind = iota
	HashCookie
	HashSourceIP
	HashQueryParameter
)

// HashPolicy is one entry of route.hash_policy, used by RING_HASH and
// MAGLEV clusters (see Route.Hash).
type HashPolicy struct {
	Kind HashKind
	// Name is the header (canonical form; ":authority" for the host), the
	// cookie or the query parameter.
	Name string
	// Terminal stops evaluating later policies once a hash is produced.
	Terminal bool
	// CookieTTL and CookiePath describe the cookie generated when the
	// request has none (HasTTL: the policy has a ttl; a zero TTL makes a
	// session cookie).
	HasTTL     bool
	CookieTTL  time.Duration
	CookiePath string
	// CookieAttrs are the generated cookie's further attributes, as they
	// are written: "; SameSite=Strict; Secure".
	CookieAttrs string
}

func compileHashPolicies(pbs []*routev3.RouteAction_HashPolicy) ([]HashPolicy, error) {
	var out []HashPolicy
	for i, pb := range pbs {
		p, err := compileHashPolicy(pb)
		if err != nil {
			return nil, fmt.Errorf("hash_policy[%d].%w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func compileHashPolicy(pb *routev3.RouteAction_HashPolicy) (HashPolicy, error) {
	p := HashPolicy{Terminal: pb.GetTerminal()}
	switch s := pb.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		name := strings.ToLower(s.Header.GetHeaderName())
		switch {
		case name == "":
			return p, errors.New("header.header_name: is empty")
		case s.Header.GetRegexRewrite() != nil:
			return p, errors.New("header.regex_rewrite: not supported by weft-proxy")
		case name == ":authority" || name == "host":
			p.Name = ":authority"
		case name[0] == ':':
			return p, fmt.Errorf("header.header_name %q: pseudo-headers other than :authority are not supported", name)
		default:
			p.Name = http.CanonicalHeaderKey(name)
		}
		p.Kind = HashHeader
	case *routev3.RouteAction_HashPolicy_Cookie_:
		c := s.Cookie
		if !validCookieToken(c.GetName()) {
			return p, fmt.Errorf("cookie.name %q: must be a non-empty token", c.GetName())
		}
		if badCookieValue(c.GetPath()) {
			return p, fmt.Errorf("cookie.path %q: must not hold ';' or control characters", c.GetPath())
		}
		var attrs strings.Builder
		for i, a := range c.GetAttributes() {
			if !validCookieToken(a.GetName()) {
				return p, fmt.Errorf("cookie.attributes[%d].name %q: must be a non-empty token", i, a.GetName())
			}
			if badCookieValue(a.GetValue()) {
				return p, fmt.Errorf("cookie.attributes[%d].value %q: must not hold ';' or control characters", i, a.GetValue())
			}
			attrs.WriteString("; ")
			attrs.WriteString(a.GetName())
			if a.GetValue() != "" {
				attrs.WriteByte('=')
				attrs.WriteString(a.GetValue())
			}
		}
		p.Kind, p.Name, p.CookiePath, p.CookieAttrs = HashCookie, c.GetName(), c.GetPath(), attrs.String()
		if c.GetTtl() != nil {
			ttl, err := duration(c.GetTtl())
			if err != nil {
				return p, fmt.Errorf("cookie.ttl: %w", err)
			}
			p.HasTTL, p.CookieTTL = true, ttl
		}
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		if !s.ConnectionProperties.GetSourceIp() {
			return p, errors.New("connection_properties.source_ip: must be true")
		}
		p.Kind = HashSourceIP
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		if s.QueryParameter.GetName() == "" {
			return p, errors.New("query_parameter.name: is empty")
		}
		p.Kind, p.Name = HashQueryParameter, s.QueryParameter.GetName()
	case *routev3.RouteAction_HashPolicy_FilterState_:
		return p, fmt.Errorf("filter_state %q: not supported by weft-proxy", s.FilterState.GetKey())
	case nil:
		return p, errors.New("no policy: one of header, cookie, connection_properties or query_parameter is required")
	default:
		return p, fmt.Errorf("%T: not supported by weft-proxy", s)
	}
	return p, nil
}

// Hash computes the request's hash from the route's hash policies, as
// Envoy does: each policy that finds its value contributes (earlier
// results rotated left by one and XORed with the new one) and a terminal
// policy that has a hash stops the evaluation. ok is false when no policy
// produced a value; the cluster then picks at random.
//
// A header sent several times hashes all its values regardless of their
// order; a cookie's surrounding double quotes are not part of its value;
// the source IP is req.RemoteAddr without its port; a query parameter's
// value is hashed as sent (not unescaped). A cookie policy with a ttl whose
// cookie the request lacks generates a random value, hashes it, and returns
// the Set-Cookie value to add to the response (Max-Age from the ttl, the
// policy's Path, HttpOnly), so the client's next requests stick to the same
// endpoint. Hash allocates only to generate such a cookie.
//
// The hashes are FNV-1a with a finalizer, not Envoy's xxHash64: a key
// always maps to the same endpoint in weft-proxy, but not necessarily to
// the one Envoy would pick.
func (r *Route) Hash(req *http.Request) (h uint64, ok bool, setCookie string) {
	for i := range r.HashPolicies {
		p := &r.HashPolicies[i]
		v, found := uint64(0), false
		switch p.Kind {
		case HashHeader:
			v, found = hashHeader(req, p.Name)
		case HashCookie:
			var s string
			if s, found = cookieValue(req.Header["Cookie"], p.Name); found {
				v = keyhash.String(s, 0)
			} else if p.HasTTL && setCookie == "" {
				s = strconv.FormatUint(rand.Uint64(), 16)
				v, found = keyhash.String(s, 0), true
				setCookie = makeSetCookie(p, s)
			}
		case HashSourceIP:
			if ip := sourceIP(req.RemoteAddr); ip != "" {
				v, found = keyhash.String(ip, 0), true
			}
		case HashQueryParameter:
			if req.URL != nil {
				var s string
				if s, found = rawQueryParam(req.URL.RawQuery, p.Name); found {
					v = keyhash.String(s, 0)
				}
			}
		}
		if found {
			if ok {
				h = (h<<1 | h>>63) ^ v
			} else {
				h, ok = v, true
			}
		}
		if p.Terminal && ok {
			break
		}
	}
	return h, ok, setCookie
}

func makeSetCookie(p *HashPolicy, value string) string {
	var b strings.Builder
	b.WriteString(p.Name)
	b.WriteString(`="`)
	b.WriteString(value)
	b.WriteByte('"')
	if p.CookieTTL > 0 {
		b.WriteString("; Max-Age=")
		b.WriteString(strconv.FormatInt(int64(p.CookieTTL/time.Second), 10))
	}
	if p.CookiePath != "" {
		b.WriteString("; Path=")
		b.WriteString(p.CookiePath)
	}
	b.WriteString(p.CookieAttrs)
	b.WriteString("; HttpOnly")
	return b.String()
}

// badCookieValue reports whether s cannot stand in a Set-Cookie
// attribute: it holds ';' or a control character.
func badCookieValue(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return r == ';' || r < 0x20 || r == 0x7f })
}

// validCookieToken reports whether s is an RFC 7230 token, as a cookie
// attribute's name must be.
func validCookieToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

func hashHeader(req *http.Request, name string) (uint64, bool) {
	if name == ":authority" {
		if req.Host == "" {
			return 0, false
		}
		return keyhash.String(req.Host, 0), true
	}
	vs := req.Header[name]
	switch len(vs) {
	case 0:
		return 0, false
	case 1:
		return keyhash.String(vs[0], 0), true
	}
	// Order-independent, as Envoy sorts the values before hashing them.
	var h uint64
	for _, v := range vs {
		h += keyhash.String(v, 0)
	}
	return keyhash.Mix64(h), true
}

// cookieValue finds cookie name in Cookie header lines without allocating.
func cookieValue(lines []string, name string) (string, bool) {
	for _, line := range lines {
		for line != "" {
			var part string
			part, line, _ = strings.Cut(line, ";")
			part = strings.TrimSpace(part)
			k, v, ok := strings.Cut(part, "=")
			if !ok || k != name {
				continue
			}
			if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
				v = v[1 : len(v)-1]
			}
			return v, true
		}
	}
	return "", false
}

// rawQueryParam returns the raw value of the first parameter named name.
func rawQueryParam(q, name string) (string, bool) {
	for q != "" {
		var part string
		part, q, _ = strings.Cut(q, "&")
		k, v, _ := strings.Cut(part, "=")
		if k == name {
			return v, true
		}
	}
	return "", false
}

// sourceIP is the IP of a host:port address (without IPv6 brackets).
func sourceIP(addr string) string {
	if i := strings.LastIndexByte(addr, ':'); i >= 0 && !strings.Contains(addr[i:], "]") {
		addr = addr[:i]
	}
	return strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
}
