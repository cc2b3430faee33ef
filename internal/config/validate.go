package config

import (
	"cmp"
	"errors"
	"maps"
	"math/big"
	"net/netip"
	"regexp"
	"regexp/syntax"
	"slices"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"google.golang.org/protobuf/types/known/durationpb"
	networking "istio.io/api/networking/v1alpha3"
)

// Validate checks a resource against Istio's rules for its kind and returns
// every problem found, or nil when the resource is valid. Paths in the
// errors use the field names of Istio's YAML (spec.http[0].route[1].weight).
func Validate(r *Resource) ErrorList {
	v := &validator{r: r}
	v.meta()
	switch spec := r.Spec.(type) {
	case *networking.VirtualService:
		v.kind(KindVirtualService)
		v.virtualService(spec)
	case *networking.DestinationRule:
		v.kind(KindDestinationRule)
		v.destinationRule(spec)
	case *networking.Gateway:
		v.kind(KindGateway)
		v.gateway(spec)
	case *networking.ServiceEntry:
		v.kind(KindServiceEntry)
		v.serviceEntry(spec)
	case *networking.WorkloadEntry:
		v.kind(KindWorkloadEntry)
		v.workloadEntry(spec)
	default:
		v.errorf("spec", "unsupported spec type %T for kind %s", r.Spec, r.Kind)
	}
	if len(v.errs) == 0 {
		return nil
	}
	return v.errs
}

type validator struct {
	r    *Resource
	errs ErrorList
}

func (v *validator) errorf(path, format string, args ...any) {
	v.errs.errorf(v.r, path, format, args...)
}

func (v *validator) kind(want Kind) {
	if v.r.Kind != want {
		v.errorf("kind", "kind %q does not match its %s spec", v.r.Kind, want)
	}
}

var (
	dns1123Label     = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	hostLabel        = regexp.MustCompile(`^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`)
)

func (v *validator) meta() {
	switch name := v.r.Name; {
	case name == "":
		v.errorf("metadata.name", "required")
	case len(name) > 253 || !dns1123Subdomain.MatchString(name):
		v.errorf("metadata.name", "invalid name %q: must be lower case letters, digits, '-' and '.', start and end with a letter or digit, at most 253 characters", name)
	}
	switch ns := v.r.Namespace; {
	case ns == "":
		v.errorf("metadata.namespace", "required")
	case len(ns) > 63 || !dns1123Label.MatchString(ns):
		v.errorf("metadata.namespace", "invalid namespace %q: must be lower case letters, digits and '-', start and end with a letter or digit, at most 63 characters", ns)
	}
}

// host checks a host name as Istio's resources accept it: a DNS name
// (short or fully qualified), optionally with a leading "*." wildcard, "*"
// itself, or an IP address.
func (v *validator) host(path, h string) {
	if h == "" {
		v.errorf(path, "host must not be empty")
		return
	}
	if h == "*" {
		return
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return
	}
	name := strings.TrimPrefix(h, "*.")
	if len(name) > 255 {
		v.errorf(path, "invalid host %q: longer than 255 characters", h)
		return
	}
	for _, label := range strings.Split(name, ".") {
		if label == "*" {
			v.errorf(path, "invalid host %q: a wildcard is only allowed as the first label (*.example.com)", h)
			return
		}
		if len(label) > 63 || !hostLabel.MatchString(label) {
			v.errorf(path, "invalid host %q: label %q must be letters, digits and '-', start and end with a letter or digit, at most 63 characters", h, label)
			return
		}
	}
}

func (v *validator) port(path string, n uint32, required bool) {
	if n == 0 && !required {
		return
	}
	if n == 0 {
		v.errorf(path, "required")
		return
	}
	if n > 65535 {
		v.errorf(path, "port number %d must be between 1 and 65535", n)
	}
}

func (v *validator) regex(path, re string) {
	if _, err := regexp.Compile(re); err != nil {
		msg := err.Error()
		var se *syntax.Error
		if errors.As(err, &se) {
			msg = se.Code.String()
			if se.Expr != re {
				msg += " in `" + se.Expr + "`"
			}
		}
		v.errorf(path, "invalid regex %q: %s", re, msg)
	}
}

