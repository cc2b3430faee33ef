package router

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func hashRoute(t *testing.T, policies string) *Route {
	t.Helper()
	tb := mustCompile(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      cluster: c
      hash_policy:
`+policies)
	r, err := tb.Select(httptest.NewRequest("GET", "http://h/", nil))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func hashReq(target, remote string, header ...string) *http.Request {
	r := httptest.NewRequest("GET", target, nil)
	r.RemoteAddr = remote
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func TestRouteHash(t *testing.T) {
	const (
		header = "      - header: {header_name: x-user}\n"
		cookie = "      - cookie: {name: sess}\n"
		srcIP  = "      - connection_properties: {source_ip: true}\n"
		query  = "      - query_parameter: {name: u}\n"
	)
	tests := []struct {
		name     string
		policies string
		a, b     *http.Request // want the same hash
		c        *http.Request // want a different hash (nil: skip)
		none     *http.Request // want no hash (nil: skip)
	}{
		{"header", header,
			hashReq("/", "1.1.1.1:1", "X-User", "alice"), hashReq("/", "2.2.2.2:2", "x-user", "alice"),
			hashReq("/", "1.1.1.1:1", "X-User", "bob"), hashReq("/", "1.1.1.1:1")},
		{"header with several values in any order", header,
			hashReq("/", "1.1.1.1:1", "X-User", "a", "X-User", "b"), hashReq("/", "1.1.1.1:1", "X-User", "b", "X-User", "a"),
			hashReq("/", "1.1.1.1:1", "X-User", "a"), nil},
		{"authority", "      - header: {header_name: \":authority\"}\n",
			hashReq("http://reviews/", "1.1.1.1:1"), hashReq("http://reviews/x", "2.2.2.2:1"),
			hashReq("http://ratings/", "1.1.1.1:1"), nil},
		{"cookie", cookie,
			hashReq("/", "1.1.1.1:1", "Cookie", `a=1; sess=xyz`), hashReq("/", "2.2.2.2:2", "Cookie", `sess="xyz"; b=2`),
			hashReq("/", "1.1.1.1:1", "Cookie", "sess=abc"), hashReq("/", "1.1.1.1:1", "Cookie", "session=xyz")},
		{"source ip", srcIP,
			hashReq("/", "10.1.2.3:1111"), hashReq("/", "10.1.2.3:2222"),
			hashReq("/", "10.1.2.4:1111"), hashReq("/", "")},
		{"source ipv6", srcIP,
			hashReq("/", "[fd00::1]:1111"), hashReq("/", "[fd00::1]:2222"),
			hashReq("/", "[fd00::2]:1111"), nil},
		{"query parameter", query,
			hashReq("/?a=1&u=carol", "1.1.1.1:1"), hashReq("/p?u=carol", "2.2.2.2:2"),
			hashReq("/?u=dave", "1.1.1.1:1"), hashReq("/?uu=carol", "1.1.1.1:1")},
		{"first policy without value skipped", header + srcIP,
			hashReq("/", "10.0.0.1:1"), hashReq("/", "10.0.0.1:2"),
			hashReq("/", "10.0.0.1:1", "X-User", "alice"), nil},
		{"terminal stops once hashed", "      - header: {header_name: x-user}\n        terminal: true\n" + srcIP,
			hashReq("/", "10.0.0.1:1", "X-User", "alice"), hashReq("/", "10.0.0.2:1", "X-User", "alice"),
			hashReq("/", "10.0.0.1:1", "X-User", "bob"), nil},
		{"policies combine", header + srcIP,
			hashReq("/", "10.0.0.1:1", "X-User", "alice"), hashReq("/", "10.0.0.1:9", "X-User", "alice"),
			hashReq("/", "10.0.0.2:1", "X-User", "alice"), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := hashRoute(t, tc.policies)
			ha, okA, _ := r.Hash(tc.a)
			hb, okB, _ := r.Hash(tc.b)
			if !okA || !okB || ha != hb {
				t.Errorf("same key: hashes %x (%v) and %x (%v), want equal", ha, okA, hb, okB)
			}
			if tc.c != nil {
				if hc, ok, _ := r.Hash(tc.c); !ok || hc == ha {
					t.Errorf("different key: hash %x (%v), want another than %x", hc, ok, ha)
				}
			}
			if tc.none != nil {
				if h, ok, _ := r.Hash(tc.none); ok {
					t.Errorf("no key: hash %x, want none", h)
				}
			}
		})
	}
}

func TestRouteHashGeneratesCookie(t *testing.T) {
	r := hashRoute(t, "      - cookie: {name: sess, ttl: 3600s, path: /app, attributes: [{name: SameSite, value: Strict}, {name: Secure}]}\n")
	h, ok, set := r.Hash(hashReq("/", "1.1.1.1:1"))
	if !ok || !strings.HasPrefix(set, `sess="`) {
		t.Fatalf("Hash = %x, %v, Set-Cookie %q; want a hash and a sess cookie", h, ok, set)
	}
	if want := "; Max-Age=3600; Path=/app; SameSite=Strict; Secure; HttpOnly"; !strings.HasSuffix(set, want) {
		t.Errorf("Set-Cookie %q does not end in %q", set, want)
	}
	// The client sends the cookie back: same hash, no new cookie.
	value := set[:strings.IndexByte(set, ';')]
	h2, ok, set2 := r.Hash(hashReq("/", "2.2.2.2:2", "Cookie", value))
	if !ok || h2 != h || set2 != "" {
		t.Errorf("with the cookie %s: hash %x (want %x), Set-Cookie %q (want none)", value, h2, h, set2)
	}
	// Without ttl, no cookie is generated.
	r = hashRoute(t, "      - cookie: {name: sess}\n")
	if _, ok, set := r.Hash(hashReq("/", "1.1.1.1:1")); ok || set != "" {
		t.Errorf("without ttl: hashed %v, Set-Cookie %q", ok, set)
	}
}

