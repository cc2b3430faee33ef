package config

import (
	"strings"
	"testing"

	networking "istio.io/api/networking/v1alpha3"
)

// resourceYAML wraps a spec (indented by two spaces) into a document.
func resourceYAML(kind Kind, spec string) string {
	return "apiVersion: networking.istio.io/v1\nkind: " + string(kind) + "\nmetadata: {name: t, namespace: ns}\nspec:\n" + spec
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		kind Kind
		spec string
	}{
		{KindVirtualService, `  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews}, weight: 30}]
`},
		{KindVirtualService, `  hosts: [reviews.prod.svc.cluster.local, "*.example.com"]
  gateways: [mesh, prod/gw]
  http:
  - name: split
    match:
    - uri: {regex: "^/api/v[0-9]+/.*"}
      headers: {end-user: {exact: jason}, x-any: {}}
      queryParams: {debug: {regex: "1|true"}}
      port: 9080
    route:
    - destination: {host: reviews, subset: v1, port: {number: 9080}}
      weight: 75
    - destination: {host: reviews, subset: v2}
      weight: 25
  - redirect: {uri: /new, port: 8443}
  - directResponse: {status: 503, body: {string: down}}
  tcp:
  - match: [{port: 3306}]
    route: [{destination: {host: mysql}}]
  tls:
  - match: [{sniHosts: [a.example.com], port: 443}]
    route: [{destination: {host: a.example.com}}]
`},
		{KindDestinationRule, `  host: reviews
  subsets:
  - name: v1
  - name: v2
    labels: {version: v2}
  trafficPolicy:
    portLevelSettings: [{port: {number: 9080}, loadBalancer: {simple: LEAST_REQUEST}}]
`},
		{KindDestinationRule, `  host: reviews
  trafficPolicy:
    connectionPool:
      tcp: {maxConnections: 100, connectTimeout: 30ms, maxConnectionDuration: 1h, tcpKeepalive: {time: 7200s, interval: 75s}}
      http: {http1MaxPendingRequests: 1, http2MaxRequests: 1000, maxRequestsPerConnection: 10, maxRetries: 3, idleTimeout: 1m}
    outlierDetection: {consecutive5xxErrors: 7, interval: 5m, baseEjectionTime: 15m, maxEjectionPercent: 100, minHealthPercent: 0}
  subsets:
  - name: v1
    trafficPolicy:
      outlierDetection: {splitExternalLocalOriginErrors: true, consecutiveLocalOriginFailures: 3}
`},
		{KindVirtualService, `  hosts: [ratings]
  http:
  - corsPolicy:
      allowOrigins: [{exact: "https://example.com"}, {regex: "https://.*[.]example[.]org"}]
      allowMethods: [GET, POST, PATCH]
      allowHeaders: ["*"]
      exposeHeaders: [x-custom-header]
      maxAge: 24h
      allowCredentials: false
    route: [{destination: {host: ratings}}]
`},
		{KindGateway, `  servers:
  - port: {number: 443, name: https, protocol: https}
    hosts: ["prod/*.example.com"]
    tls: {mode: SIMPLE, credentialName: cert}
`},
		{KindServiceEntry, `  hosts: [api.example.com]
  addresses: [240.0.0.1, 10.0.0.0/24]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: STATIC
  endpoints: [{address: 10.0.0.1, ports: {http: 8081}}]
`},
		{KindWorkloadEntry, `  network: remote-net
`},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			if _, err := Decode("ok.yaml", []byte(resourceYAML(tt.kind, tt.spec))); err != nil {
				t.Errorf("valid resource rejected:\n%v", err)
			}
		})
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name     string
		kind     Kind
		spec     string
		wantPath string
		wantMsg  string
	}{
		// VirtualService.
		{"cookie attribute name", KindDestinationRule, "  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        httpCookie: {name: s, ttl: 1s, attributes: [{name: \"Same Site\", value: Lax}]}\n",
			"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.attributes[0].name", `"Same Site" is not a valid attribute name (a token: no spaces, separators or control characters)`},
		{"cookie path", KindDestinationRule, "  host: a\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        httpCookie: {name: s, path: \"/;Secure\"}\n",
			"spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.path", `"/;Secure" must not hold ';' or control characters`},
		{"mutual tls without a client certificate", KindDestinationRule, "  host: a\n  trafficPolicy:\n    tls: {mode: MUTUAL, privateKey: /k.pem}\n",
			"spec.trafficPolicy.tls.clientCertificate", "required for MUTUAL TLS"},
		{"tls credentialName with files", KindDestinationRule, "  host: a\n  trafficPolicy:\n    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: SIMPLE, credentialName: c, caCertificates: /ca.pem}\n",
			"spec.trafficPolicy.portLevelSettings[0].tls.credentialName", "cannot be set with clientCertificate, privateKey or caCertificates: the certificates come from the credential"},
		{"vs no hosts and no routes", KindVirtualService, "  exportTo: [.]\n",
			"spec", "at least one host is required (or, for a delegate VirtualService, http routes)"},
		{"delegate with gateways", KindVirtualService, "  gateways: [gw]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.gateways", "a delegate VirtualService (one without hosts) takes its gateways from its root VirtualService and must not set any"},
		{"delegate with tcp", KindVirtualService, "  tcp: [{route: [{destination: {host: a}}]}]\n",
			"spec", "a delegate VirtualService (one without hosts) holds only http routes; a VirtualService with tcp or tls routes needs hosts"},
		{"nested delegate", KindVirtualService, "  http: [{delegate: {name: b}}]\n",
			"spec.http[0].delegate", "a delegate VirtualService cannot delegate further (only one level of delegation)"},
		{"delegate and route", KindVirtualService, "  hosts: [a]\n  http: [{delegate: {name: b}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].delegate", "a route that delegates takes its destinations from the delegate VirtualService: route, redirect and (in Weft) directResponse cannot be set with it"},
		{"delegate without name", KindVirtualService, "  hosts: [a]\n  http: [{delegate: {namespace: b}}]\n",
			"spec.http[0].delegate.name", "the delegate VirtualService's name is required"},
		{"vs empty host", KindVirtualService, "  hosts: [a, \"\"]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.hosts[1]", "host must not be empty"},
		{"vs bad host", KindVirtualService, "  hosts: [a.*.com]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.hosts[0]", `invalid host "a.*.com": a wildcard is only allowed as the first label (*.example.com)`},
		{"vs no routes at all", KindVirtualService, "  hosts: [a]\n",
			"spec", "at least one http, tcp or tls route is required"},
		{"vs empty gateway", KindVirtualService, "  hosts: [a]\n  gateways: [\"\"]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.gateways[0]", "gateway name must not be empty"},
		{"http route without route", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a}}]}, {timeout: 1s}]\n",
			"spec.http[1]", "needs a route, redirect or directResponse"},
		{"route and redirect", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a}}], redirect: {uri: /x}}]\n",
			"spec.http[0]", "route and redirect cannot both be set"},
		{"fault without delay or abort", KindVirtualService, "  hosts: [a]\n  http: [{fault: {}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault", "needs a delay or an abort"},
		{"fault delay without duration", KindVirtualService, "  hosts: [a]\n  http: [{fault: {delay: {percentage: {value: 5}}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.delay", "fixedDelay is required"},
		{"fault delay too short", KindVirtualService, "  hosts: [a]\n  http: [{fault: {delay: {fixedDelay: 0s}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.delay.fixedDelay", "0s is too short: a delay must be at least 1ms"},
		{"fault abort status", KindVirtualService, "  hosts: [a]\n  http: [{fault: {abort: {httpStatus: 99}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.abort.httpStatus", "status 99 must be between 200 and 599"},
		{"fault abort grpc status", KindVirtualService, "  hosts: [a]\n  http: [{fault: {abort: {grpcStatus: unavailable}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.abort.grpcStatus", `"unavailable" is not a gRPC status name (such as UNAVAILABLE or NOT_FOUND)`},
		{"fault abort without error", KindVirtualService, "  hosts: [a]\n  http: [{fault: {abort: {percentage: {value: 1}}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.abort", "httpStatus or grpcStatus is required"},
		{"fault deprecated percent", KindVirtualService, "  hosts: [a]\n  http: [{fault: {delay: {percent: 101, fixedDelay: 1s}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.delay.percent", "percentage 101 must be between 0 and 100"},
		{"redirect code", KindVirtualService, "  hosts: [a]\n  http: [{redirect: {uri: /x, redirectCode: 200}}]\n",
			"spec.http[0].redirect.redirectCode", "200 is not a redirect code: it must be 3xx"},
		{"mirror percent", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a}}], mirror: {host: b}, mirrorPercent: 120}]\n",
			"spec.http[0].mirrorPercent", "percentage 120 must be between 0 and 100"},
		{"header pseudo", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a}}], headers: {request: {set: {\":path\": /x}}}}]\n",
			"spec.http[0].headers.request.set", `":path": pseudo-headers cannot be changed`},
		{"header name", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a}, headers: {response: {remove: [\"bad name\"]}}}]}]\n",
			"spec.http[0].route[0].headers.response.remove[0]", `"bad name" is not a valid header name`},
		{"maglev table size", KindDestinationRule, "  host: a\n  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 65536}}}}\n",
			"spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize", "65536 is not a prime number (65537 is the default)"},
		{"consistent hash without key", KindDestinationRule, "  host: a\n  subsets: [{name: v1, trafficPolicy: {loadBalancer: {consistentHash: {minimumRingSize: 1024}}}}]\n",
			"spec.subsets[0].trafficPolicy.loadBalancer.consistentHash", "a hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName"},
		{"destination missing", KindVirtualService, "  hosts: [a]\n  http: [{route: [{weight: 100}]}]\n",
			"spec.http[0].route[0].destination", "required"},
		{"destination host missing", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {subset: v1}}]}]\n",
			"spec.http[0].route[0].destination.host", "host must not be empty"},
		{"weights sum", KindVirtualService, `  hosts: [a]
  http:
  - route:
    - destination: {host: a, subset: v1}
      weight: 50
    - destination: {host: a, subset: v2}
      weight: 40
`, "spec.http[0].route", "weights sum to 90, want 100"},
		{"weights omitted with several destinations", KindVirtualService, `  hosts: [a]
  http:
  - route:
    - destination: {host: a, subset: v1}
    - destination: {host: a, subset: v2}
`, "spec.http[0].route", "weights sum to 0, want 100"},
		{"weight out of range", KindVirtualService, `  hosts: [a]
  http:
  - route:
    - destination: {host: a, subset: v1}
      weight: 150
    - destination: {host: a, subset: v2}
      weight: -50
`, "spec.http[0].route[0].weight", "weight 150 must be between 0 and 100"},
		{"negative weight", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a}, weight: -1}]}]\n",
			"spec.http[0].route[0].weight", "weight -1 must be between 0 and 100"},
		{"uri regex", KindVirtualService, `  hosts: [a]
  http:
  - route: [{destination: {host: a}}]
  - match: [{uri: {regex: "([a-z"}}]
    route: [{destination: {host: a}}]
`, "spec.http[1].match[0].uri.regex", "invalid regex \"([a-z\": missing closing ] in `[a-z`"},
		{"header regex", KindVirtualService, `  hosts: [a]
  http:
  - match: [{headers: {end-user: {regex: "(ja"}}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].headers.end-user.regex", `invalid regex "(ja": missing closing )`},
		{"query param regex", KindVirtualService, `  hosts: [a]
  http:
  - match: [{queryParams: {q: {regex: "a**"}}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].queryParams.q.regex", "invalid regex \"a**\": invalid nested repetition operator in `**`"},
		{"RE2 has no lookahead", KindVirtualService, `  hosts: [a]
  http:
  - match: [{uri: {regex: "/(?!admin)"}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].uri.regex", "invalid regex \"/(?!admin)\": invalid or unsupported Perl syntax in `(?!`"},
		{"empty uri prefix", KindVirtualService, `  hosts: [a]
  http:
  - match: [{uri: {prefix: ""}}]
    route: [{destination: {host: a}}]
`, "spec.http[0].match[0].uri.prefix", "must not be empty"},
		{"match port", KindVirtualService, "  hosts: [a]\n  http: [{match: [{port: 70000}], route: [{destination: {host: a}}]}]\n",
			"spec.http[0].match[0].port", "port number 70000 must be between 1 and 65535"},
		{"destination port", KindVirtualService, "  hosts: [a]\n  http: [{route: [{destination: {host: a, port: {number: 65536}}}]}]\n",
			"spec.http[0].route[0].destination.port.number", "port number 65536 must be between 1 and 65535"},
		{"redirect port", KindVirtualService, "  hosts: [a]\n  http: [{redirect: {port: 99999}}]\n",
			"spec.http[0].redirect.port", "port number 99999 must be between 1 and 65535"},
		{"direct response status", KindVirtualService, "  hosts: [a]\n  http: [{directResponse: {status: 99}}]\n",
			"spec.http[0].directResponse.status", "status 99 must be between 200 and 599"},
		{"match gateway empty", KindVirtualService, "  hosts: [a]\n  http: [{match: [{gateways: [\"\"]}], route: [{destination: {host: a}}]}]\n",
			"spec.http[0].match[0].gateways[0]", "gateway name must not be empty"},
		{"fault percent", KindVirtualService, "  hosts: [a]\n  http: [{fault: {delay: {percent: 120, fixedDelay: 1s}}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].fault.delay.percent", "percentage 120 must be between 0 and 100"},
		{"cors empty origin", KindVirtualService, "  hosts: [a]\n  http: [{corsPolicy: {allowOrigins: [{exact: \"\"}]}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].corsPolicy.allowOrigins[0].exact", "must not be empty"},
		{"cors origin regex", KindVirtualService, "  hosts: [a]\n  http: [{corsPolicy: {allowOrigins: [{regex: \"(x\"}]}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].corsPolicy.allowOrigins[0].regex", `invalid regex "(x": missing closing )`},
		{"cors method", KindVirtualService, "  hosts: [a]\n  http: [{corsPolicy: {allowMethods: [GET, get]}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].corsPolicy.allowMethods[1]", `"get" is not a supported HTTP method (GET, HEAD, POST, PUT, DELETE, OPTIONS, TRACE, CONNECT, PATCH)`},
		{"cors header", KindVirtualService, "  hosts: [a]\n  http: [{corsPolicy: {exposeHeaders: [\"x y\"]}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].corsPolicy.exposeHeaders[0]", `"x y" is not a valid header name`},
		{"cors max age", KindVirtualService, "  hosts: [a]\n  http: [{corsPolicy: {maxAge: 1.5s}, route: [{destination: {host: a}}]}]\n",
			"spec.http[0].corsPolicy.maxAge", "1.5s is too precise: maxAge is in whole seconds"},
		{"tcp weights", KindVirtualService, "  hosts: [a]\n  tcp: [{route: [{destination: {host: a}, weight: 10}, {destination: {host: b}, weight: 10}]}]\n",
			"spec.tcp[0].route", "weights sum to 20, want 100"},
		{"tcp without route", KindVirtualService, "  hosts: [a]\n  tcp: [{match: [{port: 1}]}]\n",
			"spec.tcp[0].route", "at least one route destination is required"},
		{"tls without sni", KindVirtualService, "  hosts: [a]\n  tls: [{match: [{port: 443}], route: [{destination: {host: a}}]}]\n",
			"spec.tls[0].match[0].sniHosts", "at least one SNI host is required"},

		// DestinationRule.
		{"dr no host", KindDestinationRule, "  subsets: [{name: v1}]\n",
			"spec.host", "required"},
		{"dr subset no name", KindDestinationRule, "  host: a\n  subsets: [{labels: {version: v1}}]\n",
			"spec.subsets[0].name", "required"},
		{"dr duplicate subset", KindDestinationRule, "  host: a\n  subsets: [{name: v1}, {name: v2}, {name: v1}]\n",
			"spec.subsets[2].name", `duplicate subset name "v1"`},
		{"dr port level port", KindDestinationRule, "  host: a\n  trafficPolicy: {portLevelSettings: [{port: {number: 0}}]}\n",
			"spec.trafficPolicy.portLevelSettings[0].port.number", "required"},
		{"dr empty connection pool", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {}}\n",
			"spec.trafficPolicy.connectionPool", "needs tcp or http settings"},
		{"dr negative max connections", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {tcp: {maxConnections: -1}}}\n",
			"spec.trafficPolicy.connectionPool.tcp.maxConnections", "-1 must not be negative"},
		{"dr negative pending requests in a subset", KindDestinationRule, "  host: a\n  subsets: [{name: v1, trafficPolicy: {connectionPool: {http: {http1MaxPendingRequests: -5}}}}]\n",
			"spec.subsets[0].trafficPolicy.connectionPool.http.http1MaxPendingRequests", "-5 must not be negative"},
		{"dr connect timeout too short", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {tcp: {connectTimeout: 0.0001s}}}\n",
			"spec.trafficPolicy.connectionPool.tcp.connectTimeout", "100µs is too short: it must be at least 1ms"},
		{"dr idle timeout precision", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {http: {idleTimeout: 1.0005s}}}\n",
			"spec.trafficPolicy.connectionPool.http.idleTimeout", "1.0005s is too precise: durations are in whole milliseconds"},
		{"dr http2 keepalive without a timeout", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {http: {http2KeepAlive: {interval: 10s}}}}\n",
			"spec.trafficPolicy.connectionPool.http.http2KeepAlive.timeout", "is required when http2KeepAlive is set"},
		{"dr tcp keepalive time too long", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {tcp: {tcpKeepalive: {time: 40000s}}}}\n",
			"spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time", "11h6m40s is too long: TCP keepalive takes at most 9h6m7s"},
		{"dr tcp keepalive probes", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {tcp: {tcpKeepalive: {probes: 200}}}}\n",
			"spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.probes", "200 is too many: TCP keepalive takes at most 127 probes"},
		{"dr retry budget over 100", KindDestinationRule, "  host: a\n  trafficPolicy: {retryBudget: {percent: 120}}\n",
			"spec.trafficPolicy.retryBudget.percent", "120 must be between 0 and 100"},
		{"dr warmup negative aggression", KindDestinationRule, "  host: a\n  trafficPolicy: {loadBalancer: {warmup: {duration: 30s, aggression: -1}}}\n",
			"spec.trafficPolicy.loadBalancer.warmup.aggression", "-1 must not be negative"},
		{"dr warmup without duration", KindDestinationRule, "  host: a\n  trafficPolicy: {loadBalancer: {warmup: {aggression: 2}}}\n",
			"spec.trafficPolicy.loadBalancer.warmup.duration", "required"},
		{"vs exportTo star with another", KindVirtualService, "  hosts: [a]\n  exportTo: [\"*\", .]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.exportTo[0]", `"*" must be the only entry`},
		{"vs exportTo bad namespace", KindVirtualService, "  hosts: [a]\n  exportTo: [Team_A]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.exportTo[0]", `"Team_A" is not a namespace name (lowercase letters, digits and '-'), "." or "*"`},
		{"vs exportTo none", KindVirtualService, "  hosts: [a]\n  exportTo: [\"~\"]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.exportTo[0]", `"~" (exported nowhere) is only for a ServiceEntry`},
		{"vs exportTo twice", KindVirtualService, "  hosts: [a]\n  exportTo: [., ns]\n  http: [{route: [{destination: {host: a}}]}]\n",
			"spec.exportTo[1]", `"ns" is listed twice ("." is this resource's own namespace)`},
		{"dr client protocol with upgrade", KindDestinationRule, "  host: a\n  trafficPolicy: {connectionPool: {http: {h2UpgradePolicy: UPGRADE, useClientProtocol: true}}}\n",
			"spec.trafficPolicy.connectionPool.http.useClientProtocol", "must not be true when h2UpgradePolicy is UPGRADE"},
		{"dr ejection percent at port level", KindDestinationRule, "  host: a\n  trafficPolicy: {portLevelSettings: [{port: {number: 80}, outlierDetection: {maxEjectionPercent: 101}}]}\n",
			"spec.trafficPolicy.portLevelSettings[0].outlierDetection.maxEjectionPercent", "percentage 101 must be between 0 and 100"},
		{"dr min health percent", KindDestinationRule, "  host: a\n  trafficPolicy: {outlierDetection: {minHealthPercent: -1}}\n",
			"spec.trafficPolicy.outlierDetection.minHealthPercent", "percentage -1 must be between 0 and 100"},
		{"dr ejection interval", KindDestinationRule, "  host: a\n  trafficPolicy: {outlierDetection: {interval: 0s}}\n",
			"spec.trafficPolicy.outlierDetection.interval", "0s is too short: it must be at least 1ms"},
		{"dr local origin failures without split", KindDestinationRule, "  host: a\n  trafficPolicy: {outlierDetection: {consecutiveLocalOriginFailures: 2}}\n",
			"spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures", "needs splitExternalLocalOriginErrors: true"},

		// Gateway.
		{"gw no servers", KindGateway, "  selector: {istio: ingressgateway}\n",
			"spec.servers", "at least one server is required"},
		{"gw no port", KindGateway, "  servers: [{hosts: [\"*\"]}]\n",
			"spec.servers[0].port", "required"},
		{"gw port number", KindGateway, "  servers: [{port: {name: http, protocol: HTTP}, hosts: [\"*\"]}]\n",
			"spec.servers[0].port.number", "required"},
		{"gw port protocol", KindGateway, "  servers: [{port: {number: 80, name: http}, hosts: [\"*\"]}]\n",
			"spec.servers[0].port.protocol", "required"},
		{"gw bad protocol", KindGateway, "  servers: [{port: {number: 80, name: http, protocol: HTTP3}, hosts: [\"*\"]}]\n",
			"spec.servers[0].port.protocol", `invalid protocol "HTTP3"; supported: HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, MYSQL, REDIS, TCP, TLS, UDP`},
		{"gw port name", KindGateway, "  servers: [{port: {number: 80, protocol: HTTP}, hosts: [\"*\"]}]\n",
			"spec.servers[0].port.name", "required"},
		{"gw no hosts", KindGateway, "  servers: [{port: {number: 80, name: http, protocol: HTTP}}]\n",
			"spec.servers[0].hosts", "at least one host is required"},
		{"gw empty host", KindGateway, "  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"\"]}]\n",
			"spec.servers[0].hosts[0]", "host must not be empty"},
		{"gw https without tls", KindGateway, "  servers: [{port: {number: 443, name: https, protocol: HTTPS}, hosts: [\"*\"]}]\n",
			"spec.servers[0].tls", "required for protocol HTTPS"},

		// ServiceEntry.
		{"se no hosts", KindServiceEntry, "  ports: [{number: 80, name: http, protocol: HTTP}]\n",
			"spec.hosts", "at least one host is required"},
		{"se port number", KindServiceEntry, "  hosts: [a.com]\n  ports: [{name: http, protocol: HTTP}]\n",
			"spec.ports[0].number", "required"},
		{"se port name", KindServiceEntry, "  hosts: [a.com]\n  ports: [{number: 80, protocol: HTTP}]\n",
			"spec.ports[0].name", "required"},
		{"se port protocol", KindServiceEntry, "  hosts: [a.com]\n  ports: [{number: 80, name: http}]\n",
			"spec.ports[0].protocol", "required"},
		{"se target port", KindServiceEntry, "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 70000}]\n",
			"spec.ports[0].targetPort", "port number 70000 must be between 1 and 65535"},
		{"se static endpoint without address", KindServiceEntry, "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{labels: {a: b}}]\n",
			"spec.endpoints[0].address", "required"},
		{"se static endpoint hostname", KindServiceEntry, "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: a.com}]\n",
			"spec.endpoints[0].address", `invalid address "a.com": resolution STATIC needs an IP address`},
		{"se endpoint unknown port", KindServiceEntry, "  hosts: [a.com]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n  endpoints: [{address: 1.2.3.4, ports: {grpc: 81}}]\n",
			"spec.endpoints[0].ports.grpc", `port "grpc" is not one of the ServiceEntry's ports`},

		// WorkloadEntry.
		{"we no address", KindWorkloadEntry, "  labels: {app: a}\n",
			"spec.address", "required (unless network is set)"},
		{"we port", KindWorkloadEntry, "  address: 1.2.3.4\n  ports: {http: 0}\n",
			"spec.ports.http", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Decode("t.yaml", []byte(resourceYAML(tt.kind, tt.spec)))
			if err == nil {
				t.Fatal("accepted")
			}
			e := findError(errorList(t, err), tt.wantPath)
			if e == nil {
				t.Fatalf("no error at %q; got:\n%v", tt.wantPath, err)
			}
			if e.Message != tt.wantMsg {
				t.Errorf("message\n got %q\nwant %q", e.Message, tt.wantMsg)
			}
			if e.Kind != tt.kind || e.Namespace != "ns" || e.Name != "t" {
				t.Errorf("error names %s %s/%s", e.Kind, e.Namespace, e.Name)
			}
		})
	}
}

func TestValidateDirect(t *testing.T) {
	// Resources built in code (not decoded) are validated the same way.
	r := &Resource{Kind: KindDestinationRule, Meta: Meta{Namespace: "default", Name: "r"}, Spec: &networking.DestinationRule{Host: "reviews"}}
	if errs := Validate(r); errs != nil {
		t.Errorf("valid: %v", errs)
	}
	r.Spec = &networking.VirtualService{}
	errs := Validate(r)
	if len(errs) == 0 || !strings.Contains(errs.Error(), `kind "DestinationRule" does not match its VirtualService spec`) {
		t.Errorf("kind/spec mismatch not reported: %v", errs)
	}
}
