package router

import (
	"fmt"
	"sort"
)

// domainIndex collects the domains of all virtual hosts while compiling.
type domainIndex struct {
	exact    map[string]*virtualHost
	suffixes map[int]map[string]*virtualHost
	prefixes map[int]map[string]*virtualHost
	fallback *virtualHost
	owner    map[string]string // lower-case domain -> virtual host name
}

// newDomainIndex returns an empty index sized for about domains domains.
func newDomainIndex(domains int) *domainIndex {
	return &domainIndex{
		exact:    make(map[string]*virtualHost, domains),
		suffixes: map[int]map[string]*virtualHost{},
		prefixes: map[int]map[string]*virtualHost{},
		owner:    make(map[string]string, domains),
	}
}

// add registers one domain of vh. Domains are case-insensitive and must be
// unique across the route configuration, as in Envoy.
func (d *domainIndex) add(vh *virtualHost, domain string) error {
	if domain == "" {
		return fmt.Errorf("empty domain")
	}
	lower := asciiLower(domain)
	if other, dup := d.owner[lower]; dup {
		if other == vh.name {
			return fmt.Errorf("domain %q is listed twice", domain)
		}
		return fmt.Errorf("domain %q is already used by virtual host %q", domain, other)
	}
	d.owner[lower] = vh.name
	switch {
	case lower == "*":
		d.fallback = vh
	case lower[0] == '*':
		key := lower[1:]
		addWildcard(d.suffixes, key, vh)
	case lower[len(lower)-1] == '*':
		key := lower[:len(lower)-1]
		addWildcard(d.prefixes, key, vh)
	default:
		d.exact[lower] = vh
	}
	return nil
}

func addWildcard(groups map[int]map[string]*virtualHost, key string, vh *virtualHost) {
	g := groups[len(key)]
	if g == nil {
		g = map[string]*virtualHost{}
		groups[len(key)] = g
	}
	g[key] = vh
}

// sortedGroups returns the wildcard groups longest first, so that the
// longest wildcard wins.
func sortedGroups(groups map[int]map[string]*virtualHost) []wildcardGroup {
	out := make([]wildcardGroup, 0, len(groups))
	for n, hosts := range groups {
		out = append(out, wildcardGroup{n: n, hosts: hosts})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].n > out[j].n })
	return out
}

// maxStackHost is the longest host findVirtualHost lower-cases on the
// stack; a longer one in mixed case is lower-cased on the heap.
const maxStackHost = 256

// findVirtualHost implements Envoy's domain search order: exact, suffix
// wildcard (longest first), prefix wildcard (longest first), then "*". A
// wildcard matches at least one character. Exact domains are compared with
// the host as sent (with its port, if any); if that misses and the host
// carries the scheme's default port (":80" for http, ":443" for https), the
// host without that port is tried too, since HTTP treats the two as the same
// authority. Hosts are compared case-insensitively, without allocating.
func (t *Table) findVirtualHost(host, scheme string) *virtualHost {
	i := 0
	for i < len(host) && !('A' <= host[i] && host[i] <= 'Z') {
		i++
	}
	switch {
	case i == len(host): // already lower case
		return findVirtualHost(t, host, scheme)
	case len(host) <= maxStackHost:
		var buf [maxStackHost]byte
		b := buf[:len(host)]
		for j := range b {
			b[j] = lowerByte(host[j])
		}
		return findVirtualHost(t, b, scheme)
	}
	return findVirtualHost(t, asciiLower(host), scheme)
}

// findVirtualHost is Table.findVirtualHost for a lower-case host h, given
// as a string or as bytes: map lookups keyed by string(bytes) do not
// allocate.
func findVirtualHost[S ~string | ~[]byte](t *Table, h S, scheme string) *virtualHost {
	if t.ignorePort {
		if i := portStart(h); i >= 0 {
			h = h[:i]
		}
	}
	if vh := t.exact[string(h)]; vh != nil {
		return vh
	}
	if i := portStart(h); i >= 0 && isDefaultPort(h[i+1:], scheme) {
		if vh := t.exact[string(h[:i])]; vh != nil {
			return vh
		}
	}
	for _, g := range t.suffixes {
		if g.n < len(h) {
			if vh := g.hosts[string(h[len(h)-g.n:])]; vh != nil {
				return vh
			}
		}
	}
	for _, g := range t.prefixes {
		if g.n < len(h) {
			if vh := g.hosts[string(h[:g.n])]; vh != nil {
				return vh
			}
		}
	}
	return t.fallback
}

// portStart returns the index of the ':' that starts the port of host, or -1.
// An IPv6 literal's colons are inside brackets: "[::1]:8080" has a port,
// "[::1]" does not.
func portStart[S ~string | ~[]byte](host S) int {
	for i := len(host) - 1; i >= 0; i-- {
		switch host[i] {
		case ':':
			return i
		case ']':
			return -1
		}
	}
	return -1
}

func isDefaultPort[S ~string | ~[]byte](port S, scheme string) bool {
	switch scheme {
	case "http":
		return string(port) == "80"
	case "https":
		return string(port) == "443"
	}
	return false
}