// stringMatch checks an exact/prefix/regex matcher. emptyPrefixOK is false
// for the uri, scheme, method and authority matchers, where Istio rejects an
// empty prefix.
func (v *validator) stringMatch(path string, m *networking.StringMatch, emptyPrefixOK bool) {
	if m == nil {
		return
	}
	switch t := m.MatchType.(type) {
	case *networking.StringMatch_Regex:
		v.regex(field(path, "regex"), t.Regex)
	case *networking.StringMatch_Prefix:
		if t.Prefix == "" && !emptyPrefixOK {
			v.errorf(field(path, "prefix"), "must not be empty")
		}
	}
}

func (v *validator) stringMatchMap(path string, m map[string]*networking.StringMatch) {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		if k == "" {
			v.errorf(path, "names must not be empty")
			continue
		}
		v.stringMatch(field(path, k), m[k], true)
	}
}

func (v *validator) nonEmptyStrings(path string, ss []string, what string) {
	for i, s := range ss {
		if strings.TrimSpace(s) == "" {
			v.errorf(index(path, i), "%s must not be empty", what)
		}
	}
}

func (v *validator) destination(path string, d *networking.Destination) {
	if d == nil {
		v.errorf(path, "required")
		return
	}
	v.host(field(path, "host"), d.Host)
	if d.Subset != "" && !dns1123Label.MatchString(d.Subset) {
		v.errorf(field(path, "subset"), "invalid subset name %q", d.Subset)
	}
	if d.Port != nil {
		v.port(path+".port.number", d.Port.Number, false)
	}
}

// weights checks the weights of a route's destinations: each in 0..100, and
// with more than one destination, summing to 100.
func (v *validator) weights(path string, weights []int32) {
	sum := int64(0)
	for i, w := range weights {
		if w < 0 || w > 100 {
			v.errorf(index(path, i)+".weight", "weight %d must be between 0 and 100", w)
		}
		sum += int64(w)
	}
	if len(weights) > 1 && sum != 100 {
		v.errorf(path, "weights sum to %d, want 100", sum)
	}
}

func (v *validator) percent(path string, p *networking.Percent) {
	if p != nil && (p.Value < 0 || p.Value > 100) {
		v.errorf(field(path, "value"), "percentage %v must be between 0 and 100", p.Value)
	}
}

// exportTo checks a VirtualService's exportTo as Istio does: "." or "*"
// or namespace names, "*" alone, no entry twice ("." and the resource's
// own namespace are the same entry), and no "~", which only a
// ServiceEntry may use.
func (v *validator) exportTo(path, own string, list []string) {
	seen := map[string]bool{}
	for i, e := range list {
		p := index(path, i)
		ns := e
		if e == "." {
			ns = own
		}
		switch {
		case e == "~":
			v.errorf(p, `"~" (exported nowhere) is only for a ServiceEntry`)
		case e == "*" && len(list) > 1:
			v.errorf(p, `"*" must be the only entry`)
		case e != "." && e != "*" && !dns1123Label.MatchString(e):
			v.errorf(p, "%q is not a namespace name (lowercase letters, digits and '-'), \".\" or \"*\"", e)
		case seen[ns]:
			v.errorf(p, "%q is listed twice (\".\" is this resource's own namespace)", e)
		}
		seen[ns] = true
	}
}

func (v *validator) virtualService(vs *networking.VirtualService) {
	// A VirtualService without hosts is a delegate: it holds HTTP routes
	// for the root VirtualServices that delegate to it, and applies only
	// through them.
	delegate := len(vs.Hosts) == 0
	if delegate {
		if len(vs.Gateways) > 0 {
			v.errorf("spec.gateways", "a delegate VirtualService (one without hosts) takes its gateways from its root VirtualService and must not set any")
		}
		if len(vs.Tcp)+len(vs.Tls) > 0 {
			v.errorf("spec", "a delegate VirtualService (one without hosts) holds only http routes; a VirtualService with tcp or tls routes needs hosts")
		}
		if len(vs.Http) == 0 {
			v.errorf("spec", "at least one host is required (or, for a delegate VirtualService, http routes)")
		}
		for i, h := range vs.Http {
			if h.Delegate != nil {
				v.errorf(index("spec.http", i)+".delegate", "a delegate VirtualService cannot delegate further (only one level of delegation)")
			}
		}
	}
	for i, h := range vs.Hosts {
		v.host(index("spec.hosts", i), h)
	}
	v.nonEmptyStrings("spec.gateways", vs.Gateways, "gateway name")
	v.exportTo("spec.exportTo", cmp.Or(v.r.Namespace, DefaultNamespace), vs.ExportTo)
	if !delegate && len(vs.Http)+len(vs.Tcp)+len(vs.Tls) == 0 {
		v.errorf("spec", "at least one http, tcp or tls route is required")
	}
	for i, h := range vs.Http {
		v.httpRoute(index("spec.http", i), h)
	}
	for i, t := range vs.Tcp {
		p := index("spec.tcp", i)
		for j, m := range t.Match {
			mp := index(p+".match", j)
			v.port(mp+".port", m.Port, false)
			v.nonEmptyStrings(mp+".gateways", m.Gateways, "gateway name")
		}
		v.routeDestinations(p, t.Route)
	}
	for i, t := range vs.Tls {
		p := index("spec.tls", i)
		if len(t.Match) == 0 {
			v.errorf(p+".match", "at least one match with sniHosts is required")
		}
		for j, m := range t.Match {
			mp := index(p+".match", j)
			if len(m.SniHosts) == 0 {
				v.errorf(mp+".sniHosts", "at least one SNI host is required")
			}
			for k, h := range m.SniHosts {
				v.host(index(mp+".sniHosts", k), h)
			}
			v.port(mp+".port", m.Port, false)
			v.nonEmptyStrings(mp+".gateways", m.Gateways, "gateway name")
		}
		v.routeDestinations(p, t.Route)
	}
}