func TestRouteHashDoesNotAllocate(t *testing.T) {
	r := hashRoute(t, "      - header: {header_name: x-user}\n      - cookie: {name: sess}\n"+
		"      - connection_properties: {source_ip: true}\n      - query_parameter: {name: u}\n")
	req := hashReq("/?u=1", "10.0.0.1:5", "X-User", "alice", "Cookie", "a=b; sess=1")
	if n := testing.AllocsPerRun(100, func() { r.Hash(req) }); n != 0 {
		t.Errorf("Hash allocates %v times per request", n)
	}
}

func TestCompileHashPolicyRejected(t *testing.T) {
	tests := []struct{ policy, want string }{
		{"- filter_state: {key: k}", `hash_policy[0].filter_state "k": not supported`},
		{"- header: {header_name: x, regex_rewrite: {pattern: {regex: a}, substitution: b}}", "hash_policy[0].header.regex_rewrite"},
		{"- header: {header_name: \":path\"}", `pseudo-headers other than :authority`},
		{"- cookie: {name: \"\"}", "hash_policy[0].cookie.name \"\": must be a non-empty token"},
		{"- cookie: {name: sess, path: \"/;Secure\"}", `hash_policy[0].cookie.path "/;Secure": must not hold ';'`},
		{"- cookie: {name: sess, ttl: 1s, attributes: [{name: \"Same Site\"}]}", `hash_policy[0].cookie.attributes[0].name "Same Site": must be a non-empty token`},
		{"- cookie: {name: sess, ttl: 1s, attributes: [{name: Path, value: \"/a;Secure\"}]}", `hash_policy[0].cookie.attributes[0].value "/a;Secure": must not hold ';'`},
		{"- connection_properties: {source_ip: false}", "connection_properties.source_ip: must be true"},
		{"- terminal: true", "no policy"},
	}
	for _, tc := range tests {
		_, err := Compile(parseConfig(t, `
name: rc
virtual_hosts:
- name: vh
  domains: ["*"]
  routes:
  - match: {prefix: /}
    route:
      cluster: c
      hash_policy:
      `+tc.policy))
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `virtual host "vh": route 0`) {
			t.Errorf("%s: error %v, want one mentioning %q and the route", tc.policy, err, tc.want)
		}
	}
}
