package config

import (
	"slices"
	"strings"
	"testing"
)

func TestAnalyze(t *testing.T) {
	const drReviews = `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  subsets: [{name: v1}, {name: v2}]
`
	vs := func(ns, dest string) string {
		return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: ` + ns + `}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: ` + dest + `
`
	}
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"subset defined", drReviews + "---\n" + vs("default", "{host: reviews, subset: v1}"), nil},
		{"no subset named", vs("default", "{host: reviews}"), nil},
		{"subset missing from DestinationRule", drReviews + "---\n" + vs("default", "{host: reviews, subset: v9}"), []string{
			`Warning [IST0101] (VirtualService default/reviews) spec.http[0].route[0].destination: referenced subset "v9" of host reviews.default.svc.cluster.local is not defined by any DestinationRule`,
		}},
		{"no DestinationRule at all", vs("default", "{host: reviews, subset: v1}"), []string{
			`Warning [IST0101] (VirtualService default/reviews) spec.http[0].route[0].destination: referenced subset "v1" of host reviews.default.svc.cluster.local is not defined by any DestinationRule`,
		}},
		{"short name resolves in the VirtualService's namespace", drReviews + "---\n" + vs("prod", "{host: reviews, subset: v1}"), []string{
			`Warning [IST0101] (VirtualService prod/reviews) spec.http[0].route[0].destination: referenced subset "v1" of host reviews.prod.svc.cluster.local is not defined by any DestinationRule`,
		}},
		{"a name with a dot is taken as written", drReviews + "---\n" + vs("prod", "{host: reviews.default, subset: v1}"), []string{
			`Warning [IST0101] (VirtualService prod/reviews) spec.http[0].route[0].destination: referenced subset "v1" of host reviews.default is not defined by any DestinationRule`,
		}},
		{"FQDN", drReviews + "---\n" + vs("prod", "{host: reviews.default.svc.cluster.local, subset: v2}"), nil},
		{"wildcard DestinationRule", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ext}
spec:
  host: "*.example.com"
  subsets: [{name: blue}]
---
` + vs("default", "{host: api.example.com, subset: blue}"), nil},
		{"mirror and tcp", drReviews + `---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mix}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
    mirror: {host: reviews, subset: shadow}
  tcp:
  - route: [{destination: {host: reviews, subset: v3}}]
`, []string{
			`Warning [IST0101] (VirtualService default/mix) spec.http[0].mirror: referenced subset "shadow" of host reviews.default.svc.cluster.local is not defined by any DestinationRule`,
			`Warning [IST0101] (VirtualService default/mix) spec.tcp[0].route[0].destination: referenced subset "v3" of host reviews.default.svc.cluster.local is not defined by any DestinationRule`,
		}},
		{"delegates: found, missing, with hosts, not exported", `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: front}
spec:
  hosts: [shop.example.com]
  http:
  - match: [{uri: {prefix: /reviews}}]
    delegate: {name: reviews, namespace: team}
  - delegate: {name: nowhere}
  - delegate: {name: root, namespace: front}
  - delegate: {name: private, namespace: team}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: team}
spec:
  http:
  - route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /reviews/v2}}]
    route: [{destination: {host: reviews}}]
  - match: [{uri: {prefix: /ratings}}]
    route: [{destination: {host: reviews}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: private, namespace: team}
spec:
  exportTo: [.]
  http: [{route: [{destination: {host: reviews}}]}]
`, []string{
			`Warning [WEFT0003] (VirtualService front/root) spec.http[0].delegate: route 2 of delegate VirtualService team/reviews matches outside this route's match: it is left out`,
			`Warning [IST0101] (VirtualService front/root) spec.http[1].delegate: Referenced delegate VirtualService not found: "front/nowhere"`,
			`Warning [IST0101] (VirtualService front/root) spec.http[2].delegate: delegate VirtualService front/root has hosts, so it is no delegate: the route has no effect`,
			`Warning [IST0101] (VirtualService front/root) spec.http[3].delegate: delegate VirtualService team/private is not exported to namespace front: the route has no effect`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Decode("a.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range Analyze(rs) {
				got = append(got, w.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestResolveHost(t *testing.T) {
	tests := []struct{ host, ns, want string }{
		{"reviews", "default", "reviews.default.svc.cluster.local"},
		{"reviews.prod", "default", "reviews.prod"},
		{"httpbin.org", "default", "httpbin.org"},
		{"10.0.0.1", "default", "10.0.0.1"},
		{"reviews.prod.svc.cluster.local", "default", "reviews.prod.svc.cluster.local"},
		{"httpbin.org.example", "default", "httpbin.org.example"},
		{"*.example.com", "default", "*.example.com"},
		{"*", "default", "*"},
	}
	for _, tt := range tests {
		if got := ResolveHost(tt.host, tt.ns); got != tt.want {
			t.Errorf("ResolveHost(%q, %q) = %q, want %q", tt.host, tt.ns, got, tt.want)
		}
	}
}

func TestParseKind(t *testing.T) {
	for in, want := range map[string]Kind{
		"VirtualService": KindVirtualService, "virtualservices": KindVirtualService, "vs": KindVirtualService,
		"dr": KindDestinationRule, "Gateways": KindGateway, "se": KindServiceEntry, "workloadentry": KindWorkloadEntry,
	} {
		if got, err := ParseKind(in); err != nil || got != want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := ParseKind("pods"); err == nil || !strings.Contains(err.Error(), "VirtualService (vs)") {
		t.Errorf("ParseKind(pods) error = %v, want one listing the kinds", err)
	}
}

func TestUnsupportedFieldsWarn(t *testing.T) {
	// vs wraps HTTP routes (YAML list items at two spaces) into a
	// VirtualService named ratings.
	vs := func(http string) string {
		return `apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
` + http
	}
	const warnPrefix = "Warning [WEFT0001] (VirtualService default/ratings) "
	const drPrefix = "Warning [WEFT0001] (DestinationRule default/ratings) "
	const suffix = " is not supported by Weft yet: it is stored but has no effect"
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"translated route features", vs(`  - fault:
      delay: {percentage: {value: 100}, fixedDelay: 7s}
      abort: {percentage: {value: 10}, grpcStatus: UNAVAILABLE}
    rewrite: {uri: /v2, authority: ratings.internal}
    headers:
      request: {set: {x-a: "1"}, add: {x-b: "2"}, remove: [x-c]}
      response: {set: {x-d: "4"}, remove: [server]}
    mirror: {host: ratings, subset: shadow}
    mirrorPercentage: {value: 5}
    mirrors:
    - destination: {host: reviews}
      percentage: {value: 1}
    route:
    - destination: {host: ratings}
      headers: {request: {set: {x-e: "5"}}}
  - match: [{uri: {prefix: /re}}]
    rewrite:
      uriRegexRewrite: {match: "^/re/(.*)", rewrite: /\\1}
    mirrorPercent: 50
    mirror: {host: reviews}
    route:
    - destination: {host: ratings}
  - match: [{uri: {exact: /old}}]
    redirect: {uri: /new, authority: new.example.com, derivePort: FROM_REQUEST_PORT, redirectCode: 308}
  - match: [{uri: {exact: /teapot}}]
    headers: {response: {set: {content-type: text/plain}}}
    directResponse: {status: 418, body: {string: teapot}}
`), nil},
		{"untranslated parts of faults", vs(`  - fault:
      delay: {percentage: {value: 1}, exponentialDelay: 1s}
      abort: {percentage: {value: 1}, http2Error: CANCEL}
    route:
    - destination: {host: ratings}
`), []string{
			warnPrefix + "spec.http[0].fault.delay.exponentialDelay: an exponential fault delay" + suffix,
			warnPrefix + "spec.http[0].fault.abort.http2Error: an HTTP/2 error fault abort" + suffix,
		}},
		{"redirect code Envoy cannot send", vs(`  - redirect: {uri: /x, redirectCode: 304}
`), []string{
			warnPrefix + "spec.http[0].redirect.redirectCode: redirect code 304 (Envoy sends 301, 302, 303, 307 and 308)" + suffix,
		}},
		{"rewrite and mirrors of a route that forwards nothing", vs(`  - match: [{uri: {exact: /a}}]
    route:
    - destination: {host: ratings}
  - redirect: {uri: /x}
    rewrite: {uri: /y}
    mirror: {host: reviews}
  - directResponse: {status: 200}
    mirrors:
    - destination: {host: reviews}
`), []string{
			warnPrefix + "spec.http[1].rewrite: HTTP rewrite on a redirect or directResponse route" + suffix,
			warnPrefix + "spec.http[1].mirror: HTTP mirror on a redirect or directResponse route" + suffix,
			warnPrefix + "spec.http[2].mirrors: HTTP mirrors on a redirect or directResponse route" + suffix,
		}},
		{"cors and delegate are translated", vs(`  - corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
      allowOrigin: ["https://old.example.com"]
      allowMethods: [GET]
      maxAge: 24h
      unmatchedPreflights: IGNORE
    route:
    - destination: {host: ratings}
  - delegate: {name: ratings-delegate}
`), nil},
		{"translated DestinationRule traffic policies", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 10, connectTimeout: 250ms, idleTimeout: 1m}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 2, maxRequestsPerConnection: 3, maxRetries: 4, idleTimeout: 5s}
    outlierDetection: {consecutive5xxErrors: 1, consecutiveGatewayErrors: 2, interval: 1s, baseEjectionTime: 3m, maxEjectionPercent: 100, minHealthPercent: 10}
    loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 4096}}}
    portLevelSettings:
    - port: {number: 9080}
      connectionPool: {http: {http2MaxRequests: 7}}
      outlierDetection: {consecutive5xxErrors: 0}
      loadBalancer: {consistentHash: {httpQueryParameterName: shard, maglev: {tableSize: 65537}}}
    - port: {number: 9090}
      loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 2048}}
      tls: {mode: MUTUAL, clientCertificate: /etc/certs/client.pem, privateKey: /etc/certs/key.pem, caCertificates: /etc/certs/ca.pem, sni: ratings.example.com, subjectAltNames: [ratings.example.com]}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      outlierDetection: {consecutiveGatewayErrors: 9}
      loadBalancer: {consistentHash: {httpCookie: {name: session, path: /, ttl: 3600s}, maglev: {}}}
      tls: {mode: SIMPLE, insecureSkipVerify: true}