func (v *validator) routeDestinations(path string, rs []*networking.RouteDestination) {
	if len(rs) == 0 {
		v.errorf(path+".route", "at least one route destination is required")
		return
	}
	ws := make([]int32, len(rs))
	for i, rd := range rs {
		v.destination(index(path+".route", i)+".destination", rd.Destination)
		ws[i] = rd.Weight
	}
	v.weights(path+".route", ws)
}

func (v *validator) httpRoute(path string, h *networking.HTTPRoute) {
	switch {
	case len(h.Route) == 0 && h.Redirect == nil && h.DirectResponse == nil && h.Delegate == nil:
		v.errorf(path, "needs a route, redirect or directResponse")
	case len(h.Route) > 0 && h.Redirect != nil:
		v.errorf(path, "route and redirect cannot both be set")
	case len(h.Route) > 0 && h.DirectResponse != nil:
		v.errorf(path, "route and directResponse cannot both be set")
	case h.Redirect != nil && h.DirectResponse != nil:
		v.errorf(path, "redirect and directResponse cannot both be set")
	case h.Delegate != nil && (len(h.Route) > 0 || h.Redirect != nil || h.DirectResponse != nil):
		v.errorf(path+".delegate", "a route that delegates takes its destinations from the delegate VirtualService: route, redirect and (in Weft) directResponse cannot be set with it")
	}
	if h.Delegate != nil && h.Delegate.Name == "" {
		v.errorf(path+".delegate.name", "the delegate VirtualService's name is required")
	}
	for j, m := range h.Match {
		mp := index(path+".match", j)
		v.stringMatch(mp+".uri", m.Uri, false)
		v.stringMatch(mp+".scheme", m.Scheme, false)
		v.stringMatch(mp+".method", m.Method, false)
		v.stringMatch(mp+".authority", m.Authority, false)
		v.stringMatchMap(mp+".headers", m.Headers)
		v.stringMatchMap(mp+".withoutHeaders", m.WithoutHeaders)
		v.stringMatchMap(mp+".queryParams", m.QueryParams)
		v.port(mp+".port", m.Port, false)
		v.nonEmptyStrings(mp+".gateways", m.Gateways, "gateway name")
	}
	ws := make([]int32, len(h.Route))
	for k, rd := range h.Route {
		v.destination(index(path+".route", k)+".destination", rd.Destination)
		ws[k] = rd.Weight
	}
	v.weights(path+".route", ws)
	if r := h.Redirect; r != nil {
		if p, ok := r.RedirectPort.(*networking.HTTPRedirect_Port); ok {
			v.port(path+".redirect.port", p.Port, false)
		}
	}
	if r := h.Redirect; r != nil && r.RedirectCode != 0 && (r.RedirectCode < 300 || r.RedirectCode > 399) {
		v.errorf(path+".redirect.redirectCode", "%d is not a redirect code: it must be 3xx", r.RedirectCode)
	}
	if d := h.DirectResponse; d != nil {
		if d.Status < 200 || d.Status > 599 {
			v.errorf(path+".directResponse.status", "status %d must be between 200 and 599", d.Status)
		}
		if n := len(d.GetBody().GetString_()) + len(d.GetBody().GetBytes()); n > maxDirectResponseBody {
			v.errorf(path+".directResponse.body", "body of %d bytes is larger than the limit of %d (1 MiB)", n, maxDirectResponseBody)
		}
	}
	if h.Mirror != nil {
		v.destination(path+".mirror", h.Mirror)
	}
	v.percent(path+".mirrorPercentage", h.MirrorPercentage)
	if p := h.GetMirrorPercent(); p != nil && p.Value > 100 {
		v.errorf(path+".mirrorPercent", "percentage %d must be between 0 and 100", p.Value)
	}
	for i, m := range h.Mirrors {
		v.destination(index(path+".mirrors", i)+".destination", m.Destination)
		v.percent(index(path+".mirrors", i)+".percentage", m.Percentage)
	}
	if f := h.Fault; f != nil {
		v.fault(path+".fault", f)
	}
	if c := h.CorsPolicy; c != nil {
		v.cors(path+".corsPolicy", c)
	}
	v.headers(path+".headers", h.Headers)
	for k, rd := range h.Route {
		v.headers(index(path+".route", k)+".headers", rd.Headers)
	}
}

