package config

import (
	"fmt"
	"slices"
	"strings"

	networking "istio.io/api/networking/v1alpha3"
)

// CodeNotSupported is Weft's code for a field it accepts, as Istio does,
// but does not act on yet.
const CodeNotSupported = "WEFT0001"

// CodeTLSNameUnchecked is Weft's code for TLS origination that cannot check
// the server's name (istioctl has none).
const CodeTLSNameUnchecked = "WEFT0004"

// Unsupported warns about every field of r that Weft stores but does not
// yet apply to traffic, so that applying, say, Istio's fault injection
// example says so instead of silently doing nothing.
func Unsupported(r *Resource) []Warning {
	var out []Warning
	warn := func(path, what string) {
		out = append(out, Warning{
			Code: CodeNotSupported, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Path: path,
			Message: what + " is not supported by Weft yet: it is stored but has no effect",
		})
	}
	switch spec := r.Spec.(type) {
	case *networking.VirtualService:
		for i, h := range spec.GetHttp() {
			p := index("spec.http", i)
			if h.GetFault().GetDelay().GetExponentialDelay() != nil {
				warn(p+".fault.delay.exponentialDelay", "an exponential fault delay")
			}
			if h.GetFault().GetAbort().GetHttp2Error() != "" {
				warn(p+".fault.abort.http2Error", "an HTTP/2 error fault abort")
			}
			if r := h.GetRedirect(); r != nil && !slices.Contains(redirectCodes, r.GetRedirectCode()) {
				warn(p+".redirect.redirectCode", fmt.Sprintf("redirect code %d (Envoy sends 301, 302, 303, 307 and 308)", r.GetRedirectCode()))
			}
			if h.GetRedirect() != nil || h.GetDirectResponse() != nil {
				// Nothing is forwarded, so there is nothing to rewrite or mirror.
				for _, f := range []struct {
					set  bool
					name string
				}{
					{h.GetRewrite() != nil, "rewrite"},
					{h.GetMirror() != nil, "mirror"},
					{len(h.GetMirrors()) > 0, "mirrors"},
				} {
					if f.set {
						warn(p+"."+f.name, "HTTP "+f.name+" on a redirect or directResponse route")
					}
				}
			}
		}
		if len(spec.GetTls()) > 0 {
			warn("spec.tls", "TLS routing by VirtualService")
		}
	case *networking.DestinationRule:
		policy := func(path string, cp *networking.ConnectionPoolSettings, od *networking.OutlierDetection,
			lb *networking.LoadBalancerSettings, tls *networking.ClientTLSSettings) {
			if od.GetConsecutiveErrors() != 0 { //nolint:staticcheck // deprecated, and ignored as in Istio
				warn(path+".outlierDetection.consecutiveErrors",
					"the deprecated outlierDetection.consecutiveErrors (Istio ignores it too; use consecutive5xxErrors or consecutiveGatewayErrors)")
			}
			if m := tls.GetMode(); (m == networking.ClientTLSSettings_SIMPLE || m == networking.ClientTLSSettings_MUTUAL) &&
				tls.GetCredentialName() == "" && !tls.GetInsecureSkipVerify().GetValue() && tls.GetSni() == "" &&
				len(tls.GetSubjectAltNames()) == 0 && strings.HasPrefix(spec.GetHost(), "*") {
				out = append(out, Warning{
					Code: CodeTLSNameUnchecked, Kind: r.Kind, Namespace: r.Namespace, Name: r.Name, Path: path + ".tls",
					Message: "TLS to a wildcard host without sni or subjectAltNames checks the server's certificate chain but not its name: any certificate a trusted CA issued passes; set sni or subjectAltNames",
				})
			}
			switch {
			case tls.GetMode() == networking.ClientTLSSettings_ISTIO_MUTUAL:
				warn(path+".tls.mode", "ISTIO_MUTUAL (the mesh's own mutual TLS)")
			case tls.GetCredentialName() != "" && tls.GetMode() != networking.ClientTLSSettings_DISABLE:
				warn(path+".tls.credentialName", "a TLS credential by name (certificates from a secret; name them as files instead)")
			case tls.GetCaCrl() != "":
				warn(path+".tls.caCrl", "a certificate revocation list")
			}
			if (lb.GetWarmup() != nil || lb.GetWarmupDurationSecs() != nil) && (lb.GetConsistentHash() != nil ||
				lb.GetSimple() == networking.LoadBalancerSettings_RANDOM || lb.GetSimple() == networking.LoadBalancerSettings_PASSTHROUGH) {
				warn(path+".loadBalancer.warmup", "warmup with RANDOM, PASSTHROUGH or consistentHash load balancing (as in Istio, it applies only to ROUND_ROBIN and LEAST_REQUEST)")
			}
			for _, f := range []struct {
				set  bool
				name string
			}{
				{lb.GetLocalityLbSetting() != nil, "localityLbSetting"},
				{lb.GetZoneAwareLbSetting() != nil, "zoneAwareLbSetting"},
			} {
				if f.set {
					warn(path+".loadBalancer."+f.name, "loadBalancer."+f.name)
				}
			}
		}
		trafficPolicy := func(path string, tp *networking.TrafficPolicy) {
			if tp == nil {
				return
			}
			policy(path, tp.GetConnectionPool(), tp.GetOutlierDetection(), tp.GetLoadBalancer(), tp.GetTls())
			for _, f := range []struct {
				set  bool
				name string
			}{
				{tp.GetTunnel() != nil, "tunnel"},
				{tp.GetProxyProtocol() != nil, "proxyProtocol"},
				{tp.GetRetryBudget().GetBudgetInterval().AsDuration() != 0, "retryBudget.budgetInterval"},
			} {
				if f.set {
					warn(path+"."+f.name, "trafficPolicy."+f.name)
				}
			}
			for i, pl := range tp.GetPortLevelSettings() {
				policy(index(path+".portLevelSettings", i), pl.GetConnectionPool(), pl.GetOutlierDetection(), pl.GetLoadBalancer(), pl.GetTls())
			}
		}
		trafficPolicy("spec.trafficPolicy", spec.GetTrafficPolicy())
		for i, s := range spec.GetSubsets() {
			trafficPolicy(index("spec.subsets", i)+".trafficPolicy", s.GetTrafficPolicy())
		}
		if len(spec.GetExportTo()) > 0 {
			warn("spec.exportTo", "exportTo")
		}
	case *networking.ServiceEntry:
		if len(spec.GetExportTo()) > 0 {
			warn("spec.exportTo", "exportTo")
		}
		if len(spec.GetSubjectAltNames()) > 0 {
			warn("spec.subjectAltNames", "subjectAltNames")
		}
	case *networking.Gateway:
		httpPorts, httpsPorts := map[uint32]bool{}, map[uint32]bool{}
		for _, s := range spec.GetServers() {
			switch strings.ToUpper(s.GetPort().GetProtocol()) {
			case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
				httpPorts[s.GetPort().GetNumber()] = true
			case "HTTPS":
				httpsPorts[s.GetPort().GetNumber()] = true
			}
		}
		for i, s := range spec.GetServers() {
			p := index("spec.servers", i)
			switch strings.ToUpper(s.GetPort().GetProtocol()) {
			case "HTTP", "HTTP2", "GRPC", "GRPC-WEB":
				if s.GetTls().GetHttpsRedirect() {
					warn(p+".tls.httpsRedirect", "httpsRedirect (the server answers its requests instead of redirecting them)")
				}
				if httpsPorts[s.GetPort().GetNumber()] {
					warn(p+".port.protocol", fmt.Sprintf("a plain HTTP server on port %d, which an HTTPS server of this Gateway also uses (the port serves TLS),", s.GetPort().GetNumber()))
				}
			case "HTTPS":
				// Served: SIMPLE with the certificate and key in files.
				switch t := s.GetTls(); {
				case t.GetMode() != networking.ServerTLSSettings_SIMPLE:
					warn(p+".tls.mode", fmt.Sprintf("an HTTPS gateway server in %s mode (Weft terminates SIMPLE TLS; the server gets no listener)", t.GetMode()))
				case t.GetCredentialName() != "":
					warn(p+".tls.credentialName", "an HTTPS gateway server's credentialName (certificates from a secret; name them as serverCertificate and privateKey files instead; the server gets no listener)")
				default:
					for _, f := range []struct {
						set  bool
						name string
					}{
						{t.GetMinProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO, "minProtocolVersion"},
						{t.GetMaxProtocolVersion() != networking.ServerTLSSettings_TLS_AUTO, "maxProtocolVersion"},
						{len(t.GetCipherSuites()) > 0, "cipherSuites"},
						{len(t.GetSubjectAltNames()) > 0, "subjectAltNames"},
						{len(t.GetVerifyCertificateSpki())+len(t.GetVerifyCertificateHash()) > 0, "verifyCertificateSpki/Hash"},
					} {
						if f.set {
							warn(p+".tls."+f.name, "an HTTPS gateway server's "+f.name+" (TLS 1.2 and 1.3 with Go's cipher suites are served)")
						}
					}
				}
			case "TCP":
				if httpsPorts[s.GetPort().GetNumber()] {
					warn(p+".port.protocol", fmt.Sprintf("a TCP server on port %d, which an HTTPS server of this Gateway also uses (the port serves HTTPS),", s.GetPort().GetNumber()))
				}
				if s.GetTls() != nil {
					warn(index("spec.servers", i)+".tls", "TLS on a TCP gateway server (it proxies the bytes as they come)")
				}
				if httpPorts[s.GetPort().GetNumber()] {
					warn(index("spec.servers", i)+".port.protocol", fmt.Sprintf("a TCP server on port %d, which an HTTP server of this Gateway also uses (the port serves HTTP),", s.GetPort().GetNumber()))
				}
			default:
				warn(index("spec.servers", i)+".port.protocol", "a "+s.GetPort().GetProtocol()+" gateway server")
			}
		}
	}
	return out
}

// redirectCodes are the redirect codes Envoy can send; 0 means 301.
var redirectCodes = []uint32{0, 301, 302, 303, 307, 308}

// grpcStatusNames are the gRPC status names Istio accepts in
// fault.abort.grpcStatus, indexed by their code.
var grpcStatusNames = []string{
	"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
	"ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
	"ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
	"UNAUTHENTICATED",
}

// GRPCStatusCode returns the code of a gRPC status name as Istio's
// fault.abort.grpcStatus spells it ("UNAVAILABLE" is 14).
func GRPCStatusCode(name string) (uint32, bool) {
	i := slices.Index(grpcStatusNames, name)
	if i < 0 {
		return 0, false
	}
	return uint32(i), true
}