`, nil},
		{"TLS to a wildcard host that checks no name", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: wild}
spec:
  host: "*.example.com"
  trafficPolicy:
    tls: {mode: SIMPLE}
    portLevelSettings:
    - port: {number: 443}
      tls: {mode: SIMPLE, sni: api.example.com}
`, []string{
			"Warning [WEFT0004] (DestinationRule default/wild) spec.trafficPolicy.tls: TLS to a wildcard host without sni or subjectAltNames checks the server's certificate chain but not its name: any certificate a trusted CA issued passes; set sni or subjectAltNames",
		}},
		{"untranslated parts of DestinationRule traffic policies (the connection pool and outlier detection settings around them are translated)", `apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings}
spec:
  host: ratings
  trafficPolicy:
    connectionPool:
      tcp: {tcpKeepalive: {time: 10s}, maxConnectionDuration: 1h}
      http: {h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 10, http2KeepAlive: {interval: 10s, timeout: 1s}}
    outlierDetection: {consecutiveErrors: 5, splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3}
    tunnel: {protocol: CONNECT, targetHost: 10.0.0.1, targetPort: 8080}
    proxyProtocol: {version: V2}
    retryBudget: {percent: 20, minRetryConcurrency: 3, budgetInterval: 10s}
    portLevelSettings:
    - port: {number: 9080}
      loadBalancer:
        consistentHash:
          httpCookie: {name: session, ttl: 60s, attributes: [{name: SameSite, value: Strict}]}
        localityLbSetting: {enabled: true}
      tls: {mode: ISTIO_MUTUAL}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      connectionPool: {http: {useClientProtocol: true}}
      loadBalancer: {simple: RANDOM, warmupDurationSecs: 30s}
`, []string{
			drPrefix + "spec.trafficPolicy.outlierDetection.consecutiveErrors: the deprecated outlierDetection.consecutiveErrors (Istio ignores it too; use consecutive5xxErrors or consecutiveGatewayErrors)" + suffix,
			drPrefix + "spec.trafficPolicy.tunnel: trafficPolicy.tunnel" + suffix,
			drPrefix + "spec.trafficPolicy.proxyProtocol: trafficPolicy.proxyProtocol" + suffix,
			drPrefix + "spec.trafficPolicy.retryBudget.budgetInterval: trafficPolicy.retryBudget.budgetInterval" + suffix,
			drPrefix + "spec.trafficPolicy.portLevelSettings[0].tls.mode: ISTIO_MUTUAL (the mesh's own mutual TLS)" + suffix,
			drPrefix + "spec.trafficPolicy.portLevelSettings[0].loadBalancer.localityLbSetting: loadBalancer.localityLbSetting" + suffix,
			drPrefix + "spec.subsets[0].trafficPolicy.loadBalancer.warmup: warmup with RANDOM, PASSTHROUGH or consistentHash load balancing (as in Istio, it applies only to ROUND_ROBIN and LEAST_REQUEST)" + suffix,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Decode("a.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				for _, w := range Unsupported(r) {
					got = append(got, w.String())
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func TestGRPCStatusCode(t *testing.T) {
	tests := []struct {
		name string
		code uint32
		ok   bool
	}{
		{"OK", 0, true},
		{"UNAVAILABLE", 14, true},
		{"UNAUTHENTICATED", 16, true},
		{"unavailable", 0, false},
		{"14", 0, false},
		{"", 0, false},
	}
	for _, tt := range tests {
		code, ok := GRPCStatusCode(tt.name)
		if code != tt.code || ok != tt.ok {
			t.Errorf("GRPCStatusCode(%q) = %d, %v; want %d, %v", tt.name, code, ok, tt.code, tt.ok)
		}
	}
}

func TestAnalyzeMesh(t *testing.T) {
	const vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	const dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	const gw = "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
	// route writes HTTP routes, one per match list ("" for no match), all
	// to reviews.
	route := func(matches ...string) string {
		s := "  http:\n"
		for _, m := range matches {
			if m != "" {
				s += "  - match: " + m + "\n    route: [{destination: {host: reviews}}]\n"
			} else {
				s += "  - route: [{destination: {host: reviews}}]\n"
			}
		}
		return s
	}
	reviews := Service{Hostname: "reviews.default.svc.cluster.local", Workloads: []Workload{
		{Namespace: "default", Name: "reviews-v1", Labels: map[string]string{"app": "reviews", "version": "v1"}},
		{Namespace: "default", Name: "reviews-v2", Labels: map[string]string{"app": "reviews", "version": "v2"}},
	}}
	ingress := Workload{Namespace: "istio-system", Name: "ingressgateway", Labels: map[string]string{"istio": "ingressgateway"}}
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{"all well", vs + "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n" + route(`[{uri: {prefix: /v2}}]`, ""), nil},
		{"typo'd host", vs + `metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviewz}, weight: 50}, {destination: {host: reviewz, port: {number: 9080}}, weight: 50}]
    mirror: {host: ratings.prod.svc.cluster.local}
`, []string{
			`Warning [IST0101] (VirtualService default/reviews) Referenced host not found: "reviewz"`,
			`Warning [IST0101] (VirtualService default/reviews) Referenced host not found: "ratings.prod.svc.cluster.local"`,
		}},
		{"host from a ServiceEntry, wildcard or not", `apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ext}
spec:
  hosts: [httpbin.org, "*.example.com"]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
---
` + vs + `metadata: {name: ext}
spec:
  hosts: [httpbin.org]
  http:
  - route: [{destination: {host: httpbin.org}, weight: 50}, {destination: {host: api.example.com}, weight: 25}, {destination: {host: example.org}, weight: 25}]
`, []string{
			`Warning [IST0101] (VirtualService default/ext) Referenced host not found: "example.org"`,
		}},
		{"subset that selects no workload", dr + `metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v3, labels: {version: v3, app: reviews}}
  - {name: all}
`, []string{
			`Info [WEFT0002] (DestinationRule default/reviews) spec.subsets[1].labels: subset "v3" selects no workload of host reviews.default.svc.cluster.local: none of its 2 workloads has the labels app=reviews,version=v3`,
		}},
		{"subsets of a host without workloads are not judged", dr + "metadata: {name: ratings}\nspec:\n  host: ratings\n  subsets: [{name: v9, labels: {version: v9}}]\n", nil},
		{"gateway selector", gw + `metadata: {name: bookinfo}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
` + gw + `metadata: {name: typo, namespace: web}
spec:
  selector: {istio: ingresgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
`, []string{
			`Warning [IST0101] (Gateway web/typo) Referenced selector not found: "istio=ingresgateway"`,
		}},
		{"two VirtualServices for one host on the mesh gateway", vs + "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n" + route("") +
			"---\n" + vs + "metadata: {name: custom, namespace: team}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  gateways: [mesh, istio-system/gw]\n  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]\n" +
			"---\n" + vs + "metadata: {name: edge}\nspec:\n  hosts: [reviews]\n  gateways: [bookinfo-gateway]\n" + route(""),
			[]string{
				`Warning [IST0109] (VirtualService default/reviews) The VirtualServices default/reviews,team/custom associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
				`Warning [IST0109] (VirtualService team/custom) The VirtualServices default/reviews,team/custom associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
			}},
		{"a route without a match makes later routes unreachable", vs + "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n" + route("", `[{uri: {prefix: /v2}}]`), []string{
			`Warning [IST0130] (VirtualService default/reviews) VirtualService rule #1 not used (rule #0 has no match and takes every request; only the last rule can have no matches).`,
		}},
		{"prefix / shadows every later route", vs + "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n" + route(`[{uri: {prefix: /}}]`, `[{uri: {exact: /v2}, headers: {end-user: {exact: jason}}}]`, ""), []string{
			`Info [IST0131] (VirtualService default/reviews) VirtualService rule #1 match #0 is not used (overlaps a match in rule #0).`,
			`Info [IST0131] (VirtualService default/reviews) VirtualService rule #2 is not used (rule #0 match #0 takes every request).`,
		}},
		{"duplicate and covered matches", vs + "metadata: {name: reviews}\nspec:\n  hosts: [reviews]\n" + route(
			`[{name: a, headers: {end-user: {exact: jason}}}, {uri: {prefix: /api}}]`,
			`[{headers: {end-user: {exact: jason}}}, {uri: {prefix: /apis}}, {uri: {prefix: /v2}}, {uri: {prefix: /api}, ignoreUriCase: true}]`,
			`[{headers: {end-user: {exact: kim}}}]`, ""), []string{
			`Info [IST0131] (VirtualService default/reviews) VirtualService rule #1 match #0 is not used (duplicates a match in rule #0).`,
			`Info [IST0131] (VirtualService default/reviews) VirtualService rule #1 match #1 is not used (overlaps a match in rule #0).`,
		}},
		{"unsupported fields", "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: reviews}\nspec:\n  host: reviews\n  exportTo: [.]\n" +
			"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: ext}\nspec:\n  hosts: [ext.example.com]\n  exportTo: [.]\n  subjectAltNames: [spiffe://x]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: DNS\n", []string{
			`Warning [WEFT0001] (DestinationRule default/reviews) spec.exportTo: exportTo is not supported by Weft yet: it is stored but has no effect`,
			`Warning [WEFT0001] (ServiceEntry default/ext) spec.exportTo: exportTo is not supported by Weft yet: it is stored but has no effect`,
			`Warning [WEFT0001] (ServiceEntry default/ext) spec.subjectAltNames: subjectAltNames is not supported by Weft yet: it is stored but has no effect`,
		}},
		{"TCP routes at a gateway, and a port with HTTP and TCP servers",
			vs + "metadata: {name: tcp-gw}\nspec:\n  hosts: [\"*\"]\n  gateways: [tcp-gateway]\n  tcp: [{route: [{destination: {host: reviews}}]}]\n" +
				"---\n" + gw + "metadata: {name: tcp-gateway}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - {port: {number: 31400, name: tcp, protocol: TCP}, hosts: [\"*\"], tls: {mode: PASSTHROUGH}}\n" +
				"  - {port: {number: 8080, name: http, protocol: HTTP}, hosts: [\"*\"]}\n  - {port: {number: 8080, name: tcp-8080, protocol: TCP}, hosts: [\"*\"]}\n" +
				"  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: [\"*\"], tls: {mode: SIMPLE, credentialName: cert}}\n",
			[]string{
				`Warning [WEFT0001] (Gateway default/tcp-gateway) spec.servers[0].tls: TLS on a TCP gateway server (it proxies the bytes as they come) is not supported by Weft yet: it is stored but has no effect`,
				`Warning [WEFT0001] (Gateway default/tcp-gateway) spec.servers[2].port.protocol: a TCP server on port 8080, which an HTTP server of this Gateway also uses (the port serves HTTP), is not supported by Weft yet: it is stored but has no effect`,
				`Warning [WEFT0001] (Gateway default/tcp-gateway) spec.servers[3].tls.credentialName: an HTTPS gateway server's credentialName (certificates from a secret; name them as serverCertificate and privateKey files instead; the server gets no listener) is not supported by Weft yet: it is stored but has no effect`,
			}},
		{"HTTPS server settings Weft does not apply; httpsRedirect; HTTP and HTTPS on one port",
			gw + "metadata: {name: web}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n" +
				"  - {port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"], tls: {httpsRedirect: true}}\n" +
				"  - {port: {number: 443, name: https, protocol: HTTPS}, hosts: [\"*\"], tls: {mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem, minProtocolVersion: TLSV1_3}}\n" +
				"  - {port: {number: 443, name: http-443, protocol: HTTP}, hosts: [\"*\"]}\n",
			[]string{
				`Warning [WEFT0001] (Gateway default/web) spec.servers[0].tls.httpsRedirect: httpsRedirect (the server answers its requests instead of redirecting them) is not supported by Weft yet: it is stored but has no effect`,
				`Warning [WEFT0001] (Gateway default/web) spec.servers[1].tls.minProtocolVersion: an HTTPS gateway server's minProtocolVersion (TLS 1.2 and 1.3 with Go's cipher suites are served) is not supported by Weft yet: it is stored but has no effect`,
				`Warning [WEFT0001] (Gateway default/web) spec.servers[2].port.protocol: a plain HTTP server on port 443, which an HTTPS server of this Gateway also uses (the port serves TLS), is not supported by Weft yet: it is stored but has no effect`,
			}},
		{"HTTP and TCP servers on one port in two Gateways; a missing delegate",
			gw + "metadata: {name: web}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 8080, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n" +
				"---\n" + gw + "metadata: {name: raw}\nspec:\n  selector: {istio: ingressgateway}\n  servers: [{port: {number: 8080, name: tcp, protocol: TCP}, hosts: [\"*\"]}]\n" +
				"---\n" + vs + "metadata: {name: root}\nspec:\n  hosts: [reviews]\n  http: [{delegate: {name: gone}}]\n",
			[]string{
				`Warning [WEFT0001] (Gateway default/raw) spec.servers[0].port: TCP server on port 8080, where Gateway default/web has an HTTP server for the same gateway workload: the port serves HTTP, and this server has no effect`,
				`Warning [IST0101] (VirtualService default/root) spec.http[0].delegate: Referenced delegate VirtualService not found: "default/gone"`,
			}},
		{"same host, exported to different namespaces: no conflict",
			vs + "metadata: {name: a, namespace: team-a}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  exportTo: [.]\n  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]\n" +
				"---\n" + vs + "metadata: {name: b, namespace: team-b}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  exportTo: [team-b]\n  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]\n" +
				"---\n" + vs + "metadata: {name: c, namespace: team-c}\nspec:\n  hosts: [reviews.default.svc.cluster.local]\n  exportTo: [team-a]\n  http: [{route: [{destination: {host: reviews.default.svc.cluster.local}}]}]\n",
			[]string{ // a and c both apply in team-a; b only in team-b
				`Warning [IST0109] (VirtualService team-a/a) The VirtualServices team-a/a,team-c/c associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
				`Warning [IST0109] (VirtualService team-c/c) The VirtualServices team-a/a,team-c/c associated with mesh gateway define the same host reviews.default.svc.cluster.local which can lead to undefined behavior. This can be fixed by merging the conflicting VirtualServices into a single resource.`,
			}},
		{"undefined subset, sorted by resource", vs + "metadata: {name: zeta}\nspec:\n  hosts: [zeta.example.com]\n  http:\n  - route: [{destination: {host: reviews, subset: v9}}]\n" +
			"---\n" + gw + "metadata: {name: gw}\nspec:\n  selector: {app: none}\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
			[]string{
				`Warning [IST0101] (Gateway default/gw) Referenced selector not found: "app=none"`,
				`Warning [IST0101] (VirtualService default/zeta) spec.http[0].route[0].destination: referenced subset "v9" of host reviews.default.svc.cluster.local is not defined by any DestinationRule`,
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rs, err := Decode("a.yaml", []byte(tt.in))
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, w := range AnalyzeMesh(MeshOptions{Resources: rs, Services: []Service{reviews}, Gateways: []Workload{ingress}}) {
				got = append(got, w.String())
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("warnings:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}