// maxDirectResponseBody is the largest directResponse body Istio accepts.
const maxDirectResponseBody = 1 << 20

// fault checks an HTTP fault as Istio does: a delay or an abort, a delay
// of at least 1ms, an abort with an HTTP status of 200-599 or a known gRPC
// status.
func (v *validator) fault(path string, f *networking.HTTPFaultInjection) {
	if f.Delay == nil && f.Abort == nil {
		v.errorf(path, "needs a delay or an abort")
	}
	if d := f.Delay; d != nil {
		if d.Percent < 0 || d.Percent > 100 {
			v.errorf(path+".delay.percent", "percentage %d must be between 0 and 100", d.Percent)
		}
		v.percent(path+".delay.percentage", d.Percentage)
		switch t := d.HttpDelayType.(type) {
		case *networking.HTTPFaultInjection_Delay_FixedDelay:
			if t.FixedDelay.AsDuration() < time.Millisecond {
				v.errorf(path+".delay.fixedDelay", "%v is too short: a delay must be at least 1ms", t.FixedDelay.AsDuration())
			}
		case *networking.HTTPFaultInjection_Delay_ExponentialDelay:
		default:
			v.errorf(path+".delay", "fixedDelay is required")
		}
	}
	if a := f.Abort; a != nil {
		v.percent(path+".abort.percentage", a.Percentage)
		switch t := a.ErrorType.(type) {
		case *networking.HTTPFaultInjection_Abort_HttpStatus:
			if t.HttpStatus < 200 || t.HttpStatus > 599 {
				v.errorf(path+".abort.httpStatus", "status %d must be between 200 and 599", t.HttpStatus)
			}
		case *networking.HTTPFaultInjection_Abort_GrpcStatus:
			if _, ok := GRPCStatusCode(t.GrpcStatus); !ok {
				v.errorf(path+".abort.grpcStatus", "%q is not a gRPC status name (such as UNAVAILABLE or NOT_FOUND)", t.GrpcStatus)
			}
		case *networking.HTTPFaultInjection_Abort_Http2Error:
		default:
			v.errorf(path+".abort", "httpStatus or grpcStatus is required")
		}
	}
}

// headers checks the header names of header operations: valid field names,
// and no pseudo-headers.
func (v *validator) headers(path string, h *networking.Headers) {
	check := func(p string, ops *networking.Headers_HeaderOperations) {
		if ops == nil {
			return
		}
		names := func(kind string, m map[string]string) {
			for _, name := range slices.Sorted(maps.Keys(m)) {
				v.headerName(p+"."+kind, name)
			}
		}
		names("set", ops.Set)
		names("add", ops.Add)
		for i, name := range ops.Remove {
			v.headerName(index(p+".remove", i), name)
		}
	}
	check(path+".request", h.GetRequest())
	check(path+".response", h.GetResponse())
}

func (v *validator) headerName(path, name string) {
	switch {
	case name == "":
		v.errorf(path, "header name is empty")
	case strings.HasPrefix(name, ":"):
		v.errorf(path, "%q: pseudo-headers cannot be changed", name)
	case !httpguts.ValidHeaderFieldName(name):
		v.errorf(path, "%q is not a valid header name", name)
	}
}

