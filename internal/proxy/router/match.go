package router

import (
	"regexp"
	"strconv"
	"strings"
)

type pathKind uint8

const (
	pathPrefix pathKind = iota
	pathExact
	pathRegex
	pathSeparatedPrefix
)

// routeMatch is a compiled RouteMatch. All of its parts must accept a
// request for the route to match.
type routeMatch struct {
	kind pathKind
	// path is the prefix or exact path, lower case when !caseSensitive.
	path          string
	caseSensitive bool
	re            *regexp.Regexp
	headers       []headerMatcher
	queries       []queryMatcher
}

func (m *routeMatch) matches(v *requestView) bool {
	if !m.matchPath(v.path) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].matches(v) {
			return false
		}
	}
	for i := range m.queries {
		if !m.queries[i].matches(v) {
			return false
		}
	}
	return true
}

func (m *routeMatch) matchPath(p string) bool {
	switch m.kind {
	case pathPrefix:
		return hasPrefix(p, m.path, m.caseSensitive)
	case pathExact:
		if m.caseSensitive {
			return p == m.path
		}
		return len(p) == len(m.path) && hasPrefixFold(p, m.path)
	case pathRegex:
		return m.re.MatchString(p)
	case pathSeparatedPrefix:
		return hasPrefix(p, m.path, m.caseSensitive) && (len(p) == len(m.path) || p[len(m.path)] == '/')
	}
	return false
}

func hasPrefix(s, prefix string, caseSensitive bool) bool {
	if caseSensitive {
		return strings.HasPrefix(s, prefix)
	}
	return hasPrefixFold(s, prefix)
}

type stringKind uint8

const (
	strExact stringKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher. With
// ignoreCase the value is stored lower case and compared ASCII
// case-insensitively, as Envoy does; ignore_case has no effect on regexes.
type stringMatcher struct {
	kind       stringKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

func (m *stringMatcher) match(s string) bool {
	switch m.kind {
	case strExact:
		if m.ignoreCase {
			return len(s) == len(m.value) && hasPrefixFold(s, m.value)
		}
		return s == m.value
	case strPrefix:
		if m.ignoreCase {
			return hasPrefixFold(s, m.value)
		}
		return strings.HasPrefix(s, m.value)
	case strSuffix:
		if m.ignoreCase {
			return len(s) >= len(m.value) && hasPrefixFold(s[len(s)-len(m.value):], m.value)
		}
		return strings.HasSuffix(s, m.value)
	case strContains:
		if m.ignoreCase {
			return containsFold(s, m.value)
		}
		return strings.Contains(s, m.value)
	case strRegex:
		return m.re.MatchString(s)
	}
	return false
}

type headerSource uint8

const (
	srcHeader headerSource = iota
	srcMethod
	srcAuthority
	srcPath
	srcScheme
)

type headerKind uint8

const (
	hdrString headerKind = iota
	hdrPresent
	hdrRange
	hdrAnyValue // deprecated exact_match with an empty value: any value
)

// headerMatcher is a compiled HeaderMatcher.
type headerMatcher struct {
	source headerSource
	// key is the canonical MIME key for srcHeader.
	key            string
	kind           headerKind
	str            stringMatcher
	present        bool
	rangeStart     int64
	rangeEnd       int64
	invert         bool
	missingAsEmpty bool
}

// matches follows Envoy: a missing header fails every matcher except
// present_match (inverting does not help) unless
// treat_missing_header_as_empty is set; present_match compares presence with
// the wanted presence; the result is then inverted by invert_match.
func (m *headerMatcher) matches(v *requestView) bool {
	val, ok := m.value(v)
	if m.kind == hdrPresent {
		return (ok == m.present) != m.invert
	}
	if !ok {
		if !m.missingAsEmpty {
			return false
		}
		val = ""
	}
	var r bool
	switch m.kind {
	case hdrString:
		r = m.str.match(val)
	case hdrRange:
		n, ok := parseInt(strings.TrimSpace(val))
		r = ok && n >= m.rangeStart && n < m.rangeEnd
	case hdrAnyValue:
		r = true
	}
	return r != m.invert
}

// value returns the header's value, all values joined with "," like Envoy,
// and whether the request has it.
func (m *headerMatcher) value(v *requestView) (string, bool) {
	switch m.source {
	case srcMethod:
		if v.req.Method == "" {
			return "GET", true // net/http: "" means GET
		}
		return v.req.Method, true
	case srcAuthority:
		return v.host, v.host != ""
	case srcPath:
		return v.pathWithQuery(), true
	case srcScheme:
		return v.scheme, true
	}
	vals := v.req.Header[m.key]
	switch len(vals) {
	case 0:
		return "", false
	case 1:
		return vals[0], true
	}
	return strings.Join(vals, ","), true
}

// parseInt is strconv.ParseInt(s, 10, 64) without the error, which
// allocates: values that are not a number are common in headers.
func parseInt(s string) (int64, bool) {
	digits := s
	if digits != "" && (digits[0] == '+' || digits[0] == '-') {
		digits = digits[1:]
	}
	if digits == "" {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64) // fails only on overflow now
	return n, err == nil
}

// queryMatcher is a compiled QueryParameterMatcher. Like Envoy it looks at
// the first occurrence of the parameter in the raw (not percent-decoded)
// query string.
type queryMatcher struct {
	name string
	// hasPresent is set for present_match; present is its value.
	hasPresent bool
	present    bool
	str        *stringMatcher // nil: the parameter must be present
}

func (m *queryMatcher) matches(v *requestView) bool {
	val, ok := queryValue(v.query, m.name)
	if m.hasPresent {
		return ok == m.present
	}
	if !ok {
		return false
	}
	return m.str == nil || m.str.match(val)
}

// queryValue returns the value of the first parameter called name in a raw
// query string ("a=1&b&c=3"); a parameter without "=" has the value "".
func queryValue(query, name string) (string, bool) {
	for query != "" {
		var param string
		param, query, _ = strings.Cut(query, "&")
		key, val, _ := strings.Cut(param, "=")
		if key == name {
			return val, true
		}
	}
	return "", false
}

// ASCII case folding, as Envoy uses for case-insensitive matching.

func lowerByte(b byte) byte {
	if 'A' <= b && b <= 'Z' {
		return b + ('a' - 'A')
	}
	return b
}

func asciiLower(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				b[j] = lowerByte(b[j])
			}
			return string(b)
		}
	}
	return s
}

// hasPrefixFold reports whether s starts with lowerPrefix, ignoring ASCII
// case. lowerPrefix must already be lower case.
func hasPrefixFold(s, lowerPrefix string) bool {
	if len(s) < len(lowerPrefix) {
		return false
	}
	for i := 0; i < len(lowerPrefix); i++ {
		if lowerByte(s[i]) != lowerPrefix[i] {
			return false
		}
	}
	return true
}

// containsFold reports whether s contains lowerSub, ignoring ASCII case.
func containsFold(s, lowerSub string) bool {
	for i := 0; i+len(lowerSub) <= len(s); i++ {
		if hasPrefixFold(s[i:], lowerSub) {
			return true
		}
	}
	return false
}