func (v *validator) destinationRule(dr *networking.DestinationRule) {
	if dr.Host == "" {
		v.errorf("spec.host", "required")
	} else {
		v.host("spec.host", dr.Host)
	}
	v.trafficPolicy("spec.trafficPolicy", dr.TrafficPolicy)
	seen := map[string]bool{}
	for i, s := range dr.Subsets {
		p := index("spec.subsets", i)
		switch {
		case s.Name == "":
			v.errorf(p+".name", "required")
		case !dns1123Label.MatchString(s.Name):
			v.errorf(p+".name", "invalid subset name %q: must be lower case letters, digits and '-'", s.Name)
		case seen[s.Name]:
			v.errorf(p+".name", "duplicate subset name %q", s.Name)
		}
		seen[s.Name] = true
		v.trafficPolicy(p+".trafficPolicy", s.TrafficPolicy)
	}
}

// loadBalancer checks a consistent-hash load balancer: a key, and a
// Maglev table size that is prime (Envoy rejects any other).
func (v *validator) loadBalancer(path string, lb *networking.LoadBalancerSettings) {
	if w := lb.GetWarmup(); w != nil {
		if w.Duration == nil {
			v.errorf(path+".warmup.duration", "required")
		}
		v.duration(path+".warmup.duration", w.Duration)
		if m := w.MinimumPercent; m != nil && (m.Value < 0 || m.Value > 100) {
			v.errorf(path+".warmup.minimumPercent", "%g must be between 0 and 100", m.Value)
		}
		if a := w.Aggression; a != nil && a.Value < 0 {
			v.errorf(path+".warmup.aggression", "%g must not be negative", a.Value)
		}
	}
	v.duration(path+".warmupDurationSecs", lb.GetWarmupDurationSecs())
	ch := lb.GetConsistentHash()
	if ch == nil {
		return
	}
	p := path + ".consistentHash"
	if ch.GetHashKey() == nil {
		v.errorf(p, "a hash key is required: httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName")
	}
	if c := ch.GetHttpCookie(); c != nil {
		// The sidecar writes these into the Set-Cookie it makes.
		switch {
		case c.GetName() == "":
			v.errorf(p+".httpCookie.name", "required")
		case !cookieToken(c.GetName()):
			v.errorf(p+".httpCookie.name", "%q is not a valid cookie name (a token: no spaces, separators or control characters)", c.GetName())
		}
		if !cookieValue(c.GetPath()) {
			v.errorf(p+".httpCookie.path", "%q must not hold ';' or control characters", c.GetPath())
		}
		for i, a := range c.GetAttributes() {
			ap := index(p+".httpCookie.attributes", i)
			if !cookieToken(a.GetName()) {
				v.errorf(ap+".name", "%q is not a valid attribute name (a token: no spaces, separators or control characters)", a.GetName())
			}
			if !cookieValue(a.GetValue()) {
				v.errorf(ap+".value", "%q must not hold ';' or control characters", a.GetValue())
			}
		}
	}
	if n := ch.GetMaglev().GetTableSize(); n != 0 && !big.NewInt(int64(n)).ProbablyPrime(0) {
		v.errorf(p+".maglev.tableSize", "%d is not a prime number (65537 is the default)", n)
	}
}

// cookieToken reports whether s is an RFC 7230 token, as a cookie's name
// and its attributes' names must be.
func cookieToken(s string) bool {
	return s != "" && !strings.ContainsFunc(s, func(r rune) bool {
		return r <= ' ' || r >= 0x7f || strings.ContainsRune(`"(),/:;<=>?@[\]{}`, r)
	})
}

// cookieValue reports whether s can stand in a Set-Cookie attribute.
func cookieValue(s string) bool {
	return !strings.ContainsFunc(s, func(r rune) bool { return r == ';' || r < ' ' || r == 0x7f })
}

func (v *validator) trafficPolicy(path string, tp *networking.TrafficPolicy) {
	if tp == nil {
		return
	}
	v.connectionPool(path+".connectionPool", tp.ConnectionPool)
	v.outlierDetection(path+".outlierDetection", tp.OutlierDetection)
	v.loadBalancer(path+".loadBalancer", tp.LoadBalancer)
	v.clientTLS(path+".tls", tp.Tls)
	if rb := tp.RetryBudget; rb != nil && rb.Percent != nil && (rb.Percent.Value < 0 || rb.Percent.Value > 100) {
		v.errorf(path+".retryBudget.percent", "%g must be between 0 and 100", rb.Percent.Value)
	}
	for i, pl := range tp.PortLevelSettings {
		p := index(path+".portLevelSettings", i)
		v.connectionPool(p+".connectionPool", pl.ConnectionPool)
		v.outlierDetection(p+".outlierDetection", pl.OutlierDetection)
		v.loadBalancer(p+".loadBalancer", pl.LoadBalancer)
		v.clientTLS(p+".tls", pl.Tls)
		if pl.Port == nil {
			v.errorf(p+".port", "required")
			continue
		}
		v.port(p+".port.number", pl.Port.Number, true)
	}
}

// clientTLS checks a DestinationRule's tls settings as Istio does: with
// credentialName, the certificates come from it and cannot also be named
// as files; MUTUAL needs a client certificate and its key.
func (v *validator) clientTLS(path string, t *networking.ClientTLSSettings) {
	if t == nil {
		return
	}
	mode := t.Mode
	if mode != networking.ClientTLSSettings_SIMPLE && mode != networking.ClientTLSSettings_MUTUAL {
		return
	}
	if t.CredentialName != "" {
		if t.ClientCertificate != "" || t.PrivateKey != "" || t.CaCertificates != "" {
			v.errorf(path+".credentialName", "cannot be set with clientCertificate, privateKey or caCertificates: the certificates come from the credential")
		}
		return
	}
	if mode == networking.ClientTLSSettings_MUTUAL {
		if t.ClientCertificate == "" {
			v.errorf(path+".clientCertificate", "required for MUTUAL TLS")
		}
		if t.PrivateKey == "" {
			v.errorf(path+".privateKey", "required for MUTUAL TLS")
		}
	}
}

// duration checks a duration as Istio does: at least 1ms, in whole
// milliseconds. nil is fine (unset).
func (v *validator) duration(path string, d *durationpb.Duration) {
	if d == nil {
		return
	}
	switch dur := d.AsDuration(); {
	case dur < time.Millisecond:
		v.errorf(path, "%v is too short: it must be at least 1ms", dur)
	case dur%time.Millisecond != 0:
		v.errorf(path, "%v is too precise: durations are in whole milliseconds", dur)
	}
}

// nonNegative checks an integer field Istio requires to be 0 or more.
func (v *validator) nonNegative(path string, n int32) {
	if n < 0 {
		v.errorf(path, "%d must not be negative", n)
	}
}

// connectionPool checks connection pool settings as Istio does: tcp or
// http set, no negative limits, durations of at least 1ms, and no
// useClientProtocol with an h2UpgradePolicy of UPGRADE.
func (v *validator) connectionPool(path string, cp *networking.ConnectionPoolSettings) {
	if cp == nil {
		return
	}
	if cp.Tcp == nil && cp.Http == nil {
		v.errorf(path, "needs tcp or http settings")
	}
	if h := cp.Http; h != nil {
		p := path + ".http"
		v.nonNegative(p+".http1MaxPendingRequests", h.Http1MaxPendingRequests)
		v.nonNegative(p+".http2MaxRequests", h.Http2MaxRequests)
		v.nonNegative(p+".maxRequestsPerConnection", h.MaxRequestsPerConnection)
		v.nonNegative(p+".maxRetries", h.MaxRetries)
		v.nonNegative(p+".maxConcurrentStreams", h.MaxConcurrentStreams)
		v.duration(p+".idleTimeout", h.IdleTimeout)
		if ka := h.Http2KeepAlive; ka != nil {
			for _, f := range []struct {
				name string
				d    *durationpb.Duration
			}{{"interval", ka.Interval}, {"timeout", ka.Timeout}} {
				if f.d == nil {
					v.errorf(p+".http2KeepAlive."+f.name, "is required when http2KeepAlive is set")
				}
				v.duration(p+".http2KeepAlive."+f.name, f.d)
			}
		}
		if h.H2UpgradePolicy == networking.ConnectionPoolSettings_HTTPSettings_UPGRADE && h.UseClientProtocol {
			v.errorf(p+".useClientProtocol", "must not be true when h2UpgradePolicy is UPGRADE")
		}
	}
	if tcp := cp.Tcp; tcp != nil {
		p := path + ".tcp"
		v.nonNegative(p+".maxConnections", tcp.MaxConnections)
		v.duration(p+".connectTimeout", tcp.ConnectTimeout)
		v.duration(p+".maxConnectionDuration", tcp.MaxConnectionDuration)
		v.duration(p+".idleTimeout", tcp.IdleTimeout)
		if ka := tcp.TcpKeepalive; ka != nil {
			// Linux takes 1 to 32767 seconds and up to 127 probes.
			for _, f := range []struct {
				name string
				d    *durationpb.Duration
			}{{"time", ka.Time}, {"interval", ka.Interval}} {
				v.duration(p+".tcpKeepalive."+f.name, f.d)
				if f.d != nil && f.d.AsDuration() > maxKeepalive {
					v.errorf(p+".tcpKeepalive."+f.name, "%s is too long: TCP keepalive takes at most %s", f.d.AsDuration(), maxKeepalive)
				}
			}
			if ka.Probes > 127 {
				v.errorf(p+".tcpKeepalive.probes", "%d is too many: TCP keepalive takes at most 127 probes", ka.Probes)
			}
		}
	}
}

// maxKeepalive is the longest TCP keepalive time or interval Linux takes.
const maxKeepalive = 32767 * time.Second

// outlierDetection checks outlier detection as Istio does: durations of at
// least 1ms, percentages in 0..100, and consecutiveLocalOriginFailures only
// with splitExternalLocalOriginErrors.
func (v *validator) outlierDetection(path string, od *networking.OutlierDetection) {
	if od == nil {
		return
	}
	v.duration(path+".interval", od.Interval)
	v.duration(path+".baseEjectionTime", od.BaseEjectionTime)
	if !od.SplitExternalLocalOriginErrors && od.ConsecutiveLocalOriginFailures.GetValue() > 0 {
		v.errorf(path+".consecutiveLocalOriginFailures", "needs splitExternalLocalOriginErrors: true")
	}
	for _, f := range []struct {
		name string
		val  int32
	}{{"maxEjectionPercent", od.MaxEjectionPercent}, {"minHealthPercent", od.MinHealthPercent}} {
		if f.val < 0 || f.val > 100 {
			v.errorf(path+"."+f.name, "percentage %d must be between 0 and 100", f.val)
		}
	}
}

// httpMethods are the methods Istio accepts in corsPolicy.allowMethods.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH"}

// cors checks a CORS policy as Istio does: origins with a value (and a
// valid regex), known methods, valid header names ("*" allowed), and a
// maxAge of whole seconds.
func (v *validator) cors(path string, c *networking.CorsPolicy) {
	for i, o := range c.AllowOrigins {
		p := index(path+".allowOrigins", i)
		switch t := o.GetMatchType().(type) {
		case *networking.StringMatch_Exact:
			if t.Exact == "" {
				v.errorf(p+".exact", "must not be empty")
			}
		case *networking.StringMatch_Prefix:
			if t.Prefix == "" {
				v.errorf(p+".prefix", "must not be empty")
			}
		case *networking.StringMatch_Regex:
			if t.Regex == "" {
				v.errorf(p+".regex", "must not be empty")
			} else {
				v.regex(p+".regex", t.Regex)
			}
		default:
			v.errorf(p, "needs exact, prefix or regex")
		}
	}
	for i, m := range c.AllowMethods {
		if !slices.Contains(httpMethods, m) {
			v.errorf(index(path+".allowMethods", i), "%q is not a supported HTTP method (%s)", m, strings.Join(httpMethods, ", "))
		}
	}
	for _, hs := range []struct {
		name  string
		names []string
	}{{"allowHeaders", c.AllowHeaders}, {"exposeHeaders", c.ExposeHeaders}} {
		for i, name := range hs.names {
			if name != "*" {
				v.headerName(index(path+"."+hs.name, i), name)
			}
		}
	}
	if c.MaxAge != nil {
		v.duration(path+".maxAge", c.MaxAge)
		if c.MaxAge.Nanos != 0 {
			v.errorf(path+".maxAge", "%v is too precise: maxAge is in whole seconds", c.MaxAge.AsDuration())
		}
	}
}

// protocols are the port protocols Istio accepts (case-insensitively).
var protocols = []string{"HTTP", "HTTPS", "GRPC", "GRPC-WEB", "HTTP2", "MONGO", "MYSQL", "REDIS", "TCP", "TLS", "UDP"}

func (v *validator) protocol(path, proto string) {
	if proto == "" {
		v.errorf(path, "required")
		return
	}
	for _, p := range protocols {
		if strings.EqualFold(p, proto) {
			return
		}
	}
	v.errorf(path, "invalid protocol %q; supported: %s", proto, strings.Join(protocols, ", "))
}

func (v *validator) gateway(gw *networking.Gateway) {
	if len(gw.Servers) == 0 {
		v.errorf("spec.servers", "at least one server is required")
	}
	for i, s := range gw.Servers {
		p := index("spec.servers", i)
		if s.Port == nil {
			v.errorf(p+".port", "required")
		} else {
			v.port(p+".port.number", s.Port.Number, true)
			v.protocol(p+".port.protocol", s.Port.Protocol)
			if s.Port.Name == "" {
				v.errorf(p+".port.name", "required")
			}
			if (strings.EqualFold(s.Port.Protocol, "HTTPS") || strings.EqualFold(s.Port.Protocol, "TLS")) && s.Tls == nil {
				v.errorf(p+".tls", "required for protocol %s", s.Port.Protocol)
			}
		}
		// As Istio: a server that terminates TLS needs its certificate,
		// from a credential or from files.
		if t := s.Tls; t != nil && (t.Mode == networking.ServerTLSSettings_SIMPLE || t.Mode == networking.ServerTLSSettings_MUTUAL) && t.CredentialName == "" {
			if t.ServerCertificate == "" {
				v.errorf(p+".tls.serverCertificate", "required for %s TLS without a credentialName", t.Mode)
			}
			if t.PrivateKey == "" {
				v.errorf(p+".tls.privateKey", "required for %s TLS without a credentialName", t.Mode)
			}
		}
		if len(s.Hosts) == 0 {
			v.errorf(p+".hosts", "at least one host is required")
		}
		for j, h := range s.Hosts {
			// A Gateway host may be qualified by namespace: "prod/*.example.com".
			if ns, name, ok := strings.Cut(h, "/"); ok {
				if ns != "*" && ns != "." && !dns1123Label.MatchString(ns) {
					v.errorf(index(p+".hosts", j), "invalid namespace %q in host %q", ns, h)
				}
				h = name
			}
			v.host(index(p+".hosts", j), h)
		}
	}
}

func (v *validator) serviceEntry(se *networking.ServiceEntry) {
	if len(se.Hosts) == 0 {
		v.errorf("spec.hosts", "at least one host is required")
	}
	for i, h := range se.Hosts {
		if h == "*" {
			v.errorf(index("spec.hosts", i), "host \"*\" is not allowed in a ServiceEntry")
			continue
		}
		v.host(index("spec.hosts", i), h)
	}
	for i, a := range se.Addresses {
		if _, err := netip.ParseAddr(a); err == nil {
			continue
		}
		if _, err := netip.ParsePrefix(a); err != nil {
			v.errorf(index("spec.addresses", i), "invalid address %q: want an IP address or CIDR block", a)
		}
	}
	portNames := map[string]bool{}
	portNumbers := map[uint32]bool{}
	for i, sp := range se.Ports {
		p := index("spec.ports", i)
		v.port(p+".number", sp.Number, true)
		v.port(p+".targetPort", sp.TargetPort, false)
		v.protocol(p+".protocol", sp.Protocol)
		switch {
		case sp.Name == "":
			v.errorf(p+".name", "required")
		case portNames[sp.Name]:
			v.errorf(p+".name", "duplicate port name %q", sp.Name)
		}
		if sp.Number != 0 && portNumbers[sp.Number] {
			v.errorf(p+".number", "duplicate port number %d", sp.Number)
		}
		portNames[sp.Name], portNumbers[sp.Number] = true, true
	}
	for i, we := range se.Endpoints {
		p := index("spec.endpoints", i)
		if we.Address == "" && we.Network == "" {
			v.errorf(p+".address", "required")
		} else if se.Resolution == networking.ServiceEntry_STATIC && we.Address != "" && !strings.HasPrefix(we.Address, "unix://") {
			if _, err := netip.ParseAddr(we.Address); err != nil {
				v.errorf(p+".address", "invalid address %q: resolution STATIC needs an IP address", we.Address)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(we.Ports)) {
			if !portNames[name] {
				v.errorf(field(p+".ports", name), "port %q is not one of the ServiceEntry's ports", name)
			}
			v.port(field(p+".ports", name), we.Ports[name], true)
		}
	}
}

func (v *validator) workloadEntry(we *networking.WorkloadEntry) {
	if we.Address == "" && we.Network == "" {
		v.errorf("spec.address", "required (unless network is set)")
	}
	for _, name := range slices.Sorted(maps.Keys(we.Ports)) {
		v.port(field("spec.ports", name), we.Ports[name], true)
	}
	if we.ServiceAccount != "" && !dns1123Subdomain.MatchString(we.ServiceAccount) {
		v.errorf("spec.serviceAccount", "invalid service account name %q", we.ServiceAccount)
	}
}
